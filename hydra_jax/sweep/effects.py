"""Effects: the measures of docs/method.md as pure jnp functions of final-position activations.

Everything is scored on one token per prompt, the clean run's argmax at the final
position, and on centred logits (the mean over the vocabulary subtracted). With the
final norm's scale sigma held fixed, the centred logit of token i is linear in the
residual stream, so every component c (z^0, a^l, m^l) has a direct effect

    DE(c) = (centre_D(c) / sigma) . (g * u_i)   with u_i = W_U[:, i] - mean_v W_U[:, v]
          = (c / sigma) . w_i                   with w_i = centre_D(g * u_i)

(centre_D removes the mean over features, for LayerNorm only; it is a symmetric
projection, so it moves onto the direction). A LayerNorm bias b adds the constant
b . u_i. `logit_direction` builds w_i once per prompt: no [B, V] logits are needed.

Ablating component c gives, per ablated run:
  total effect      TE(c)      = logit_ablated - logit_clean   (the run's own final sigma)
  response          dDE[c, c2] = DE_ablated(c2) - DE_clean(c2)  (row ablated, column responding)
  direct change     dDE[c, c]
  compensation      sum of dDE[c, c2] over c2 downstream of c, split into attention
                    (the Hydra effect) and MLP (reduced erasure) parts
  norm remainder    TE - direct change - compensation: what the change of the final
                    sigma carries (exactly zero when that sigma is frozen at its clean value)

"Downstream" follows the architecture: component c = 2l + j (j = 0 attention, 1 MLP of
layer l); in a sequential block m^l reads a^l, in a parallel block it does not.

Shapes: B prompts, K sources, C = 2L components, D d_model, V vocabulary; in the fits N
prompts and R bootstrap resamples (one row of prompt weights each).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from hydra_jax.model import transformer
from hydra_jax.model.config import ModelConfig

# The scored token and its direction --------------------------------------------------------


def scored_token(final_logits: jax.Array) -> jax.Array:
  """The clean run's argmax over the vocabulary: final_logits [..., V] -> int32 [...]."""
  return jnp.argmax(final_logits, axis=-1).astype(jnp.int32)


def logit_direction(params, config: ModelConfig, token: jax.Array) -> tuple[jax.Array, jax.Array]:
  """w_i [..., D] and the bias term b . u_i [...] of the centred logit of `token` [...].

  DE(x) = (x / sigma) . w_i, and centred logit = DE(z^L) + bias term (`blocks.logit_direction`).
  """
  return transformer.logit_direction(params, config, token)


def direct_effect(components: jax.Array, sigma: jax.Array, direction: jax.Array) -> jax.Array:
  """DE = (c / sigma) . w: components [..., D], sigma and direction broadcastable -> [...].

  A product and a sum, not a dot: every row is reduced the same way wherever it sits in a
  vmapped batch (a batched dot is not), so equal components give bit-equal DE, and float32
  stays float32 on TPUs (no reduced-precision matmul passes).
  """
  return jnp.sum(components.astype(jnp.float32) * direction, axis=-1) / sigma


def interleave_components(attn: jax.Array, mlp: jax.Array) -> jax.Array:
  """attn, mlp [..., L, D] -> [..., 2L, D] in component order (2l attention, 2l+1 MLP)."""
  stacked = jnp.stack([attn, mlp], axis=-2)                            # [..., L, 2, D]
  return stacked.reshape(stacked.shape[:-3] + (-1, stacked.shape[-1]))


# Which component sees which ------------------------------------------------------------------


def component_layer(num_components: int) -> np.ndarray:
  return np.arange(num_components) // 2


def is_attention(num_components: int) -> np.ndarray:
  return np.arange(num_components) % 2 == 0


def downstream_mask(config: ModelConfig) -> np.ndarray:
  """bool [C, C]: [c, c2] is True when c2 reads (directly or not) the output of c."""
  return downstream_of(config.num_components, config.parallel_block)


def downstream_of(num_components: int, parallel_block: bool = False) -> np.ndarray:
  """`downstream_mask` from the two fields it needs (the report has no ModelConfig).

  Sequential block: every later component. Parallel block: components of later layers
  only (the MLP of layer l reads z^{l-1}, not a^l).
  """
  c = np.arange(num_components)
  if parallel_block:
    return component_layer(num_components)[None, :] > component_layer(num_components)[:, None]
  return c[None, :] > c[:, None]


