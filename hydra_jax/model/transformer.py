"""The transformer as a pure function of (params, tokens, intervention).

    z^0 = embed(x)                       (x embed_scale, + learned positions if any)
    a^l = post(Attn_l(norm(z^{l-1})))
    m^l = post'(MLP_l(norm(z^{l-1} + a^l)))   (parallel blocks: MLP_l(norm'(z^{l-1})))
    z^l = z^{l-1} + a^l + m^l
    logits = final_norm(z^L) @ W_U      (float32)

post / post' are the sublayers' own norms in a post_norms model (Gemma 2/3), the identity
otherwise: a^l and m^l (`Outputs.attn_out` / `mlp_out`, the intervention sites) are always
what each sublayer adds to the residual stream, so z^L is exactly z^0 plus the 2L
components and their direct effects and responses are exact.

Each layer is `blocks.block` (plain functions; Haiku only creates and names the
parameters). Layers are one `hk.layer_stack` (a scan), so compile time does not grow
with depth; each layer's slice of the intervention, of a key/value cache and of the
per-layer attention pattern (`blocks.layer_pattern`: sliding window, rotary base) ride
along as scanned inputs. In training (`forward(..., rng=key)`) the scan is unrolled: XLA on CPU
then keeps each layer's activations for the backward pass as they are instead of filling
and slicing [L, ...] stacks (~12% of a training step at 8 layers). Two entry points share
every parameter:

  forward(params, config, tokens [B, T], intervention)          the full pass
  decode(params, config, tokens [B, 1], positions [B], cache,   one position per prompt,
         intervention)                                           attending to a clean cache

`decode` is the incremental path of the sweep: a prompt's last position re-run
against the clean run's keys/values of every earlier position.

Shapes: B batch, T positions, L layers, D d_model, H heads, G kv heads, E head size, V vocab.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Optional

import haiku as hk
import jax
import jax.numpy as jnp
import numpy as np

from hydra_jax.model import blocks
from hydra_jax.model.config import ModelConfig
from hydra_jax.model.interventions import Intervention


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class Outputs:
  """Everything a forward pass exposes. Unused fields cost nothing under jit (dead code)."""
  logits: jax.Array        # [B, T, V] float32
  embed: jax.Array         # [B, T, D]       z^0
  attn_out: jax.Array      # [B, L, T, D]    a^l, added to the residual (after any post-norm)
  mlp_out: jax.Array       # [B, L, T, D]    m^l, likewise
  head_out: jax.Array      # [B, L, T, H, E] per-head attention outputs before W_O
  resid_final: jax.Array   # [B, T, D]       z^L
  final_scale: jax.Array   # [B, T] float32  sigma of the final norm (frozen one if given)
  keys: jax.Array          # [B, L, T, G, E] the key/value cache of this run
  values: jax.Array        # [B, L, T, G, E]


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class KVCache:
  """Clean keys/values of a prompt's positions: keys, values [B, L, Tc, G, E]."""
  keys: jax.Array
  values: jax.Array


# Intervention plumbing: user layout [*B, L, T, ...] -> scanned layout [L, B|1, T|1, ...].


def _to_layer_major(array: jax.Array, unbatched_ndim: int, full_shape) -> jax.Array:
  array = jnp.asarray(array)
  if array.ndim < unbatched_ndim:
    array = jnp.broadcast_to(array, full_shape[-unbatched_ndim:])
  if array.ndim == unbatched_ndim:
    array = array[None]
  return jnp.moveaxis(array, 1, 0)


def _scanned_sites(intervention: Optional[Intervention], config: ModelConfig, seq_len: int):
  L, T, D, H, E = config.num_layers, seq_len, config.d_model, config.num_heads, config.head_size
  shapes = {"resid_pre": (2, (L, T, D)), "attn_out": (2, (L, T, D)), "mlp_out": (2, (L, T, D)),
            "head_out": (3, (L, T, H, E))}
  scanned = {}
  if intervention is not None:
    for name, site in intervention.sites().items():
      w_ndim, value_shape = shapes[name]
      weight = _to_layer_major(site.weight, w_ndim, value_shape[:w_ndim])
      value = _to_layer_major(site.value, len(value_shape), value_shape)
      scanned[name] = (weight, value)
  return scanned


def _get_params(config: ModelConfig, specs: dict) -> dict:
  """Create (or read) the parameters of `specs` ({module: {name: (shape, init)}}) with Haiku."""
  dtype = jnp.dtype(config.dtype)
  inits = {"normal": hk.initializers.TruncatedNormal(stddev=config.init_scale),
           "zeros": hk.initializers.Constant(0.0),
           "ones": hk.initializers.Constant(1.0 - config.norm_scale_offset)}
  params = {}
  for module, names in specs.items():
    with hk.name_scope(module):
      params[module] = {name: hk.get_parameter(name, shape, dtype, init=inits[init])
                        for name, (shape, init) in names.items()}
  return params


