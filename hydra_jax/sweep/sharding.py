"""Sharding a sweep over a `jax.sharding.Mesh`: prompts over "data", weights over "model".

A sweep is embarrassingly parallel over prompts: every array with a leading prompt axis
B (tokens, lengths, source values, all results) is split over the mesh's "data" axis,
and each prompt's ablations run on the device holding the prompt. An optional "model"
axis splits the weights (attention heads, MLP width, vocabulary) for models too large
for one device; XLA's partitioner inserts the collectives. Everything goes through
`jax.jit` with NamedShardings (no pmap), so one program serves one device, a host's
devices or a TPU pod slice (after `jax.distributed.initialize()`).

Which axis of each parameter goes over "model" is data (`MODEL_AXIS`), keyed by the
parameter names of `hydra_jax.model`; a dimension the axis size does not divide stays
replicated.
"""

from __future__ import annotations

from typing import Optional

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

DATA, MODEL = "data", "model"

# Parameter (module, name) -> the axis split over "model" (the leading L axis is axis 0 of layers/*).
MODEL_AXIS = {
    "layers/attention": {"q": 2, "k": 2, "v": 2, "o": 1, "q_bias": 1, "k_bias": 1, "v_bias": 1,
                         "w_r": 2, "bias_u": 1, "bias_v": 1},
    "layers/mlp": {"w_in": 2, "w_gate": 2, "w_out": 1, "b_in": 1, "b_gate": 1},
    "embed": {"embeddings": 1},
    "unembed": {"w": 1},
}


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


def param_shardings(params, mesh: Mesh):
  """A NamedSharding per parameter: MODEL_AXIS over "model" where it divides, else replicated."""
  model_size = mesh.shape.get(MODEL, 1)

  def spec(module: str, name: str, shape) -> PartitionSpec:
    axis = MODEL_AXIS.get(module, {}).get(name)
    if model_size == 1 or axis is None or shape[axis] % model_size:
      return PartitionSpec()
    return PartitionSpec(*[MODEL if i == axis else None for i in range(len(shape))])

  return {module: {name: NamedSharding(mesh, spec(module, name, np.shape(value)))
                   for name, value in values.items()}
          for module, values in params.items()}


def place_params(params, mesh: Optional[Mesh]):
  """Put the parameters on the mesh (unchanged without one)."""
  return params if mesh is None else jax.device_put(params, param_shardings(params, mesh))


def place_batch(arrays, mesh: Optional[Mesh]):
  """Put arrays with a leading prompt axis on the mesh, split over "data"."""
  return arrays if mesh is None else jax.device_put(arrays, data_sharding(mesh))
