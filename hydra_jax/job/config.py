"""The main job's configuration: its defaults, its checks, and the model section.

A job config is an `ml_collections.ConfigDict` (configs/tiny.py, hf.py, chinchilla7b.py
start from `defaults()` and change what they need). Every field can be overridden on
the command line, e.g. `--config.sweep.num_sources=5`:

  model_source   "embedded" (the tiny model shipped in the package), "hf" (a Hugging
                 Face directory), "checkpoint" (hydra_jax's own format) or "random"
  checkpoint     the directory for "hf" / "checkpoint"
  tokenizer      tokenizer file or directory; "" = the checkpoint directory's (or the
                 embedded model's own)
  seed           random initialisation seed (model_source="random")
  model          ModelConfig fields. For "random" they define the model; for the others
                 every field that is set (not None) must match the loaded model, except
                 `dtype`, which casts it
  data           name ("embedded", "known_facts", "counterfact", "random", "facts_file"),
                 data_dir and manual_dir for TFDS, facts_file (a JSON list of prompt
                 records: id, prompt, label, ...), max_prompts (0 = all), filter_correct,
                 label_prefix, num_prompts / prompt_length for random token prompts
  sweep          kind ("resample", "zero", "mean"), num_sources K, seed of the source
                 draw, path ("incremental", "full"), chunk_size prompts per saved chunk,
                 check (run the consistency checks)
  mesh           data and model axis sizes (data=-1: all devices left over)
  report         ablated_layer (-1: the attention layer losing most DE) and ablated_kind of
                 figures 1/3, regression_layers of figure 7 (empty: spread evenly),
                 late_mlps of the erasure figure (0: a quarter of the layers, at least 2)
  dry_run        print the plan (size, bytes per device, FLOPs, devices) and stop
  distributed    "auto" (initialise jax.distributed on multi-host TPU VMs), "on", "off"

`check(config)` raises one ValueError naming the first bad field, before anything is
loaded or compiled.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import ml_collections
from ml_collections import config_dict

from hydra_jax.model.config import ModelConfig

MODEL_SOURCES = ("embedded", "hf", "checkpoint", "random")
DATASETS = ("embedded", "known_facts", "counterfact", "random", "facts_file")
KINDS = ("resample", "zero", "mean")
PATHS = ("incremental", "full")
ABLATED_KINDS = ("attn", "mlp")
DISTRIBUTED = ("auto", "on", "off")
# ModelConfig fields a loaded model may differ in from config.model: cast or cosmetic.
OVERRIDABLE_MODEL_FIELDS = ("dtype", "name")
# Optional size fields and the size they stand for when left None.
DERIVED_SIZES = {"num_kv_heads": "kv_heads", "head_dim": "head_size", "mlp_dim": "mlp_width"}


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
  config.sweep = ml_collections.ConfigDict(dict(
      kind="resample", num_sources=15, seed=0, path="incremental", chunk_size=64, check=False))
  config.mesh = ml_collections.ConfigDict(dict(data=-1, model=1))
  config.report = ml_collections.ConfigDict(dict(
      ablated_layer=-1, ablated_kind="attn", regression_layers=(), late_mlps=0))
  return config


def open_model_section() -> ml_collections.ConfigDict:
  """config.model with every ModelConfig field unset (None, typed): "take it from the model"."""
  section = ml_collections.ConfigDict()
  for field in dataclasses.fields(ModelConfig):
    kind = {"int": int, "float": float, "bool": bool, "str": str}.get(
        field.type.replace("Optional[", "").rstrip("]"), str)
    section[field.name] = config_dict.placeholder(kind)
  return section


def model_section(**fields) -> ml_collections.ConfigDict:
  """config.model with the given ModelConfig fields set and the others unset."""
  section = open_model_section()
  unknown = sorted(set(fields) - set(section.keys()))
  if unknown:
    raise ValueError(f"unknown ModelConfig field(s) {unknown}")
  section.update(fields)
  return section


def set_model_fields(config: ml_collections.ConfigDict) -> dict[str, Any]:
  """The fields of config.model that are set (not None)."""
  return {name: value for name, value in config.model.items() if value is not None}


def model_config_from(config: ml_collections.ConfigDict) -> ModelConfig:
  """The ModelConfig that config.model describes (model_source="random")."""
  try:
    return ModelConfig.from_dict(set_model_fields(config))
  except TypeError as error:  # a required field left unset
    raise ValueError(f"config.model is incomplete for a random model: {error}") from None


def check_matches(config: ml_collections.ConfigDict, loaded: ModelConfig, what: str) -> None:
  """ValueError naming every set field of config.model that `loaded` disagrees with."""
  def effective(name):   # a None field means its derived size (mlp_dim None = 4 d_model)
    return getattr(loaded, DERIVED_SIZES.get(name, name))

  differing = [f"{name}={value!r} (the model has {effective(name)!r})"
               for name, value in set_model_fields(config).items()
               if name not in OVERRIDABLE_MODEL_FIELDS and effective(name) != value]
  if differing:
    raise ValueError(f"{what} does not match config.model: " + ", ".join(differing)
                     + ". Fix or unset those config.model fields.")


def _require(condition: bool, field: str, value: Any, why: str) -> None:
  if not condition:
    raise ValueError(f"config.{field}={value!r}: {why}")


def check(config: ml_collections.ConfigDict) -> None:
  """Raise a ValueError naming the first field of `config` that cannot work."""
  expected = defaults()
  for section in ("", "data", "sweep", "mesh", "report"):
    have = config.get(section) if section else config
    want = expected.get(section) if section else expected
    unknown = sorted(set(have.keys()) - set(want.keys()))
    if unknown:
      where = f"config.{section}." if section else "config."
      raise ValueError(f"unknown config key(s) {[where + k for k in unknown]}; known: "
                       f"{sorted(want.keys())}")
  _require(config.model_source in MODEL_SOURCES, "model_source", config.model_source,
           f"must be one of {MODEL_SOURCES}")
  if config.model_source in ("hf", "checkpoint"):
    _require(bool(config.checkpoint), "checkpoint", config.checkpoint,
             f'model_source="{config.model_source}" needs --config.checkpoint=DIR')
    _require(os.path.isdir(config.checkpoint), "checkpoint", config.checkpoint,
             "no such directory")
  if config.tokenizer:
    _require(os.path.exists(config.tokenizer), "tokenizer", config.tokenizer, "no such file")
  data, sweep, mesh = config.data, config.sweep, config.mesh
  _require(data.name in DATASETS, "data.name", data.name, f"must be one of {DATASETS}")
  _require(data.max_prompts >= 0, "data.max_prompts", data.max_prompts, "must be >= 0 (0: all)")
  if data.name == "random":
    _require(data.num_prompts > 1, "data.num_prompts", data.num_prompts, "must be at least 2")
    _require(data.prompt_length >= 1, "data.prompt_length", data.prompt_length, "must be >= 1")
    _require(not data.filter_correct, "data.filter_correct", data.filter_correct,
             "random token prompts have no labels: set it to False")
  if data.name == "facts_file":
    _require(os.path.isfile(data.facts_file), "data.facts_file", data.facts_file, "no such file")
  if data.name in ("known_facts", "counterfact") and data.manual_dir:
    _require(os.path.isdir(data.manual_dir), "data.manual_dir", data.manual_dir,
             "no such directory")
  _require(sweep.kind in KINDS, "sweep.kind", sweep.kind, f"must be one of {KINDS}")
  _require(sweep.path in PATHS, "sweep.path", sweep.path, f"must be one of {PATHS}")
  _require(sweep.num_sources >= 1, "sweep.num_sources", sweep.num_sources, "must be >= 1")
  _require(sweep.chunk_size >= 1, "sweep.chunk_size", sweep.chunk_size, "must be >= 1")
  _require(mesh.data == -1 or mesh.data >= 1, "mesh.data", mesh.data, "must be -1 or >= 1")
  _require(mesh.model >= 1, "mesh.model", mesh.model, "must be >= 1")
  _require(config.report.ablated_kind in ABLATED_KINDS, "report.ablated_kind",
           config.report.ablated_kind, f"must be one of {ABLATED_KINDS}")
  _require(config.distributed in DISTRIBUTED, "distributed", config.distributed,
           f"must be one of {DISTRIBUTED}")
  if config.model_source == "random":
    model_config_from(config)
  else:
    unknown = sorted(set(config.model.keys()) - {f.name for f in dataclasses.fields(ModelConfig)})
    _require(not unknown, "model", unknown, "unknown ModelConfig field(s)")
