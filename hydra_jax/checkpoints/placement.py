"""Putting parameters on a device mesh as they are read, one layer at a time.

Which axis of each parameter is split over the mesh's "model" axis is decided in one
place for the whole package, `hydra_jax.model.partitioning.MODEL_AXIS` (attention heads, MLP width,
vocabulary; everything else, and any axis the "model" size does not divide, replicated),
so a loaded model is already where the sweep wants it. `place_stacked` fills a sharded
[L, ...] array one layer at a time (the buffer is donated to each update), so loading
needs host memory for one layer's tensor at a time, not the whole model.

Shapes: L layers, D d_model, H heads, G key/value heads, E head size, F MLP width, V vocab.
"""

from __future__ import annotations

import functools
from typing import Iterable, Optional

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from hydra_jax.checkpoints import layout
from hydra_jax.model import partitioning
from hydra_jax.model.config import ModelConfig

MODEL_AXIS = "model"   # = hydra_jax.model.partitioning.MODEL


def is_stacked(name: str) -> bool:
  """Per-layer tensors carry a leading L axis (hk.layer_stack)."""
  return name.startswith("layers/")


def flat_shardings(config: ModelConfig, mesh: Mesh) -> dict[str, NamedSharding]:
  """{flat tensor name: NamedSharding} for every parameter of `config` on `mesh`."""
  shapes = layout.unflatten(layout.expected_layout(config))       # ShapeDtypeStructs
  return layout.flatten(partitioning.param_shardings(shapes, mesh))


@functools.lru_cache(maxsize=None)
def _layer_setter(sharding: NamedSharding):
  def set_layer(stack, layer, index):
    return jax.lax.dynamic_update_index_in_dim(stack, layer, index, axis=0)
  return jax.jit(set_layer, donate_argnums=0, out_shardings=sharding)


def place_stacked(layers: Iterable[np.ndarray], shape, dtype, sharding: NamedSharding) -> jax.Array:
  """Build the sharded [L, ...] array `shape` from an iterable of its L per-layer arrays."""
  layer_sharding = NamedSharding(sharding.mesh, PartitionSpec(*sharding.spec[1:]))
  stack = jax.jit(lambda: jnp.zeros(shape, dtype), out_shardings=sharding)()
  setter = _layer_setter(sharding)
  for index, layer in enumerate(layers):
    stack = setter(stack, jax.device_put(layer, layer_sharding), index)
  return stack


def place(parts: Iterable[np.ndarray], stacked: bool, shape, dtype,
          sharding: Optional[NamedSharding]) -> jax.Array:
  """One parameter on device: `parts` are its L layers (stacked) or its one array."""
  if sharding is None:
    parts = list(parts)
    return jnp.asarray(np.stack(parts) if stacked else parts[0])
  if stacked:
    return place_stacked(parts, shape, dtype, sharding)
  (array,) = parts
  return jax.device_put(array, sharding)
