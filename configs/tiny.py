"""A CPU-sized Chinchilla-style model (RMSNorm, relative positions): the embedded default."""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.model = ml_collections.ConfigDict(dict(
      name="tiny", vocab_size=512, d_model=128, num_layers=4, num_heads=4, mlp_dim=512,
      activation="gelu", norm="rms", position="relative", max_seq_len=64,
      tie_embeddings=False, dropout_rate=0.0, dtype="float32"))
  return config
