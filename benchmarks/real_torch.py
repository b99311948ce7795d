"""The plain-PyTorch final-token sweeps of benchmarks/real_model.py: (e), (e') and (f).

Each ablated run decodes only the final token of each prompt against the clean run's
key/value cache, layer by layer in plain PyTorch (fused q|k|v and gate|up matmuls, the
centred logit of the scored token as a dot product: no [B, V] logits), for a transformers
Llama (SmolLM2) or Gemma 3 model. What differs between the two is data
(`sweep_methods.TORCH_LAYOUTS`): which modules are the norms around each sublayer (Gemma 3:
a norm before *and after* attention and the MLP; a^l and m^l are the post-norms' outputs),
the query / key norms, the final norm's gain offset (1 + w), and per layer the rotary
table (Gemma 3: a local and a global base) and the sliding window (0: global), read from
the model's config.

Shapes: B prompts, T padded positions, K sources, L layers, C = 2L components, D d_model,
H query heads, G key/value heads, E head size; a leading [...] stacks runs.
"""

from __future__ import annotations

import inspect
import time

import numpy as np
import torch
import torch.nn.functional as F
from transformers.models.llama.modeling_llama import apply_rotary_pos_emb

import sweep_methods as methods


def layout(model) -> dict:
  """The model's entry of `sweep_methods.TORCH_LAYOUTS`; one clear line if it has none."""
  kind = model.config.model_type
  if kind not in methods.TORCH_LAYOUTS:
    raise SystemExit(f"no torch layout for model_type {kind!r}: one of {sorted(methods.TORCH_LAYOUTS)}")
  return methods.TORCH_LAYOUTS[kind]


def windows(config) -> list[int]:
  """Sliding window per layer [L] (0: global) from a transformers config's layer_types."""
  types = getattr(config, "layer_types", None) or ["full_attention"] * config.num_hidden_layers
  return [config.sliding_window if kind == "sliding_attention" else 0 for kind in types]


def layer_weights(model) -> list[dict]:
  """Per layer: its norms (identity where the architecture has none), W_q|k|v, W_o, W_gate|up,
  W_down, the activation and the attention's query scale."""
  modules, none = layout(model)["modules"], torch.nn.Identity()
  if any(module.bias is not None for module in model.model.layers.modules() if isinstance(module, torch.nn.Linear)):
    raise SystemExit("the torch loops multiply by the projections' weights only: this model has biases")
  pick = lambda layer, name: layer.get_submodule(name) if name else none
  return [{**{role: pick(layer, name) for role, name in modules.items()},
           "qkv": torch.cat([a.q_proj.weight, a.k_proj.weight, a.v_proj.weight]), "o": a.o_proj.weight,
           "gate_up": torch.cat([m.gate_proj.weight, m.up_proj.weight]), "down": m.down_proj.weight,
           "act": m.act_fn, "scaling": a.scaling}
          for layer in model.model.layers for a, m in [(layer.self_attn, layer.mlp)]]


def _rotary(model, x0, last) -> list:
  """(cos, sin) [B, E] of the final positions, per layer (Gemma 3: per layer type)."""
  types = getattr(model.config, "layer_types", None) or ["full_attention"] * model.config.num_hidden_layers
  by_type = layout(model)["rotary_by_layer_type"]
  table = {kind: model.model.rotary_emb(x0[:, None], last[:, None], *([kind] if by_type else []))
           for kind in set(types)}
  return [(table[kind][0][:, 0], table[kind][1][:, 0]) for kind in types]


def full_cache(model) -> dict:
  """The keyword of a DynamicCache that keeps every position on every layer (a model's own
  cache keeps only the last window of a sliding layer): `cache` (transformers 5.2x), else
  `past_key_values`."""
  from transformers import DynamicCache
  name = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"
  return {name: DynamicCache()}


def clean_prefix(model, tokens, lengths) -> dict:
  """The clean run: key/value cache [B, T, G, E] and key mask [B, T] per layer, final-position
  components [B, C, D] (hooks on what each sublayer adds), the residual before each
  [B, C + 1, D], the scored token's direction, sigma, logit."""
  ids, last = torch.as_tensor(tokens, dtype=torch.long), torch.as_tensor(lengths - 1, dtype=torch.long)
  rows, T, cfg, seen, names = torch.arange(len(ids)), ids.shape[1], model.config, [], layout(model)["hooked"]
  record = lambda module, inputs, out: seen.append((out[0] if isinstance(out, tuple) else out)[rows, last])
  hooks = [layer.get_submodule(name).register_forward_hook(record)
           for layer in model.model.layers for name in names]
  out = model(ids, use_cache=True, **full_cache(model))
  for hook in hooks:
    hook.remove()
  token, w_u, components = out.logits[rows, last].argmax(-1), model.lm_head.weight, torch.stack(seen, 1)
  x0 = model.model.embed_tokens(ids[rows, last])                      # (Gemma: times sqrt(D))
  resid = torch.cumsum(torch.cat([x0[:, None], components], 1), 1)      # the model's order of additions
  cache = (out.cache if getattr(out, "cache", None) is not None else out.past_key_values).layers
  before = torch.arange(T)[None] < last[:, None]
  within = lambda w: before & (last[:, None] - torch.arange(T)[None] < w) if w else before   # q - k < W
  gain = layout(model)["gain_offset"] + model.model.norm.weight
  p = {"keys": [c.keys.transpose(1, 2) for c in cache], "values": [c.values.transpose(1, 2) for c in cache],
       "masks": [within(w) for w in windows(cfg)], "rope": _rotary(model, x0, last),
       "x0": x0, "components": components, "resid": resid, "token": token, "eps": cfg.rms_norm_eps,
       "direction": gain * (w_u[token] - w_u.mean(0)),
       "shape": (cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim)}
  p["sigma"] = torch.sqrt(resid[:, -1].pow(2).mean(-1) + cfg.rms_norm_eps)
  return {**p, "clean_logit": (resid[:, -1] * p["direction"]).sum(-1) / p["sigma"]}


