"""Haiku modules of one transformer block: norm, attention, MLP.

Parameter names are the checkpoint format of hydra_jax (checkpoint mappings target
them); inside `hk.layer_stack` every parameter gets a leading layer axis L.

  norm       scale [D] (+ bias [D] for LayerNorm)
  attention  q [D, H, K]  k [D, G, K]  v [D, G, K]  o [H, K, D]
             (+ q_bias [H, K], k_bias [G, K], v_bias [G, K] with qkv_bias; o_bias [D])
             (+ w_r [D, H, K], bias_u [H, K], bias_v [H, K] for relative positions)
  mlp        w_in [D, F]  (+ w_gate [D, F] if gated)  w_out [F, D]  (+ b_in [F], b_gate [F], b_out [D])

Shapes: B batch, Tq query positions, Tk key positions, D d_model, H heads, G key/value
heads, R = H // G queries per key/value head, K head size, F MLP width.
"""

from __future__ import annotations

from typing import Optional

import haiku as hk
import jax
import jax.numpy as jnp
import numpy as np

from hydra_jax.model import positions as pos_lib
from hydra_jax.model.config import ModelConfig

ACTIVATION_FNS = {
    "gelu": lambda x: jax.nn.gelu(x, approximate=False),
    "gelu_tanh": lambda x: jax.nn.gelu(x, approximate=True),
    "relu": jax.nn.relu,
    "silu": jax.nn.silu,
}


def _param(name, shape, config: ModelConfig, init=None):
  init = init or hk.initializers.TruncatedNormal(stddev=config.init_scale)
  return hk.get_parameter(name, shape, jnp.dtype(config.dtype), init=init)


def _zeros(name, shape, config):
  return _param(name, shape, config, hk.initializers.Constant(0.0))


class Norm(hk.Module):
  """RMSNorm or LayerNorm computed in float32; returns (normed, sigma).

  sigma [B, T] is the scale the input is divided by: sqrt(mean(x^2) + eps) for RMSNorm,
  sqrt(var(x) + eps) for LayerNorm. Passing `sigma` overrides it (a frozen scale).
  """

  def __init__(self, config: ModelConfig, name: str):
    super().__init__(name=name)
    self.config = config

  def __call__(self, x: jax.Array, sigma: Optional[jax.Array] = None):
    cfg = self.config
    d = x.shape[-1]
    scale = _param("scale", (d,), cfg, hk.initializers.Constant(1.0 - cfg.norm_scale_offset))
    x32 = x.astype(jnp.float32)                                       # [B, T, D]
    if cfg.norm == "layer":
      x32 = x32 - x32.mean(-1, keepdims=True)
    if sigma is None:
      sigma = jnp.sqrt(jnp.mean(x32 * x32, -1) + cfg.norm_eps)       # [B, T]
    y = x32 / sigma[..., None] * (cfg.norm_scale_offset + scale.astype(jnp.float32))
    if cfg.norm == "layer":
      y = y + _zeros("bias", (d,), cfg).astype(jnp.float32)
    return y.astype(x.dtype), sigma