def _embed(cfg: ModelConfig, tokens, positions):
  """Token embedding (x embed_scale) plus learned positions if any: [B, Tq, D], table [V, D]."""
  dtype = jnp.dtype(cfg.dtype)
  init = hk.initializers.TruncatedNormal(cfg.init_scale)
  with hk.name_scope("embed"):
    embeddings = hk.get_parameter("embeddings", (cfg.vocab_size, cfg.d_model), dtype, init=init)
    x = jnp.take(embeddings, tokens, axis=0) * jnp.asarray(cfg.embed_scale, dtype)
    if cfg.position == "learned":
      table = hk.get_parameter("positions", (cfg.max_seq_len, cfg.d_model), dtype, init=init)
      x = x + jnp.take(table, positions, axis=0)
  return x, embeddings


def _unembedding(cfg: ModelConfig) -> jax.Array:
  with hk.name_scope("unembed"):
    return hk.get_parameter("w", (cfg.d_model, cfg.vocab_size), jnp.dtype(cfg.dtype),
                            init=hk.initializers.TruncatedNormal(cfg.init_scale))


# The network ---------------------------------------------------------------------------------


def _network(config: ModelConfig, tokens, positions, intervention, cache, is_training):
  """Shared body of forward and decode. tokens, positions [B, Tq]; cache None or KVCache."""
  cfg = config
  x, embeddings = _embed(cfg, tokens, positions)                            # [B, Tq, D]
  dropout = lambda y: hk.dropout(hk.next_rng_key(), cfg.dropout_rate, y) if (
      is_training and cfg.dropout_rate > 0) else y
  x = dropout(x)
  embed = x

  B, Tq = tokens.shape
  k_pos, mask = blocks.causal_context(positions, None if cache is None else cache.keys.shape[2])
  layer_cache = None if cache is None else (jnp.moveaxis(cache.keys, 1, 0),
                                            jnp.moveaxis(cache.values, 1, 0))  # [L, B, Tc, G, E]
  sites = _scanned_sites(intervention, cfg, Tq)

  def layer(x, sites, layer_cache, kind):
    p = _get_params(cfg, blocks.layer_param_specs(cfg))
    return blocks.block(p, cfg, x, positions, layer_cache, k_pos, mask, sites, dropout, kind)

  stack = hk.layer_stack(cfg.num_layers, with_per_layer_inputs=True, name="layers",
                         unroll=cfg.num_layers if is_training else 1)
  x, (a, m, z, k, v) = stack(layer)(x, sites, layer_cache, blocks.layer_pattern(cfg))  # [L, B, ...]

  final_scale = None if intervention is None else intervention.final_scale
  if final_scale is not None:
    final_scale = jnp.broadcast_to(jnp.asarray(final_scale, jnp.float32), (B, Tq))
  final_norm = _get_params(cfg, {"final_norm": blocks.norm_specs(cfg)})["final_norm"]
  normed, sigma = blocks.norm(final_norm, cfg, x, final_scale)
  unembed = embeddings.T if cfg.tie_embeddings else _unembedding(cfg)
  logits = jnp.einsum("btd,dv->btv", normed.astype(jnp.float32), unembed.astype(jnp.float32))
  layer_major = lambda y: jnp.moveaxis(y, 0, 1)
  return Outputs(logits=logits, embed=embed, attn_out=layer_major(a), mlp_out=layer_major(m),
                 head_out=layer_major(z), resid_final=x, final_scale=sigma,
                 keys=layer_major(k), values=layer_major(v))


@functools.lru_cache(maxsize=None)
def _transformed(config: ModelConfig):
  def fn(tokens, positions, intervention, cache, is_training):
    return _network(config, tokens, positions, intervention, cache, is_training)
  return hk.transform(fn)


# Public API ----------------------------------------------------------------------------------


def check_tokens(config: ModelConfig, tokens) -> None:
  """Raise a ValueError for tokens beyond the context or outside the vocabulary (no compile)."""
  shape = np.shape(tokens)
  if len(shape) != 2:
    raise ValueError(f"tokens must be [batch, positions], got shape {shape}")
  if shape[1] > config.max_seq_len:
    raise ValueError(f"{shape[1]} positions exceed the model's context of {config.max_seq_len}")
  if isinstance(tokens, jax.core.Tracer):
    return
  tokens = np.asarray(tokens)
  if not np.issubdtype(tokens.dtype, np.integer):
    raise ValueError(f"tokens must be integers, got {tokens.dtype}")
  if tokens.size and (tokens.min() < 0 or tokens.max() >= config.vocab_size):
    raise ValueError(f"token ids must be in [0, {config.vocab_size}), got range "
                     f"[{tokens.min()}, {tokens.max()}]")


