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
  shifted     Hugging Face tensor suffix -> what to add to it on reading, undoing a shift
              llama.cpp's converter applied (Gemma norm gains, stored as 1 + w)
  unsupported functions of (metadata, tensor names) that say why a file cannot be run
              exactly (rope scaling, partial rotary), or None

llama.cpp's conventions (convert_hf_to_gguf.py, facts checked against transformers'
GGUF reader, which is the test reference):
  - shapes are stored fastest dimension first; `GGUFFile` reverses them to [out, in];
  - for the "llama" architecture, the rows of q_proj and k_proj (weights and biases) are
    permuted within each head from rotate-half order to interleaved pairs:
    gguf = hf.reshape(heads, 2, E/2, ...).swapaxes(1, 2), with heads = query heads for
    q and key/value heads for k. "qwen2" keeps Hugging Face's order (NeoX-style rope);
  - a tied model has no output.weight;
  - "gemma3": every tensor ending in norm.weight (the four norms of each layer, q_norm and
    k_norm, the final norm) is stored with the 1 added that Gemma's RMSNorm applies at run
    time (llama.cpp multiplies by the stored gain); transformers' Gemma2TensorProcessor
    subtracts it again, as `shifted` does here. No q/k row permutation. The metadata holds
    the window (attention.sliding_window) and the global rotary base (rope.freq_base) only;
    the rest are llama.cpp's fixed Gemma 3 facts (src/llama-model.cpp, LLM_ARCH_GEMMA3:
    set_swa_pattern(6), i.e. every 6th layer global, and rope_freq_base_train_swa = 10000),
    which are also transformers' Gemma3TextConfig defaults. The attention scale is
    llama.cpp's too: 1/sqrt(head size), but 1/sqrt(d_model / heads) for the 62-layer 27B
    (transformers' GGUF reader keeps its default query_pre_attn_scalar of 256 instead; the
    two agree for every Gemma 3 size but the 27B).
Mistral models are converted by llama.cpp as "llama" (its sliding window is not kept).

Shapes: E head size.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any, Callable, Mapping, Optional

from hydra_jax.checkpoints.architectures import GEMMA3, LLAMA, QWEN2, Architecture

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
  shifted: Mapping[str, float] = dataclasses.field(default_factory=dict)

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

  def shift(self, hf_name: str) -> float:
    """What to add to this tensor's stored values (0.0: none)."""
    return next((amount for suffix, amount in self.shifted.items() if hf_name.endswith(suffix)),
                0.0)


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


# Gemma 3 ----------------------------------------------------------------------------------


def gemma3_query_scalar(names: Names) -> Optional[int]:
  """query_pre_attn_scalar by llama.cpp's rule: the head size (q_norm's length), d_model /
  heads for the 62-layer 27B; None (the table's default) without a blk.0.attn_q_norm."""
  head_size = names.get("blk.0.attn_q_norm.weight", (None,))[0]
  if head_size is None or "blk.0.attn_q.weight" not in names:
    return None
  layers = sum(name.endswith(".attn_q.weight") for name in names)
  heads = names["blk.0.attn_q.weight"][0] // head_size
  return names["token_embd.weight"][1] // heads if layers == 62 else head_size


GEMMA3 = GGUFArchitecture(
    "gemma3", GEMMA3,
    config=LLAMA_FAMILY_CONFIG | {"sliding_window": "attention.sliding_window",
                                  "attn_logit_softcapping": "attn_logit_softcapping",
                                  "final_logit_softcapping": "final_logit_softcapping"},
    constants=dict(hidden_activation="gelu_pytorch_tanh", sliding_window_pattern=6,
                   rope_local_base_freq=10000.0),
    derived=LLAMA_FAMILY_DERIVED | {"query_pre_attn_scalar": gemma3_query_scalar},
    tensors=LLAMA_FAMILY_TENSORS | {
        _BLOCK + "ffn_norm.weight": _HF + "pre_feedforward_layernorm.weight",
        _BLOCK + "post_attention_norm.weight": _HF + "post_attention_layernorm.weight",
        _BLOCK + "post_ffw_norm.weight": _HF + "post_feedforward_layernorm.weight",
        **{_BLOCK + f"attn_{x}_norm.weight": _HF + f"self_attn.{x}_norm.weight" for x in "qk"}},
    unsupported=(rope_scaling("gemma3"), partial_rotary("gemma3")),
    shifted={"norm.weight": -1.0})

GGUF_ARCHITECTURES = {arch.name: arch for arch in (
    _family("llama", LLAMA, _PERMUTED, hidden_act="silu"),      # Llama 1-3, SmolLM, Mistral
    _family("qwen2", QWEN2, {}, hidden_act="silu"),
    GEMMA3,
)}