class Attention(hk.Module):
  """Causal multi-head (grouped-query) attention with rotary / relative / no positions."""

  def __init__(self, config: ModelConfig, name: str = "attention"):
    super().__init__(name=name)
    self.config = config

  def project(self, x: jax.Array, positions: jax.Array):
    """Queries [B, T, H, K], keys and values [B, T, G, K] of inputs x [B, T, D] at positions
    [B, T] (positions applied). One matmul against the three projections side by side."""
    cfg = self.config
    D, H, G, K = cfg.d_model, cfg.num_heads, cfg.kv_heads, cfg.head_size
    w_k, w_v = (_param(name, (D, G, K), cfg).reshape(D, G * K) for name in ("k", "v"))
    w_q = _param("q", (D, H, K), cfg).reshape(D, H * K)  # created after k and v: init order
    w = jnp.concatenate([w_q, w_k, w_v], axis=1)
    q, k, v = jnp.split(x @ w, [H * K, (H + G) * K], axis=-1)
    q, k, v = (y.reshape(x.shape[:-1] + (n, K)) for y, n in ((q, H), (k, G), (v, G)))
    if cfg.qkv_bias:
      q = q + _zeros("q_bias", (H, K), cfg)
      k = k + _zeros("k_bias", (G, K), cfg)
      v = v + _zeros("v_bias", (G, K), cfg)
    if cfg.position == "rotary":
      q = pos_lib.apply_rotary(q, positions, cfg.rotary_dim, cfg.rope_base)
      k = pos_lib.apply_rotary(k, positions, cfg.rotary_dim, cfg.rope_base)
    return q, k, v

  def __call__(self, x, q_pos, cache, k_pos, mask, head_site=None):
    """x [B, Tq, D] at q_pos [B, Tq] attends to the cache's keys and its own, at k_pos [B, Tk].

    cache is None (a full pass: the queries' own keys are all the keys) or (keys, values)
    [B, Tc, G, K] of earlier positions (decoding: Tk = Tc + Tq). The cache and the new
    keys are scored separately, so a cache shared by many queries is never copied next to
    each of them. mask [B, Tq, Tk] says which keys each query sees. head_site (weight
    [B?, Tq, H], value [B?, Tq', H, K]) replaces per-head outputs before W_O.
    Returns (attention output [B, Tq, D], per-head outputs z [B, Tq, H, K], the new
    keys and values [B, Tq, G, K]).
    """
    cfg = self.config
    H, G, K = cfg.num_heads, cfg.kv_heads, cfg.head_size
    q, k, v = self.project(x, q_pos)
    key_values = [(k, v)] if cache is None else [cache, (k, v)]
    content_q = q
    if cfg.position == "relative":
      content_q = q + _zeros("bias_u", (H, K), cfg)
    B, Tq, Tk = x.shape[0], x.shape[1], k_pos.shape[1]
    grouped = content_q.reshape(B, Tq, G, H // G, K)
    scores = jnp.concatenate([jnp.einsum("bqgrk,bsgk->bgrqs", grouped, keys)
                              for keys, _ in key_values], axis=-1).reshape(B, H, Tq, Tk)
    if cfg.position == "relative":
      w_r = _param("w_r", (cfg.d_model, H, K), cfg)
      scores = scores + pos_lib.relative_logits(
          q, q_pos, k_pos, w_r, _zeros("bias_v", (H, K), cfg), max_offset=Tk)
    scores = scores.astype(jnp.float32) * cfg.attention_scale
    scores = jnp.where(mask[:, None], scores, jnp.finfo(jnp.float32).min)
    probs = jax.nn.softmax(scores, axis=-1).astype(x.dtype)            # [B, H, Tq, Tk]
    probs = probs.reshape(B, G, H // G, Tq, Tk)
    ends = np.cumsum([values.shape[1] for _, values in key_values])
    z = sum(jnp.einsum("bgrqs,bsgk->bqgrk", part, values)
            for part, (_, values) in zip(jnp.split(probs, ends[:-1], axis=-1), key_values))
    z = z.reshape(B, Tq, H, K)
    if head_site is not None:
      weight, value = head_site
      z = z + weight[..., None].astype(z.dtype) * (value.astype(z.dtype) - z)
    out = jnp.einsum("bthk,hkd->btd", z, _param("o", (H, K, cfg.d_model), cfg))
    if cfg.attn_out_bias:
      out = out + _zeros("o_bias", (cfg.d_model,), cfg)
    return out, z, k, v


class MLP(hk.Module):
  """Position-wise MLP, plain (act(x W_in) W_out) or gated (act(x W_gate) * x W_in) W_out."""

  def __init__(self, config: ModelConfig, name: str = "mlp"):
    super().__init__(name=name)
    self.config = config

  def __call__(self, x: jax.Array) -> jax.Array:
    cfg = self.config
    D, F = cfg.d_model, cfg.mlp_width
    act = ACTIVATION_FNS[cfg.activation]
    bias = lambda name: _zeros(name, (F,), cfg) if cfg.mlp_bias else 0.0
    w_in = _param("w_in", (D, F), cfg)
    if cfg.gated_mlp:   # one matmul against both input projections side by side
      both = x @ jnp.concatenate([w_in, _param("w_gate", (D, F), cfg)], axis=1)  # [B, T, 2F]
      hidden, gate = jnp.split(both, [F], axis=-1)
      hidden = act(gate + bias("b_gate")) * (hidden + bias("b_in"))
    else:
      hidden = act(x @ w_in + bias("b_in"))                           # [B, T, F]
    out = hidden @ _param("w_out", (F, D), cfg)                       # [B, T, D]
    if cfg.mlp_bias:
      out = out + _zeros("b_out", (D,), cfg)
    return out