def unaffected_mask(config: ModelConfig) -> np.ndarray:
  """bool [C, C]: responses that must be exactly zero (neither c itself nor downstream of it)."""
  return ~downstream_mask(config) & ~np.eye(config.num_components, dtype=bool)


# Measures of an ablation ---------------------------------------------------------------------


def total_effect(ablated_logit: jax.Array, clean_logit: jax.Array) -> jax.Array:
  """TE = centred logit of the ablated run - of the clean run (broadcasting)."""
  return ablated_logit - clean_logit


def response(ablated_de: jax.Array, clean_de: jax.Array) -> jax.Array:
  """dDE [..., C, C] from the ablated runs' DE [..., C (ablated), C (responding)] and clean DE [..., C]."""
  return ablated_de - clean_de[..., None, :]


def direct_change(response_matrix: jax.Array) -> jax.Array:
  """The ablated component's own DE change: the diagonal of dDE [..., C, C] -> [..., C]."""
  return jnp.diagonal(response_matrix, axis1=-2, axis2=-1)


def compensation(response_matrix: jax.Array, config: ModelConfig) -> tuple[jax.Array, jax.Array]:
  """(attention part, MLP part) of the compensatory effect, each [..., C], from dDE [..., C, C]."""
  downstream = downstream_mask(config)                                 # [C, C]
  attention = is_attention(config.num_components)                      # [C]
  attn_cols = jnp.asarray(downstream & attention[None, :], jnp.float32)
  mlp_cols = jnp.asarray(downstream & ~attention[None, :], jnp.float32)
  return (response_matrix * attn_cols).sum(-1), (response_matrix * mlp_cols).sum(-1)


def norm_remainder(total_effect_value, direct_change_value, compensation_attn, compensation_mlp):
  """TE - direct change - compensation: the part carried by the final norm's scale."""
  return total_effect_value - direct_change_value - compensation_attn - compensation_mlp


# Per-layer regression --------------------------------------------------------------------------


class Fit(NamedTuple):
  """Least-squares fits y = slope * x + intercept across prompts, per component (the one fit
  of the package: the report's bootstrap reuses `weighted_fits`)."""
  slope: np.ndarray       # [R, C] (or [C] for `fits`)
  intercept: np.ndarray
  r2: np.ndarray


def weighted_fits(weights: np.ndarray, x: np.ndarray, y: np.ndarray) -> Fit:
  """Least squares y = slope x + intercept per column of x, y [N, C], for each row of
  weights [R, N] (prompt multiplicities); NaN slope where x does not vary, NaN R^2 where
  x or y does not."""
  x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
  centre_x, centre_y = x.mean(0), y.mean(0)                                          # [C]
  dx, dy = x - centre_x, y - centre_y                                                # [N, C]
  weights = np.asarray(weights, np.float64)
  total = weights.sum(1, keepdims=True)                                              # [R, 1]
  mean_x, mean_y = weights @ dx / total, weights @ dy / total                         # [R, C]
  var_x = weights @ (dx * dx) / total - mean_x ** 2                                  # [R, C]
  var_y = weights @ (dy * dy) / total - mean_y ** 2
  cov = weights @ (dx * dy) / total - mean_x * mean_y
  varies_x = var_x > 1e-12 * (dx * dx).mean(0)
  varies_y = var_y > 1e-12 * (dy * dy).mean(0)
  slope = np.where(varies_x, cov / np.where(varies_x, var_x, 1.0), np.nan)
  intercept = centre_y + mean_y - slope * (centre_x + mean_x)
  both = varies_x & varies_y
  r2 = np.where(both, cov * cov / np.where(both, var_x * var_y, 1.0), np.nan)
  return Fit(slope, intercept, r2)


def fits(x: np.ndarray, y: np.ndarray) -> Fit:
  """The plain least-squares fit of each column of y [N, C] on x [N, C]: arrays [C]."""
  fit = weighted_fits(np.ones((1, np.shape(x)[0])), x, y)
  return Fit(*(value[0] for value in fit))


regress = fits   # the name the sweep's users know: the fit of each column of y on x
