"""The norms as plain functions of (parameters, config, x): RMSNorm and LayerNorm, over the
last axis (D features of the residual stream, or E of a head for `qk_norm`).

    norm(x) = (x - mean(x) if LayerNorm) / sigma * gain (+ bias),  sigma = sqrt(mean(x'^2) + eps)

Each rule lives in one function: the centring and sigma (`norm_sigma`), the gain with
Gemma's 1 + w offset (`norm_gain`), and the centred logit direction of a token through
the final norm (`logit_direction`). Computed in float32, returned in x's dtype.

Shapes (glossary in hydra_jax/__init__.py): D d_model (the normed axis), V vocabulary.
"""

from __future__ import annotations

from typing import Optional

import jax
import jax.numpy as jnp

from hydra_jax.model.config import ModelConfig

# Whether each norm removes the feature mean before scaling (architecture as data).
CENTRES_FEATURES = {"rms": False, "layer": True}


def norm_specs(config: ModelConfig) -> dict:
  """{name: (shape, init)} of a norm; init is "normal", "zeros" or "ones" (1 - offset)."""
  specs = {"scale": ((config.d_model,), "ones")}
  if config.norm == "layer":
    specs["bias"] = ((config.d_model,), "zeros")
  return specs


def _centred(config: ModelConfig, x: jax.Array) -> jax.Array:
  """x [..., D] in float32, minus its feature mean for LayerNorm."""
  x = x.astype(jnp.float32)
  return x - x.mean(-1, keepdims=True) if CENTRES_FEATURES[config.norm] else x


def _sigma(config: ModelConfig, centred: jax.Array) -> jax.Array:
  return jnp.sqrt(jnp.mean(centred * centred, -1) + config.norm_eps)


def norm_sigma(config: ModelConfig, x: jax.Array) -> jax.Array:
  """sigma [...] float32 of residuals x [..., D]: sqrt(mean(x^2) + eps), x centred for LayerNorm."""
  return _sigma(config, _centred(config, x))


def norm_gain(config: ModelConfig, p) -> jax.Array:
  """The norm's multiplier [D] float32: scale, or 1 + scale for Gemma (norm_scale_offset)."""
  return config.norm_scale_offset + p["scale"].astype(jnp.float32)


def norm(p, config: ModelConfig, x: jax.Array, sigma: Optional[jax.Array] = None):
  """(normed x [..., D] in x's dtype, sigma [...]); `sigma` given overrides it (a frozen scale)."""
  x32 = _centred(config, x)                                          # [..., D] float32
  if sigma is None:
    sigma = _sigma(config, x32)
  y = x32 / sigma[..., None] * norm_gain(config, p)
  if "bias" in p:
    y = y + p["bias"].astype(jnp.float32)
  return y.astype(x.dtype), sigma


def logit_direction(final_norm, unembedding: jax.Array, config: ModelConfig, token: jax.Array):
  """(w_i [..., D], bias term [...]) of the centred logit of `token` [...] through the final norm.

  With the norm's sigma held fixed, centred logit_i = (z / sigma) . w_i + bias term, where
  u_i = W_U[:, i] - mean_v W_U[:, v] (centred over the vocabulary), w_i = gain * u_i (and
  centred over features for LayerNorm, a symmetric projection), bias term = b . u_i.
  """
  w_u = unembedding.astype(jnp.float32)                                # [D, V]
  u = jnp.moveaxis(jnp.take(w_u, token, axis=1), 0, -1) - w_u.mean(1)  # [..., D]
  direction = norm_gain(config, final_norm) * u                        # [..., D]
  if CENTRES_FEATURES[config.norm]:
    direction = direction - direction.mean(-1, keepdims=True)
  bias = final_norm.get("bias")
  bias_term = u @ bias.astype(jnp.float32) if bias is not None else jnp.zeros(u.shape[:-1])
  return direction, bias_term
