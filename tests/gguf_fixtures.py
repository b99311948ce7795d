"""Small GGUF files written with the `gguf` package's writer from tiny random transformers models.

`write(model, path, arch, qtype)` converts a torch Llama-family model as llama.cpp's
convert_hf_to_gguf.py does (its tensor names, the rotary row permutation of q and k for
the "llama" architecture, no output.weight for a tied model, ggml's dimension order) and
writes it with every matrix in ggml type `qtype` (norms and biases stay F32, as
llama.cpp keeps them). The names here are written out in llama.cpp's terms, not taken
from hydra_jax's tables, so the reference reader (transformers) checks both.

The `gguf` package quantizes F16, BF16, Q8_0 and Q4_0..Q5_1 itself; it only dequantizes
the K-quants, so a K-quant matrix is written as random blocks with finite scales (every
bit pattern of a block is a valid K-quant value), the same bytes for both readers.

Variants (`MODELS`): llama (GQA, untied), mistral (converted as "llama"), smollm2 (tied,
a rope base of 100,000), qwen2 (biases on q/k/v, no permutation); `kquant` is a llama of
width 256, the K-quants' block length. `gemma3` (written as llama.cpp's "gemma3": its norm
and post-norm names, every norm gain stored as 1 + w, no permutation, the window and head
size in the metadata) has 6 layers, so that llama.cpp's fixed pattern makes layer 5 global,
window 4, and width and head size 256 (K-quant blocks fit; the head size is also
transformers' default query_pre_attn_scalar, which its GGUF reader keeps, and llama.cpp's
scale, so both readers agree); the local rotary base is llama.cpp's fixed 10,000.
"""

from __future__ import annotations

import numpy as np
import torch
import transformers

from tests import hf_fixtures

VOCAB = hf_fixtures.VOCAB
_DIMS = dict(vocab_size=VOCAB, num_hidden_layers=2, max_position_embeddings=64)
MODELS = {
    "llama": lambda: transformers.LlamaConfig(
        **_DIMS, hidden_size=64, intermediate_size=96, num_attention_heads=4,
        num_key_value_heads=2, rope_theta=500.0, tie_word_embeddings=False),
    "mistral": lambda: transformers.MistralConfig(
        **_DIMS, hidden_size=64, intermediate_size=96, num_attention_heads=4,
        num_key_value_heads=1, sliding_window=None),
    "smollm2": lambda: transformers.LlamaConfig(
        **_DIMS, hidden_size=64, intermediate_size=160, num_attention_heads=4,
        num_key_value_heads=2, rope_theta=100000.0, rms_norm_eps=1e-5, tie_word_embeddings=True),
    "qwen2": lambda: transformers.Qwen2Config(
        **_DIMS, hidden_size=64, intermediate_size=96, num_attention_heads=4,
        num_key_value_heads=2, tie_word_embeddings=False),
    "kquant": lambda: transformers.LlamaConfig(
        **_DIMS, hidden_size=256, intermediate_size=256, num_attention_heads=4,
        num_key_value_heads=2, tie_word_embeddings=False),
    "gemma3": lambda: transformers.Gemma3TextConfig(
        **(_DIMS | dict(num_hidden_layers=6)), hidden_size=256, intermediate_size=256,
        num_attention_heads=2, num_key_value_heads=1, head_dim=256, query_pre_attn_scalar=256,
        sliding_window=4, rope_parameters={
            "sliding_attention": {"rope_type": "default", "rope_theta": 10000.0},
            "full_attention": {"rope_type": "default", "rope_theta": 300000.0}}),
}
GGUF_ARCH = {"qwen2": "qwen2", "gemma3": "gemma3"}   # every other variant is written as "llama"
NORM_SHIFT = {"gemma3": 1.0}             # llama.cpp stores Gemma norm gains as 1 + w

# Hugging Face name (in one layer) -> llama.cpp name
_LAYER_NAMES = {"input_layernorm": "attn_norm", "post_attention_layernorm": "ffn_norm",
                "self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k",
                "self_attn.v_proj": "attn_v", "self_attn.o_proj": "attn_output",
                "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up", "mlp.down_proj": "ffn_down"}
_GEMMA3_NAMES = _LAYER_NAMES | {
    "post_attention_layernorm": "post_attention_norm", "pre_feedforward_layernorm": "ffn_norm",
    "post_feedforward_layernorm": "post_ffw_norm", "self_attn.q_norm": "attn_q_norm",
    "self_attn.k_norm": "attn_k_norm"}
LAYER_NAMES = {"gemma3": _GEMMA3_NAMES}  # per GGUF architecture; _LAYER_NAMES otherwise
_TOP_NAMES = {"model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight",
              "lm_head.weight": "output.weight"}


def build(variant: str, seed: int = 0):
  """A random tiny torch model of `variant` (eval mode, float32, eager attention)."""
  config = MODELS[variant]()
  torch.manual_seed(seed)
  model = transformers.AutoModelForCausalLM.from_config(config, attn_implementation="eager")
  hf_fixtures._randomise(model, seed)
  return model.float().eval()


