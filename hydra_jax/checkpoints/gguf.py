"""Load a GGUF checkpoint (llama.cpp's format) as (ModelConfig, params), without torch.

    config, params = load_gguf("SmolLM2-135M-Instruct.Q4_1.gguf")
    config = load_gguf_config(path)             # from the metadata alone, no tensor read

The file's `general.architecture` picks a `GGUFArchitecture` (gguf_architectures.py),
which turns the metadata into the config.json the matching Hugging Face table reads and
renames the tensors to Hugging Face names. From there the Hugging Face loader's two
passes run unchanged (`hf.load_tensors`): every name and shape is checked from the
tensor infos first, then one tensor at a time is dequantized to float32 (`GGUFFile`),
un-permuted where llama.cpp permuted its rows (unshifted where it shifted a Gemma norm
gain), converted, cast to `dtype` and placed.

A quantized file loads as the model llama.cpp users run: the dequantized weights, in
float32 (the ModelConfig's dtype) unless `dtype` says otherwise.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Optional

import numpy as np

from hydra_jax.checkpoints import hf
from hydra_jax.checkpoints.gguf_architectures import GGUF_ARCHITECTURES, GGUFArchitecture
from hydra_jax.checkpoints.gguf_file import GGUFFile
from hydra_jax.checkpoints.layout import CheckpointError
from hydra_jax.model.config import ModelConfig


def _architecture(file: GGUFFile) -> GGUFArchitecture:
  name = file.metadata.get("general.architecture")
  if name not in GGUF_ARCHITECTURES:
    raise CheckpointError(f"{file.path}: unsupported GGUF architecture {name!r}; supported: "
                          f"{', '.join(sorted(GGUF_ARCHITECTURES))}")
  return GGUF_ARCHITECTURES[name]


def hf_config(file: GGUFFile, arch: GGUFArchitecture) -> dict[str, Any]:
  """The config.json (a dict) that the Hugging Face table reads, made from the metadata."""
  shapes = {name: file.shape(name) for name in file.names}
  for check in arch.unsupported:
    reason = check(file.metadata, shapes)
    if reason:
      raise CheckpointError(f"{file.path}: GGUF {arch.name} with {reason} is not supported")
  if "token_embd.weight" not in shapes:
    raise CheckpointError(f"{file.path}: no token_embd.weight tensor")
  found = {key: file.metadata[f"{arch.name}.{suffix}"] for key, suffix in arch.config.items()
           if f"{arch.name}.{suffix}" in file.metadata}
  derived = {key: value(shapes) for key, value in arch.derived.items()}
  name = file.metadata.get("general.name") or file.metadata.get("general.basename") or arch.name
  return dict(arch.constants, **derived, **found, architectures=[arch.hf.name],
              model_type=str(name), dtype="float32")


class GGUFTensors:
  """A GGUF file's tensors under their Hugging Face names (the interface `hf.plan` reads):
  file_of (name -> GGUF name), shape(name) in [out, in], read(name) -> float32 in
  Hugging Face's row order and scale (llama.cpp's shifts undone)."""

  def __init__(self, file: GGUFFile, arch: GGUFArchitecture, config: dict[str, Any]):
    self._file, self._arch, self._config = file, arch, config
    # A tensor the table lacks keeps its GGUF name, so the plan reports it as unexpected.
    self.file_of = {arch.hf_name(name) or name: name for name in file.names}

  def describe(self, name: str) -> str:
    return f"{self.file_of[name]} ({name})"

  def shape(self, name: str) -> tuple[int, ...]:
    return self._file.shape(self.file_of[name])

  def read(self, name: str) -> np.ndarray:
    values = self._file.read(self.file_of[name])
    shift = self._arch.shift(name)
    if shift:                              # a gain llama.cpp stored shifted (Gemma's 1 + w)
      values = values + np.float32(shift)
    heads_key = self._arch.permuted_heads(name)
    if heads_key is None:
      return values
    heads = int(self._config.get(heads_key) or self._config["num_attention_heads"])
    rows = values.shape[0]                 # llama.cpp: (heads, 2, E/2) -> here (heads, E/2, 2)
    return (values.reshape(heads, rows // heads // 2, 2, *values.shape[1:])
            .swapaxes(1, 2).reshape(values.shape))


def _read_config(file: GGUFFile, dtype) -> tuple[GGUFArchitecture, dict, ModelConfig]:
  arch = _architecture(file)
  config_json = hf_config(file, arch)
  return arch, config_json, hf.model_config(config_json, arch.hf, dtype, file.path)


def load_gguf_config(path: str | os.PathLike, *, dtype: Any = None) -> ModelConfig:
  """The ModelConfig `load_gguf(path, dtype=dtype)` returns, from the metadata alone."""
  with GGUFFile(path) as file:
    return _read_config(file, dtype)[2]


def load_gguf(path: str | os.PathLike, *, dtype: Any = None, mesh=None):
  """(ModelConfig, params) of the GGUF file `path`.

  Args:
    path: a .gguf file of a supported architecture (`GGUF_ARCHITECTURES`: llama, which
      covers Llama 1-3, SmolLM and Mistral files, qwen2 and gemma3), of any ggml tensor type.
    dtype: the parameters' dtype ("float32", "bfloat16", "float16" or the matching
      numpy/JAX type). None: float32, the dequantized values as they are.
    mesh: a jax.sharding.Mesh with a "model" axis, or None (the default device); every
      tensor is placed on its sharding as it is read.

  Raises:
    CheckpointError (a ValueError) naming the file (and tensor): not a GGUF file, an
    unsupported GGUF version, a truncated file, an unknown architecture or ggml type, a
    tensor missing, unexpected or of a shape the metadata does not give, weights that
    dequantize to NaN or inf. ValueError for a bad dtype or mesh.
  """
  hf.check_mesh(mesh)
  with GGUFFile(path) as file:
    arch, config_json, config = _read_config(file, dtype)
    tensors = GGUFTensors(file, arch, config_json)
    return config, hf.load_tensors(arch.hf, config, tensors, str(Path(path)), mesh)
