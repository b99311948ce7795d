"""The incremental sweep that skips unchanged layers: each ablation runs only layers l..L-1.

Ablating layer l at the final position leaves layers 0..l-1 exactly as in the clean
run, so an ablated run can start from the clean residual z^{l-1} and run L - l layers
instead of L: about half the work of a full-depth sweep. To keep one static shape (and
one scan, so compile time does not grow with depth) ablations are packed into *lanes*
of exactly L layer-steps: layer l is paired with layer L - l (L - l + l = L steps), so

    lane 0: ablate 0 (layers 0..L-1)        lane 1: ablate 1 (1..L-1), then L-1 (L-1)
    lane 2: ablate 2 (2..L-1), then L-2 ...  and for even L a lone lane for L/2.

About L/2 + 1 lanes instead of L. Every step of the scan runs one layer per lane, each
lane at its own depth: the layer's parameters and clean keys/values are gathered per
lane, and `model.decode` runs a one-layer view of the model (`one_layer_view`) whose
embedding is zero, so a resid_pre replacement with weight 1 injects the lane's residual
stream exactly. Both sites of the ablated layer (attention, MLP) and all K sources share
a lane. Responses upstream of the ablation are not computed: they are zero by construction.

Shapes: S = L steps, P lanes, J = 2 sites (attention, MLP), K sources, B prompts,
C = 2L components, D d_model, T positions, G kv heads, Kh head size.
"""

from __future__ import annotations

import dataclasses
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np

from hydra_jax import ablated_runs, effects, model
from hydra_jax.config import ModelConfig
from hydra_jax.interventions import Intervention, Site


@dataclasses.dataclass(frozen=True)
class LanePlan:
  """Static schedule: which layer each lane runs at each step, and where results land."""
  layer: np.ndarray      # int32 [S, P]  layer run by lane p at step s
  start: np.ndarray      # bool  [S, P]  lane p begins an ablation at step s (reset, then ablate)
  step_of: np.ndarray    # int32 [L, L]  step at which ablated layer l runs layer r (r >= l)
  lane_of: np.ndarray    # int32 [L]     lane holding ablated layer l


