"""GGUF architectures as data: metadata keys -> config.json keys, GGUF tensor names -> Hugging Face names.

A GGUF file (llama.cpp's format) names its architecture in `general.architecture` and
its hyperparameters as "<architecture>.<key>" metadata. Each `GGUFArchitecture` maps
that file onto the Hugging Face architecture table (`architectures.py`) that describes
the same model, so one set of tables serves both formats:

  config      config.json key <- metadata key (after "<architecture>."); keys absent
              from the file are left out, so the Hugging Face table's defaults apply
  constants   config.json keys that are fixed for the architecture
  derived     config.json key <- a function of the file's tensor names and shapes (the
              vocabulary from the embedding's rows, tied embeddings when there is no
              output.weight, attention biases when the file has them)
  tensors     GGUF tensor name template ("blk.{layer}.attn_q.weight") -> Hugging Face
              template ("model.layers.{layer}.self_attn.q_proj.weight")
  permuted    Hugging Face tensor suffix -> the config.json key of its head count, for
              the rows llama.cpp permuted when it converted a rotary model (see below)
  unsupported functions of (metadata, tensor names) that say why a file cannot be run
              exactly (rope scaling, partial rotary), or None

llama.cpp's conventions (convert_hf_to_gguf.py, facts checked against transformers'
GGUF reader, which is the test reference):
  - shapes are stored fastest dimension first; `GGUFFile` reverses them to [out, in];
  - for the "llama" architecture, the rows of q_proj and k_proj (weights and biases) are
    permuted within each head from rotate-half order to interleaved pairs:
    gguf = hf.reshape(heads, 2, E/2, ...).swapaxes(1, 2), with heads = query heads for
    q and key/value heads for k. "qwen2" keeps Hugging Face's order (NeoX-style rope);
  - a tied model has no output.weight.
Mistral models are converted by llama.cpp as "llama" (its sliding window is not kept).

Shapes: E head size.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any, Callable, Mapping, Optional

from hydra_jax.checkpoints.architectures import LLAMA, QWEN2, Architecture

Names = Mapping[str, tuple[int, ...]]      # GGUF tensor name -> its [out, in] shape


@dataclasses.dataclass(frozen=True)
class GGUFArchitecture:
  name: str
  hf: Architecture
  config: Mapping[str, str]
  constants: Mapping[str, Any]
  derived: Mapping[str, Callable[[Names], Any]]
  tensors: Mapping[str, str]
  permuted: Mapping[str, str] = dataclasses.field(default_factory=dict)
  unsupported: tuple[Callable[[Mapping[str, Any], Names], Optional[str]], ...] = ()

  def hf_name(self, gguf_name: str) -> Optional[str]:
    """The Hugging Face name of a GGUF tensor, or None when the table lacks it."""
    for pattern, hf in self.tensors.items():
      match = re.fullmatch(re.escape(pattern).replace(r"\{layer\}", r"(?P<layer>\d+)"),
                           gguf_name)
      if match:
        return hf.format(**match.groupdict())
    return None

  def permuted_heads(self, hf_name: str) -> Optional[str]:
    """The config.json key of the head count whose rows llama.cpp permuted in this tensor."""
    return next((key for suffix, key in self.permuted.items() if hf_name.endswith(suffix)), None)


# Llama family -----------------------------------------------------------------------------

_BLOCK, _HF = "blk.{layer}.", "model.layers.{layer}."
LLAMA_FAMILY_TENSORS = {
    "token_embd.weight": "model.embed_tokens.weight",
    "output_norm.weight": "model.norm.weight",
    "output.weight": "lm_head.weight",
    _BLOCK + "attn_norm.weight": _HF + "input_layernorm.weight",
    _BLOCK + "ffn_norm.weight": _HF + "post_attention_layernorm.weight",
    **{_BLOCK + f"attn_{g}.{kind}": _HF + f"self_attn.{h}_proj.{kind}"
       for g, h in (("q", "q"), ("k", "k"), ("v", "v"), ("output", "o"))
       for kind in ("weight", "bias")},
    **{_BLOCK + f"ffn_{x}.weight": _HF + f"mlp.{x}_proj.weight" for x in ("gate", "up", "down")},
}

LLAMA_FAMILY_CONFIG = {
    "max_position_embeddings": "context_length", "num_hidden_layers": "block_count",
    "intermediate_size": "feed_forward_length", "hidden_size": "embedding_length",
    "num_attention_heads": "attention.head_count",
    "num_key_value_heads": "attention.head_count_kv",
    "rms_norm_eps": "attention.layer_norm_rms_epsilon", "rope_theta": "rope.freq_base",
    "head_dim": "attention.key_length",
}

LLAMA_FAMILY_DERIVED = {
    "vocab_size": lambda names: names["token_embd.weight"][0],
    "tie_word_embeddings": lambda names: "output.weight" not in names,
    "attention_bias": lambda names: "blk.0.attn_q.bias" in names,
}


def rope_scaling(arch: str) -> Callable[[Mapping[str, Any], Names], Optional[str]]:
  """Rope scaling (metadata rope.scaling.type, or Llama 3's rope_freqs tensor) is not supported."""
  def check(metadata, names):
    kind = metadata.get(f"{arch}.rope.scaling.type")
    if kind not in (None, "none"):
      return f"rope scaling {kind!r} (only unscaled rotary is supported)"
    return "rope scaling (a rope_freqs.weight tensor)" if "rope_freqs.weight" in names else None
  return check


def partial_rotary(arch: str) -> Callable[[Mapping[str, Any], Names], Optional[str]]:
  """This family rotates whole heads: rope.dimension_count below the head size is not supported."""
  def check(metadata, names):
    rotated = metadata.get(f"{arch}.rope.dimension_count")
    heads = metadata.get(f"{arch}.attention.head_count") or 1
    head_size = metadata.get(f"{arch}.attention.key_length") or (
        metadata.get(f"{arch}.embedding_length", 0) // heads)
    if rotated is not None and rotated != head_size:
      return f"rotary over {rotated} of {head_size} head features (partial rotary)"
    return None
  return check


def _family(name: str, hf: Architecture, permuted: Mapping[str, str], **constants):
  return GGUFArchitecture(name, hf, LLAMA_FAMILY_CONFIG, constants, LLAMA_FAMILY_DERIVED,
                          LLAMA_FAMILY_TENSORS, permuted,
                          (rope_scaling(name), partial_rotary(name)))


_PERMUTED = {"q_proj.weight": "num_attention_heads", "q_proj.bias": "num_attention_heads",
             "k_proj.weight": "num_key_value_heads", "k_proj.bias": "num_key_value_heads"}

GGUF_ARCHITECTURES = {arch.name: arch for arch in (
    _family("llama", LLAMA, _PERMUTED, hidden_act="silu"),      # Llama 1-3, SmolLM, Mistral
    _family("qwen2", QWEN2, {}, hidden_act="silu"),
)}
