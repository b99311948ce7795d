"""config.model, a job config's ModelConfig section, and the one-line error of a bad field.

    open_model_section()             every ModelConfig field unset (None): "take it from the model"
    model_section(**fields)          the given fields set, the others unset
    set_model_fields(config)         {name: value} of the fields that are set
    model_config_from(config)        the ModelConfig config.model describes (a random model)
    check_matches(config, loaded, what)   every set field `loaded` disagrees with, in one error
    require(condition, field, value, why) the one-line ValueError "config.FIELD=VALUE: WHY"

For a random model, config.model defines the model; for a loaded one, every field that is
set must match it, except `dtype` (which casts the weights) and `name`. `job.config`
(the checks) and the model sources (`job.model_sources`) both build on this module.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import ml_collections
from ml_collections import config_dict

from hydra_jax.model.config import ModelConfig

# ModelConfig fields a loaded model may differ in from config.model: cast or cosmetic.
OVERRIDABLE_MODEL_FIELDS = ("dtype", "name")
# Optional size fields and the size they stand for when left None.
DERIVED_SIZES = {"num_kv_heads": "kv_heads", "head_dim": "head_size", "mlp_dim": "mlp_width"}


def require(condition: bool, field: str, value: Any, why: str) -> None:
  """The one-line ValueError naming config field `field` (dotted) and its value, unless ok."""
  if not condition:
    raise ValueError(f"config.{field}={value!r}: {why}")


def open_model_section() -> ml_collections.ConfigDict:
  """config.model with every ModelConfig field unset (None, typed): "take it from the model"."""
  section = ml_collections.ConfigDict()
  for field in dataclasses.fields(ModelConfig):   # "Optional[int]" -> int, "tuple[int, ...]" -> tuple
    base = field.type.replace("Optional[", "").split("[")[0].rstrip("]")
    kind = {"int": int, "float": float, "bool": bool, "str": str, "tuple": tuple}.get(base, str)
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


def check_model_fields(config: ml_collections.ConfigDict) -> None:
  """config.model names ModelConfig fields only."""
  unknown = sorted(set(config.model.keys()) - {f.name for f in dataclasses.fields(ModelConfig)})
  require(not unknown, "model", unknown, "unknown ModelConfig field(s)")


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
