"""Benchmark: the compiled Hydra sweep on SmolLM2-135M against the strongest PyTorch loops.

SmolLM2-135M: the GGUF when cached or given (`load_gguf`; transformers dequantizes the same
file), else a random-init Llama of its shape as a Hugging Face checkpoint (`load_hf`). N prompts
(known facts via the GGUF's tokenizer, else random tokens), K sources each, all C = 60
components resampled at the final position; each method is checked against (c) on its cells:

  (c) incremental       hydra_sweep(path="incremental"), the whole sweep
  (d) torch_hooks       sweep_methods.torch_hooks: a full forward of the N prompts per cell
  (e) torch_cached      per component, N x K rows: the final token against the clean key/value
                        cache, from the ablated layer up, fused q|k|v and gate|up, no logits
  (e') torch_cached_all the same through all 30 layers (a hook on a cached decode)
  (f) torch_layer_major every cell at once, layer by layer: runs join at their ablated layer

"of peak": (c)'s minimal FLOPs per ablated forward (`sweep.flops`) x forwards/s over the best
float32 matmul peak of the run (`sweep.matmul_peak`, measured before each method).

    python benchmarks/real_model.py --quick       # --json out.json, --gguf PATH, --random-init
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from transformers.models.llama.modeling_llama import apply_rotary_pos_emb

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE)]
import sweep as bench                      # noqa: E402  (benchmarks/sweep.py)
import sweep_methods as methods            # noqa: E402

GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
FACTS = HERE.parent.parent / "shared" / "data" / "known_1000.json"
SMOL = dict(vocab_size=49152, hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
            num_attention_heads=9, num_key_value_heads=3, head_dim=64, rms_norm_eps=1e-5,
            rope_theta=100000.0, tie_word_embeddings=True, max_position_embeddings=8192)


def parse_args(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--quick", action="store_true", help="fewer loop cells, one timed sweep")
  parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
  parser.add_argument("--gguf", type=Path, help=f"the GGUF (default: the cached {GGUF_NAME})")
  parser.add_argument("--random-init", action="store_true", help="the random-init model even if a GGUF is cached")
  parser.add_argument("--lengths", type=int, nargs=2, default=(12, 16), help="prompt lengths, min max")
  for flag, default, text in (("prompts", 16, "N"), ("sources", 15, "K, sources per prompt"),
                              ("hook-sources", 1, "sources (d) times"),
                              ("hook-components", None, "components (d) times, spread (default 60, quick 12)"),
                              ("cached-sources", None, "sources (e) times (default K, quick 5)"),
                              ("source-block", None, "sources (e) runs in one call (default all it times)"),
                              ("repeats", 3, "timed runs of (c), at least (quick 1)")):
    parser.add_argument(f"--{flag}", type=int, default=default, help=text)
  args = parser.parse_args(argv)
  count = min(args.hook_components or (12 if args.quick else 60), 60)
  args.hook_components = np.linspace(0, 59, count).round().astype(int).tolist()
  args.cached_sources = min(args.cached_sources or (5 if args.quick else args.sources), args.sources)
  args.hook_sources, args.repeats = min(args.hook_sources, args.sources), 1 if args.quick else args.repeats
  return args


def load_models(args, workdir: Path):
  """(hydra_jax's (config, params), the torch model, a tokenizer or None, what was loaded)."""
  cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
  path = args.gguf or cache / "hydra_jax" / "models" / GGUF_NAME
  if not args.random_init and path.is_file():
    from hydra_jax.checkpoints import load_gguf
    from transformers import AutoConfig, AutoTokenizer, LlamaForCausalLM
    from transformers.modeling_gguf_pytorch_utils import load_gguf_checkpoint
    model = LlamaForCausalLM(AutoConfig.from_pretrained(path.parent, gguf_file=path.name)).float().eval()
    # what from_pretrained(gguf_file=...) does, without its dependency on accelerate
    model.load_state_dict(load_gguf_checkpoint(path, True, model)["tensors"], strict=False)
    model.tie_weights()
    tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    return load_gguf(path), model, tokenizer, f"GGUF {path}"
  from transformers import LlamaConfig, LlamaForCausalLM
  torch.manual_seed(0)
  LlamaForCausalLM(LlamaConfig(**SMOL, initializer_range=0.05)).save_pretrained(workdir / "model")
  return (methods.load(workdir / "model", "incremental"), methods.load(workdir / "model", "torch_hooks"),
          None, "random init, SmolLM2-135M's shape")


def make_prompts(args, tokenizer):
  """tokens [N, T] (right-padded), lengths [N]: known facts whose length is in range, else random."""
  low, high = args.lengths
  if tokenizer is not None and FACTS.is_file():
    ids = [tokenizer(fact["prompt"]).input_ids for fact in json.loads(FACTS.read_text())]
    ids, what = [i for i in ids if low <= len(i) <= high][:args.prompts], "known facts"
  else:
    rng = np.random.default_rng(0)
    ids = [rng.integers(0, SMOL["vocab_size"], n).tolist() for n in rng.integers(low, high + 1, args.prompts)]
    what = "random tokens"
  tokens = np.array([i + [0] * (high - len(i)) for i in ids], np.int32)             # right-padded
  return tokens, np.array([len(i) for i in ids], np.int32), what


# (e), (f): the final token against the clean cache, in plain PyTorch ----------------------------


def layer_weights(model):
  """Per layer: (input norm, W_q|k|v, W_o, post-attention norm, W_gate|up, W_down)."""
  return [(layer.input_layernorm, torch.cat([a.q_proj.weight, a.k_proj.weight, a.v_proj.weight]),
           a.o_proj.weight, layer.post_attention_layernorm, torch.cat([m.gate_proj.weight, m.up_proj.weight]),
           m.down_proj.weight) for layer in model.model.layers for a, m in [(layer.self_attn, layer.mlp)]]


def clean_prefix(model, tokens, lengths) -> dict:
  """The clean run: key/value cache [B, T, G, E] per layer, final-position components [B, C, D]
  (hooks), the residual before each [B, C + 1, D], the scored token's direction, sigma, logit."""
  ids, last = torch.as_tensor(tokens, dtype=torch.long), torch.as_tensor(lengths - 1, dtype=torch.long)
  rows, T, cfg, seen = torch.arange(len(ids)), ids.shape[1], model.config, []
  record = lambda module, inputs, out: seen.append((out[0] if isinstance(out, tuple) else out)[rows, last])
  hooks = [m.register_forward_hook(record) for layer in model.model.layers for m in (layer.self_attn, layer.mlp)]
  out = model(ids, use_cache=True)
  for hook in hooks:
    hook.remove()
  token, w_u, components = out.logits[rows, last].argmax(-1), model.lm_head.weight, torch.stack(seen, 1)
  x0 = model.model.embed_tokens(ids[rows, last])
  resid = torch.cumsum(torch.cat([x0[:, None], components], 1), 1)      # the model's order of additions
  cos, sin = model.model.rotary_emb(x0[:, None], last[:, None])
  cache = out.past_key_values.layers
  p = {"keys": [c.keys.transpose(1, 2) for c in cache], "values": [c.values.transpose(1, 2) for c in cache],
       "mask": torch.arange(T)[None] < last[:, None], "cos": cos[:, 0], "sin": sin[:, 0],
       "x0": x0, "components": components, "resid": resid, "token": token, "eps": cfg.rms_norm_eps,
       "direction": model.model.norm.weight * (w_u[token] - w_u.mean(0)),
       "shape": (cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim)}
  p["sigma"] = torch.sqrt(resid[:, -1].pow(2).mean(-1) + cfg.rms_norm_eps)
  return {**p, "clean_logit": (resid[:, -1] * p["direction"]).sum(-1) / p["sigma"]}


def attend(x, weights, p, layer):
  """Attention output [..., B, D] of final tokens x [..., B, D] over prompt b's cache and themselves."""
  H, G, E = p["shape"]
  q, k, v = F.linear(weights[0](x), weights[1]).split([H * E, G * E, G * E], -1)
  q, k = apply_rotary_pos_emb(q.unflatten(-1, (H, E)), k.unflatten(-1, (G, E)), p["cos"], p["sin"])
  q = q.unflatten(-2, (G, H // G)) * E ** -0.5                            # [..., B, G, H / G, E]
  scores = torch.einsum("...bgqe,btge->...bgqt", q, p["keys"][layer]).masked_fill(
      ~p["mask"][:, None, None], float("-inf"))
  attn = torch.softmax(torch.cat([scores, (q * k.unsqueeze(-2)).sum(-1, keepdim=True)], -1), -1)
  out = torch.einsum("...bgqt,btge->...bgqe", attn[..., :-1], p["values"][layer])
  return F.linear((out + attn[..., -1:] * v.unflatten(-1, (G, E)).unsqueeze(-2)).flatten(-3), weights[2])


def mlp(x, weights, p, layer):
  gate, up = F.linear(weights[3](x), weights[4]).chunk(2, -1)
  return F.linear(F.silu(gate) * up, weights[5])


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


def executed_flops(config, T: int, K: int) -> dict:
  """FLOPs per ablated forward as each method runs it; "minimal" is (c)'s work without its clean pass."""
  per = bench.flops(config, T)
  minimal, C = per["incremental"], per["components"]
  attend = lambda keys: 4 * config.num_heads * config.head_size * keys
  layer = per["full"] / (T * config.num_layers) - attend(T)            # dense FLOPs per token and layer
  all_layers = config.num_layers * (layer + attend(T + 1))
  return {"minimal": minimal, "incremental": minimal + per["clean_per_prompt"] / (K * C),
          "torch_hooks": per["torch_hooks"], "torch_cached": minimal, "torch_cached_all": all_layers,
          "torch_layer_major": minimal}


def run_methods(args, loaded, model, tokens, lengths, sources) -> tuple[dict, dict]:
  """Every method's timing (and the matmul peak just before it); its agreement with (c) on its cells."""
  from hydra_jax.sweep import engine
  (config, params), fields = loaded, ("token", "clean_logit", "total_effect", "response")
  peak = bench.matmul_peak()
  results, timing = methods.compiled_sweep("incremental")(loaded, tokens, lengths, sources, args)
  reports, agree = {"incremental": {**timing, "peak": peak, "load": os.getloadavg()[0]}}, {}
  runs = {"torch_layer_major": (torch_cached(True, True), args.sources),
          "torch_cached": (torch_cached(True, False), args.cached_sources),
          "torch_cached_all": (torch_cached(False, False), args.cached_sources),
          "torch_hooks": (methods.RUNNERS["torch_hooks"], args.hook_sources)}
  for name, (runner, count) in runs.items():
    print(f"{name}: {count} of {args.sources} sources", flush=True)
    peak, load = bench.matmul_peak(), os.getloadavg()[0]
    out, timing = runner(model, tokens, lengths, sources[:, :count], args)
    reports[name] = {**timing, "peak": peak, "load": load}
    ref = results if count == args.sources else {k: np.asarray(getattr(engine.hydra_sweep(
        params, config, tokens, lengths, sources[:, :count]), k)) for k in fields}
    comps = args.hook_components if name == "torch_hooks" else slice(None)   # the cells it ran
    cut = lambda r: {**r, "total_effect": r["total_effect"][..., comps], "response": r["response"][:, comps]}
    agree[name] = bench.agreement(cut(ref), cut(out))
  return reports, agree


def summarise(args, config, reports, agree, T, facts) -> dict:
  work = executed_flops(config, T, args.sources)
  peak = max([r["peak"] for r in reports.values()] + [facts.pop("peak_end")])
  rows = {name: {"compile_s": r["compile_s"], "forwards_per_s": r["forwards_per_s"], "run_s": r["run_s"],
                 "ablated_forwards": r["ablations"], "executed_mflop_per_forward": work[name] / 1e6,
                 "executed_gflops_per_s": work[name] * r["forwards_per_s"] / 1e9,
                 "of_peak": work["minimal"] * r["forwards_per_s"] / 1e9 / peak, "peak_before": r["peak"],
                 "load_before": r["load"]} for name, r in reports.items()}
  ratios = {f"incremental/{name}": rows["incremental"]["forwards_per_s"] / m["forwards_per_s"]
            for name, m in rows.items() if name != "incremental"}
  setup = {**facts, **{k: getattr(args, k) for k in ("sources", "hook_sources", "hook_components", "cached_sources",
                                                     "quick")},
           "padded_length": T, "matmul_peak_gflops": peak, "minimal_mflop_per_forward": work["minimal"] / 1e6}
  return {"setup": setup, "methods": rows, "ratios": ratios, "agreement_vs_incremental": agree,
          "targets": {"incremental >= 70% of peak": rows["incremental"]["of_peak"] >= 0.7,
                      "incremental/torch_cached >= 2.5": ratios["incremental/torch_cached"] >= 2.5}}


def print_summary(s: dict) -> None:
  setup = s["setup"]
  print(f"\nSmolLM2-135M ({setup['model']}): {len(setup['lengths'])} prompts ({setup['prompt_text']}, "
        f"{min(setup['lengths'])}-{max(setup['lengths'])} tokens), K = {setup['sources']}, C = 60; matmul peak "
        f"{setup['matmul_peak_gflops']:.1f} GFLOP/s; minimal {setup['minimal_mflop_per_forward']:.1f} MFLOP per "
        f"ablated forward; load {setup['load'][0]:.1f} -> {setup['load'][1]:.1f}\n")
  columns = {"compile s": ("compile_s", ".2f"), "fwd/s": ("forwards_per_s", ".1f"),
             "exec MFLOP": ("executed_mflop_per_forward", ".1f"), "exec GFLOP/s": ("executed_gflops_per_s", ".1f"),
             "of peak": ("of_peak", ".1%"), "peak before": ("peak_before", ".1f"), "load": ("load_before", ".1f")}
  print(f"{'method':<18}" + "".join(f"{title:>13}" for title in columns))
  for name, m in s["methods"].items():
    print(f"{name:<18}" + "".join(f"{m[key]:>13{form}}" for key, form in columns.values()))
  print("\nratios: " + ", ".join(f"{k} = {v:.2f}x" for k, v in s["ratios"].items()))
  print("agreement with incremental (max |difference| / max |clean logit|): " + "; ".join(
      f"{k}: TE {v['total_effect']:.1e}, dDE {v['response']:.1e}, token {v['scored_token_agrees']:.0%}"
      for k, v in s["agreement_vs_incremental"].items()))
  print("targets: " + ", ".join(f"{k}: {'met' if v else 'NOT met'}" for k, v in s["targets"].items()))


def main(argv=None) -> dict:
  args = parse_args(argv)
  started, load_before = time.time(), os.getloadavg()[0]
  from hydra_jax.sweep import engine
  with tempfile.TemporaryDirectory() as workdir:
    loaded, model, tokenizer, what = load_models(args, Path(workdir))
  tokens, lengths, prompts = make_prompts(args, tokenizer)
  sources = engine.draw_sources(len(tokens), args.sources, seed=0)
  reports, agree = run_methods(args, loaded, model, tokens, lengths, sources)
  facts = {"model": what, "prompt_text": prompts, "lengths": lengths.tolist(), "peak_end": bench.matmul_peak(),
           "load": [load_before, os.getloadavg()[0]], "wall_s": time.time() - started}
  summary = summarise(args, loaded[0], reports, agree, tokens.shape[1], facts)
  print_summary(summary)
  if args.json:
    args.json.write_text(json.dumps(summary, indent=2, default=bench._plain))
  return summary


if __name__ == "__main__":
  main()
