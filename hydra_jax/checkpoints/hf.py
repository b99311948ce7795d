"""Load a Hugging Face checkpoint directory as (ModelConfig, params), without torch.

    <dir>/config.json                              architectures[0] picks the table
    <dir>/model.safetensors                        one file, or
    <dir>/model-0000i-of-0000n.safetensors         shards listed by
    <dir>/model.safetensors.index.json             {"weight_map": {tensor: file}}

The architecture's tables (`architectures.py`) give the ModelConfig and, for every
hydra_jax tensor, the Hugging Face tensor(s) and transform that produce it. Loading
runs in two passes: the first resolves every name and checks every shape from the
safetensors headers alone (a truncated or mismatched checkpoint fails before any data
is read, naming the tensor and both shapes); the second reads one Hugging Face tensor
at a time, converts it and puts it on device (onto `mesh` shards when given), stacking
per-layer tensors into hydra_jax's leading layer axis L.

Shapes: the package glossary (hydra_jax/__init__.py); L layers.
"""

from __future__ import annotations

import contextlib
import os
import re
from pathlib import Path
from typing import Any, Mapping, Optional

import numpy as np
from jax.sharding import Mesh

from hydra_jax.checkpoints import layout, placement
from hydra_jax.checkpoints.architectures import ARCHITECTURES, Architecture, Rule
from hydra_jax.model.config import ModelConfig, dtype_name

CONFIG_FILE = "config.json"
SINGLE_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"


class TensorFiles(contextlib.ExitStack):
  """The tensors of a directory's safetensors file(s): names, header shapes, lazy reads."""

  def __init__(self, directory: Path):
    super().__init__()
    if (directory / INDEX_FILE).is_file():
      weight_map = layout.read_json(directory / INDEX_FILE).get("weight_map")
      if not isinstance(weight_map, dict):
        raise layout.CheckpointError(f"{directory / INDEX_FILE}: no \"weight_map\" object")
    elif (directory / SINGLE_FILE).is_file():
      weight_map = None
    else:
      raise layout.CheckpointError(f"{directory}: neither {SINGLE_FILE} nor {INDEX_FILE}")
    self.directory = directory
    self._readers: dict[str, Any] = {}
    if weight_map is None:
      self.file_of = {name: SINGLE_FILE for name in self._reader(SINGLE_FILE).keys()}
    else:
      self.file_of = dict(weight_map)

  def _reader(self, file: str):
    if file not in self._readers:
      if not (self.directory / file).is_file():
        raise layout.CheckpointError(f"{self.directory}: shard {file} listed in {INDEX_FILE} "
                                     "is missing")
      self._readers[file] = self.enter_context(layout.open_tensors(self.directory / file))
    return self._readers[file]

  def shape(self, name: str) -> tuple[int, ...]:
    return tuple(self._reader(self.file_of[name]).get_slice(name).get_shape())

  def read(self, name: str) -> np.ndarray:
    return self._reader(self.file_of[name]).get_tensor(name)

  def describe(self, name: str) -> str:
    return name


def _architecture(hf: Mapping[str, Any], where: Path) -> Architecture:
  names = hf.get("architectures") or []
  for name in names:
    if name in ARCHITECTURES:
      return ARCHITECTURES[name]
  raise layout.CheckpointError(f"{where}: unsupported architecture {names or '(none given)'}; "
                               f"supported: {sorted(ARCHITECTURES)}")


def model_config(hf: Mapping[str, Any], arch: Architecture, dtype: Optional[str],
                 where: Path) -> ModelConfig:
  """The ModelConfig of config.json `hf` under `arch`'s field table."""
  for check in arch.unsupported:
    reason = check(hf)
    if reason:
      raise layout.CheckpointError(f"{where}: {arch.name} with {reason} is not supported")
  dtype = dtype_name(dtype or hf.get("dtype") or hf.get("torch_dtype") or "float32")
  try:
    fields = {field: value(hf) if callable(value) else value for field, value in arch.fields.items()}
  except ValueError as error:
    raise layout.CheckpointError(f"{where}: {error}") from None
  return ModelConfig(**fields, dtype=dtype, dropout_rate=0.0,
                     name=str(hf.get("model_type") or arch.name))


def _read_config(directory: Path, dtype) -> tuple[Architecture, ModelConfig]:
  """The architecture and ModelConfig of directory's config.json (no tensor is read)."""
  if not (directory / CONFIG_FILE).is_file():
    raise layout.CheckpointError(f"{directory}: no {CONFIG_FILE} (not a Hugging Face checkpoint)")
  hf = layout.read_json(directory / CONFIG_FILE)
  arch = _architecture(hf, directory)
  return arch, model_config(hf, arch, dtype, directory)


def load_hf_config(path: str | os.PathLike, *, dtype: Any = None) -> ModelConfig:
  """The ModelConfig `load_hf(path, dtype=dtype)` returns, from config.json alone."""
  return _read_config(Path(path), dtype)[1]


def _resolve(rule: Rule, prefix: str, layer: Optional[int], available) -> Optional[str]:
  """The first of the rule's Hugging Face names present in the checkpoint (None if none)."""
  names = [template.format(p=prefix, layer=layer) for template in rule.hf_names]
  return next((name for name in names if name in available), None)


