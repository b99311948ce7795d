"""The main job's configuration: its defaults and its checks.

A job config is an `ml_collections.ConfigDict` (configs/tiny.py, hf.py, chinchilla7b.py
start from `defaults()` and change what they need). Every field can be overridden on
the command line, e.g. `--config.sweep.num_sources=5`:

  model_source   "embedded" (the tiny model shipped in the package), "hf" (a Hugging
                 Face directory), "gguf" (a GGUF file), "checkpoint" (hydra_jax's own
                 format) or "random" (`job.model_sources`, the table of model sources)
  checkpoint     the directory for "hf" / "checkpoint"; for "gguf" a .gguf file or a
                 model name of `hydra_jax.fetch.MODELS` (fetched into the user's cache)
  tokenizer      tokenizer file or directory; "" = the checkpoint's (or the embedded
                 model's own)
  seed           random initialisation seed (model_source="random")
  model          ModelConfig fields. For "random" they define the model; for the others
                 every field that is set (not None) must match the loaded model, except
                 `dtype`, which casts it
  data           name ("embedded", "known_facts", "counterfact", "facts_file", "random":
                 `job.prompt_sources`, the table of prompt sources), data_dir and manual_dir for TFDS, facts_file (a JSON list of prompt
                 records: id, prompt, label, ...), max_prompts (0 = all), filter_correct,
                 label_prefix, num_prompts / prompt_length for random token prompts
  sweep          protocol ("layers": the paper's sweep; "heads": self-repair per head at
                 every position, `hydra_jax.job.heads`), kind ("resample", "zero", "mean",
                 "noise"), num_sources K (noise: draws),
                 seed of the source draw, sources ("uniform", or "same_relation": sources
                 share the prompt's relation, where the prompt set has relations), path
                 ("incremental", "full"), chunk_size prompts per saved chunk, check (the
                 consistency checks; default True: they are computed on the device in
                 every sweep anyway, comparing them costs under 1%), response_scale
                 ("clean": responses read with the clean final sigma, docs/method.md's default;
                 "ablated": each run's own), freeze_final_scale (False; True holds the
                 ablated runs' final sigma at its clean value: the norm remainder is then
                 0), keep_sources (8: the per-source responses [K, C, C] of the first 8
                 prompts are kept, for the report's per-source lines; the per-source
                 lost DE and parts of the compensation [K, C] are kept for every prompt
                 anyway), noise_scale (3.0: the noise std in units of the embeddings'
                 std, kind "noise"), doses ((0.25, 0.5, 0.75): the strengths w < 1 of the
                 dose-response sweep, each component replaced by (1 - w) clean + w
                 replacement, `job.dose`) and dose_prompts (64 kept prompts, spread
                 evenly, at most chunk_size; 0: no dose sweep)
  heads          options of protocol "heads": text_file ("" = the embedded world's text),
                 num_sequences, seq_len, num_sources K, seed, batch_size sequences per
                 compiled batch (a saved chunk), cells_per_step, top_k responders,
                 freeze_final_norm
  mesh           data and model axis sizes (data=-1: all devices left over)
  report         the report's options (`report.options`, their one place): ablated_layer
                 and ablated_kind of figures 1/3, regression_layers of figure 7,
                 late_mlps of the erasure figure, bootstrap resamples of the (cluster)
                 bootstrap intervals (1000) and their seed, figures (False: no PNGs)
  dry_run        print the plan (size, bytes per device, FLOPs, devices) and stop
  distributed    "auto" (initialise jax.distributed on multi-host TPU VMs), "on", "off"

`check(config)` raises one ValueError naming the first bad field, before anything is
loaded or compiled; the fields of a model or prompt source are checked by the source
itself. The model section's helpers (`model_section`, `model_config_from`,
`check_matches`, ...) live in `job.model_section` and are importable from here.
"""

from __future__ import annotations

import os

import ml_collections

from hydra_jax.job import model_sources
from hydra_jax.job import prompt_sources
from hydra_jax.report import options as report_options
from hydra_jax.sweep.options import SweepOptions
# The model section's helpers, used as run_config.model_section(...) etc. by the configs.
from hydra_jax.job.model_section import (check_matches, check_model_fields,  # noqa: F401
                                         model_config_from, model_section,
                                         open_model_section, require, set_model_fields)

MODEL_SOURCES = tuple(model_sources.SOURCES)     # names of the registries' tables
DATASETS = tuple(prompt_sources.SOURCES)
SOURCE_DRAWS = ("uniform", "same_relation")
PROTOCOLS = ("layers", "heads")
ABLATED_KINDS = report_options.ABLATED_KINDS
DISTRIBUTED = ("auto", "on", "off")


