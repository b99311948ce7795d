"""A sweep's options: one typed record, checked when it is made, the one place of their
defaults and checks.

    SweepOptions(kind="zero", path="full")     a ValueError naming the first bad field
    SweepOptions.from_config(config.sweep)     the main job's (errors name config.sweep.<field>)
    dataclasses.asdict(options)                what summary.json keeps as "sweep_options"
    SweepOptions(**summary["sweep_options"])   and back
    settings_of(options)                       its compile-time part: one batch program each

  kind                   what replaces a component: "resample" (the component of other
                         prompts, `sources`), "zero", "mean" (over the prompts) or "noise"
                         (`sweep.noise`)
  path                   "incremental" (only the final position re-run) or "full" (every
                         position, the reference); the same numbers to float32 tolerance
  response_scale         the final sigma responses are read with: "clean" or "ablated"
  freeze_final_scale     hold the ablated runs' final sigma at its clean value
  skip_unchanged_layers  the incremental path runs only the layers an ablation changes
  keep_sources           also return the per-source response [K, C, C]: 0 (False) none; the
                         engine returns it for every scored prompt, the job keeps it for the
                         first keep_sources prompts
  noise_scale, noise_draws, noise_seed   kind "noise": K draws of std noise_scale x the
                         embeddings' std, seeded
  check, check_rtol      raise ConsistencyError when a check of docs/method.md fails,
                         relative to each prompt's largest |DE|
  batch_size             scored prompts per program call (None: all)
  source_chunk, lane_chunk   sources vmapped at once, lanes at a time (None: all)

The main job's config.sweep names three fields its own way (`CONFIG_NAMES`): num_sources
(the resample sources K, also the noise draws), seed (of the source draw, also the noise)
and chunk_size (a chunk's prompts: its batch).

Shapes: K sources per prompt, C = 2L components.
"""

from __future__ import annotations

import dataclasses
import numbers
from typing import Any, Mapping, Optional

from hydra_jax.sweep.measures import SIGMAS as RESPONSE_SCALES

KINDS = ("resample", "zero", "mean", "noise")
PATHS = ("incremental", "full")
CONFIG_NAMES = dict(noise_draws="num_sources", noise_seed="seed", batch_size="chunk_size")


class OptionError(ValueError):
  """A bad field of SweepOptions: `field`, its `value` and `why` (one line)."""

  def __init__(self, field: str, value: Any, why: str):
    super().__init__(f"{field}={value!r}: {why}")
    self.field, self.value, self.why = field, value, why


@dataclasses.dataclass(frozen=True)
class SweepOptions:
  """How a sweep replaces components and reads the runs (the module docstring)."""
  kind: str = "resample"
  path: str = "incremental"
  response_scale: str = "clean"
  freeze_final_scale: bool = False
  skip_unchanged_layers: bool = True
  keep_sources: int = 0
  noise_scale: float = 3.0
  noise_draws: int = 15
  noise_seed: int = 0
  check: bool = False
  check_rtol: float = 1e-4
  batch_size: Optional[int] = None
  source_chunk: Optional[int] = None
  lane_chunk: Optional[int] = None

  def __post_init__(self):
    for name, allowed in (("kind", KINDS), ("path", PATHS), ("response_scale", RESPONSE_SCALES)):
      _require(getattr(self, name) in allowed, self, name, f"must be one of {allowed}")
    for name in ("freeze_final_scale", "skip_unchanged_layers", "check"):
      _require(isinstance(getattr(self, name), bool), self, name, "must be True or False")
    _require(_is_int(self.keep_sources) and self.keep_sources >= 0, self, "keep_sources",
             "must be an integer >= 0 (0: none)")
    _require(_is_int(self.noise_draws) and self.noise_draws >= 1, self, "noise_draws",
             "must be >= 1")
    _require(_is_int(self.noise_seed), self, "noise_seed", "must be an integer")
    for name in ("noise_scale", "check_rtol"):
      value = getattr(self, name)
      _require(isinstance(value, numbers.Real) and not isinstance(value, bool) and value >= 0,
               self, name, "must be a number >= 0")
    for name in ("batch_size", "source_chunk", "lane_chunk"):
      value = getattr(self, name)
      _require(value is None or (_is_int(value) and value >= 1), self, name,
               "must be a positive integer or None")

  @classmethod
  def from_config(cls, sweep: Mapping[str, Any]) -> "SweepOptions":
    """The options of a job's config.sweep (a ConfigDict, or a saved run's dict, whose
    missing fields take the defaults here); a bad field is a ValueError naming it as
    config.sweep.<field>."""
    values = {}
    for field in dataclasses.fields(cls):
      name = CONFIG_NAMES.get(field.name, field.name)
      if name in sweep:
        values[field.name] = sweep[name]
    try:
      return cls(**values)
    except OptionError as error:
      name = CONFIG_NAMES.get(error.field, error.field)
      raise ValueError(f"config.sweep.{name}={error.value!r}: {error.why}") from None


@dataclasses.dataclass(frozen=True)
class Settings:
  """The compile-time part of a sweep's SweepOptions (`settings_of`): the key of one program."""
  kind: str                       # "resample" (table [N, C, D] + sources), "noise", else one [C, D]
  path: str                       # a key of engine.PATHS ("layer_skip" too)
  response_scale: str
  freeze_final_scale: bool
  source_chunk: Optional[int]
  lane_chunk: Optional[int]
  keep_sources: bool              # also return the per-source response [B, K, C, C]
  noise_draws: int                # kind "noise": K draws per prompt, from noise_seed (else 0)
  noise_seed: int


def settings_of(options: SweepOptions) -> Settings:
  """What the compiled batch program depends on: zero and mean share the fixed-table program."""
  return Settings(kind=options.kind if options.kind in ("resample", "noise") else "fixed",
                  path="layer_skip" if skips(options) else options.path,
                  response_scale=options.response_scale,
                  freeze_final_scale=options.freeze_final_scale,
                  source_chunk=options.source_chunk, lane_chunk=options.lane_chunk,
                  keep_sources=options.keep_sources > 0,
                  noise_draws=options.noise_draws if options.kind == "noise" else 0,
                  noise_seed=options.noise_seed if options.kind == "noise" else 0)


def skips(options: SweepOptions) -> bool:
  """Whether the sweep runs the layer-skipping path (its upstream components are not recomputed)."""
  return options.path == "incremental" and options.skip_unchanged_layers


def _is_int(value) -> bool:
  return isinstance(value, numbers.Integral)


def _require(condition: bool, options: SweepOptions, name: str, why: str) -> None:
  if not condition:
    raise OptionError(name, getattr(options, name), why)