@functools.partial(jax.jit, static_argnames=("config",))
def _init(config: ModelConfig, key: jax.Array) -> hk.Params:
  tokens = jnp.zeros((1, 1), jnp.int32)
  return _transformed(config).init(key, tokens, tokens, None, None, False)


def init_params(config: ModelConfig, seed: int = 0) -> hk.Params:
  """Random parameters for `config` (use `jax.eval_shape` to count without allocating)."""
  return _init(config, jax.random.PRNGKey(seed))


@functools.partial(jax.jit, static_argnames=("config",))
def _forward(params, config, tokens, intervention, rng):
  positions = jnp.broadcast_to(jnp.arange(tokens.shape[1]), tokens.shape)
  return _transformed(config).apply(params, rng, tokens, positions, intervention, None, rng is not None)


def forward(params: hk.Params, config: ModelConfig, tokens, intervention: Optional[Intervention] = None,
            *, rng: Optional[jax.Array] = None) -> Outputs:
  """Run the model on every position of a batch of prompts.

  Args:
    params: the model's parameters (`init_params`, or a loaded checkpoint).
    config: the ModelConfig they belong to.
    tokens: int32 [B, T], T <= config.max_seq_len (checked before tracing).
    intervention: what to replace, and with what (`hydra_jax.model.interventions`); None
      runs the plain model (bit-identical to an all-zero intervention).
    rng: a PRNG key turns dropout on (training mode); None for evaluation.

  Returns:
    Outputs: logits [B, T, V] and every layer's activations (see `Outputs`).
  """
  check_tokens(config, tokens)
  return _forward(params, config, jnp.asarray(tokens, jnp.int32), intervention, rng)


def decode(params: hk.Params, config: ModelConfig, tokens, positions, cache: KVCache,
           intervention: Optional[Intervention] = None) -> Outputs:
  """Run one position per prompt against a clean key/value cache (traceable: call it under jit).

  Args:
    params, config: as for `forward`.
    tokens: int32 [B, 1], the token at each prompt's decoded position.
    positions: int32 [B], where each sits; only cached positions < positions[b] are
      attended (on a windowed layer, only those within its window: the keys
      (t - window, t] of the full pass), so the cache may hold the prompt's own clean run
      including that position.
    cache: KVCache, keys and values [B, L, Tc, G, E] of a run of the same prompts.
    intervention: as for `forward`, with a T axis of 1.

  Returns:
    Outputs with T = 1 (keys and values: those of the decoded position).
  """
  positions = jnp.asarray(positions, jnp.int32)[:, None]                 # [B, 1]
  return _transformed(config).apply(params, None, jnp.asarray(tokens, jnp.int32), positions,
                                    intervention, cache, False)


def count_params(params) -> int:
  return int(sum(np.prod(p.shape) for p in jax.tree_util.tree_leaves(params)))


# The final norm and unembedding as a linear map (sigma held fixed) -----------------------


def embeddings(params: hk.Params) -> jax.Array:
  """The input embedding table [V, D] (before embed_scale)."""
  return params["embed"]["embeddings"]


def unembedding(params: hk.Params, config: ModelConfig) -> jax.Array:
  """W_U [D, V] (the transposed embedding when tied)."""
  return embeddings(params).T if config.tie_embeddings else params["unembed"]["w"]


def unembed(params: hk.Params, config: ModelConfig, x: jax.Array, sigma: jax.Array) -> jax.Array:
  """u(x) = (centre(x) / sigma) * g @ W_U for residual components x [..., D], sigma [...]: [..., V].

  The final norm with its scale held at sigma is linear in x (LayerNorm's mean removal is
  linear too), so the logits are the sum of u(c) over the components c of z^L, plus
  `final_bias_logits` for LayerNorm's bias. Float32; not centred over the vocabulary.
  """
  gain_only = {"scale": params["final_norm"]["scale"]}   # the bias is final_bias_logits' term
  normed, _ = blocks.norm(gain_only, config, x.astype(jnp.float32), sigma)   # [..., D]
  return normed @ unembedding(params, config).astype(jnp.float32)


def logit_direction(params: hk.Params, config: ModelConfig, token: jax.Array):
  """(w_i [..., D], bias term [...]) of the centred logit of `token` [...]: see blocks.logit_direction."""
  return blocks.logit_direction(params["final_norm"], unembedding(params, config), config, token)


def final_bias_logits(params: hk.Params, config: ModelConfig) -> jax.Array:
  """bias @ W_U [V]: the constant logit term of a LayerNorm's bias (zeros for RMSNorm)."""
  bias = params["final_norm"].get("bias")
  if bias is None:
    return jnp.zeros((config.vocab_size,), jnp.float32)
  return bias.astype(jnp.float32) @ unembedding(params, config).astype(jnp.float32)


def centre(logits: jax.Array) -> jax.Array:
  """Subtract the mean over the vocabulary (last axis): docs/method.md's centred logits."""
  return logits - logits.mean(-1, keepdims=True)
