"""Hugging Face architectures as data: config keys -> ModelConfig, tensor names -> params.

An `Architecture` is three tables and nothing else:

  fields     ModelConfig field -> a constant, a `Key` of config.json (with the default
             transformers uses when the key is absent), or a small function of config.json
  tensors    hydra_jax tensor ("layers/attention/q") <- Hugging Face tensor name template
             ("{p}layers.{layer}.self_attn.q_proj.weight") and a named `Transform`;
             "{p}" is the base-model prefix, "{layer}" the layer index of a per-layer
             tensor (stacked by the loader into hydra_jax's leading L axis). A rule whose
             hydra_jax tensor the config does not need (a bias it has not, an untied
             unembedding) is skipped, so the same table serves every variant.
             `norm_rules` and `mlp_rules` write the rows every architecture has (norm gain
             and bias, MLP weights and biases) from the Hugging Face names alone.
  ignored    patterns of non-parameter buffers some checkpoints carry (causal-mask
             buffers, cached rotary frequencies)

plus `unsupported`: functions of config.json that return why the model cannot be run
exactly (rope scaling, per-layer attention scales), or None.

Checked against transformers 5.24 (models/<arch>/modeling_<arch>.py):
  Llama/Mistral/Qwen2/Gemma  RMSNorm in float32; rotate-half rotary over the whole head;
                             scores scaled by head_dim**-0.5; out = down(act(gate x) * up x)
  Mistral                    sliding-window attention: a query sees the last `sliding_window`
                             keys. Represented as data: max_seq_len is capped at the window,
                             where windowed and full causal attention agree exactly.
  Qwen2                      biases on q/k/v only; sliding window only if use_sliding_window
  Gemma                      embedding x sqrt(d_model) rounded to the weight dtype (our
                             embed_scale is cast the same way); RMSNorm gain (1 + w); GeGLU with
                             tanh-gelu (config "gelu" is a legacy name for it); tied unembedding
  Gemma 3 (Gemma3ForCausalLM, model_type gemma3_text; models/gemma3/modeling_gemma3.py)
                             Gemma's, plus: q_norm / k_norm (1 + w) on each head before rotary;
                             x + post_attention_layernorm(attn(input_layernorm(x))), then
                             + post_feedforward_layernorm(mlp(pre_feedforward_layernorm(.)));
                             scores x query_pre_attn_scalar**-0.5; per-layer layer_types
                             (default: every 6th layer full attention, the rest a window of
                             sliding_window keys, q - k < window) and rotary bases
                             (rope_parameters[type].rope_theta, or rope_theta /
                             rope_local_base_freq in older files). Softcapping refused.
  GPT-2                      Conv1D [in, out]; fused c_attn; learned positions; LayerNorm;
                             gelu_new = tanh-gelu; scale_attn_weights=False -> no 1/sqrt(E)
  GPT-NeoX (Pythia)          parallel residual; rotary on the first rotary_pct of each head;
                             fused per-head q|k|v; LayerNorm; exact gelu; separate embed_out
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Optional

from hydra_jax.checkpoints.rules import (HF_ACTIVATIONS, Architecture, Key, Rule,  # noqa: F401
                                         activation, flag_unsupported, mlp_rules, norm_rules,
                                         rope_base, rope_scaling_unsupported, rotary_fraction,
                                         window_capped)
from hydra_jax.checkpoints.transforms import (gpt2_qkv_bias, gpt2_qkv_weight, linear_from_heads,
                                              linear_to_heads, neox_qkv_bias, neox_qkv_weight,
                                              same, split_heads, transpose)

# Llama family: Llama, Mistral, Qwen2, Gemma --------------------------------------------------

_LAYER = "{p}layers.{layer}."
LLAMA_TENSORS = (
    Rule("embed/embeddings", "{p}embed_tokens.weight", same),
    *norm_rules("layers/attn_norm", _LAYER + "input_layernorm", bias=False),
    *(Rule(f"layers/attention/{x}", _LAYER + f"self_attn.{x}_proj.weight", linear_to_heads)
      for x in "qkv"),
    *(Rule(f"layers/attention/{x}_bias", _LAYER + f"self_attn.{x}_proj.bias", split_heads)
      for x in "qkv"),
    Rule("layers/attention/o", _LAYER + "self_attn.o_proj.weight", linear_from_heads),
    Rule("layers/attention/o_bias", _LAYER + "self_attn.o_proj.bias", same),
    *norm_rules("layers/mlp_norm", _LAYER + "post_attention_layernorm", bias=False),
    *mlp_rules(_LAYER + "mlp.", {"gate": "gate_proj", "in": "up_proj", "out": "down_proj"},
               transpose),
    *norm_rules("final_norm", "{p}norm", bias=False),
    Rule("unembed/w", "lm_head.weight", transpose),
)

LLAMA_FIELDS = dict(
    vocab_size=Key("vocab_size"), d_model=Key("hidden_size"),
    num_layers=Key("num_hidden_layers"), num_heads=Key("num_attention_heads"),
    num_kv_heads=Key("num_key_value_heads", None), head_dim=Key("head_dim", None),
    mlp_dim=Key("intermediate_size"),
    activation=Key("hidden_act", "silu", activation(HF_ACTIVATIONS)), gated_mlp=True,
    norm="rms", norm_eps=Key("rms_norm_eps", 1e-6), position="rotary", rope_base=rope_base,
    rotary_fraction=1.0, max_seq_len=Key("max_position_embeddings", 2048),
    tie_embeddings=Key("tie_word_embeddings", False),
    qkv_bias=Key("attention_bias", False), attn_out_bias=Key("attention_bias", False),
    mlp_bias=Key("mlp_bias", False),
)

_LLAMA_BUFFERS = (r"rotary_emb\.inv_freq$",)

LLAMA = Architecture("LlamaForCausalLM", LLAMA_FIELDS, LLAMA_TENSORS, ("model.",), _LLAMA_BUFFERS)

MISTRAL = Architecture(
    "MistralForCausalLM",
    LLAMA_FIELDS | dict(qkv_bias=False, attn_out_bias=False, mlp_bias=False,
                        max_seq_len=window_capped(131072, 4096)),
    LLAMA_TENSORS, ("model.",), _LLAMA_BUFFERS)

QWEN2 = Architecture(
    "Qwen2ForCausalLM",
    LLAMA_FIELDS | dict(qkv_bias=True, attn_out_bias=False, mlp_bias=False,
                        max_seq_len=window_capped(32768, 4096, switch="use_sliding_window")),
    LLAMA_TENSORS, ("model.",), _LLAMA_BUFFERS)

GEMMA = Architecture(
    "GemmaForCausalLM",
    LLAMA_FIELDS | dict(
        head_dim=Key("head_dim", 256),
        activation=Key(("hidden_activation", "hidden_act"), "gelu_pytorch_tanh",
                       activation(HF_ACTIVATIONS | {"gelu": "gelu_tanh"})),
        embed_scale=lambda hf: math.sqrt(hf["hidden_size"]), norm_scale_offset=1.0,
        tie_embeddings=Key("tie_word_embeddings", True), mlp_bias=False,
        max_seq_len=Key("max_position_embeddings", 8192)),
    LLAMA_TENSORS, ("model.",), _LLAMA_BUFFERS,
    unsupported=(rope_scaling_unsupported,
                 flag_unsupported("use_bidirectional_attention", "bidirectional attention")))

# Gemma 3 -----------------------------------------------------------------------------------------

# Each layer type's rotary base: the key of older config.json files, and transformers' default.
GEMMA3_ROPE = {"full_attention": ("rope_theta", 1_000_000.0),
               "sliding_attention": ("rope_local_base_freq", 10_000.0)}


def gemma3_layer_types(hf) -> list[str]:
  """Each layer's type, "sliding_attention" or "full_attention": config.json's layer_types,
  else transformers' pattern (every sliding_window_pattern-th layer global, 6 by default)."""
  if hf.get("layer_types"):
    return list(hf["layer_types"])
  every = hf.get("sliding_window_pattern") or hf.get("_sliding_window_pattern") or 6
  return ["sliding_attention" if (i + 1) % every else "full_attention"
          for i in range(hf["num_hidden_layers"])]


