"""One transformer layer as plain functions of (parameters, config, inputs): no Haiku needed.

    a^l = post(p["attn_post_norm"], attention(p["attention"], norm(p["attn_norm"], z^{l-1})))
    m^l = post(p["mlp_post_norm"], mlp(p["mlp"], norm(p["mlp_norm"], mlp_input(z^{l-1}, a^l))))
    z^l = z^{l-1} + a^l + m^l                                              (`block`)

`post` is a norm with config.post_norms (Gemma 2/3's post_attention / post_feedforward
norms) and the identity otherwise, so a^l and m^l are always exactly what the sublayer
adds to the residual stream: the `attn_out` and `mlp_out` intervention sites, whose
direct effects and responses are therefore exact for every architecture.

A layer's attention differs by layer only through the per-layer attention pattern
(`layer_pattern`: the sliding window and the rotary base of each layer, as arrays [L]
scanned along with the layers), passed to `block` as that layer's `kind`.

A layer's parameters `p` are a dict {module: {name: array}}; `layer_param_specs` lists
them in creation order (the names are hydra_jax's checkpoint format). The Haiku model
(`hydra_jax.model.transformer`) creates them inside `hk.layer_stack`, where every leaf
gains a leading L axis under "layers/<module>"; `stacked_layers` and `layer_params` read
them back from such a params dict, so a sweep can run any layer on its own.

Each rule lives in one function: the norms (`hydra_jax.model.norms`, re-exported here),
the keys a query sees (`causal_context`, `windowed`), the MLP's input in a parallel block
(`mlp_input`) and the replacement rule of an intervention site (`replace`).

Shapes (glossary in hydra_jax/__init__.py): B batch, Tq query positions, Tk key positions,
Tc cached positions, D d_model, H heads, G key/value heads, E head size, F MLP width.
"""

from __future__ import annotations

from typing import Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np

from hydra_jax.model import positions as pos_lib
from hydra_jax.model.config import ModelConfig
from hydra_jax.model.norms import (CENTRES_FEATURES, logit_direction, norm, norm_gain,  # noqa: F401
                                   norm_sigma, norm_specs)


@jax.custom_jvp
def gelu(x: jax.Array) -> jax.Array:
  """Exact GELU, x Phi(x). Its slope Phi(x) + x phi(x) is formed with the value, in the
  forward pass: left to autodiff, XLA on CPU evaluates erf and exp in the transposed
  layout of the backward matmul, ~10% of a training step."""
  return jax.nn.gelu(x, approximate=False)


@gelu.defjvp
def _gelu_jvp(primals, tangents):
  (x,), (tangent,) = primals, tangents
  cdf = 0.5 * (1.0 + jax.lax.erf(x * np.float32(1 / np.sqrt(2)).astype(x.dtype)))
  density = jnp.exp(-0.5 * x * x) * np.float32(1 / np.sqrt(2 * np.pi)).astype(x.dtype)
  return x * cdf, (cdf + x * density) * tangent


ACTIVATION_FNS = {
    "gelu": gelu,
    "gelu_tanh": lambda x: jax.nn.gelu(x, approximate=True),
    "relu": jax.nn.relu,
    "silu": jax.nn.silu,
}
LAYER_PREFIX = "layers/"   # where hk.layer_stack puts the stacked layer modules


# Parameters ----------------------------------------------------------------------------------


