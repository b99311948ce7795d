"""The embedded default: the tiny model shipped in the package, on its own facts.

Every prompt the model answers correctly, every attention and MLP output ablated at the
final position, 15 resample sources per prompt, seeded. Runs on any CPU in minutes:

    python -m hydra_jax.main --config=configs/tiny.py --workdir=/tmp/hydra_tiny

config.model is the embedded model's architecture (a CPU-sized Chinchilla: RMSNorm,
relative positions); the loaded model is checked against it.
"""

import ml_collections

from hydra_jax.job import config as run_config


def get_config() -> ml_collections.ConfigDict:
  config = run_config.defaults()
  config.model_source = "embedded"
  config.model = run_config.model_section(
      name="tiny", vocab_size=512, d_model=96, num_layers=8, num_heads=4, mlp_dim=384,
      activation="gelu", norm="rms", position="relative", max_seq_len=64,
      tie_embeddings=False, dropout_rate=0.0, dtype="float32")
  config.data.name = "embedded"
  config.data.max_prompts = 0          # every prompt
  config.data.filter_correct = True
  config.data.label_prefix = ""        # SentencePiece marks word starts itself ("▁Lisbon")
  config.sweep.kind = "resample"
  config.sweep.num_sources = 15
  config.sweep.seed = 0
  config.sweep.chunk_size = 64
  return config