def lane_plan(num_layers: int) -> LanePlan:
  L = num_layers
  lanes = [[0]] + [[l, L - l] for l in range(1, (L + 1) // 2)] + ([[L // 2]] if L % 2 == 0 and L > 1 else [])
  layer = np.zeros((L, len(lanes)), np.int32)
  start = np.zeros((L, len(lanes)), bool)
  step_of = np.zeros((L, L), np.int32)
  lane_of = np.zeros(L, np.int32)
  for p, ablated_layers in enumerate(lanes):
    step = 0
    for l in ablated_layers:
      lane_of[l] = p
      for r in range(l, L):
        layer[step, p], start[step, p], step_of[l, r] = r, r == l, step
        step += 1
  return LanePlan(layer=layer, start=start, step_of=step_of, lane_of=lane_of)


def one_layer_view(params, config: ModelConfig):
  """(config, params builder) of a one-layer model with a zero embedding and a 1-token vocabulary.

  Feeding it a layer's parameters [1, ...] and replacing resid_pre (weight 1) by a residual
  x gives exactly that layer's block applied to x (0 + 1 * (x - 0) = x).
  """
  view = dataclasses.replace(config, num_layers=1, vocab_size=1, tie_embeddings=False)
  dtype, D = jnp.dtype(config.dtype), config.d_model
  embed = {"embeddings": jnp.zeros((1, D), dtype)}
  if "positions" in params["embed"]:
    embed["positions"] = jnp.zeros_like(params["embed"]["positions"])
  fixed = {"embed": embed, "final_norm": params["final_norm"], "unembed": {"w": jnp.zeros((D, 1), dtype)}}
  layers = {name: value for name, value in params.items() if name.startswith("layers/")}
  return view, lambda layer_params: {**fixed, **layer_params}, layers


def skip_runs(params, config: ModelConfig, tokens, clean: ablated_runs.CleanRun, values, *,
              freeze_final_scale: bool, source_chunk: Optional[int] = None):
  """Same contract as ablated_runs.incremental_runs; the baseline is the clean run itself."""
  del tokens  # the cache holds everything before the final position
  L, C, B = config.num_layers, config.num_components, clean.last.shape[0]
  plan = lane_plan(L)
  view, with_layer, layers = one_layer_view(params, config)
  site = jnp.arange(2)                                                  # [J]
  frozen = clean.sigma[:, None] if freeze_final_scale else None        # [B, 1]

  def run_block(layer_params, keys, vals, resid, attn_weight, mlp_weight, attn_value, mlp_value):
    """One layer for one (lane, site): resid, values [B, D]; weights scalars."""
    ones = jnp.ones((1, 1), jnp.float32)                               # [L=1, T=1]
    intervention = Intervention(resid_pre=Site(ones, resid[:, None, None]),
                                attn_out=Site(attn_weight * ones, attn_value[:, None, None]),
                                mlp_out=Site(mlp_weight * ones, mlp_value[:, None, None]),
                                final_scale=frozen)
    out = model.decode(with_layer(layer_params), view, jnp.zeros((B, 1), jnp.int32), clean.last,
                       model.KVCache(keys, vals), intervention)
    return out.attn_out[:, 0, 0], out.mlp_out[:, 0, 0], out.resid_final[:, 0], out.final_scale[:, 0]

  over_sites = jax.vmap(run_block, (None, None, None, 0, 0, 0, None, None))
  over_lanes = jax.vmap(over_sites, (0, 0, 0, 0, 0, 0, 0, 0))

  clean_components = clean.components.reshape(B, L, 2, -1)              # [B, L, J, D]

  def per_source(values_k):                                             # [B, C, D]
    by_layer = values_k.reshape(B, L, 2, values_k.shape[-1])            # [B, L, J, D]

    def step(resid, plan_step):                                         # resid [P, J, B, D]
      layer, start = plan_step                                          # [P], [P]
      layer_params = jax.tree_util.tree_map(lambda x: x[layer][:, None], layers)  # [P, 1, ...]
      keys = jnp.moveaxis(clean.keys[:, layer], 1, 0)[:, :, None]       # [P, B, 1, T, G, Kh]
      vals = jnp.moveaxis(clean.values[:, layer], 1, 0)[:, :, None]
      clean_resid = jnp.moveaxis(clean.resid_pre[:, layer], 1, 0)      # [P, B, D]
      resid = jnp.where(start[:, None, None, None], clean_resid[:, None], resid)
      ablate = (start[:, None] & (site[None, :] == site[:, None, None])).astype(jnp.float32)  # [J, P, J]
      source = jnp.moveaxis(by_layer[:, layer], 1, 0)                   # [P, B, J, D]
      a, m, resid, sigma = over_lanes(layer_params, keys, vals, resid, ablate[0], ablate[1],
                                      source[..., 0, :], source[..., 1, :])  # [P, J, B, (D)]
      clean_out = jnp.moveaxis(clean_components[:, layer], 1, 0)[:, None]  # [P, 1, B, J, D]
      de = lambda x: effects.direct_effect(x, clean.sigma, clean.direction)  # [P, J, B, D] -> [P, J, B]
      changes = jnp.stack([de(a - clean_out[..., 0, :]), de(m - clean_out[..., 1, :])], -1)
      return resid, (changes, de(resid - clean.resid_final), sigma)

    init = jnp.zeros((plan.layer.shape[1], 2, B, values_k.shape[-1]), clean.resid_pre.dtype)
    _, outputs = jax.lax.scan(step, init, (jnp.asarray(plan.layer), jnp.asarray(plan.start)))
    return outputs                                                      # [S, P, J, B, (J)]

  de, resid_de, sigma = ablated_runs.map_sources(per_source, values, source_chunk)  # [K, S, ...]
  return _gather(plan, config, clean, de, resid_de, sigma)


def _gather(plan: LanePlan, config: ModelConfig, clean, de, resid_de, sigma):
  """Place lane results [K, S, P, J, B, (J)] as (Changes [B, K, C, ...], the clean run as baseline)."""
  L, C = config.num_layers, config.num_components
  layer, site = np.arange(C) // 2, np.arange(C) % 2                    # of a component
  computed = np.eye(C, dtype=bool) | effects.downstream_mask(config)   # [C (ablated), C (responding)]
  steps = plan.step_of[layer[:, None], np.maximum(layer[None, :], layer[:, None])]  # [C, C]
  lanes = plan.lane_of[layer]                                          # [C]
  grid = de[:, steps, lanes[:, None], site[:, None], :, site[None, :]]  # [C, C, K, B]
  de_change = jnp.where(computed, jnp.transpose(grid, (3, 2, 0, 1)), 0.0)  # [B, K, C, C]
  final = plan.step_of[layer, L - 1]
  at_end = lambda x: jnp.transpose(x[:, final, lanes, site], (2, 0, 1))  # [K, C, B] -> [B, K, C]
  ablated = ablated_runs.Changes(de_change=de_change, resid_change=at_end(resid_de), sigma=at_end(sigma))
  baseline = ablated_runs.Baseline(direct_effect=clean.direct_effect, resid_de=clean.resid_de,
                                   sigma=clean.sigma)
  return ablated, baseline
