"""Chinchilla 7B as studied in the Hydra paper (docs/method.md): 32 layers, d_model 4096,
32 heads of 128, MLP 4x (GELU), RMSNorm, Transformer-XL relative positions,
32,000 SentencePiece tokens, no dropout, bfloat16.

The weights are not public. By default the model is randomly initialised (sharded over
the mesh's "model" axis) and swept on random token prompts, which measures the
machinery at full scale; with a converted checkpoint and its tokenizer:

    --config.model_source=checkpoint --config.checkpoint=DIR --config.tokenizer=FILE \
    --config.data.name=known_facts --config.data.filter_correct=True --config.data.manual_dir=DIR

    python -m hydra_jax.main --config=configs/chinchilla7b.py --config.dry_run=True

prints the plan (parameters, bytes per device under the mesh, FLOPs of the sweep,
devices needed) without allocating anything. A machine too small for the run stops
with that plan instead of running out of memory. On a TPU v4-32 or v5e-64 slice, for
example: --config.mesh.model=8 (weights split 8 ways), data = the remaining devices.
"""

import ml_collections

from hydra_jax.job import config as run_config


def get_config() -> ml_collections.ConfigDict:
  config = run_config.defaults()
  config.model_source = "random"
  config.seed = 0
  config.model = run_config.model_section(
      name="chinchilla7b", vocab_size=32000, d_model=4096, num_layers=32, num_heads=32,
      head_dim=128, mlp_dim=16384, activation="gelu", gated_mlp=False, norm="rms",
      norm_eps=1e-5, position="relative", max_seq_len=2048, tie_embeddings=False,
      dropout_rate=0.0, dtype="bfloat16")
  config.data.name = "random"
  config.data.num_prompts = 1209       # the size of the paper's known-facts set
  config.data.prompt_length = 16
  config.data.filter_correct = False
  config.data.label_prefix = ""
  config.sweep.num_sources = 15
  config.sweep.chunk_size = 32
  config.mesh.model = 1                # weights split over this many devices
  return config
