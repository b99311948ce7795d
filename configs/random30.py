"""A random-init model of SmolLM2-135M's shape on random token prompts: the report at 30 layers.

    python -m hydra_jax.main --config=configs/random30.py --workdir=/tmp/hydra_random30

30 layers, d_model 576, 9 query / 3 key-value heads, SwiGLU 1536, RMSNorm, rotary base
100,000, tied embeddings, 49,152 tokens (configs/smollm2.py's model, untrained: seed 0),
on 48 random prompts of 16 tokens with K = 5 resample sources and a 16-prompt dose sweep.
An untrained model has no self-repair to find; this run checks that every figure and
sentence of the report reads at the depth of a real model (a few minutes on a CPU), and
it is a control of the rule for a clear effect (`hydra_jax.report.clear`) at that depth.
"""

import ml_collections

from hydra_jax.job import config as run_config


# SmolLM2-135M's architecture (configs/smollm2.py reads it from the GGUF file), untrained.
SMOLLM2_SHAPE = {
    "name": "random_smollm2_shape", "vocab_size": 49152, "d_model": 576, "num_layers": 30,
    "num_heads": 9, "num_kv_heads": 3, "mlp_dim": 1536, "activation": "silu",
    "gated_mlp": True, "norm": "rms", "position": "rotary", "rope_base": 100000.0,
    "tie_embeddings": True, "max_seq_len": 64, "dtype": "float32"}


def get_config() -> ml_collections.ConfigDict:
  config = run_config.defaults()
  config.model_source = "random"
  config.seed = 0
  config.model = run_config.model_section(**SMOLLM2_SHAPE)
  config.data.name = "random"
  config.data.filter_correct = False
  config.data.num_prompts = 48
  config.data.prompt_length = 16
  config.sweep.num_sources = 5
  config.sweep.chunk_size = 48
  config.sweep.dose_prompts = 16
  return config
