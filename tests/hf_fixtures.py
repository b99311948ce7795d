"""Tiny random Hugging Face models of the six supported architectures, built offline.

`build(arch, directory)` makes a 2-layer, d_model 64, vocabulary 100 `transformers` model
from a config (eager attention, float32), overwrites its weights with draws large enough
that logits and per-layer outputs are far from zero (HF's own init gives near-constant
logits), saves it with safetensors and returns the torch model in eval mode. Test-time
only: torch and transformers are the reference implementation here.

`capture(model, arch, tokens)` runs the reference with forward hooks on every layer's
attention and MLP module and returns logits [B, T, V] and attn_out / mlp_out [B, L, T, D].
For Gemma 3 the hooked modules are the sublayers' post-norms (post_attention_layernorm,
post_feedforward_layernorm), whose outputs are what each sublayer adds to the residual.

`EXTRA_CONFIGS` holds architectures tested in their own files rather than in the parity
suite over `CONFIGS` (tests/test_hf_parity.py): "gemma3" (tests/test_gemma3.py), 3 layers
(sliding, global, sliding; window 4), head_dim 32, query_pre_attn_scalar 48, rotary bases
100 (local) and 5000 (global).
"""

from __future__ import annotations

import numpy as np
import torch
import transformers

VOCAB, D_MODEL, LAYERS = 100, 64, 2

_LLAMA_DIMS = dict(vocab_size=VOCAB, hidden_size=D_MODEL, num_hidden_layers=LAYERS,
                   intermediate_size=96, max_position_embeddings=64)

CONFIGS = {
    "llama": lambda: transformers.LlamaConfig(
        **_LLAMA_DIMS, num_attention_heads=4, num_key_value_heads=2, head_dim=24,
        rope_theta=500.0, attention_bias=True, tie_word_embeddings=False),
    "mistral": lambda: transformers.MistralConfig(
        **_LLAMA_DIMS, num_attention_heads=4, num_key_value_heads=1, sliding_window=16),
    "qwen2": lambda: transformers.Qwen2Config(
        **_LLAMA_DIMS, num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True),
    "gemma": lambda: transformers.GemmaConfig(
        **_LLAMA_DIMS, num_attention_heads=4, num_key_value_heads=1, head_dim=16),
    "gpt2": lambda: transformers.GPT2Config(
        vocab_size=VOCAB, n_embd=D_MODEL, n_layer=LAYERS, n_head=4, n_positions=32,
        bos_token_id=0, eos_token_id=0),
    "gpt_neox": lambda: transformers.GPTNeoXConfig(
        vocab_size=VOCAB, hidden_size=D_MODEL, num_hidden_layers=LAYERS, num_attention_heads=4,
        intermediate_size=128, rotary_pct=0.5, rotary_emb_base=1000, max_position_embeddings=64),
}

EXTRA_CONFIGS = {
    "gemma3": lambda: transformers.Gemma3TextConfig(
        **(_LLAMA_DIMS | dict(num_hidden_layers=3)), num_attention_heads=4, num_key_value_heads=2,
        head_dim=32, query_pre_attn_scalar=48, sliding_window=4,
        layer_types=["sliding_attention", "full_attention", "sliding_attention"],
        rope_parameters={"sliding_attention": {"rope_type": "default", "rope_theta": 100.0},
                         "full_attention": {"rope_type": "default", "rope_theta": 5000.0}}),
}

# Where each architecture keeps its layers, and the modules whose outputs are a^l and m^l.
LAYER_MODULES = {
    "llama": ("model.layers", "self_attn", "mlp"), "mistral": ("model.layers", "self_attn", "mlp"),
    "qwen2": ("model.layers", "self_attn", "mlp"), "gemma": ("model.layers", "self_attn", "mlp"),
    "gpt2": ("transformer.h", "attn", "mlp"), "gpt_neox": ("gpt_neox.layers", "attention", "mlp"),
    "gemma3": ("model.layers", "post_attention_layernorm", "post_feedforward_layernorm"),
}


def _randomise(model, seed: int) -> None:
  """Weights ~ N(0, 0.15), biases ~ N(0, 0.1), norm gains ~ 1 + N(0, 0.1) (effective gain)."""
  generator = torch.Generator().manual_seed(seed)
  gemma = isinstance(model, (transformers.GemmaForCausalLM, transformers.Gemma3ForCausalLM))
  with torch.no_grad():
    for name, param in model.named_parameters():
      noise = torch.randn(param.shape, generator=generator)
      is_norm = param.ndim == 1 and ("norm" in name or ".ln_" in name)
      if is_norm and name.endswith("weight"):
        param.copy_(0.1 * noise + (0.0 if gemma else 1.0))
      elif param.ndim == 1:
        param.copy_(0.1 * noise)
      else:
        param.copy_(0.15 * noise)


