"""The incremental sweep that skips unchanged layers: an ablation runs only the layers it changes.

Ablating a component at the final position leaves everything below it exactly as in the
clean run, so an ablated run can start from the clean residual stream:

  attention of layer l   start from z^{l-1}, replace a^l, run layers l..L-1      (L - l layers)
  MLP of layer l         start from z^l with m^l replaced, run layers l+1..L-1   (L - l - 1 layers)

These are about L/2 layers per ablation instead of L. To keep one static shape (and one
scan, so compile time does not grow with depth) the runs are packed into L *lanes* of
exactly L layer-steps: lane p runs the attention ablation of layer p (L - p steps), then
the MLP ablation of layer L-1-p (p steps). Every step of the scan runs one layer per lane,
each lane at its own depth: the layer's parameters and clean keys/values are gathered per
lane, and `model.decode` runs a one-layer view of the model (`one_layer_view`) whose
embedding is zero, so a resid_pre replacement with weight 1 sets the lane's residual
stream exactly. Step 0 is the exception: every lane starts an attention ablation there,
and the ablated attention's output is its replacement, so only the MLPs of that step
run (`model.mlp_sublayers`, each lane on its own layer's weights, nothing gathered).
The MLP ablation of the last layer runs no layer at all; its final norm scale is
computed here (`final_norm_scale`). Responses upstream of an ablation are not
computed: they are zero by construction.

Shapes: S = L steps, P = L lanes, K sources, B prompts, C = 2L components, D d_model,
T positions, G kv heads, Kh head size.
"""

from __future__ import annotations

import dataclasses
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np

from hydra_jax.sweep import paths as ablated_runs
from hydra_jax.sweep import effects
from hydra_jax.model import transformer as model
from hydra_jax.model.config import ModelConfig
from hydra_jax.model.interventions import Intervention, Site


@dataclasses.dataclass(frozen=True)
class LanePlan:
  """Static schedule: lane p runs attention unit p (layers p..L-1), then MLP unit L-1-p (L-p..L-1)."""
  num_layers: int

  @property
  def layer(self) -> np.ndarray:
    """int32 [S, P]: the layer lane p runs at step s."""
    s, p = np.meshgrid(np.arange(self.num_layers), np.arange(self.num_layers), indexing="ij")
    return np.where(s < self.num_layers - p, p + s, s).astype(np.int32)

  @property
  def attention_start(self) -> np.ndarray:
    """bool [S, P]: the lane sets z^{l-1} and replaces a^l (l = its layer) at step s."""
    return np.arange(self.num_layers)[:, None] == np.zeros((1, self.num_layers), int)

  @property
  def mlp_start(self) -> np.ndarray:
    """bool [S, P]: the lane sets z^l of the MLP ablation of layer l = L-1-p at step s = L-p."""
    s, p = np.meshgrid(np.arange(self.num_layers), np.arange(self.num_layers), indexing="ij")
    return (s == self.num_layers - p) & (p > 0)

  def where(self, ablated: int, layer: int) -> Optional[tuple[int, int]]:
    """(step, lane) at which the run ablating component `ablated` runs `layer`; None if it does not."""
    L, (l, site) = self.num_layers, divmod(ablated, 2)
    if site == 0:
      return (layer - l, l) if layer >= l else None
    return (layer, L - 1 - l) if layer > l else None


def lane_plan(num_layers: int) -> LanePlan:
  return LanePlan(num_layers)


def one_layer_view(params, config: ModelConfig):
  """(config, params builder, layer params) of a one-layer model with a zero embedding.

  Feeding it a layer's parameters [1, ...] and replacing resid_pre (weight 1) by a residual
  x gives exactly that layer's block applied to x (0 + 1 * (x - 0) = x). Its vocabulary has
  one token, so its logits cost nothing.
  """
  view = dataclasses.replace(config, num_layers=1, vocab_size=1, tie_embeddings=False)
  dtype, D = jnp.dtype(config.dtype), config.d_model
  embed = {"embeddings": jnp.zeros((1, D), dtype)}
  if "positions" in params["embed"]:
    embed["positions"] = jnp.zeros_like(params["embed"]["positions"])
  fixed = {"embed": embed, "final_norm": params["final_norm"], "unembed": {"w": jnp.zeros((D, 1), dtype)}}
  layers = {name: value for name, value in params.items() if name.startswith("layers/")}
  return view, lambda layer_params: {**fixed, **layer_params}, layers


