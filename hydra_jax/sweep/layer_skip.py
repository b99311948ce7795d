"""The incremental sweep that skips unchanged layers: an ablation runs only the layers it changes.

Ablating a component at the final position leaves everything below it exactly as in the
clean run, so an ablated run can start from the clean residual stream:

  attention of layer l   start from z^{l-1}, replace a^l, run layers l..L-1      (L - l layers)
  MLP of layer l         start from z^l with m^l replaced, run layers l+1..L-1   (L - l - 1 layers)

These are about L/2 layers per ablation instead of L. To keep one static shape (and one
scan, so compile time does not grow with depth) the runs are packed into L *lanes* of
exactly L layer-steps: lane p runs the attention ablation of layer p (L - p steps), then
the MLP ablation of layer L-1-p (p steps). Every step of the scan runs one layer per lane,
each lane at its own depth: the layer's parameters, clean keys/values and attention pattern
(window, rotary base: `blocks.layer_kind`) are gathered per lane, and `blocks.block` runs
that layer on the lane's residual stream at the final position against the clean cache
(within the layer's window, as in the full pass). Step 0 is the exception: every lane starts an
attention ablation there, and the ablated attention's output is its replacement, so only
the MLPs of that step run (`blocks.mlp_sublayer`, each lane on its own layer's weights,
nothing gathered). The MLP ablation of the last layer runs no layer at all; its final
norm scale is `blocks.norm_sigma` of its residual. Responses upstream of an ablation are
not computed: they are zero by construction.

Shapes: S = L steps, P = L lanes, K sources, B prompts, C = 2L components, D d_model,
T positions, G kv heads, E head size.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np

from hydra_jax.model import blocks
from hydra_jax.model.config import ModelConfig
from hydra_jax.sweep import effects, paths


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


def skip_runs(setup: paths.Setup, values: jax.Array):
  """The AblationPath that runs only changed layers; the baseline is the clean run itself.

  Each step copies the weights of the layer each lane runs (all L lanes: one copy of the
  layer stack); setup.lane_chunk lanes at a time bounds that copy, for models that fill
  the device.
  """
  plan = lane_plan(setup.config.num_layers)
  per_source = functools.partial(_per_source, setup, plan, _lane_runner(setup))
  outputs = paths.map_sources(per_source, values, setup.source_chunk)  # leaves [K, ...]
  return _gather(plan, setup.config, setup.clean, *outputs)


def _final_sigma(setup: paths.Setup, z: jax.Array) -> jax.Array:
  """The final norm's sigma of residuals z [..., B, D] (the clean one when frozen): [..., B]."""
  if setup.freeze_final_scale:
    return jnp.broadcast_to(setup.clean.sigma, z.shape[:-1])
  return blocks.norm_sigma(setup.config, z)


def _lane_runner(setup: paths.Setup):
  """run(layers [P], resid [P, B, D]) -> (a, m, z^l [P, B, D], sigma [P, B]): each lane's layer
  on its residual stream at the final position, against the clean cache of that layer."""
  config, clean, lane_chunk = setup.config, setup.clean, setup.lane_chunk
  positions = clean.last[:, None]                                      # [B, 1]
  k_pos, mask = blocks.causal_context(positions, clean.keys.shape[2])

  def run_lane(layer, resid):                                          # a scalar, [B, D]
    cache = (clean.keys[:, layer], clean.values[:, layer])            # [B, T, G, E]
    kind = blocks.layer_kind(config, layer)                            # window, rotary base
    z, (a, m, *_) = blocks.block(blocks.layer_params(setup.params, layer), config, resid[:, None],
                                 positions, cache, k_pos, mask, kind=kind)
    return a[:, 0], m[:, 0], z[:, 0], _final_sigma(setup, z[:, 0])

  def over_lanes(*lanes):                # lane_chunk lanes at a time: their layers' weights are copied
    if lane_chunk is None or lane_chunk >= config.num_layers:
      return jax.vmap(run_lane)(*lanes)
    return jax.lax.map(lambda args: run_lane(*args), lanes, batch_size=lane_chunk)
  return over_lanes


def _per_source(setup: paths.Setup, plan: LanePlan, over_lanes, values_k):
  """Every lane's runs for one source's values [B, C, D]: lane results [S, P, B, ...] and the
  last MLP's ablation (which runs no layer)."""
  config, clean, de = setup.config, setup.clean, setup.de
  L, B = config.num_layers, clean.last.shape[0]
  clean_attn, clean_mlp = (clean.components.reshape(B, L, 2, -1)[:, :, j] for j in (0, 1))  # [B, L, D]
  by_lane = lambda x, layer: jnp.moveaxis(x[:, layer], 1, 0)           # [B, L, ...] -> [P, B, ...]
  source_attn, source_mlp = (values_k.reshape(B, L, 2, -1)[:, :, j] for j in (0, 1))  # [B, L, D]
  # z^l with m^l replaced, in the model's order of additions: [B, L, D]
  mlp_ablated = (clean.resid_pre + clean_attn) + source_mlp
  mlp_inject = by_lane(mlp_ablated, np.arange(L)[::-1])                # lane p: layer L-1-p

  # Step 0: lane p ablates the attention of layer p, whose own attention need not run:
  # its output is the replacement, so only the layer's MLP runs (every layer at once).
  x, a = jnp.moveaxis(clean.resid_pre, 1, 0), jnp.moveaxis(source_attn, 1, 0)  # [P, B, D]
  m = jax.vmap(lambda p, x, a: blocks.mlp_sublayer(p, config, x, a))(
      blocks.stacked_layers(setup.params), x, a)                         # [P, B, D]
  first = x + a + m                                                     # the model's order
  first_changes = jnp.stack([de(a - jnp.moveaxis(clean_attn, 1, 0)),
                             de(m - jnp.moveaxis(clean_mlp, 1, 0))], -1)  # [P, B, 2]

  def step(resid, plan_step):                                           # resid [P, B, D]
    layer, mlp_start = plan_step                                        # [P] each
    resid = jnp.where(mlp_start[:, None, None], mlp_inject, resid)
    a, m, resid, sigma = over_lanes(layer, resid)                      # [P, B, (D)]
    changes = jnp.stack([de(a - by_lane(clean_attn, layer)), de(m - by_lane(clean_mlp, layer))], -1)
    return resid, (changes, de(resid - clean.resid_final), sigma)      # [P, B, 2], [P, B], [P, B]

  plan_steps = tuple(jnp.asarray(x[1:]) for x in (plan.layer, plan.mlp_start))
  _, later = jax.lax.scan(step, first, plan_steps)                      # [S - 1, P, B, ...]
  changes, resid_change, sigma = (jnp.concatenate([y[None], ys]) for y, ys in zip(
      (first_changes, de(first - clean.resid_final), _final_sigma(setup, first)), later))
  last_mlp = mlp_ablated[:, -1]                                         # the MLP of layer L-1: no layer runs
  direct_mlp = de(jnp.moveaxis(source_mlp - clean_mlp, 1, 0))          # [L, B]
  return (changes, resid_change, sigma, direct_mlp, de(last_mlp - clean.resid_final),
          _final_sigma(setup, last_mlp))


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
  ablated = paths.Changes(de_change=jnp.where(computed, grid, 0.0),
                                 resid_change=at_end(resid_change, last_resid_change),
                                 sigma=at_end(sigma, last_sigma))                # [B, K, C, ...]
  baseline = paths.Baseline(direct_effect=clean.direct_effect, resid_de=clean.resid_de,
                                   sigma=clean.sigma)
  return ablated, baseline