def _gemma3_rope(hf, layer_type: str) -> Mapping[str, Any]:
  """rope_parameters[layer_type] (transformers 5); {} in older files (top-level keys)."""
  return (hf.get("rope_parameters") or {}).get(layer_type) or {}


def gemma3_rope_base(hf, layer_type: str) -> float:
  key, default = GEMMA3_ROPE[layer_type]
  return float(_gemma3_rope(hf, layer_type).get("rope_theta") or hf.get(key) or default)


def gemma3_unsupported_layers(hf) -> Optional[str]:
  """Rope scaling on any layer type (older files: rope_scaling, of the global layers), or a
  layer type other than sliding and full attention."""
  unknown = sorted(set(gemma3_layer_types(hf)) - set(GEMMA3_ROPE))
  if unknown:
    return f"layer_types {unknown}"
  scaled = [hf.get("rope_scaling") or {}] + [_gemma3_rope(hf, kind) for kind in GEMMA3_ROPE]
  kinds = sorted({rope.get("rope_type", rope.get("type", "default")) for rope in scaled} - {"default"})
  return f"rope_type {kinds} (only unscaled rotary is supported)" if kinds else None


GEMMA3_TENSORS = (
    *(rule for rule in LLAMA_TENSORS if rule.ours != "layers/mlp_norm/scale"),
    *(Rule(f"layers/attention/{x}_norm", _LAYER + f"self_attn.{x}_norm.weight", same) for x in "qk"),
    *norm_rules("layers/attn_post_norm", _LAYER + "post_attention_layernorm", bias=False),
    *norm_rules("layers/mlp_norm", _LAYER + "pre_feedforward_layernorm", bias=False),
    *norm_rules("layers/mlp_post_norm", _LAYER + "post_feedforward_layernorm", bias=False),
)

