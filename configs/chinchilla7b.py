"""Chinchilla 7B as studied in the Hydra paper (METHOD.md): 32 layers, d_model 4096,
32 heads of 128, MLP 4x (GELU), RMSNorm, Transformer-XL relative positions,
32,000 SentencePiece tokens, no dropout. Weights are not public: random init or a
converted checkpoint (--config.checkpoint=PATH)."""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.model = ml_collections.ConfigDict(dict(
      name="chinchilla7b", vocab_size=32000, d_model=4096, num_layers=32, num_heads=32,
      head_dim=128, mlp_dim=16384, activation="gelu", gated_mlp=False, norm="rms",
      norm_eps=1e-5, position="relative", max_seq_len=2048, tie_embeddings=False,
      dropout_rate=0.0, dtype="bfloat16"))
  return config
