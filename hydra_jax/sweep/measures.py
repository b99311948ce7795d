"""Reducing a batch's ablated runs to the measures of METHOD.md (`HydraResult`).

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

Shapes: B prompts, K sources, C = 2L components.
"""

from __future__ import annotations

import dataclasses
from typing import Optional

import jax
import jax.numpy as jnp

from hydra_jax.model.config import ModelConfig
from hydra_jax.sweep import effects


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
  by_source = ablated.de_change                                        # [B, K, C, C] (clean sigma)
  if response_scale == "ablated":  # DE_ablated(c2) with the run's own sigma
    own = (baseline.direct_effect[:, None, None] + ablated.de_change) * ratio[..., None]
    by_source = effects.response(own, (baseline.direct_effect * base_ratio[:, None])[:, None])
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
  return measures, _checks(config, clean, ablated)


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