GEMMA3 = Architecture(
    "Gemma3ForCausalLM",
    GEMMA.fields | dict(
        norm_eps=Key("rms_norm_eps", 1e-6), max_seq_len=Key("max_position_embeddings", 131072),
        query_scale=Key("query_pre_attn_scalar", 256, lambda scalar: float(scalar) ** -0.5),
        qk_norm=True, post_norms=True,
        rope_base=lambda hf: gemma3_rope_base(hf, "full_attention"),
        layer_rope_bases=lambda hf: tuple(gemma3_rope_base(hf, kind)
                                          for kind in gemma3_layer_types(hf)),
        layer_windows=lambda hf: tuple(Key("sliding_window", 4096)(hf) if kind == "sliding_attention"
                                       else 0 for kind in gemma3_layer_types(hf))),
    GEMMA3_TENSORS, ("model.",), _LLAMA_BUFFERS,
    unsupported=(gemma3_unsupported_layers,
                 flag_unsupported("use_bidirectional_attention", "bidirectional attention"),
                 flag_unsupported("attn_logit_softcapping", "attention logit softcapping"),
                 flag_unsupported("final_logit_softcapping", "final logit softcapping")))

# GPT-2 ------------------------------------------------------------------------------------------

_BLOCK = "{p}h.{layer}."
GPT2 = Architecture(
    "GPT2LMHeadModel",
    dict(vocab_size=Key("vocab_size"), d_model=Key(("n_embd", "hidden_size")),
         num_layers=Key(("n_layer", "num_hidden_layers")),
         num_heads=Key(("n_head", "num_attention_heads")), mlp_dim=Key("n_inner", None),
         activation=Key("activation_function", "gelu_new", activation(HF_ACTIVATIONS)),
         norm="layer", norm_eps=Key("layer_norm_epsilon", 1e-5), position="learned",
         max_seq_len=Key(("n_positions", "max_position_embeddings"), 1024),
         tie_embeddings=Key("tie_word_embeddings", True), qkv_bias=True, attn_out_bias=True,
         mlp_bias=True, query_scale=lambda hf: None if hf.get("scale_attn_weights", True) else 1.0),
    (
        Rule("embed/embeddings", "{p}wte.weight", same),
        Rule("embed/positions", "{p}wpe.weight", same),
        *norm_rules("layers/attn_norm", _BLOCK + "ln_1"),
        *(Rule(f"layers/attention/{x}", _BLOCK + "attn.c_attn.weight", gpt2_qkv_weight(i))
          for i, x in enumerate("qkv")),
        *(Rule(f"layers/attention/{x}_bias", _BLOCK + "attn.c_attn.bias", gpt2_qkv_bias(i))
          for i, x in enumerate("qkv")),
        Rule("layers/attention/o", _BLOCK + "attn.c_proj.weight", split_heads),
        Rule("layers/attention/o_bias", _BLOCK + "attn.c_proj.bias", same),
        *norm_rules("layers/mlp_norm", _BLOCK + "ln_2"),
        *mlp_rules(_BLOCK + "mlp.", {"in": "c_fc", "out": "c_proj"}, same),   # Conv1D: [in, out]
        *norm_rules("final_norm", "{p}ln_f"),
        Rule("unembed/w", "lm_head.weight", transpose),
    ),
    prefixes=("transformer.", ""),   # GPT2LMHeadModel files use "transformer."; GPT2Model none
    ignored=(r"\.attn\.bias$", r"\.attn\.masked_bias$"),
    unsupported=(lambda hf: "scale_attn_by_inverse_layer_idx (a per-layer attention scale)"
                 if hf.get("scale_attn_by_inverse_layer_idx") else None,
                 lambda hf: "cross-attention" if hf.get("add_cross_attention") else None),
)