def final_norm_scale(config: ModelConfig, z: jax.Array) -> jax.Array:
  """sigma of the final norm for residuals z [..., D] (as hydra_jax.layers.Norm computes it)."""
  z = z.astype(jnp.float32)
  if effects.CENTRES_FEATURES[config.norm]:
    z = z - z.mean(-1, keepdims=True)
  return jnp.sqrt(jnp.mean(z * z, -1) + config.norm_eps)


def skip_runs(params, config: ModelConfig, tokens, clean: ablated_runs.CleanRun, values, *,
              freeze_final_scale: bool, source_chunk: Optional[int] = None,
              lane_chunk: Optional[int] = None):
  """Same contract as ablated_runs.incremental_runs; the baseline is the clean run itself.

  Each step copies the weights of the layer each lane runs (all L lanes: one copy of the
  layer stack); lane_chunk lanes at a time bounds that copy, for models that fill the device.
  """
  del tokens  # the cache holds everything before the final position
  L, B = config.num_layers, clean.last.shape[0]
  plan = lane_plan(L)
  view, with_layer, layers = one_layer_view(params, config)
  frozen = clean.sigma[:, None] if freeze_final_scale else None        # [B, 1]
  clean_attn, clean_mlp = (clean.components.reshape(B, L, 2, -1)[:, :, j] for j in (0, 1))  # [B, L, D]
  de = lambda x: effects.direct_effect(x, clean.sigma, clean.direction)  # [..., B, D] -> [..., B]
  def own_sigma(z):                      # final sigma of residuals z [..., B, D]: [..., B]
    if freeze_final_scale:
      return jnp.broadcast_to(clean.sigma, z.shape[:-1])
    return final_norm_scale(config, z)
  by_lane = lambda x, layer: jnp.moveaxis(x[:, layer], 1, 0)           # [B, L, ...] -> [P, B, ...]

  def run_lane(layer, resid):
    """Layer `layer` (a scalar) for one lane from its residual stream resid [B, D]."""
    layer_params = jax.tree_util.tree_map(lambda x: x[layer][None], layers)  # [1, ...]: this layer
    ones = jnp.ones((1, 1), jnp.float32)                               # [L=1, T=1]
    intervention = Intervention(resid_pre=Site(ones, resid[:, None, None]), final_scale=frozen)
    cache = model.KVCache(clean.keys[:, layer, None], clean.values[:, layer, None])  # [B, 1, T, G, Kh]
    out = model.decode(with_layer(layer_params), view, jnp.zeros((B, 1), jnp.int32), clean.last,
                       cache, intervention)
    return out.attn_out[:, 0, 0], out.mlp_out[:, 0, 0], out.resid_final[:, 0], out.final_scale[:, 0]

  def over_lanes(*lanes):                # lane_chunk lanes at a time: their layers' weights are copied
    if lane_chunk is None or lane_chunk >= L:
      return jax.vmap(run_lane)(*lanes)
    return jax.lax.map(lambda args: run_lane(*args), lanes, batch_size=lane_chunk)

  def per_source(values_k):                                             # [B, C, D]
    source_attn, source_mlp = (values_k.reshape(B, L, 2, -1)[:, :, j] for j in (0, 1))  # [B, L, D]
    # z^l with m^l replaced, in the model's order of additions: [B, L, D]
    mlp_ablated = (clean.resid_pre + clean_attn) + source_mlp
    mlp_inject = by_lane(mlp_ablated, np.arange(L)[::-1])              # lane p: layer L-1-p

    # Step 0: lane p ablates the attention of layer p, whose own attention need not run:
    # its output is the replacement, so only the layer's MLP runs (every layer at once).
    x, a = jnp.moveaxis(clean.resid_pre, 1, 0), jnp.moveaxis(source_attn, 1, 0)  # [P, B, D]
    m = model.mlp_sublayers(params, config, x, a)
    first = x + a + m                                                   # the model's order
    first_changes = jnp.stack([de(a - jnp.moveaxis(clean_attn, 1, 0)),
                               de(m - jnp.moveaxis(clean_mlp, 1, 0))], -1)  # [P, B, 2]

    def step(resid, plan_step):                                         # resid [P, B, D]
      layer, mlp_start = plan_step                                      # [P] each
      resid = jnp.where(mlp_start[:, None, None], mlp_inject, resid)
      a, m, resid, sigma = over_lanes(layer, resid)                    # [P, B, (D)]
      changes = jnp.stack([de(a - by_lane(clean_attn, layer)), de(m - by_lane(clean_mlp, layer))], -1)
      return resid, (changes, de(resid - clean.resid_final), sigma)    # [P, B, J], [P, B], [P, B]

    plan_steps = tuple(jnp.asarray(x[1:]) for x in (plan.layer, plan.mlp_start))
    _, later = jax.lax.scan(step, first, plan_steps)                    # [S - 1, P, B, ...]
    changes, resid_change, sigma = (jnp.concatenate([y[None], ys]) for y, ys in zip(
        (first_changes, de(first - clean.resid_final), own_sigma(first)), later))  # [S, P, B, ...]
    last_mlp = mlp_ablated[:, -1]                                       # the MLP of layer L-1: no layer runs
    direct_mlp = de(jnp.moveaxis(source_mlp - clean_mlp, 1, 0))        # [L, B]
    return (changes, resid_change, sigma, direct_mlp, de(last_mlp - clean.resid_final),
            own_sigma(last_mlp))

  outputs = ablated_runs.map_sources(per_source, values, source_chunk)  # leaves [K, ...]
  return _gather(plan, config, clean, *outputs)


