"""hydra_jax's parameter layout as a flat table of named tensors.

A Haiku parameter tree {"layers/attention": {"q": [L, D, H, K], ...}, ...} flattens to
{"layers/attention/q": [L, D, H, K], ...}: one name per tensor, the form every
checkpoint file uses. `expected_layout(config)` gives the shape and dtype of every
tensor the model wants (from `jax.eval_shape(init_params)`, so nothing is allocated),
and `check_shape` is the single place a tensor is compared against it, so every loader
reports a mismatch the same way: the tensor's name and both shapes.

Shapes: L layers, D d_model, H heads, G key/value heads, K head size, F MLP width, V vocab.
"""

from __future__ import annotations

from typing import Mapping

import jax
import numpy as np

from hydra_jax.model.config import ModelConfig
from hydra_jax.model.transformer import init_params

SEPARATOR = "/"


class CheckpointError(ValueError):
  """A checkpoint that does not fit the model it claims to be (missing, extra or misshapen)."""


def flatten(params: Mapping[str, Mapping[str, object]]) -> dict[str, object]:
  """{"module": {"name": x}} -> {"module/name": x}."""
  return {f"{module}{SEPARATOR}{name}": value
          for module, tensors in params.items() for name, value in tensors.items()}


def unflatten(flat: Mapping[str, object]) -> dict[str, dict[str, object]]:
  """{"module/name": x} -> {"module": {"name": x}} (the last '/' separates the name)."""
  params: dict[str, dict[str, object]] = {}
  for key, value in flat.items():
    module, _, name = key.rpartition(SEPARATOR)
    if not module:
      raise CheckpointError(f"tensor name {key!r} has no module part ('module/name')")
    params.setdefault(module, {})[name] = value
  return params


def expected_layout(config: ModelConfig) -> dict[str, jax.ShapeDtypeStruct]:
  """Every parameter `config` needs: flat name -> ShapeDtypeStruct (no allocation)."""
  return flatten(jax.eval_shape(lambda: init_params(config)))


def check_names(found, expected, where: str) -> None:
  """Raise a CheckpointError listing missing and unexpected tensor names."""
  missing = sorted(set(expected) - set(found))
  extra = sorted(set(found) - set(expected))
  if missing or extra:
    parts = []
    if missing:
      parts.append(f"missing tensor(s) {missing}")
    if extra:
      parts.append(f"unexpected tensor(s) {extra}")
    raise CheckpointError(f"{where}: " + "; ".join(parts))


def check_shape(name: str, shape, expected_shape, where: str) -> None:
  if tuple(shape) != tuple(expected_shape):
    raise CheckpointError(f"{where}: tensor {name!r} has shape {tuple(shape)}, "
                          f"the model expects {tuple(expected_shape)}")


def as_numpy_dtype(dtype) -> np.dtype:
  """A numpy dtype, including bfloat16 (numpy has none; jax's comes from ml_dtypes)."""
  return np.dtype(jax.numpy.dtype(dtype))