# GPT-NeoX (Pythia) ------------------------------------------------------------------------------

_NEOX = "{p}layers.{layer}."
GPT_NEOX = Architecture(
    "GPTNeoXForCausalLM",
    dict(vocab_size=Key("vocab_size"), d_model=Key("hidden_size"),
         num_layers=Key("num_hidden_layers"), num_heads=Key("num_attention_heads"),
         mlp_dim=Key("intermediate_size"),
         activation=Key("hidden_act", "gelu", activation(HF_ACTIVATIONS)), norm="layer",
         norm_eps=Key("layer_norm_eps", 1e-5), position="rotary", rope_base=rope_base,
         rotary_fraction=rotary_fraction(0.25), max_seq_len=Key("max_position_embeddings", 2048),
         parallel_block=Key("use_parallel_residual", True),
         tie_embeddings=Key("tie_word_embeddings", False),
         qkv_bias=Key("attention_bias", True), attn_out_bias=Key("attention_bias", True),
         mlp_bias=True),
    (
        Rule("embed/embeddings", "{p}embed_in.weight", same),
        *norm_rules("layers/attn_norm", _NEOX + "input_layernorm"),
        *(Rule(f"layers/attention/{x}", _NEOX + "attention.query_key_value.weight",
               neox_qkv_weight(i)) for i, x in enumerate("qkv")),
        *(Rule(f"layers/attention/{x}_bias", _NEOX + "attention.query_key_value.bias",
               neox_qkv_bias(i)) for i, x in enumerate("qkv")),
        Rule("layers/attention/o", _NEOX + "attention.dense.weight", linear_from_heads),
        Rule("layers/attention/o_bias", _NEOX + "attention.dense.bias", same),
        *norm_rules("layers/mlp_norm", _NEOX + "post_attention_layernorm"),
        *mlp_rules(_NEOX + "mlp.", {"in": "dense_h_to_4h", "out": "dense_4h_to_h"}, transpose),
        *norm_rules("final_norm", "{p}final_layer_norm"),
        Rule("unembed/w", ("embed_out.weight", "lm_head.weight"), transpose),
    ),
    prefixes=("gpt_neox.",),
    ignored=(r"\.attention\.bias$", r"\.attention\.masked_bias$", r"rotary_emb\.inv_freq$"),
)

ARCHITECTURES = {arch.name: arch for arch in (LLAMA, MISTRAL, QWEN2, GEMMA, GEMMA3, GPT2,
                                               GPT_NEOX)}
