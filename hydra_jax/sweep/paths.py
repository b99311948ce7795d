"""Ablation paths: the clean run, and the ways to compute every ablated run of a batch.

A sweep ablates every component c (2l = attention of layer l, 2l+1 its MLP) at each
prompt's final position, once per source k. Each ablated run is reduced on device to a
`Changes` record - how the direct effect of every component and of the final residual
moved, and the run's final-norm scale - so no per-ablation [B, V] logits ever exist.

The protocol (`AblationPath`): a path takes the `Setup` of a batch (parameters, config,
tokens, the clean run, the frozen final scale, memory chunks; built once by the engine)
and the replacement values [B, K, C, D], and returns (Changes [B, K, C, ...], Baseline [B]).
Three paths implement it, in `engine.PATHS` (the path name -> its function):

  full         re-run the whole prompt with the intervention (`forward`); any position
               mask works here
  incremental  re-run only the final position with `decode` against the clean run's
               keys/values: T times fewer FLOPs, same numbers
  layer_skip   the incremental path running only the layers an ablation changes
               (`hydra_jax.sweep.layer_skip`)

full and incremental vmap over the ablations with the intervention's *weights* swept and
its *values* (the source activations) shared (`Intervention.weight_axes()`), and over
sources with the values swept. Both add a null ablation (all weights zero) to the same
batch: the baseline, computed by the very same program. Changes are taken on the
activations *before* projecting onto the token direction, so a component the ablation
cannot reach (bit-equal activations) shows exactly zero change.

Shapes: B prompts, T positions, K sources, A = C + 1 ablations (the last is null), L layers,
C = 2L components, D d_model, G kv heads, E head size.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Optional, Protocol

import jax
import jax.numpy as jnp
import numpy as np

from hydra_jax.sweep import effects
from hydra_jax.model import transformer as model
from hydra_jax.model.config import ModelConfig
from hydra_jax.model.interventions import Intervention, Site


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class CleanRun:
  """The clean run seen from each prompt's final position (plus the cache for decoding)."""
  token: jax.Array          # [B] int32 scored token (clean argmax)
  direction: jax.Array      # [B, D] w_i: DE(x) = x . w_i / sigma
  bias_logit: jax.Array     # [B] LayerNorm bias term of the centred logit
  sigma: jax.Array          # [B] final norm scale
  components: jax.Array     # [B, C, D] a^l, m^l in component order
  resid_pre: jax.Array      # [B, L, D] z^{l-1}, the residual entering each layer
  resid_final: jax.Array    # [B, D] z^L
  direct_effect: jax.Array  # [B, C]
  resid_de: jax.Array       # [B] DE of z^L (clean centred logit minus the bias term)
  embed_de: jax.Array       # [B] DE of z^0
  final_token: jax.Array    # [B] int32 input token at the final position
  last: jax.Array           # [B] int32 final position (length - 1)
  keys: jax.Array           # [B, L, T, G, E] the clean key/value cache
  values: jax.Array


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class Changes:
  """An ablated run against its baseline run, both read with the clean final sigma."""
  de_change: jax.Array      # [..., C] DE(c2, ablated) - DE(c2, baseline) for every component c2
  resid_change: jax.Array   # [...]    DE(z^L, ablated) - DE(z^L, baseline)
  sigma: jax.Array          # [...]    the ablated run's own final norm scale


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class Baseline:
  """The run the changes are taken against (a null ablation, or the clean run itself)."""
  direct_effect: jax.Array  # [B, C]
  resid_de: jax.Array       # [B]
  sigma: jax.Array          # [B]


def clean_run(params, config: ModelConfig, tokens: jax.Array, lengths: jax.Array) -> CleanRun:
  """Run the clean model on tokens [B, T] and gather each prompt's final position."""
  out = model.forward(params, config, tokens)
  rows, last = jnp.arange(tokens.shape[0]), lengths - 1                 # [B]
  attn, mlp = out.attn_out[rows, :, last], out.mlp_out[rows, :, last]  # [B, L, D]
  embed, resid = out.embed[rows, last], out.resid_final[rows, last]    # [B, D]
  sigma = out.final_scale[rows, last]                                  # [B]
  final_logits = model.unembed(params, config, resid, sigma) + model.final_bias_logits(params, config)
  token = effects.scored_token(final_logits)                           # [B] (one [B, V], clean only)
  direction, bias_logit = effects.logit_direction(params, config, token)
  components = effects.interleave_components(attn, mlp)                # [B, C, D]

  def add_layer(z, layer):                                             # same order as the model
    a, m = layer
    return z + a + m, z
  _, resid_pre = jax.lax.scan(add_layer, embed, (jnp.moveaxis(attn, 1, 0), jnp.moveaxis(mlp, 1, 0)))
  de = lambda x: effects.direct_effect(x, sigma, direction)
  return CleanRun(
      token=token, direction=direction, bias_logit=bias_logit, sigma=sigma, components=components,
      resid_pre=jnp.moveaxis(resid_pre, 0, 1), resid_final=resid,
      direct_effect=de(jnp.moveaxis(components, 1, 0)).T, resid_de=de(resid), embed_de=de(embed),
      final_token=tokens[rows, last], last=last, keys=out.keys, values=out.values)


@dataclasses.dataclass(frozen=True)
class Setup:
  """What every path of one batch shares, built once (inside the compiled program)."""
  params: dict
  config: ModelConfig
  tokens: jax.Array                 # [B, T]
  clean: CleanRun
  freeze_final_scale: bool
  source_chunk: Optional[int] = None
  lane_chunk: Optional[int] = None

  def de(self, x: jax.Array) -> jax.Array:
    """DE of residual-stream vectors x [..., B, D] read with the clean sigma: [..., B]."""
    return effects.direct_effect(x, self.clean.sigma, self.clean.direction)

  @property
  def frozen(self) -> Optional[jax.Array]:
    """The frozen final scale [B, 1] (broadcast over positions), or None."""
    return self.clean.sigma[:, None] if self.freeze_final_scale else None


