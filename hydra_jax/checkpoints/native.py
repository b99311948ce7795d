"""hydra_jax's own checkpoint format: a directory of two files.

    <dir>/config.json          ModelConfig.to_json()
    <dir>/params.safetensors   every parameter under its flat name "module/param"
                               (e.g. "layers/attention/q" [L, D, H, E]), in its own dtype

float32, float16 and bfloat16 tensors round-trip bit for bit (safetensors stores
bfloat16 natively; numpy gets it from ml_dtypes). `load` checks every tensor against
the shapes `init_params` would create for the stored config, and names the tensor and
both shapes when they disagree.
"""

from __future__ import annotations

import os
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from safetensors.numpy import save_file

from hydra_jax.checkpoints import layout
from hydra_jax.model.config import ModelConfig

CONFIG_FILE = "config.json"
PARAMS_FILE = "params.safetensors"


def save(path: str | os.PathLike, config: ModelConfig, params) -> None:
  """Write `params` (a Haiku tree for `config`) and `config` to the directory `path`."""
  if not isinstance(config, ModelConfig):
    raise ValueError(f"config must be a ModelConfig, got {type(config).__name__}")
  flat = layout.flatten(params)
  expected = layout.expected_layout(config)
  layout.check_names(flat, expected, "save(params)")
  arrays = {}
  for name, value in flat.items():
    layout.check_shape(name, np.shape(value), expected[name].shape, "save(params)")
    arrays[name] = np.ascontiguousarray(jax.device_get(value))
  directory = Path(path)
  directory.mkdir(parents=True, exist_ok=True)
  save_file(arrays, str(directory / PARAMS_FILE), metadata={"format": "hydra_jax"})
  (directory / CONFIG_FILE).write_text(config.to_json())


def load_config(path: str | os.PathLike) -> ModelConfig:
  """The ModelConfig of the checkpoint directory `path`, from its config.json alone."""
  file = Path(path) / CONFIG_FILE
  if not file.is_file():
    raise layout.CheckpointError(f"{Path(path)}: no {CONFIG_FILE} (not a hydra_jax checkpoint)")
  return ModelConfig.from_dict(layout.read_json(file))


def load(path: str | os.PathLike):
  """Read a directory written by `save`: (ModelConfig, params) on the default device.

  Raises a CheckpointError (a ValueError) for a missing file, a missing or unexpected
  tensor, or a tensor whose shape or dtype disagrees with the stored config.
  """
  directory = Path(path)
  config = load_config(directory)
  if not (directory / PARAMS_FILE).is_file():
    raise layout.CheckpointError(f"{directory}: no {PARAMS_FILE} (not a hydra_jax checkpoint)")
  expected = layout.expected_layout(config)
  where = str(directory / PARAMS_FILE)
  flat = {}
  with layout.open_tensors(directory / PARAMS_FILE) as reader:
    layout.check_names(list(reader.keys()), expected, where)
    for name, spec in expected.items():
      array = reader.get_tensor(name)
      layout.check_shape(name, array.shape, spec.shape, where)
      if array.dtype != layout.as_numpy_dtype(spec.dtype):
        raise layout.CheckpointError(f"{where}: tensor {name!r} has dtype {array.dtype}, "
                                     f"the config (dtype={config.dtype}) expects {spec.dtype}")
      flat[name] = jnp.asarray(array)
  return config, layout.unflatten(flat)