def _gather(plan: LanePlan, config: ModelConfig, clean, changes, resid_change, sigma, direct_mlp,
            last_resid_change, last_sigma):
  """Place lane results (leaves [K, S, P, B, ...]) as (Changes [B, K, C, ...], the clean run)."""
  L, C = config.num_layers, config.num_components
  computed = np.eye(C, dtype=bool) | effects.downstream_mask(config)  # [C (ablated), C (responding)]
  steps, lanes = np.zeros((C, C), int), np.zeros((C, C), int)
  for ablated, responding in zip(*np.nonzero(computed)):
    steps[ablated, responding], lanes[ablated, responding] = plan.where(ablated, responding // 2) or (0, 0)
  sites = np.broadcast_to(np.arange(C) % 2, (C, C))
  grid = jnp.transpose(changes[:, steps, lanes, :, sites], (3, 2, 0, 1))  # [C, C, K, B] -> [B, K, C, C]
  mlp = np.arange(1, C, 2)
  grid = grid.at[:, :, mlp, mlp].set(jnp.transpose(direct_mlp, (2, 0, 1)))  # m^l's own change: no lane
  final_steps, final_lanes = map(np.array, zip(*[plan.where(c, L - 1) or (0, 0) for c in range(C)]))
  def at_end(x, last):                   # [K, S, P, B] -> [B, K, C]; the last MLP ran no layer
    return jnp.transpose(x[:, final_steps, final_lanes], (2, 0, 1)).at[:, :, C - 1].set(last.T)
  ablated = ablated_runs.Changes(de_change=jnp.where(computed, grid, 0.0),
                                 resid_change=at_end(resid_change, last_resid_change),
                                 sigma=at_end(sigma, last_sigma))                # [B, K, C, ...]
  baseline = ablated_runs.Baseline(direct_effect=clean.direct_effect, resid_de=clean.resid_de,
                                   sigma=clean.sigma)
  return ablated, baseline