def layer_param_specs(config: ModelConfig) -> dict:
  """{module: {name: (shape, init)}} of one layer, in creation order (random draws follow it)."""
  D, H, G, E, F = config.d_model, config.num_heads, config.kv_heads, config.head_size, config.mlp_width
  attention = {"k": ((D, G, E), "normal"), "v": ((D, G, E), "normal"), "q": ((D, H, E), "normal")}
  if config.qkv_bias:
    attention.update(q_bias=((H, E), "zeros"), k_bias=((G, E), "zeros"), v_bias=((G, E), "zeros"))
  if config.position == "relative":
    attention.update(bias_u=((H, E), "zeros"), w_r=((D, H, E), "normal"), bias_v=((H, E), "zeros"))
  if config.qk_norm:
    attention.update(q_norm=((E,), "ones"), k_norm=((E,), "ones"))
  attention["o"] = ((H, E, D), "normal")
  if config.attn_out_bias:
    attention["o_bias"] = ((D,), "zeros")
  mlp = {"w_in": ((D, F), "normal")}
  if config.gated_mlp:
    mlp["w_gate"] = ((D, F), "normal")
  if config.mlp_bias:
    mlp.update({"b_gate": ((F,), "zeros")} if config.gated_mlp else {})
    mlp["b_in"] = ((F,), "zeros")
  mlp["w_out"] = ((F, D), "normal")
  if config.mlp_bias:
    mlp["b_out"] = ((D,), "zeros")
  post = lambda name: {name: norm_specs(config)} if config.post_norms else {}
  return {"attn_norm": norm_specs(config), "attention": attention, **post("attn_post_norm"),
          "mlp_norm": norm_specs(config), "mlp": mlp, **post("mlp_post_norm")}


def stacked_layers(params) -> dict:
  """{module: {name: [L, ...]}}: the layer stack of a Haiku params dict."""
  return {name[len(LAYER_PREFIX):]: value for name, value in params.items()
          if name.startswith(LAYER_PREFIX)}


def layer_params(params, layer) -> dict:
  """{module: {name: [...]}} of one layer (an int or a traced scalar) of a Haiku params dict."""
  return jax.tree_util.tree_map(lambda x: x[layer], stacked_layers(params))


# The per-layer attention pattern ----------------------------------------------------------------


def layer_pattern(config: ModelConfig) -> dict:
  """The per-layer attention pattern as arrays [L], scanned along with the layers: "window"
  int32 (0: global) when config.layer_windows is set, "rope_base" float32 when
  config.layer_rope_bases is; {} when every layer attends alike (nothing is scanned)."""
  fields = {"window": (config.layer_windows, jnp.int32),
            "rope_base": (config.layer_rope_bases, jnp.float32)}
  return {name: jnp.asarray(values, dtype) for name, (values, dtype) in fields.items() if values}


def layer_kind(config: ModelConfig, layer) -> dict:
  """Layer `layer`'s entries of `layer_pattern` (an int or a traced scalar): {name: []}."""
  return {name: values[layer] for name, values in layer_pattern(config).items()}


# Attention -----------------------------------------------------------------------------------


def causal_context(positions: jax.Array, cache_length: Optional[int]):
  """(key positions [B, Tk], mask [B, Tq, Tk]) for queries at positions [B, Tq].

  cache_length None: a full pass (the queries are the keys, causal mask). Otherwise the
  keys are the cache's positions 0..Tc-1, attended only before each query, then the
  queries themselves (Tk = Tc + Tq).
  """
  if cache_length is None:
    return positions, positions[:, :, None] >= positions[:, None, :]
  B, Tq = positions.shape
  cached = jnp.broadcast_to(jnp.arange(cache_length), (B, cache_length))
  mask = jnp.concatenate([cached[:, None, :] < positions[:, :, None],
                          jnp.ones((B, Tq, Tq), bool)], axis=2)
  return jnp.concatenate([cached, positions], axis=1), mask


def windowed(mask: jax.Array, q_pos: jax.Array, k_pos: jax.Array, window) -> jax.Array:
  """mask [B, Tq, Tk] of queries at q_pos [B, Tq] over keys at k_pos [B, Tk], kept only for
  keys within the sliding window, q - k < window (keys (t - window, t]); window 0 is global
  attention, None leaves the mask as it is."""
  if window is None:
    return mask
  near = q_pos[:, :, None] - k_pos[:, None, :] < window
  return mask & (near | (window == 0))