def plan(arch: Architecture, config: ModelConfig, files: TensorFiles, where: str):
  """Pass 1: {hydra_jax name: [(hf name, transform, per-layer shape), ...]}, fully checked."""
  expected = layout.expected_layout(config)
  rules = {rule.ours: rule for rule in arch.tensors if rule.ours in expected}
  uncovered = sorted(set(expected) - set(rules))
  if uncovered:
    raise layout.CheckpointError(f"{where}: {arch.name} has no source for {uncovered}")
  available = set(files.file_of)
  first = arch.tensors[0]     # every table starts with the token embedding: find its prefix
  prefix = next((p for p in arch.prefixes if _resolve(first, p, 0, available)), arch.prefixes[0])

  steps, used, missing = {}, set(), []
  for ours, rule in rules.items():
    shape = expected[ours].shape
    layers = range(config.num_layers) if placement.is_stacked(ours) else [None]
    part_shape = shape[1:] if placement.is_stacked(ours) else shape
    steps[ours] = []
    for layer in layers:
      name = _resolve(rule, prefix, layer, available)
      if name is None:
        missing.append(rule.hf_names[0].format(p=prefix, layer=layer))   # (no file name to give)
        continue
      needed = rule.transform.hf_shape(part_shape)
      if files.shape(name) != tuple(needed):
        raise layout.CheckpointError(
            f"{where}: tensor {files.describe(name)!r} has shape {files.shape(name)}, {arch.name} with this "
            f"config.json needs {tuple(needed)} (for {ours!r} of shape {tuple(part_shape)})")
      steps[ours].append((name, rule.transform, part_shape))
      used.add(name)
  ignorable = list(arch.ignored)
  if config.tie_embeddings:   # some tied checkpoints also store the (identical) output matrix
    ignorable += [re.escape(name) + "$" for name in next(
        r for r in arch.tensors if r.ours == "unembed/w").hf_names]
  unexpected = sorted(files.describe(name) for name in available - used
                      if not any(re.search(pattern, name) for pattern in ignorable))
  if missing or unexpected:
    parts = ([f"missing tensor(s) {missing}"] if missing else []) + (
        [f"unexpected tensor(s) {unexpected}"] if unexpected else [])
    raise layout.CheckpointError(f"{where}: " + "; ".join(parts))
  return steps


def load_hf(path: str | os.PathLike, *, dtype: Any = None, mesh=None):
  """(ModelConfig, params) of the Hugging Face checkpoint directory `path`.

  Args:
    path: the directory holding config.json and model.safetensors (or the shards listed
      by model.safetensors.index.json).
    dtype: the parameters' dtype: "float32", "bfloat16" or "float16", or the matching
      numpy/JAX type (jnp.bfloat16, np.float32, ...). None: config.json's dtype
      (torch_dtype in older files), else float32.
    mesh: a jax.sharding.Mesh with a "model" axis, or None (the default device). Every
      tensor is placed on its sharding (`model.partitioning.MODEL_AXIS`) as it is read, so the
      params are ready for `hydra_sweep(..., mesh=mesh)`.

  Returns:
    (ModelConfig, params): the Haiku parameter tree, per-layer tensors stacked on L.

  Raises:
    CheckpointError (a ValueError) naming the file or tensor: a missing config.json or
    safetensors file, a truncated or corrupt one, an unsupported architecture or
    feature, a missing, unexpected or misshapen tensor. ValueError for a bad dtype or mesh.
  """
  directory = Path(path)
  check_mesh(mesh)
  arch, config = _read_config(directory, dtype)
  with TensorFiles(directory) as files:
    return config, load_tensors(arch, config, files, str(directory), mesh)


def check_mesh(mesh) -> None:
  """ValueError unless `mesh` is None or a Mesh with the "model" axis params shard over."""
  if mesh is not None and not (isinstance(mesh, Mesh) and placement.MODEL_AXIS in mesh.axis_names):
    raise ValueError(f"mesh must be a jax.sharding.Mesh with a {placement.MODEL_AXIS!r} axis, "
                     f"got {mesh!r}")


def load_tensors(arch: Architecture, config: ModelConfig, files, where: str, mesh=None):
  """The params of `files` (any object with TensorFiles' file_of, shape and read, named as
  Hugging Face names them) under `arch`'s table: planned and checked first (`plan`), then
  read one tensor at a time, converted, cast to config.dtype and placed (onto `mesh`)."""
  target = layout.as_numpy_dtype(config.dtype)
  expected = layout.expected_layout(config)
  shardings = placement.flat_shardings(config, mesh) if mesh is not None else {}
  steps = plan(arch, config, files, where)
  flat = {}
  for ours, parts in steps.items():
    arrays = (transform.apply(files.read(name), shape).astype(target)
              for name, transform, shape in parts)                         # one layer at a time
    flat[ours] = placement.place(arrays, placement.is_stacked(ours), expected[ours].shape,
                                 target, shardings.get(ours))
  return layout.unflatten(flat)
