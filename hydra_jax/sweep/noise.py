"""Noise ablation as the paper defines it (its appendix A, eq. 37): z~ = Z(u + eps).

The replacement of a component at a prompt's final position is that component's value
in a run of the *same prompt* whose input embeddings carry Gaussian noise
eps ~ N(0, s^2) at the noised positions (every real token by default; the subject's
tokens where a prompt set marks them, as in the causal tracing the paper cites), with
s = scale x the standard deviation of the embedding table (x embed_scale). K draws per
prompt play the role of K resample sources. Each prompt's noise depends only on the
seed, its index among the N prompts and the draw, so batching never changes it.

Shapes: B prompts of a batch, T positions, K draws, L layers, C = 2L components, D d_model.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from hydra_jax.model import transformer
from hydra_jax.model.config import ModelConfig
from hydra_jax.model.interventions import Intervention, Site
from hydra_jax.sweep import effects


def embedding_std(params, config: ModelConfig) -> float:
  """The standard deviation of the input embeddings' entries (table x embed_scale)."""
  return float(jnp.std(transformer.embeddings(params).astype(jnp.float32)) * config.embed_scale)


def noised_components(params, config: ModelConfig, tokens, lengths, rows, noise_positions, *,
                      std: jax.Array, draws: int, seed: int) -> jax.Array:
  """[B, K, C, D]: each component's final-position value in K runs with noisy embeddings.

  tokens [B, T], lengths [B], rows [B] (each prompt's index among all N: its noise stream),
  noise_positions [B, T] float (1 where the embedding is noised), std a scalar.
  """
  B, T = tokens.shape
  embed = transformer.forward(params, config, tokens).embed            # [B, T, D] z^0
  at_layer_0 = jnp.zeros((config.num_layers, T), jnp.float32).at[0].set(1.0)  # [L, T]
  last, batch = lengths - 1, jnp.arange(B)

  def one_draw(draw):
    keys = jax.vmap(lambda row: jax.random.fold_in(jax.random.fold_in(
        jax.random.PRNGKey(seed), row), draw))(rows)                   # [B] keys
    eps = jax.vmap(lambda key: jax.random.normal(key, embed.shape[1:]))(keys)  # [B, T, D]
    noisy = embed + (std * noise_positions[..., None] * eps).astype(embed.dtype)
    value = jnp.broadcast_to(noisy[:, None], (B, config.num_layers) + noisy.shape[1:])  # [B, L, T, D]
    intervention = Intervention(resid_pre=Site(at_layer_0, value))
    out = transformer.forward(params, config, tokens, intervention)
    return effects.interleave_components(out.attn_out[batch, :, last], out.mlp_out[batch, :, last])
  values = jax.lax.map(one_draw, jnp.arange(draws))                   # [K, B, C, D]
  return jnp.moveaxis(values, 0, 1)
