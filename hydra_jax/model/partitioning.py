"""How a model's parameters split over a mesh's "model" axis (attention heads, MLP width,
vocabulary), as data keyed by the parameter names of `hydra_jax.model.blocks`.

A dimension the axis size does not divide stays replicated. The sweep
(`hydra_jax.sweep.sharding`), the checkpoint loaders and random initialisation on a
mesh all place parameters by these rules.
"""

from __future__ import annotations

import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

MODEL = "model"

# Parameter (module, name) -> the axis split over "model" (the leading L axis is axis 0 of layers/*).
MODEL_AXIS = {
    "layers/attention": {"q": 2, "k": 2, "v": 2, "o": 1, "q_bias": 1, "k_bias": 1, "v_bias": 1,
                         "w_r": 2, "bias_u": 1, "bias_v": 1},
    "layers/mlp": {"w_in": 2, "w_gate": 2, "w_out": 1, "b_in": 1, "b_gate": 1},
    "embed": {"embeddings": 1},
    "unembed": {"w": 1},
}


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
