"""The model: a Chinchilla-style decoder as pure functions, and the intervention pytree.

  config         ModelConfig: an architecture as data (norm, positions, MLP, attention)
  positions      rotary and Transformer-XL relative position encodings
  norms          RMSNorm / LayerNorm: sigma, the gain (Gemma's 1 + w), the centred logit
                 direction of a token through the final norm
  blocks         one layer as plain functions of (layer params, config, inputs): attention
                 (full sequence, or one position against a key/value cache; per-layer
                 sliding window and rotary base), MLP, post-sublayer norms, the block
  transformer    the Haiku model built from the blocks: forward, decode, init_params
  interventions  the Intervention pytree: which activations to replace, and with what
  predict        the model's answer: the argmax of the logits at each final position
"""

from hydra_jax.model.config import ModelConfig
from hydra_jax.model.interventions import Intervention, Site
from hydra_jax.model.transformer import (KVCache, Outputs, centre, check_tokens, count_params,
                                         decode, final_bias_logits, forward, init_params,
                                         unembed, unembedding)

__all__ = ["ModelConfig", "Intervention", "Site", "KVCache", "Outputs", "centre", "check_tokens",
           "count_params", "decode", "final_bias_logits", "forward", "init_params", "unembed",
           "unembedding"]