def project_qkv(p, config: ModelConfig, x: jax.Array, positions: jax.Array, rope_base=None):
  """Queries [B, T, H, E], keys and values [B, T, G, E] of x [B, T, D] at positions [B, T].

  With qk_norm each query and key head is normed over its E features (gain q_norm / k_norm
  [E]) after the biases, before rotary; rope_base (this layer's) overrides config.rope_base."""
  D, H, G, E = config.d_model, config.num_heads, config.kv_heads, config.head_size
  w = jnp.concatenate([p["q"].reshape(D, H * E), p["k"].reshape(D, G * E),
                       p["v"].reshape(D, G * E)], axis=1)              # one matmul for all three
  q, k, v = jnp.split(x @ w, [H * E, (H + G) * E], axis=-1)
  q, k, v = (y.reshape(x.shape[:-1] + (n, E)) for y, n in ((q, H), (k, G), (v, G)))
  if config.qkv_bias:
    q, k, v = q + p["q_bias"], k + p["k_bias"], v + p["v_bias"]
  if config.qk_norm:
    q, k = (norm({"scale": p[name]}, config, y)[0] for y, name in ((q, "q_norm"), (k, "k_norm")))
  if config.position == "rotary":
    base = config.rope_base if rope_base is None else rope_base
    q = pos_lib.apply_rotary(q, positions, config.rotary_dim, base)
    k = pos_lib.apply_rotary(k, positions, config.rotary_dim, base)
  return q, k, v


