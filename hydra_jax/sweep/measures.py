"""Reducing a batch's ablated runs to the measures of docs/method.md (`HydraResult`).

The paths return, per prompt b, source k and ablated component c, how every component's
direct effect and the final residual's moved (`paths.Changes`, read with the clean sigma)
and the run's own final sigma. From these:

  total effect       the ablated run's centred logit (its own sigma) minus the clean one
  response           dDE[c, c2], mean over sources (clean sigma, or each run's own)
  direct change      the diagonal of the response
  compensation       the downstream response, split into attention and MLP parts
  norm remainder     TE - direct change - compensation

and the consistency checks (upstream responses exactly zero; with the clean sigma,
TE = direct change + compensation), returned beside the measures (`checks`).

Per source, for every prompt, the same reductions are also kept as [B, K, C] arrays under
both readings of the responses (`SIGMAS`: the clean run's final sigma, and each ablated
run's own): the lost DE, the attention and MLP parts of the compensation and the norm
remainder (`by_source_name`). They carry the within-prompt estimator
(`hydra_jax.report.estimators`); the full per-source matrices [B, K, C, C] are returned
only with keep_sources.

Shapes: B prompts, K sources, C = 2L components.
"""

from __future__ import annotations

import dataclasses
from typing import Optional

import jax
import jax.numpy as jnp

from hydra_jax.model.config import ModelConfig
from hydra_jax.sweep import effects

SIGMAS = ("clean", "ablated")   # the final sigma the responses are read with (response_scale)
BY_SOURCE_PARTS = ("lost_de", "compensation_attn", "compensation_mlp", "norm_remainder")


def by_source_name(part: str, sigma: str) -> str:
  """The field of the per-source array of `part` (BY_SOURCE_PARTS) read with `sigma` (SIGMAS)."""
  return f"{part}_by_source" + ("" if sigma == "clean" else f"_{sigma}_sigma")


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class HydraResult:
  """Measures per prompt (B), source (K) and component (C = 2L; row = ablated, column = responding)."""
  token: jax.Array                # [B] int32 scored token (clean argmax at the final position)
  clean_logit: jax.Array          # [B] its clean centred logit
  direct_effect: jax.Array        # [B, C] clean DE of each component
  embed_direct_effect: jax.Array  # [B] DE of z^0 plus the LayerNorm bias term
  total_effect: jax.Array         # [B, K, C]
  total_effect_mean: jax.Array    # [B, C]
  direct_change: jax.Array        # [B, C] the ablated component's own DE change (diagonal of response)
  response: jax.Array             # [B, C, C] dDE, mean over sources
  compensation_attn: jax.Array    # [B, C] downstream attention response (the Hydra effect)
  compensation_mlp: jax.Array     # [B, C] downstream MLP response (reduced erasure)
  norm_remainder: jax.Array       # [B, C] TE - direct change - compensation
  # Per source [B, K, C], read with the clean sigma, then with each run's own (by_source_name):
  lost_de_by_source: Optional[jax.Array] = None          # -direct change
  compensation_attn_by_source: Optional[jax.Array] = None
  compensation_mlp_by_source: Optional[jax.Array] = None
  norm_remainder_by_source: Optional[jax.Array] = None   # TE - direct change - compensation
  lost_de_by_source_ablated_sigma: Optional[jax.Array] = None
  compensation_attn_by_source_ablated_sigma: Optional[jax.Array] = None
  compensation_mlp_by_source_ablated_sigma: Optional[jax.Array] = None
  norm_remainder_by_source_ablated_sigma: Optional[jax.Array] = None
  response_by_source: Optional[jax.Array] = None  # [B, K, C, C] (keep_sources); mean over K = response

  def arrays(self) -> dict[str, jax.Array]:
    """The measures that were computed, by field name (response_by_source only when kept)."""
    return {name: value for name, value in vars(self).items() if value is not None}


def reduce(config: ModelConfig, response_scale: str, clean, ablated, baseline, keep_sources: bool):
  """(measures dict, checks dict) from the Changes [B, K, C, ...] against their Baseline [B]."""
  ratio = clean.sigma[:, None, None] / ablated.sigma                   # [B, K, C] clean / own sigma
  base_ratio = clean.sigma / baseline.sigma                            # [B]
  logit = (baseline.resid_de[:, None, None] + ablated.resid_change) * ratio  # centred, own sigma
  total = effects.total_effect(logit, (baseline.resid_de * base_ratio)[:, None, None])  # [B, K, C]
  own = (baseline.direct_effect[:, None, None] + ablated.de_change) * ratio[..., None]
  by_sigma = dict(clean=ablated.de_change,                             # [B, K, C, C] each
                  ablated=effects.response(own, (baseline.direct_effect * base_ratio[:, None])[:, None]))
  by_source = by_sigma[response_scale]
  response = by_source.mean(1)                                         # [B, C, C]
  change = effects.direct_change(response)
  attn, mlp = effects.compensation(response, config)
  measures = dict(
      token=clean.token, clean_logit=clean.resid_de + clean.bias_logit,
      direct_effect=clean.direct_effect, embed_direct_effect=clean.embed_de + clean.bias_logit,
      total_effect=total, total_effect_mean=total.mean(1), direct_change=change, response=response,
      compensation_attn=attn, compensation_mlp=mlp,
      norm_remainder=effects.norm_remainder(total.mean(1), change, attn, mlp),
      response_by_source=by_source if keep_sources else None)
  for sigma, matrices in by_sigma.items():
    measures.update(_per_source(config, sigma, matrices, total))
  return measures, _checks(config, clean, ablated)


def _per_source(config: ModelConfig, sigma: str, matrices, total) -> dict[str, jax.Array]:
  """The per-source parts [B, K, C] of the responses dDE [B, K, C, C] read with `sigma`."""
  change = effects.direct_change(matrices)                             # [B, K, C]
  attn, mlp = effects.compensation(matrices, config)
  parts = dict(lost_de=-change, compensation_attn=attn, compensation_mlp=mlp,
               norm_remainder=effects.norm_remainder(total, change, attn, mlp))
  return {by_source_name(part, sigma): value for part, value in parts.items()}


def _checks(config: ModelConfig, clean, ablated) -> dict[str, jax.Array]:
  """The checks hold with the clean sigma throughout: upstream exactly, linear to rounding."""
  frozen_response = ablated.de_change.mean(1)                          # [B, C, C]
  frozen_attn, frozen_mlp = effects.compensation(frozen_response, config)
  unaffected = jnp.asarray(effects.unaffected_mask(config))
  return dict(
      upstream=jnp.where(unaffected, jnp.abs(frozen_response), 0.0).max(-1),  # [B, C]
      linear=jnp.abs(effects.norm_remainder(ablated.resid_change.mean(1),
                                            effects.direct_change(frozen_response),
                                            frozen_attn, frozen_mlp)),  # [B, C]
      scale=jnp.maximum(jnp.abs(clean.direct_effect).max(-1), jnp.abs(clean.resid_de)))  # [B]
