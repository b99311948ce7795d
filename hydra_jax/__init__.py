"""hydra_jax: causal analysis of language-model computations (the Hydra effect) in JAX/Haiku.

Read `hydra_jax.model` for the pure forward pass, `hydra_jax.interventions` for the
intervention pytree, and ../shared/METHOD.md (mirrored in the README) for the measures.
"""

from hydra_jax import interventions
from hydra_jax.config import ModelConfig
from hydra_jax.interventions import Intervention, Site
from hydra_jax.model import (KVCache, Outputs, centre, count_params, decode, final_bias_logits,
                             forward, init_params, unembed, unembedding)

__all__ = [
    "ModelConfig", "Intervention", "Site", "KVCache", "Outputs", "interventions",
    "init_params", "forward", "decode", "count_params", "unembed", "unembedding",
    "final_bias_logits", "centre",
]