def _scores(p, config: ModelConfig, q, q_pos, key_parts, k_pos, full_pass: bool) -> jax.Array:
  """Attention logits [B, H, Tq, Tk] float32 (scaled) of queries q [B, Tq, H, E]; full_pass:
  no cache, queries = keys at positions 0..T-1."""
  B, Tq, H, E = q.shape
  G = config.kv_heads
  content_q = q + p["bias_u"] if config.position == "relative" else q
  grouped = content_q.reshape(B, Tq, G, H // G, E)
  scores = jnp.concatenate([jnp.einsum("bqgre,bsge->bgrqs", grouped, keys) for keys in key_parts],
                           axis=-1).reshape(B, H, Tq, k_pos.shape[1])
  if config.position == "relative" and full_pass:
    scores = scores + pos_lib.full_pass_relative_logits(q, p["w_r"], p["bias_v"])
  elif config.position == "relative":
    scores = scores + pos_lib.relative_logits(q, q_pos, k_pos, p["w_r"], p["bias_v"],
                                              max_offset=k_pos.shape[1])
  return scores.astype(jnp.float32) * config.attention_scale


def attention(p, config: ModelConfig, x, q_pos, cache, k_pos, mask, head_site=None, kind=None):
  """Causal (grouped-query) attention of x [B, Tq, D] at q_pos [B, Tq].

  cache is None (a full pass; q_pos must then be 0..T-1 in every row, as `forward` gives)
  or (keys, values) [B, Tc, G, E] of earlier positions (one position decoded against a
  clean cache: Tk = Tc + Tq). The cache and the new keys are
  scored as separate parts, so a cache shared by many queries is never copied. mask
  [B, Tq, Tk] from `causal_context`, narrowed to kind["window"] (`windowed`); kind: this
  layer's entries of `layer_pattern` (None or {}: config's own). head_site (weight [B?, Tq, H],
  value [B?, Tq', H, E]) replaces per-head outputs before W_O. Returns (output [B, Tq, D],
  per-head outputs z [B, Tq, H, E], new keys and values [B, Tq, G, E]).
  """
  B, Tq, _ = x.shape
  H, G, E = config.num_heads, config.kv_heads, config.head_size
  kind = kind or {}
  q, k, v = project_qkv(p, config, x, q_pos, kind.get("rope_base"))
  parts = [(k, v)] if cache is None else [cache, (k, v)]
  scores = _scores(p, config, q, q_pos, [keys for keys, _ in parts], k_pos, cache is None)
  mask = windowed(mask, q_pos, k_pos, kind.get("window"))
  scores = jnp.where(mask[:, None], scores, jnp.finfo(jnp.float32).min)
  probs = jax.nn.softmax(scores, axis=-1).astype(x.dtype)             # [B, H, Tq, Tk]
  probs = probs.reshape(B, G, H // G, Tq, -1)
  ends = np.cumsum([values.shape[1] for _, values in parts])
  z = sum(jnp.einsum("bgrqs,bsge->bqgre", part, values)
          for part, (_, values) in zip(jnp.split(probs, ends[:-1], axis=-1), parts))
  z = replace(z.reshape(B, Tq, H, E), head_site)
  out = jnp.einsum("bthe,hed->btd", z, p["o"])
  if config.attn_out_bias:
    out = out + p["o_bias"]
  return out, z, k, v


# MLP and the block ---------------------------------------------------------------------------


def mlp(p, config: ModelConfig, x: jax.Array) -> jax.Array:
  """Position-wise MLP of x [..., D]: act(x W_in) W_out, or gated act(x W_gate) * x W_in."""
  F = config.mlp_width
  act = ACTIVATION_FNS[config.activation]
  bias = lambda name: p[name] if config.mlp_bias else 0.0
  if config.gated_mlp:   # one matmul against both input projections side by side
    both = x @ jnp.concatenate([p["w_in"], p["w_gate"]], axis=1)      # [..., 2F]
    hidden, gate = jnp.split(both, [F], axis=-1)
    hidden = act(gate + bias("b_gate")) * (hidden + bias("b_in"))
  else:
    hidden = act(x @ p["w_in"] + bias("b_in"))                        # [..., F]
  out = hidden @ p["w_out"]                                           # [..., D]
  return out + p["b_out"] if config.mlp_bias else out


def mlp_input(config: ModelConfig, resid_pre: jax.Array, attn_out: jax.Array) -> jax.Array:
  """What layer l's MLP reads: z^{l-1} + a^l in a sequential block, z^{l-1} in a parallel one."""
  return resid_pre if config.parallel_block else resid_pre + attn_out


def post_norm(p, name: str, config: ModelConfig, y: jax.Array) -> jax.Array:
  """A sublayer's output y [..., D] through its norm p[name] with config.post_norms, else y."""
  return norm(p[name], config, y)[0] if config.post_norms else y


def mlp_sublayer(p, config: ModelConfig, resid_pre: jax.Array, attn_out: jax.Array) -> jax.Array:
  """m^l [..., D] from z^{l-1} and a^l [..., D]: the MLP half of a layer (post-normed with
  post_norms), what it adds to the residual."""
  normed = norm(p["mlp_norm"], config, mlp_input(config, resid_pre, attn_out))[0]
  return post_norm(p, "mlp_post_norm", config, mlp(p["mlp"], config, normed))


def replace(x: jax.Array, site) -> jax.Array:
  """An intervention site's rule: x + w (value - x); w = 0 leaves x bit-for-bit unchanged."""
  if site is None:
    return x
  weight, value = site
  return x + weight[..., None].astype(x.dtype) * (value.astype(x.dtype) - x)


def block(p, config: ModelConfig, x, positions, cache, k_pos, mask, sites=None,
          dropout: Callable = lambda y: y, kind=None):
  """One layer on the residual stream x [B, Tq, D]: (z^l, (a, m, z, k, v)).

  sites: {site name: (weight, value)} of this layer ("resid_pre", "head_out", "attn_out",
  "mlp_out"); a^l and m^l are post-normed (post_norms) before dropout (training only) and
  their replacement. kind: the layer's entries of `layer_pattern` (window, rotary base).
  """
  sites = sites or {}
  x = replace(x, sites.get("resid_pre"))
  h, _ = norm(p["attn_norm"], config, x)
  a, z, k, v = attention(p["attention"], config, h, positions, cache, k_pos, mask,
                         sites.get("head_out"), kind)
  a = replace(dropout(post_norm(p, "attn_post_norm", config, a)), sites.get("attn_out"))
  m = replace(dropout(mlp_sublayer(p, config, x, a)), sites.get("mlp_out"))
  return x + a + m, (a, m, z, k, v)