def build(arch: str, directory, *, seed: int = 0, dtype=torch.float32, **save_kwargs):
  """Save a random tiny `arch` model to `directory`; return the torch model (eval mode)."""
  config = (CONFIGS | EXTRA_CONFIGS)[arch]()
  config._attn_implementation = "eager"
  torch.manual_seed(seed)
  model = transformers.AutoModelForCausalLM.from_config(config, attn_implementation="eager")
  _randomise(model, seed)
  model = model.to(dtype).eval()
  model.save_pretrained(directory, safe_serialization=True, **save_kwargs)
  return model


def _module(model, dotted: str):
  for part in dotted.split("."):
    model = getattr(model, part)
  return model


def capture(model, arch: str, tokens: np.ndarray, zero_attn: tuple[int, int] | None = None):
  """Reference run on tokens [B, T]: logits [B, T, V], attn_out, mlp_out [B, L, T, D].

  zero_attn=(layer, position) zeroes that layer's attention output at that position
  (a forward hook returning a modified output), as an ablation reference.
  """
  layers_path, attn_name, mlp_name = LAYER_MODULES[arch]
  captured = {"attn": {}, "mlp": {}}
  handles = []

  def hook(kind, index):
    def fn(module, args, output):
      tensor = output[0] if isinstance(output, tuple) else output
      if kind == "attn" and zero_attn is not None and zero_attn[0] == index:
        tensor = tensor.clone()
        tensor[:, zero_attn[1]] = 0.0
        output = (tensor, *output[1:]) if isinstance(output, tuple) else tensor
      captured[kind][index] = tensor.detach().float().numpy()
      return output
    return fn

  for index, layer in enumerate(_module(model, layers_path)):
    handles.append(getattr(layer, attn_name).register_forward_hook(hook("attn", index)))
    handles.append(getattr(layer, mlp_name).register_forward_hook(hook("mlp", index)))
  try:
    with torch.no_grad():
      logits = model(torch.as_tensor(tokens, dtype=torch.long)).logits.float().numpy()
  finally:
    for handle in handles:
      handle.remove()
  stack = lambda kind: np.stack([captured[kind][i] for i in sorted(captured[kind])], axis=1)
  return logits, stack("attn"), stack("mlp")


# Per-head ablation with a forward pre-hook on each layer's attention output projection,
# whose input is the heads' outputs side by side [B, T, H * E] (TransformerLens's "z").
OUTPUT_PROJECTIONS = {arch: f"{attn}.{'c_proj' if arch == 'gpt2' else 'dense' if arch == 'gpt_neox' else 'o_proj'}"
                      for arch, (_, attn, _) in LAYER_MODULES.items() if arch in CONFIGS}
OUTPUT_PROJECTIONS["gemma3"] = "self_attn.o_proj"


def _projection(model, arch: str, layer: int):
  layers_path = LAYER_MODULES[arch][0]
  return _module(_module(model, layers_path)[layer], OUTPUT_PROJECTIONS[arch])


def head_outputs(model, arch: str, tokens) -> np.ndarray:
  """[B, L, T, H * E]: every layer's per-head outputs (the output projection's input)."""
  captured, handles = {}, []
  for layer in range(len(_module(model, LAYER_MODULES[arch][0]))):
    store = lambda module, args, layer=layer: captured.__setitem__(layer, args[0].detach().clone())
    handles.append(_projection(model, arch, layer).register_forward_pre_hook(store))
  try:
    with torch.no_grad():
      model(torch.as_tensor(tokens, dtype=torch.long))
  finally:
    for handle in handles:
      handle.remove()
  return torch.stack([captured[i] for i in sorted(captured)], dim=1).float().numpy()


def ablate_head(model, arch: str, tokens, layer: int, head: int, value) -> torch.Tensor:
  """Logits [B, T, V] with head `head` of `layer` replaced at all positions by value [B, T, E]."""
  value = torch.as_tensor(value)
  width = value.shape[-1]

  def replace(module, args):
    z = args[0].clone()
    z[..., head * width:(head + 1) * width] = value
    return (z, *args[1:])

  handle = _projection(model, arch, layer).register_forward_pre_hook(replace)
  try:
    with torch.no_grad():
      return model(torch.as_tensor(tokens, dtype=torch.long)).logits
  finally:
    handle.remove()


def next_token_scores(logits: torch.Tensor, tokens) -> tuple[np.ndarray, np.ndarray]:
  """(centred logit, log-prob) [B, T - 1] of each position's true next token."""
  logits = logits[:, :-1].float()
  index = torch.as_tensor(tokens[:, 1:], dtype=torch.long)[..., None]
  centred = (logits - logits.mean(-1, keepdim=True)).gather(-1, index)[..., 0]
  logprob = torch.log_softmax(logits, -1).gather(-1, index)[..., 0]
  return centred.numpy(), logprob.numpy()
