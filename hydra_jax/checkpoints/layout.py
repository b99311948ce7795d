"""hydra_jax's parameter layout as a flat table of named tensors.

A Haiku parameter tree {"layers/attention": {"q": [L, D, H, E], ...}, ...} flattens to
{"layers/attention/q": [L, D, H, E], ...}: one name per tensor, the form every
checkpoint file uses. `expected_layout(config)` gives the shape and dtype of every
tensor the model wants (from `jax.eval_shape(init_params)`, so nothing is allocated),
and `check_shape` is the single place a tensor is compared against it, so every loader
reports a mismatch the same way: the tensor's name and both shapes.

Every file a loader reads goes through `read_json` or `open_tensors`, so a corrupt or
truncated file is a CheckpointError naming it (never a parser's bare message).

Shapes: L layers, D d_model, H heads, G key/value heads, E head size, F MLP width, V vocab.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

import jax
import numpy as np
from safetensors import SafetensorError, safe_open

from hydra_jax.model.config import ModelConfig
from hydra_jax.model.transformer import init_params

SEPARATOR = "/"


class CheckpointError(ValueError):
  """A checkpoint that does not fit the model it claims to be (missing, extra or misshapen)."""


def read_json(path: Path) -> dict[str, Any]:
  """The JSON object in file `path`; a CheckpointError naming the file when it is not one."""
  try:
    values = json.loads(Path(path).read_text())
  except (json.JSONDecodeError, UnicodeDecodeError) as error:
    raise CheckpointError(f"{path}: not valid JSON ({error})") from None
  if not isinstance(values, dict):
    raise CheckpointError(f"{path}: holds a JSON {type(values).__name__}, not an object")
  return values


def open_tensors(path: Path):
  """safe_open(path) for numpy; a CheckpointError naming the file when it is truncated or
  corrupt (safetensors' own error, e.g. "invalid header length", names no file)."""
  try:
    return safe_open(str(path), framework="np")
  except SafetensorError as error:
    raise CheckpointError(f"{path}: not a readable safetensors file (truncated or corrupt?): "
                          f"{error}") from None


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
