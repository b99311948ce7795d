"""Position encodings that act inside attention: rotary and Transformer-XL relative.

Both are written for *arbitrary* query and key positions, so one implementation
serves the full forward pass (queries = keys = 0..T-1) and the single-token decode
against a key/value cache (one query at position t, keys at 0..T-1 plus t).

Rotary (Su et al.): rotate the first `rotary_dim` features of every head by
position-dependent angles; the two halves of that slice form the (x, y) pairs
("rotate half" layout, as in Llama and GPT-NeoX checkpoints).

Relative (Dai et al. 2019; Gopher, Chinchilla): with sinusoidal embedding r_k of
the offset k = i - j, a learned projection W_R and per-head biases u and v,

    s(i, j) = q_i . k_j  +  q_i . W_R r_{i-j}  +  u . k_j  +  v . W_R r_{i-j}.

`relative_logits` computes the two offset terms, (q_i + v) . W_R r_{i-j}, for all
offsets at once ([.., T_offsets] per query) and then gathers offset i - j for each
key: the "relative shift" written as an index gather, for any positions.
`full_pass_relative_logits` is the same for a full pass (queries = keys = 0..T-1) with
the shift as a pad and reshape: no index tensor, and a backward pass of slices rather
than a scatter-add (about 10% of a training step at T = 64).

Shapes (the package glossary, hydra_jax/__init__.py): B prompts, T positions (Tq query,
Tk key positions), H heads (or G key/value heads), E head size, D d_model; here also
O offsets and P = rotary_dim / 2 rotated pairs per head.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def rotary_angles(positions: jax.Array, rotary_dim: int, base: float) -> tuple[jax.Array, jax.Array]:
  """cos, sin of the rotary angles: positions [B, T] -> two [B, T, P] arrays."""
  inv_freq = 1.0 / (base ** (jnp.arange(0, rotary_dim, 2, dtype=jnp.float32) / rotary_dim))
  angles = positions.astype(jnp.float32)[..., None] * inv_freq   # [B, T, P]
  return jnp.cos(angles), jnp.sin(angles)


def apply_rotary(x: jax.Array, positions: jax.Array, rotary_dim: int, base: float) -> jax.Array:
  """Rotate the first `rotary_dim` features of each head: x [B, T, H, E], positions [B, T]."""
  cos, sin = rotary_angles(positions, rotary_dim, base)            # [B, T, P]
  cos, sin = cos[:, :, None, :], sin[:, :, None, :]                # [B, T, 1, P]
  rot, rest = x[..., :rotary_dim].astype(jnp.float32), x[..., rotary_dim:]
  first, second = jnp.split(rot, 2, axis=-1)                       # [B, T, H, P] each
  rotated = jnp.concatenate([first * cos - second * sin, second * cos + first * sin], axis=-1)
  return jnp.concatenate([rotated.astype(x.dtype), rest], axis=-1)


def sinusoid(offsets: jax.Array, dim: int) -> jax.Array:
  """Transformer-XL sinusoidal embedding of offsets [O] -> [O, dim] = [sin | cos]."""
  inv_freq = 1.0 / (10000.0 ** (jnp.arange(0, dim, 2, dtype=jnp.float32) / dim))
  angles = offsets.astype(jnp.float32)[:, None] * inv_freq          # [O, dim/2]
  return jnp.concatenate([jnp.sin(angles), jnp.cos(angles)], axis=-1)


def relative_logits(
    q: jax.Array,            # [B, Tq, H, E] queries (unscaled)
    q_pos: jax.Array,        # [B, Tq] int
    k_pos: jax.Array,        # [B, Tk] int
    w_r: jax.Array,          # [D, H, E] projection of the sinusoid
    bias_v: jax.Array,       # [H, E] the "v" bias of the position term
    max_offset: int,         # offsets 0..max_offset-1 are computed
) -> jax.Array:
  """(q_i + v) . W_R r_{i-j} for every query i and key j: [B, H, Tq, Tk].

  Offsets i - j < 0 (future keys) are clipped to 0; the causal mask removes them.
  """
  per_offset = _per_offset(q, w_r, bias_v, jnp.arange(max_offset))   # [B, H, Tq, O]
  offsets = jnp.clip(q_pos[:, :, None] - k_pos[:, None, :], 0, max_offset - 1)  # [B, Tq, Tk]
  index = jnp.broadcast_to(offsets[:, None], per_offset.shape[:3] + offsets.shape[-1:])
  return jnp.take_along_axis(per_offset, index, axis=-1)             # [B, H, Tq, Tk]


def _per_offset(q, w_r, bias_v, offsets: jax.Array) -> jax.Array:
  """(q_i + v) . W_R r_o for queries q [B, Tq, H, E] and offsets [O]: [B, H, Tq, O]."""
  r = sinusoid(offsets, w_r.shape[0]).astype(w_r.dtype)             # [O, D]
  r_proj = jnp.einsum("od,dhe->ohe", r, w_r)                         # [O, H, E]
  return jnp.einsum("bqhe,ohe->bhqo", q + bias_v, r_proj)


def full_pass_relative_logits(q: jax.Array, w_r: jax.Array, bias_v: jax.Array) -> jax.Array:
  """`relative_logits` of a full pass, queries = keys at positions 0..T-1: [B, H, T, T].

  Row i of the offsets T-1, ..., 0 moves left by T-1-i: padded to T+1 columns and read
  flat from T-1, entry (i, j) is offset i - j for j <= i (later keys read other rows'
  entries; the causal mask removes them).
  """
  B, T, H, _ = q.shape
  descending = _per_offset(q, w_r, bias_v, jnp.arange(T - 1, -1, -1))  # [B, H, T, T]
  flat = jnp.pad(descending, ((0, 0), (0, 0), (0, 0), (0, 1))).reshape(B, H, T * (T + 1))
  return flat[..., T - 1:T - 1 + T * T].reshape(B, H, T, T)