def defaults() -> ml_collections.ConfigDict:
  """Every field of a job config with its default (the embedded model's sweep)."""
  config = ml_collections.ConfigDict()
  config.model_source = "embedded"
  config.checkpoint = ""
  config.tokenizer = ""
  config.seed = 0
  config.dry_run = False
  config.distributed = "auto"
  config.model = open_model_section()
  config.data = ml_collections.ConfigDict(dict(
      name="embedded", data_dir="", manual_dir="", facts_file="", max_prompts=0,
      filter_correct=True, label_prefix=" ", num_prompts=256, prompt_length=16))
  engine = SweepOptions()          # the engine's defaults, but the job's check and keep_sources
  config.sweep = ml_collections.ConfigDict(dict(
      protocol="layers", kind=engine.kind, num_sources=engine.noise_draws,
      seed=engine.noise_seed, sources="uniform", path=engine.path, chunk_size=64, check=True,
      response_scale=engine.response_scale, freeze_final_scale=engine.freeze_final_scale,
      keep_sources=8, noise_scale=engine.noise_scale, doses=(0.25, 0.5, 0.75),
      dose_prompts=64))
  config.heads = ml_collections.ConfigDict(dict(
      text_file="", num_sequences=64, seq_len=32, num_sources=4, seed=0, batch_size=32,
      cells_per_step=16, top_k=5, freeze_final_norm=False))
  config.mesh = ml_collections.ConfigDict(dict(data=-1, model=1))
  config.report = ml_collections.ConfigDict(dict(report_options.DEFAULT_CHOICES))
  return config


def _check_sweep(sweep: ml_collections.ConfigDict) -> None:
  """The checks of config.sweep: the engine's options where they are made (`SweepOptions`),
  the job's own here."""
  SweepOptions.from_config(sweep)
  require(sweep.sources in SOURCE_DRAWS, "sweep.sources", sweep.sources, f"must be one of {SOURCE_DRAWS}")
  require(all(0 < w < 1 for w in sweep.doses), "sweep.doses", sweep.doses,
          "must be strengths strictly between 0 and 1 (1 is the main sweep)")
  require(sweep.dose_prompts >= 0, "sweep.dose_prompts", sweep.dose_prompts, "must be >= 0 (0: none)")


def check(config: ml_collections.ConfigDict) -> None:
  """Raise a ValueError naming the first field of `config` that cannot work."""
  expected = defaults()
  for section in ("", "data", "sweep", "heads", "mesh", "report"):
    have = config.get(section) if section else config
    want = expected.get(section) if section else expected
    unknown = sorted(set(have.keys()) - set(want.keys()))
    if unknown:
      where = f"config.{section}." if section else "config."
      raise ValueError(f"unknown config key(s) {[where + k for k in unknown]}; known: "
                       f"{sorted(want.keys())}")
  check_model_fields(config)
  model_sources.source_of(config).check(config)
  if config.tokenizer:
    require(os.path.exists(config.tokenizer), "tokenizer", config.tokenizer, "no such file")
  data, sweep, mesh = config.data, config.sweep, config.mesh
  prompt_sources.source_of(config).check(config)
  require(data.max_prompts >= 0, "data.max_prompts", data.max_prompts, "must be >= 0 (0: all)")
  require(sweep.protocol in PROTOCOLS, "sweep.protocol", sweep.protocol,
          f"must be one of {PROTOCOLS}")
  check_heads(config.heads)
  _check_sweep(sweep)
  require(mesh.data == -1 or mesh.data >= 1, "mesh.data", mesh.data, "must be -1 or >= 1")
  require(mesh.model >= 1, "mesh.model", mesh.model, "must be >= 1")
  require(config.report.bootstrap >= 0, "report.bootstrap", config.report.bootstrap, "must be >= 0")
  require(config.report.ablated_kind in ABLATED_KINDS, "report.ablated_kind",
          config.report.ablated_kind, f"must be one of {ABLATED_KINDS}")
  require(config.distributed in DISTRIBUTED, "distributed", config.distributed,
          f"must be one of {DISTRIBUTED}")


def check_heads(heads: ml_collections.ConfigDict) -> None:
  """The checks of the heads protocol's options (config.heads)."""
  if heads.text_file:
    require(os.path.isfile(heads.text_file), "heads.text_file", heads.text_file, "no such file")
  for field in ("seq_len", "num_sequences", "batch_size"):
    require(heads[field] >= 2, f"heads.{field}", heads[field], "must be >= 2")
  for field in ("num_sources", "cells_per_step", "top_k"):
    require(heads[field] >= 1, f"heads.{field}", heads[field], "must be >= 1")
  require(heads.num_sources < heads.batch_size, "heads.num_sources", heads.num_sources,
          f"sources are other sequences of a batch: must be < heads.batch_size={heads.batch_size}")
  require(heads.num_sequences % heads.batch_size == 0, "heads.num_sequences",
          heads.num_sequences, f"must be a multiple of heads.batch_size={heads.batch_size}")