class AblationPath(Protocol):
  def __call__(self, setup: Setup, values: jax.Array) -> tuple[Changes, Baseline]:
    """values [B, K, C, D] replace each component in turn -> (Changes [B, K, C, ...], Baseline)."""


def changes(setup: Setup, components, resid, sigma, base_components, base_resid) -> Changes:
  """Project activation differences on the token direction: components [..., B, C, D]."""
  return Changes(de_change=jnp.moveaxis(setup.de(jnp.moveaxis(components - base_components, -2, 0)), 0, -1),
                 resid_change=setup.de(resid - base_resid), sigma=sigma)


def ablation_weights(config: ModelConfig) -> np.ndarray:
  """[C + 1, L, 2] one-hot: ablation c hits layer c // 2, site c % 2 (attn, mlp); row C is null."""
  C = config.num_components
  weights = np.zeros((C + 1, config.num_layers, 2), np.float32)
  weights[np.arange(C), np.arange(C) // 2, np.arange(C) % 2] = 1.0
  return weights


def map_sources(per_source: Callable, values: jax.Array, source_chunk: Optional[int]):
  """Apply per_source to values [B, K, C, D] source by source (vmapped in chunks): leaves [K, ...]."""
  by_source = jnp.moveaxis(values, 1, 0)                               # [K, B, C, D]
  if source_chunk is None or source_chunk >= by_source.shape[0]:
    return jax.vmap(per_source)(by_source)
  return jax.lax.map(per_source, by_source, batch_size=source_chunk)


def _intervention(weights, values_k, config: ModelConfig, frozen) -> Intervention:
  """Ablation weights [A, ..., L, T, 2] (swept) of source values values_k [B, C, D] (shared)."""
  B, _, D = values_k.shape
  per_layer = values_k.reshape(B, config.num_layers, 2, D)[:, :, None]  # [B, L, 1 (T), 2, D]
  return Intervention(attn_out=Site(weights[..., 0], per_layer[..., 0, :]),
                      mlp_out=Site(weights[..., 1], per_layer[..., 1, :]), final_scale=frozen)


def _against_null(setup: Setup, attn, mlp, resid, sigma) -> tuple[Changes, Baseline]:
  """Runs [A, B, ...] (the last is the null ablation) -> (Changes [C, B], Baseline [B])."""
  components = effects.interleave_components(attn, mlp)                # [A, B, C, D]
  ablated = changes(setup, components[:-1], resid[:-1], sigma[:-1], components[-1], resid[-1])
  baseline = Baseline(direct_effect=setup.de(jnp.moveaxis(components[-1], 1, 0)).T,
                      resid_de=setup.de(resid[-1]), sigma=sigma[-1])
  return ablated, baseline


def _vmapped_runs(setup: Setup, weights, values, run_one) -> tuple[Changes, Baseline]:
  """Every ablation (weights [A, ...]) of every source: run_one(intervention) -> final-position
  (attn [B, L, D], mlp [B, L, D], resid [B, D], sigma [B]); (Changes [B, K, C, ...], Baseline)."""
  def per_source(values_k):                                            # [B, C, D]
    intervention = _intervention(weights, values_k, setup.config, setup.frozen)
    runs = jax.vmap(run_one, in_axes=(intervention.weight_axes(),))(intervention)  # [A, B, ...]
    return _against_null(setup, *runs)
  ablated, baseline = map_sources(per_source, values, setup.source_chunk)  # leaves [K, ...]
  return (jax.tree_util.tree_map(lambda x: jnp.moveaxis(x, 2, 0), ablated),  # [B, K, C, ...]
          jax.tree_util.tree_map(lambda x: x[0], baseline))


def full_runs(setup: Setup, values: jax.Array, position_mask: Optional[jax.Array] = None):
  """Re-run every prompt with each ablation: values [B, K, C, D] replace components at
  position_mask [B, T] (default: each prompt's final position)."""
  clean, (B, T) = setup.clean, setup.tokens.shape
  if position_mask is None:
    position_mask = (jnp.arange(T)[None, :] == clean.last[:, None]).astype(jnp.float32)  # [B, T]
  onehot = jnp.asarray(ablation_weights(setup.config))                # [A, L, 2]
  weights = onehot[:, None, :, None, :] * position_mask[None, :, None, :, None]  # [A, B, L, T, 2]
  rows = jnp.arange(B)

  def run(iv):                                                         # one ablation, final position
    out = model.forward(setup.params, setup.config, setup.tokens, iv)
    return (out.attn_out[rows, :, clean.last], out.mlp_out[rows, :, clean.last],
            out.resid_final[rows, clean.last], out.final_scale[rows, clean.last])
  return _vmapped_runs(setup, weights, values, run)


def incremental_runs(setup: Setup, values: jax.Array):
  """Re-run only each prompt's final position against the clean cache."""
  clean = setup.clean
  weights = jnp.asarray(ablation_weights(setup.config))[:, :, None, :]  # [A, L, 1 (T), 2]
  cache = model.KVCache(clean.keys, clean.values)

  def run(iv):                                                         # one ablation, final position
    out = model.decode(setup.params, setup.config, clean.final_token[:, None], clean.last, cache, iv)
    return out.attn_out[:, :, 0], out.mlp_out[:, :, 0], out.resid_final[:, 0], out.final_scale[:, 0]
  return _vmapped_runs(setup, weights, values, run)
