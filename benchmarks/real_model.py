"""Benchmark: the compiled Hydra sweep on real models against the strongest PyTorch loops.

Models (`MODELS`, --model): SmolLM2-135M (Llama) and Gemma 3 270M (post-norms, qk-norm,
sliding-window / global layers with their own rotary bases, head size 256, 4 query heads /
1 key-value head, vocabulary 262,144). Each is the GGUF when cached or given (`load_gguf`;
transformers dequantizes the same file), else a random-init model of its shape as a Hugging
Face checkpoint (`load_hf`). N prompts (known facts via the GGUF's tokenizer, else random
tokens), K sources each, all C = 2L components resampled at the final position; each method
is checked against (c) on its cells, and the run fails in one line if any disagrees:

  (c) incremental       hydra_sweep(path="incremental"), the whole sweep
  (d) torch_hooks       sweep_methods.torch_hooks: a full forward of the N prompts per cell
                        (hooks on what each sublayer adds: Gemma 3's post-norm outputs)
  (e) torch_cached      per component, N x K rows: the final token against the clean key/value
                        cache, from the ablated layer up, fused q|k|v and gate|up, no logits
  (e') torch_cached_all the same through all L layers (a hook on a cached decode)
  (f) torch_layer_major every cell at once, layer by layer: runs join at their ablated layer

"of peak": (c)'s minimal FLOPs per ablated forward (`sweep.flops`: no logits; the clean
pass's one scored row of [V] logits per prompt is (c)'s executed share) x forwards/s over the
best float32 matmul peak of the run (`sweep.matmul_peak`, measured before each method).
Sliding windows (Gemma 3: 512 keys) are longer than the prompts, so every layer attends
to the whole prefix and the FLOP counts need no window term.

    python benchmarks/real_model.py --quick       # --model gemma3-270m | both, --json out.json,
                                                  # --gguf PATH, --random-init, --prompts N
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

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE)]
import real_torch                          # noqa: E402  (benchmarks/real_torch.py)
import sweep as bench                      # noqa: E402  (benchmarks/sweep.py)
import sweep_methods as methods            # noqa: E402

FACTS = HERE.parent.parent / "shared" / "data" / "known_1000.json"
AGREE = 1e-4       # largest TE / dDE difference from (c), over the largest clean |logit|
SMOL = dict(vocab_size=49152, hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
            num_attention_heads=9, num_key_value_heads=3, head_dim=64, rms_norm_eps=1e-5,
            rope_theta=100000.0, tie_word_embeddings=True, max_position_embeddings=8192)
GEMMA3 = dict(vocab_size=262144, hidden_size=640, intermediate_size=2048, num_hidden_layers=18,
              num_attention_heads=4, num_key_value_heads=1, head_dim=256, query_pre_attn_scalar=256,
              rms_norm_eps=1e-6, sliding_window=512, max_position_embeddings=32768,
              layer_types=(["sliding_attention"] * 5 + ["full_attention"]) * 3,
              rope_parameters={"sliding_attention": {"rope_type": "default", "rope_theta": 10000.0},
                               "full_attention": {"rope_type": "default", "rope_theta": 1000000.0}},
              tie_word_embeddings=True)
# Per model: its name, cached GGUF, transformers classes (config, model) and a random-init
# shape; "manual": load the GGUF's tensors by hand (what from_pretrained does, without accelerate).
MODELS = {
    "smollm2": dict(title="SmolLM2-135M", gguf="SmolLM2-135M-Instruct.Q4_1.gguf",
                    classes=("LlamaConfig", "LlamaForCausalLM"), shape=SMOL, manual=True),
    "gemma3-270m": dict(title="Gemma 3 270M", gguf="gemma-3-270m-q4_k_m.gguf",
                        classes=("Gemma3TextConfig", "Gemma3ForCausalLM"), shape=GEMMA3, manual=False),
}


def parse_args(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--model", choices=(*MODELS, "both"), default="smollm2", help="which model(s)")
  parser.add_argument("--quick", action="store_true", help="fewer loop cells, one timed sweep")
  parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
  parser.add_argument("--gguf", type=Path, help="the GGUF (default: the model's cached file; one model only)")
  parser.add_argument("--random-init", action="store_true", help="the random-init model even if a GGUF is cached")
  parser.add_argument("--lengths", type=int, nargs=2, default=(12, 16), help="prompt lengths, min max")
  for flag, default, text in (("prompts", 16, "N"), ("sources", 15, "K, sources per prompt"),
                              ("hook-sources", 1, "sources (d) times"),
                              ("hook-components", None, "components (d) times, spread (default all, quick 12)"),
                              ("cached-sources", None, "sources (e) times (default K, quick 5)"),
                              ("source-block", None, "sources (e) runs in one call (default all it times)"),
                              ("repeats", 3, "timed runs of (c), at least (quick 1)")):
    parser.add_argument(f"--{flag}", type=int, default=default, help=text)
  args = parser.parse_args(argv)
  if args.gguf and args.model == "both":
    parser.error("--gguf names one file: give --model too")
  args.cached_sources = min(args.cached_sources or (5 if args.quick else args.sources), args.sources)
  args.hook_sources, args.repeats = min(args.hook_sources, args.sources), 1 if args.quick else args.repeats
  return args


def hook_components(args, C: int) -> list[int]:
  """The components (d) times: --hook-components of the C spread evenly (all, quick 12)."""
  count = min(args.hook_components or (12 if args.quick else C), C)
  return np.linspace(0, C - 1, count).round().astype(int).tolist()


def load_models(args, name: str, workdir: Path):
  """(hydra_jax's (config, params), the torch model, a tokenizer or None, what was loaded)."""
  import transformers
  facts = MODELS[name]
  config_class, model_class = (getattr(transformers, c) for c in facts["classes"])
  cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
  path = args.gguf or cache / "hydra_jax" / "models" / facts["gguf"]
  if not args.random_init and path.is_file():
    from hydra_jax.checkpoints import load_gguf
    from transformers.modeling_gguf_pytorch_utils import load_gguf_checkpoint
    where = dict(pretrained_model_name_or_path=path.parent, gguf_file=path.name)
    if facts["manual"]:
      model = model_class(transformers.AutoConfig.from_pretrained(**where)).float().eval()
      model.load_state_dict(load_gguf_checkpoint(path, True, model)["tensors"], strict=False)
      model.tie_weights()
    else:
      model = model_class.from_pretrained(**where, dtype=torch.float32).eval()
    tokenizer = transformers.AutoTokenizer.from_pretrained(**where)
    return load_gguf(path), model, tokenizer, f"GGUF {path}"
  from hydra_jax.checkpoints import load_hf
  torch.manual_seed(0)
  model_class(config_class(**facts["shape"], initializer_range=0.05)).save_pretrained(workdir / "model")
  model = model_class.from_pretrained(workdir / "model", dtype=torch.float32)
  return load_hf(workdir / "model"), model.eval(), None, f"random init, {facts['title']}'s shape"


def make_prompts(args, tokenizer, vocab_size: int):
  """tokens [N, T] (right-padded), lengths [N]: known facts whose length is in range, else random."""
  low, high = args.lengths
  if tokenizer is not None and FACTS.is_file():
    ids = [tokenizer(fact["prompt"]).input_ids for fact in json.loads(FACTS.read_text())]
    ids, what = [i for i in ids if low <= len(i) <= high][:args.prompts], "known facts"
  else:
    rng = np.random.default_rng(0)
    ids = [rng.integers(0, vocab_size, n).tolist() for n in rng.integers(low, high + 1, args.prompts)]
    what = "random tokens"
  tokens = np.array([i + [0] * (high - len(i)) for i in ids], np.int32)             # right-padded
  return tokens, np.array([len(i) for i in ids], np.int32), what


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
  cached = real_torch.torch_cached
  runs = {"torch_layer_major": (cached(True, True), args.sources),
          "torch_cached": (cached(True, False), args.cached_sources),
          "torch_cached_all": (cached(False, False), args.cached_sources),
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


def disagreements(agree: dict) -> list[str]:
  """The methods whose results differ from (c)'s beyond AGREE, or whose scored token does."""
  return [f"{name} (TE {a['total_effect']:.1e}, dDE {a['response']:.1e}, token {a['scored_token_agrees']:.0%})"
          for name, a in agree.items()
          if a["scored_token_agrees"] < 1 or max(a["total_effect"], a["response"], a["clean_logit"]) > AGREE]


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
           "components": config.num_components, "padded_length": T, "matmul_peak_gflops": peak, "minimal_mflop_per_forward": work["minimal"] / 1e6}
  return {"setup": setup, "methods": rows, "ratios": ratios, "agreement_vs_incremental": agree,
          "targets": {"incremental >= 70% of peak": rows["incremental"]["of_peak"] >= 0.7,
                      "incremental/torch_cached >= 2.5": ratios["incremental/torch_cached"] >= 2.5}}


def print_summary(s: dict) -> None:
  setup = s["setup"]
  print(f"\n{setup['title']} ({setup['model']}): {len(setup['lengths'])} prompts ({setup['prompt_text']}, "
        f"{min(setup['lengths'])}-{max(setup['lengths'])} tokens), K = {setup['sources']}, "
        f"C = {setup['components']}; matmul peak "
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


def run_model(args, name: str) -> dict:
  """One model's whole benchmark: load, every method, the summary (printed)."""
  started, load_before = time.time(), os.getloadavg()[0]
  from hydra_jax.sweep import engine
  with tempfile.TemporaryDirectory() as workdir:
    loaded, model, tokenizer, what = load_models(args, name, Path(workdir))
  tokens, lengths, prompts = make_prompts(args, tokenizer, loaded[0].vocab_size)
  sources = engine.draw_sources(len(tokens), args.sources, seed=0)
  args = argparse.Namespace(**{**vars(args), "hook_components": hook_components(args, loaded[0].num_components)})
  reports, agree = run_methods(args, loaded, model, tokens, lengths, sources)
  facts = {"title": MODELS[name]["title"], "model": what, "prompt_text": prompts, "lengths": lengths.tolist(),
           "peak_end": bench.matmul_peak(), "load": [load_before, os.getloadavg()[0]],
           "wall_s": time.time() - started}
  summary = summarise(args, loaded[0], reports, agree, tokens.shape[1], facts)
  print_summary(summary)
  return summary


def main(argv=None) -> dict:
  args = parse_args(argv)
  names = list(MODELS) if args.model == "both" else [args.model]
  summaries = {name: run_model(args, name) for name in names}
  out = summaries if len(names) > 1 else summaries[names[0]]
  if args.json:
    args.json.write_text(json.dumps(out, indent=2, default=bench._plain))
  wrong = [f"{name}: {w}" for name, s in summaries.items() for w in disagreements(s["agreement_vs_incremental"])]
  if wrong:
    raise SystemExit(f"results differ from the incremental sweep by more than {AGREE:g}: " + "; ".join(wrong))
  return out


if __name__ == "__main__":
  main()