def attend(x, w, p, layer):
  """a^l [..., B, D] of final tokens x [..., B, D] over prompt b's cache and themselves."""
  H, G, E = p["shape"]
  q, k, v = F.linear(w["attn_norm"](x), w["qkv"]).split([H * E, G * E, G * E], -1)
  q, k = w["q_norm"](q.unflatten(-1, (H, E))), w["k_norm"](k.unflatten(-1, (G, E)))
  q, k = apply_rotary_pos_emb(q, k, *p["rope"][layer])
  q = q.unflatten(-2, (G, H // G)) * w["scaling"]                     # [..., B, G, H / G, E]
  scores = torch.einsum("...bgqe,btge->...bgqt", q, p["keys"][layer]).masked_fill(
      ~p["masks"][layer][:, None, None], float("-inf"))
  attn = torch.softmax(torch.cat([scores, (q * k.unsqueeze(-2)).sum(-1, keepdim=True)], -1), -1)
  out = torch.einsum("...bgqt,btge->...bgqe", attn[..., :-1], p["values"][layer])
  out = out + attn[..., -1:] * v.unflatten(-1, (G, E)).unsqueeze(-2)
  return w["attn_post"](F.linear(out.flatten(-3), w["o"]))


def mlp(x, w, p, layer):
  """m^l [..., B, D] of x [..., B, D] (z^{l-1} + a^l)."""
  gate, up = F.linear(w["mlp_norm"](x), w["gate_up"]).chunk(2, -1)
  return w["mlp_post"](F.linear(w["act"](gate) * up, w["down"]))


def sweep_layers(weights, p, comps: list, src, skip: bool):
  """Ablations of components comps, each for sources src [K, B] of the B prompts, run together
  layer by layer (each layer's matmuls shared by all runs): a run joins at its ablated layer
  from the clean residual there (skip), else at layer 0. TE [n, K, B], dDE [n, K, B, C]."""
  L, (K, B) = len(weights), src.shape
  de = lambda v, c: ((v - p["components"][:, c]) * p["direction"]).sum(-1) / p["sigma"]   # [..., B]
  x, dde, order = p["x0"].new_zeros(0, K, B, p["x0"].shape[-1]), p["x0"].new_zeros(0, K, B, 2 * L), []
  for layer in range(L + 1):
    for c in [c for c in comps if (c // 2 + c % 2 if skip else 0) == layer]:     # runs joining here
      start = p["resid"][:, c] + p["components"][src, c] if skip and c % 2 else p["resid"][:, c if skip else 0]
      x, order = torch.cat([x, start.expand(K, -1, -1)[None]]), order + [c]
      dde = torch.cat([dde, dde.new_zeros(1, K, B, 2 * L)])
      if skip and c % 2:                                                 # m^l replaced: no layer l
        dde[-1, :, :, c] = de(p["components"][src, c], c)
    if layer == L:
      break
    for c, sublayer in ((2 * layer, attend), (2 * layer + 1, mlp)):
      out = sublayer(x, weights[layer], p, layer)
      if c in order:                                                     # the ablated run's replacement
        out[order.index(c)] = p["components"][src, c]
      dde[..., c], x = de(out, c), x + out
  te = (x * p["direction"]).sum(-1) / torch.sqrt(x.pow(2).mean(-1) + p["eps"]) - p["clean_logit"]
  back = np.argsort(order)
  return te[back], dde[back]


def torch_cached(skip: bool, together: bool):
  """(e) per component, from its layer (skip) or all layers; (f) all components at once (together)."""
  def run(model, tokens, lengths, sources, args):
    weights = layer_weights(model)
    (B, K), C = sources.shape, 2 * len(weights)
    block, groups = min(args.source_block or K, K), [list(range(C))] if together else [[c] for c in range(C)]
    te, dde = np.zeros((B, K, C)), np.zeros((B, K, C, C))
    with torch.inference_mode():
      p = clean_prefix(model, tokens, lengths)
      start = time.perf_counter()
      for k0 in range(0, K, block):
        ks, src = slice(k0, k0 + block), torch.as_tensor(sources[:, k0:k0 + block].T, dtype=torch.long)
        for comps in groups:
          cell = sweep_layers(weights, p, comps, src, skip)
          te[:, ks, comps] = cell[0].permute(2, 1, 0).numpy()
          dde[:, ks, comps] = cell[1].permute(2, 1, 0, 3).numpy()
      seconds = time.perf_counter() - start
    results = {"token": p["token"].numpy(), "clean_logit": p["clean_logit"].numpy(),
               "total_effect": te, "response": dde.mean(1)}
    return results, {"compile_s": 0.0, "run_s": seconds, "ablations": B * K * C,
                     "forwards_per_s": B * K * C / seconds, "source_block": block}
  return run