def gguf_name(hf_name: str, arch: str = "llama") -> str:
  if hf_name in _TOP_NAMES:
    return _TOP_NAMES[hf_name]
  _, _, layer, rest = hf_name.split(".", 3)                 # model.layers.<i>.<module>.<kind>
  module, kind = rest.rsplit(".", 1)
  return f"blk.{layer}.{LAYER_NAMES.get(arch, _LAYER_NAMES)[module]}.{kind}"


def llama_cpp_permute(rows: np.ndarray, heads: int) -> np.ndarray:
  """llama.cpp's rotary permutation: per head, rotate-half halves -> interleaved pairs."""
  return (rows.reshape(heads, 2, rows.shape[0] // heads // 2, *rows.shape[1:])
          .swapaxes(1, 2).reshape(rows.shape))


def _kquant_blocks(values: np.ndarray, qtype, rng) -> np.ndarray:
  """Random K-quant blocks for a [rows, cols] matrix, with small finite fp16 scales."""
  import gguf
  block_size, type_size = gguf.GGML_QUANT_SIZES[qtype]
  rows, cols = values.shape
  blocks = rng.integers(0, 256, (rows, cols // block_size, type_size), dtype=np.uint8)
  scales = rng.uniform(3e-5, 1e-4, (rows, cols // block_size, 2)).astype(np.float16).view(np.uint8)
  if qtype == gguf.GGMLQuantizationType.Q6_K:
    blocks[..., -2:] = scales[..., :2]                      # d is the block's last field
  else:
    blocks[..., :4] = scales.reshape(rows, cols // block_size, 4)   # d, dmin come first
  return blocks.reshape(rows, -1)


def _encode(values: np.ndarray, qtype, rng):
  """(data, raw_dtype) for the writer: matrices in `qtype`, vectors in F32."""
  import gguf
  Q = gguf.GGMLQuantizationType
  if values.ndim == 1 or qtype == Q.F32:
    return values.astype(np.float32), None
  if qtype == Q.F16:
    return values.astype(np.float16), None
  if qtype in (Q.Q2_K, Q.Q3_K, Q.Q4_K, Q.Q5_K, Q.Q6_K):
    return _kquant_blocks(values, qtype, rng), qtype
  return gguf.quants.quantize(values.astype(np.float32), qtype), qtype


def _metadata(writer, config, arch: str) -> None:
  heads = config.num_attention_heads
  rope = config.rope_parameters
  writer.add_block_count(config.num_hidden_layers)
  writer.add_context_length(config.max_position_embeddings)
  writer.add_embedding_length(config.hidden_size)
  writer.add_feed_forward_length(config.intermediate_size)
  writer.add_head_count(heads)
  writer.add_head_count_kv(config.num_key_value_heads)
  writer.add_layer_norm_rms_eps(config.rms_norm_eps)
  writer.add_rope_freq_base(float(rope.get("full_attention", rope)["rope_theta"]))  # global base
  if arch == "gemma3":                                       # as llama.cpp's converter writes it
    writer.add_key_length(config.head_dim)
    writer.add_value_length(config.head_dim)
    writer.add_sliding_window(config.sliding_window)
  else:
    writer.add_rope_dimension_count(config.hidden_size // heads)
  writer.add_vocab_size(config.vocab_size)
  writer.add_tokenizer_model("gpt2")                         # a minimal tokenizer: readers want one
  writer.add_tokenizer_pre("default")
  writer.add_token_list([f"<t{i}>" for i in range(config.vocab_size)])
  writer.add_token_types([1] * config.vocab_size)
  writer.add_token_merges([])


def write(model, path, variant: str, qtype, *, seed: int = 0, edit=None) -> None:
  """Write `model` to the GGUF file `path`, matrices in ggml type `qtype`.

  edit(name, values) -> values may change a tensor before it is written (bad-input tests)."""
  import gguf
  config, arch = model.config, GGUF_ARCH.get(variant, "llama")
  rng = np.random.default_rng(seed)
  writer = gguf.GGUFWriter(str(path), arch)
  _metadata(writer, config, arch)
  for hf_name, tensor in model.state_dict().items():
    if hf_name == "lm_head.weight" and config.tie_word_embeddings:
      continue
    values, name = tensor.detach().float().numpy(), gguf_name(hf_name, arch)
    if name.endswith("norm.weight"):
      values = values + np.float32(NORM_SHIFT.get(arch, 0.0))
    if arch == "llama" and (".attn_q." in name or ".attn_k." in name):
      heads = config.num_attention_heads if ".attn_q." in name else config.num_key_value_heads
      values = llama_cpp_permute(values, heads)
    if edit is not None:
      values = edit(name, values)
    data, raw_dtype = _encode(values, qtype, rng)
    writer.add_tensor(name, data, raw_dtype=raw_dtype)
  writer.write_header_to_file()
  writer.write_kv_data_to_file()
  writer.write_tensors_to_file()
  writer.close()


def reference(directory, name: str):
  """transformers' own reading of the GGUF file directory/name (float32, eager attention)."""
  return transformers.AutoModelForCausalLM.from_pretrained(
      str(directory), gguf_file=name, dtype=torch.float32, attn_implementation="eager").eval()
