"""The model's answer to a prompt: the argmax of its logits at the prompt's final position.

    final_argmax(params, config, tokens, lengths) -> int32 [B]
    predictor(params, config) -> fn(tokens [B, T], lengths [B]) -> numpy int32 [B]

tokens int32 [B, T] are right-padded prompts and lengths int32 [B] their real lengths
(`data.batching.right_pad`), so position lengths - 1 holds each prompt's last token;
a causal model never reads the padding after it. The one home of this rule: the main
job keeps the prompts a model answers correctly with it, and the embedded model's
facts are scored with it.

Shapes: B prompts in a batch, T padded length, V vocabulary.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from hydra_jax.model import transformer
from hydra_jax.model.config import ModelConfig


def final_argmax(params, config: ModelConfig, tokens, lengths) -> jax.Array:
  """int32 [B]: the most likely next token after each prompt's final position."""
  logits = transformer.forward(params, config, tokens).logits                      # [B, T, V]
  final = jnp.take_along_axis(logits, (lengths - 1)[:, None, None], axis=1)[:, 0]   # [B, V]
  return jnp.argmax(final, axis=-1).astype(jnp.int32)                              # [B]


_compiled = jax.jit(final_argmax, static_argnums=1)   # one compile per config and shape


def predictor(params, config: ModelConfig) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
  """(tokens int32 [B, T], lengths int32 [B]) -> numpy int32 [B], `final_argmax` jitted."""
  return lambda tokens, lengths: np.asarray(_compiled(params, config, tokens, lengths))
