"""A study's configuration and its arms: which models to train and how to sweep each.

A study config (configs/study_*.py) is an `ml_collections.ConfigDict` that starts from
`defaults()`. Its base sections describe one model and how it is made:

  model      ModelConfig fields of the base model
  world      the synthetic world and its text (`hydra_jax.train.synthetic`): num_entities,
             num_relations, the seeds, and the CorpusOptions fields (label_noise, ...)
  tokenizer  vocab_size of the SentencePiece model and how many corpus lines train it
  train      steps (0: the control that is never trained, a random initialisation),
             batch_size, learning_rate, warmup_steps, weight_decay, clip_norm,
             sublayer_drop (stochastic depth), lines_per_row (corpus lines per row needed)
  sweep      the main job's sweep of each arm: num_sources K, chunk_size, max_prompts (a
             seeded sample of the facts, 0: all), filter_correct, seed, path
  bootstrap  resamples and seed of the confidence intervals
  variant_reports  False (default): each variant's workdir gets the job's chunks and
             results.npz only; True: also the job's report (summary.json, figures,
             report.md) of every variant swept from then on

`arms` maps an arm's name to its differences from the base: any of the sections above
(only the fields it changes), `seeds` (one trained model per seed) and `variants` (the
sweeps run on it, names of VARIANTS). `expand(config)` turns that into Runs, one per
(arm, seed), named "<arm>_s<seed>".
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

import ml_collections

from hydra_jax.model.config import ModelConfig
from hydra_jax.train import synthetic

SECTIONS = ("model", "world", "tokenizer", "train", "sweep")
# Sweep variants as data: the job's sweep fields, and whether sources stay within a relation
# (each relation's prompts swept as their own job, so resample sources share the relation).
VARIANTS = {
    "resample": dict(kind="resample", by_relation=False),
    "mean": dict(kind="mean", by_relation=False),
    "zero": dict(kind="zero", by_relation=False),
    "same_relation": dict(kind="resample", by_relation=True),
}


def defaults() -> ml_collections.ConfigDict:
  """Every field of a study config with its default (a small world and model)."""
  config = ml_collections.ConfigDict()
  config.name = "study"
  config.model = ml_collections.ConfigDict(dict(
      name="study", vocab_size=512, d_model=128, num_layers=8, num_heads=4, mlp_dim=512,
      activation="gelu", norm="rms", position="relative", max_seq_len=64,
      tie_embeddings=False, dropout_rate=0.0, dtype="float32"))
  config.world = ml_collections.ConfigDict(dict(
      num_entities=200, num_relations=5, world_seed=0, prompt_seed=1, corpus_seed=2,
      max_sentences=3, fact_fraction=0.8, label_noise=0.0, shuffle_answers=False,
      restate_fraction=0.0, generic_share=0.0))
  config.tokenizer = ml_collections.ConfigDict(dict(vocab_size=512, lines=20_000))
  config.train = ml_collections.ConfigDict(dict(
      steps=1200, batch_size=32, learning_rate=3e-3, warmup_steps=60, weight_decay=0.01,
      clip_norm=1.0, sublayer_drop=0.0, lines_per_row=2.0))
  config.sweep = ml_collections.ConfigDict(dict(
      num_sources=15, chunk_size=64, max_prompts=0, filter_correct=True, seed=0,
      path="incremental"))
  config.bootstrap = ml_collections.ConfigDict(dict(resamples=1000, seed=0))
  config.variant_reports = False
  config.arms = ml_collections.ConfigDict()
  return config


@dataclasses.dataclass(frozen=True)
class Run:
  """One model of the study (an arm at one seed) and the sweeps to run on it."""
  name: str
  arm: str
  seed: int
  model: ModelConfig
  world: dict[str, Any]
  tokenizer: dict[str, Any]
  train: dict[str, Any]
  sweep: dict[str, Any]
  variants: tuple[str, ...]

  def corpus_options(self) -> dict[str, Any]:
    return corpus_options(self.world)


def corpus_options(world: dict[str, Any]) -> dict[str, Any]:
  """The CorpusOptions fields of a world section."""
  names = {f.name for f in dataclasses.fields(synthetic.CorpusOptions)}
  return {k: v for k, v in world.items() if k in names}


def _merged(config: ml_collections.ConfigDict, arm: ml_collections.ConfigDict, section: str,
            name: str) -> dict[str, Any]:
  base = config[section].to_dict()
  changes = arm.get(section)
  changes = changes.to_dict() if changes is not None else {}
  unknown = sorted(set(changes) - set(base))
  if unknown:
    raise ValueError(f"arm {name!r}: unknown {section} field(s) {unknown}; known: {sorted(base)}")
  base.update(copy.deepcopy(changes))
  return base


def _arm_runs(config, name: str, arm) -> list[Run]:
  extra = sorted(set(arm.keys()) - set(SECTIONS) - {"seeds", "variants"})
  if extra:
    raise ValueError(f"arm {name!r}: unknown key(s) {extra}")
  sections = {section: _merged(config, arm, section, name) for section in SECTIONS}
  variants = tuple(arm.get("variants", ("resample",)))
  bad = [v for v in variants if v not in VARIANTS]
  if bad or not variants:
    raise ValueError(f"arm {name!r}: variants {list(variants)} must be a non-empty list of "
                     f"{sorted(VARIANTS)}")
  seeds = tuple(arm.get("seeds", (0,)))
  if not seeds or len(set(seeds)) != len(seeds):
    raise ValueError(f"arm {name!r}: seeds must be distinct and at least one, got {seeds}")
  try:
    model = ModelConfig(**sections.pop("model"))
    synthetic.CorpusOptions(**corpus_options(sections["world"]))
    synthetic.relations(sections["world"]["num_relations"])
  except (TypeError, ValueError) as error:
    raise ValueError(f"arm {name!r}: {error}") from None
  return [Run(f"{name}_s{seed}", name, int(seed), model, variants=variants, **sections)
          for seed in seeds]


def expand(config: ml_collections.ConfigDict) -> list[Run]:
  """Every Run of the study: arms in the order of config.arms (a ConfigDict: sorted by
  name), seeds in the arm's order."""
  unknown = sorted(set(config.keys()) - set(defaults().keys()))
  if unknown:
    raise ValueError(f"unknown study config key(s) {unknown}; known: {sorted(defaults().keys())}")
  if not config.arms:
    raise ValueError("config.arms is empty: a study needs at least one arm")
  if not isinstance(config.variant_reports, bool):
    raise ValueError(f"config.variant_reports={config.variant_reports!r}: must be True or False")
  runs = [run for name, arm in config.arms.items() for run in _arm_runs(config, name, arm)]
  for run in runs:
    if run.train["steps"] < 0 or run.train["batch_size"] < 1:
      raise ValueError(f"arm {run.arm!r}: train.steps must be >= 0 and batch_size >= 1")
    if run.sweep["num_sources"] < 1:
      raise ValueError(f"arm {run.arm!r}: sweep.num_sources must be >= 1")
  return runs
