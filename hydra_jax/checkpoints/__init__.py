"""Checkpoints -> (ModelConfig, params), with no torch at run time.

  native   hydra_jax's own directory format (config.json + params.safetensors): save / load
  hf       Hugging Face safetensors checkpoints of Llama, Mistral, Qwen2, Gemma, GPT-2 and
           GPT-NeoX (Pythia) models: load_hf, optionally straight onto a device mesh
"""

from hydra_jax.checkpoints.layout import CheckpointError
from hydra_jax.checkpoints.native import load, save


def load_hf(path, *, dtype=None, mesh=None):
  """Load a Hugging Face checkpoint directory; see `hydra_jax.checkpoints.hf.load_hf`."""
  from hydra_jax.checkpoints import hf  # imported lazily: the architecture tables are larger
  return hf.load_hf(path, dtype=dtype, mesh=mesh)


__all__ = ["save", "load", "load_hf", "CheckpointError"]
