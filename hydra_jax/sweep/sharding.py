"""Sharding a sweep over a `jax.sharding.Mesh`: prompts over "data", weights over "model".

A sweep is embarrassingly parallel over prompts: every array with a leading prompt axis
B (tokens, lengths, source values, all results) is split over the mesh's "data" axis,
and each prompt's ablations run on the device holding the prompt. An optional "model"
axis splits the weights (attention heads, MLP width, vocabulary) for models too large
for one device; XLA's partitioner inserts the collectives. Everything goes through
`jax.jit` with NamedShardings (no pmap), so one program serves one device, a host's
devices or a TPU pod slice (after `jax.distributed.initialize()`).

Which axis of each parameter goes over "model" is data (`model.partitioning.MODEL_AXIS`).
"""

from __future__ import annotations

from typing import Optional

import jax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from hydra_jax.model.partitioning import MODEL, MODEL_AXIS, param_shardings  # noqa: F401

DATA = "data"


def validate_mesh(mesh: Optional[Mesh]) -> None:
  """Raise a ValueError for a mesh the sweep cannot use (before any compile)."""
  if mesh is None:
    return
  if not isinstance(mesh, Mesh):
    raise ValueError(f"mesh must be a jax.sharding.Mesh, got {type(mesh).__name__}")
  if DATA not in mesh.axis_names:
    raise ValueError(f'mesh needs a "{DATA}" axis (prompts are split over it); it has {mesh.axis_names}')
  unknown = set(mesh.axis_names) - {DATA, MODEL}
  if unknown:
    raise ValueError(f'mesh axes must be "{DATA}" and optionally "{MODEL}", got {mesh.axis_names}')
  explicit = [name for name, kind in zip(mesh.axis_names, getattr(mesh, "axis_types", ()) or ())
              if "Explicit" in str(kind)]
  if explicit:
    raise ValueError(f"mesh axes {explicit} are Explicit; build the mesh with "
                     "axis_types=(jax.sharding.AxisType.Auto,) * n (Haiku's gathers need Auto axes)")


def data_size(mesh: Optional[Mesh]) -> int:
  """How many ways the prompt axis is split (1 without a mesh)."""
  return 1 if mesh is None else mesh.shape[DATA]


def data_sharding(mesh: Mesh) -> NamedSharding:
  """Leading (prompt) axis over "data", every other axis replicated."""
  return NamedSharding(mesh, PartitionSpec(DATA))


def replicated(mesh: Mesh) -> NamedSharding:
  """Every axis replicated: each device (and process) holds the whole array."""
  return NamedSharding(mesh, PartitionSpec())


def place_params(params, mesh: Optional[Mesh]):
  """Put the parameters on the mesh (unchanged without one)."""
  return params if mesh is None else jax.device_put(params, param_shardings(params, mesh))


def place_batch(arrays, mesh: Optional[Mesh]):
  """Put arrays with a leading prompt axis on the mesh, split over "data"."""
  return arrays if mesh is None else jax.device_put(arrays, data_sharding(mesh))
