"""Checkpoints -> (ModelConfig, params), with no torch at run time.

  native         hydra_jax's own directory format (config.json + params.safetensors):
                 save(path, config, params), load(path) -> (config, params),
                 load_config(path) -> config (from config.json alone)
  hf             Hugging Face safetensors checkpoints (single file or sharded + index) of
                 Llama, Mistral, Qwen2, Gemma, Gemma 3, GPT-2 and GPT-NeoX (Pythia) models:
                 load_hf(path, dtype=None, mesh=None) -> (config, params),
                 load_hf_config(path, dtype=None) -> config (from config.json alone)
  gguf           GGUF files (llama.cpp's format) of Llama-family models (llama: Llama,
                 SmolLM, Mistral; qwen2; gemma3), any ggml quantization dequantized:
                 load_gguf(path, dtype=None, mesh=None) -> (config, params),
                 load_gguf_config(path, dtype=None) -> config (from the metadata alone)
  gguf_file      a GGUF file's metadata and its tensors, read and dequantized one at a time
  gguf_architectures  each GGUF architecture as data: metadata keys -> config.json keys,
                 GGUF tensor names -> Hugging Face names, llama.cpp's row permutation
                 and its shifted Gemma norm gains
  architectures  each architecture as data: config.json keys -> ModelConfig fields and
                 Hugging Face tensor names -> hydra_jax tensors (with named transforms)
  rules          the tables' vocabulary: Key, Rule, Architecture and shared field functions
  transforms     the named per-tensor conversions (transpose, split heads, unfuse q|k|v)
  placement      placing parameters onto a mesh one layer at a time
  layout         the flat "module/param" naming, expected shapes, and the shape checks

Every loader raises CheckpointError (a ValueError) naming the tensor and both shapes for a
checkpoint that does not fit its config, before reading any tensor data, and naming the
file for one that is missing, truncated or corrupt.
"""

from hydra_jax.checkpoints.gguf import load_gguf, load_gguf_config
from hydra_jax.checkpoints.hf import load_hf, load_hf_config
from hydra_jax.checkpoints.layout import CheckpointError
from hydra_jax.checkpoints.native import load, load_config, save


__all__ = ["save", "load", "load_config", "load_hf", "load_hf_config", "load_gguf",
           "load_gguf_config", "CheckpointError"]
