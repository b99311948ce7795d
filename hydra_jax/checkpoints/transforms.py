"""Named maps from one Hugging Face tensor (one layer) to one hydra_jax tensor (one layer).

Each `Transform` knows the shape the Hugging Face tensor must have, given the shape of
the hydra_jax tensor it produces (so a wrong checkpoint is reported before any reshape),
and how to convert it. PyTorch conventions being converted:

  nn.Linear weight   [out, in]   y = x W^T          (Llama, Mistral, Qwen2, Gemma, GPT-NeoX)
  GPT-2 Conv1D       [in, out]   y = x W
  fused q|k|v        GPT-2 c_attn: output features [3, H, E] (all queries, then keys, values)
                     GPT-NeoX query_key_value: output features [H, 3, E] (per head q, k, v)

hydra_jax layouts (per layer): q [D, H, E], k/v [D, G, E], o [H, E, D], w_in/w_gate
[D, F], w_out [F, D], q_bias [H, E], embeddings [V, D], unembed [D, V].

Shapes: D d_model, H (or G) heads, E head size, F MLP width, V vocabulary.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable

import numpy as np

Shape = tuple[int, ...]


@dataclasses.dataclass(frozen=True)
class Transform:
  """hf_shape(ours) -> the Hugging Face shape required; apply(hf_array, ours) -> our array."""
  name: str
  hf_shape: Callable[[Shape], Shape]
  apply: Callable[[np.ndarray, Shape], np.ndarray]


def _size(shape: Shape) -> int:
  return math.prod(shape)


# Plain tensors -----------------------------------------------------------------------------

same = Transform("same", lambda ours: ours, lambda x, ours: x)

# nn.Linear [out, in] -> [in, out] (MLP weights, the unembedding).
transpose = Transform("transpose", lambda ours: ours[::-1], lambda x, ours: x.T)

# nn.Linear [H*E, D] -> [D, H, E] (query, key, value projections).
linear_to_heads = Transform(
    "linear_to_heads", lambda ours: (_size(ours[1:]), ours[0]),
    lambda x, ours: x.T.reshape(ours))

# nn.Linear [D, H*E] -> [H, E, D] (attention output projection).
linear_from_heads = Transform(
    "linear_from_heads", lambda ours: (ours[2], ours[0] * ours[1]),
    lambda x, ours: x.T.reshape(ours))

# [H*E] -> [H, E] (q/k/v biases); GPT-2 Conv1D [H*E, D] -> [H, E, D] (c_proj).
split_heads = Transform(
    "split_heads", lambda ours: (ours[0] * ours[1],) + ours[2:],
    lambda x, ours: x.reshape(ours))


# Fused query|key|value tensors -----------------------------------------------------------------


def gpt2_qkv_weight(part: int) -> Transform:
  """Conv1D c_attn [D, 3*H*E] (features [3, H, E]) -> part 0/1/2 (q/k/v) as [D, H, E]."""
  return Transform(
      f"gpt2_qkv_weight[{part}]", lambda ours: (ours[0], 3 * _size(ours[1:])),
      lambda x, ours: x.reshape(ours[0], 3, *ours[1:])[:, part])


def gpt2_qkv_bias(part: int) -> Transform:
  """c_attn bias [3*H*E] -> part as [H, E]."""
  return Transform(
      f"gpt2_qkv_bias[{part}]", lambda ours: (3 * _size(ours),),
      lambda x, ours: x.reshape(3, *ours)[part])


def neox_qkv_weight(part: int) -> Transform:
  """nn.Linear query_key_value [H*3*E, D] (features [H, 3, E]) -> part as [D, H, E]."""
  return Transform(
      f"neox_qkv_weight[{part}]", lambda ours: (3 * _size(ours[1:]), ours[0]),
      lambda x, ours: x.T.reshape(ours[0], ours[1], 3, ours[2])[:, :, part])


def neox_qkv_bias(part: int) -> Transform:
  """query_key_value bias [H*3*E] -> part as [H, E]."""
  return Transform(
      f"neox_qkv_bias[{part}]", lambda ours: (3 * _size(ours),),
      lambda x, ours: x.reshape(ours[0], 3, ours[1])[:, part])
