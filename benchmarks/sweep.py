"""Benchmark: the compiled Hydra sweep against hook-style loops, on identical work.

One sweep cell = one (component, source) ablation of a batch of B prompts at their final
positions; every method below computes the same cells and must give the same numbers:

  (a) jax_loop     a Python loop, one jitted full forward (logits [B, T, V] included) per cell,
                   then the measures from its outputs - what hook-based tools do
  (b) full         hydra_sweep(path="full"): all cells re-run in one vmapped program
  (c) incremental  hydra_sweep(path="incremental"): only the final position, only the layers
                   from the ablated one up, against the clean key/value cache
  (d) torch_hooks  a PyTorch forward-hook loop over a transformers LlamaForCausalLM (the
                   same weights: the checkpoint is written once and read by load_hf)

Identical work: all four run the same B prompts x 2L components x K sources (K = 15 as in
the paper), (b) and (c) all of it. The loops time the cells of their first few sources
only (--jax-loop-sources, --torch-sources): each of their cells is an independent forward
whose cost does not depend on K, so their rate is the rate of the whole sweep; (c) also
runs those same cells, and every method's results are checked against (c)'s on them.

Reported (benchmarks/README.md): compile time, ablated forwards per second, analytic
FLOPs per forward, GFLOP/s against the float32 matmul peak timed in the same run, peak
memory, (c)'s compile time at 4 and 32 layers; one subprocess per method, medians.

    python benchmarks/sweep.py --quick               # about three minutes
    python benchmarks/sweep.py --json results.json   # the figures, also as JSON

Shapes: B prompts, T positions (padded), K sources, L layers, C = 2L components, D d_model,
H heads, E head size, F MLP width, V vocabulary.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
METHODS = {"a": "jax_loop", "b": "full", "c": "incremental", "d": "torch_hooks"}


def parse_args(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--quick", action="store_true", help="fewer loop cells and repeats (~3 minutes)")
  parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
  parser.add_argument("--layers", type=int, default=8)
  parser.add_argument("--d-model", type=int, default=512)
  parser.add_argument("--heads", type=int, default=8)
  parser.add_argument("--mlp", type=int, default=1376, help="SwiGLU width (Llama's ~8/3 d_model)")
  parser.add_argument("--vocab", type=int, default=32000, help="32,000: Chinchilla's and Llama's")
  parser.add_argument("--prompts", type=int, default=16)
  parser.add_argument("--lengths", type=int, nargs=2, default=(10, 16), help="prompt lengths, min max")
  parser.add_argument("--sources", type=int, default=15, help="K, sources per prompt (paper: 15)")
  parser.add_argument("--jax-loop-sources", type=int, default=None,
                      help="sources the JAX loop (a) times (default all K, quick 2)")
  parser.add_argument("--torch-sources", type=int, default=None,
                      help="sources the PyTorch loop (d) times (default 2, quick 1)")
  parser.add_argument("--repeats", type=int, default=None,
                      help="timed repeats of a compiled sweep, at least (default 3, quick 1)")
  parser.add_argument("--compile-layers", type=int, nargs=2, default=(4, 32))
  parser.add_argument("--method", help=argparse.SUPPRESS)          # internal: run one method
  parser.add_argument("--workdir", type=Path, help=argparse.SUPPRESS)
  args = parser.parse_args(argv)
  args.jax_loop_sources = min(args.jax_loop_sources or (2 if args.quick else args.sources), args.sources)
  args.torch_sources = min(args.torch_sources or (1 if args.quick else 2), args.sources)
  args.repeats = args.repeats or (1 if args.quick else 3)
  return args


# Analytic FLOPs (a multiply-add counts 2) ------------------------------------------------------


def flops(config, T: int) -> dict[str, float]:
  """FLOPs per ablated prompt-forward, as each method computes it (padded length T)."""
  D, H, G, E, F, L, V = (config.d_model, config.num_heads, config.kv_heads, config.head_size,
                         config.mlp_width, config.num_layers, config.vocab_size)
  attention_dense = 2 * D * (H * E + 2 * G * E) + 2 * H * E * D
  dense = attention_dense + 2 * D * F * (3 if config.gated_mlp else 2)
  attend = lambda keys: 4 * H * E * keys                              # scores and values, per query
  forward = T * L * dense + L * T * attend(T)                         # dense causal attention
  logits = T * 2 * D * V                                              # every position's logits
  clean = forward + 2 * D * V                                         # the sweep's clean pass
  C = 2 * L
  # (c): L lanes x L steps of one token per K x B rows, for 2L x K x B ablations: L / 2 layers
  # each, less the attention of step 0 (all L lanes start an attention ablation there).
  incremental = L / 2 * (dense + attend(T + 1)) - (attention_dense + attend(T + 1)) / 2
  return {"jax_loop": forward + logits, "torch_hooks": forward + logits, "full": forward,
          "incremental": incremental, "clean_per_prompt": clean, "components": C}


# Shared inputs -----------------------------------------------------------------------------------


def make_inputs(args, workdir: Path):
  """A random-init LlamaForCausalLM checkpoint and the prompts, written to workdir."""
  import torch
  from transformers import LlamaConfig, LlamaForCausalLM

  torch.manual_seed(0)
  hf = LlamaConfig(vocab_size=args.vocab, hidden_size=args.d_model, intermediate_size=args.mlp,
                   num_hidden_layers=args.layers, num_attention_heads=args.heads,
                   num_key_value_heads=args.heads, max_position_embeddings=64,
                   tie_word_embeddings=False, initializer_range=0.05)
  LlamaForCausalLM(hf).eval().save_pretrained(workdir / "model")
  rng = np.random.default_rng(0)
  lengths = rng.integers(args.lengths[0], args.lengths[1] + 1, args.prompts).astype(np.int32)
  tokens = rng.integers(0, args.vocab, (args.prompts, args.lengths[1])).astype(np.int32)
  tokens[np.arange(args.lengths[1])[None, :] >= lengths[:, None]] = 0  # right padding
  from hydra_jax.sweep import engine as sweep
  sources = sweep.draw_sources(args.prompts, args.sources, seed=0)
  np.savez(workdir / "prompts.npz", tokens=tokens, lengths=lengths, sources=sources)


def matmul_peak(n: int = 2048, repeats: int = 5) -> float:
  """Best float32 GFLOP/s of an n x n jnp matmul."""
  import jax
  import jax.numpy as jnp
  a = jnp.asarray(np.random.default_rng(0).standard_normal((n, n), np.float32))
  f = jax.jit(lambda x: x @ x)
  f(a).block_until_ready()
  best = min(timed(lambda: f(a).block_until_ready())[1] for _ in range(repeats))
  return 2 * n ** 3 / best / 1e9


def timed(fn):
  start = time.perf_counter()
  out = fn()
  return out, time.perf_counter() - start


def rss_mb(peak: bool) -> float:
  if peak:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
  with open("/proc/self/status") as f:
    return next(int(l.split()[1]) for l in f if l.startswith("VmRSS")) / 1024


# The methods (each in its own process) -----------------------------------------------------------


def run_method(args) -> None:
  sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]
  data = np.load(args.workdir / "prompts.npz")
  tokens, lengths, sources = data["tokens"], data["lengths"], data["sources"]
  name = METHODS[args.method]
  import sweep_methods as methods
  loaded = methods.load(args.workdir / "model", name)
  report = {"method": name, "rss_loaded_mb": rss_mb(False), "peak_gflops": matmul_peak(),
            "load_before": os.getloadavg()}
  if name != "torch_hooks":
    report["config"] = loaded[0].to_dict()
  count = method_sources(args)[name]
  results, timing = methods.RUNNERS[name](loaded, tokens, lengths, sources[:, :count], args)
  report.update(timing, load_after=os.getloadavg(), rss_peak_mb=rss_mb(True))
  np.savez(args.workdir / f"{name}_{count}.npz", **results)
  if name == "incremental":                    # the loops' cells, and compile time by depth
    for fewer in sorted(set(method_sources(args).values()) - {count}):
      cells, _ = methods.RUNNERS[name](loaded, tokens, lengths, sources[:, :fewer], args)
      np.savez(args.workdir / f"{name}_{fewer}.npz", **cells)
    report["compile_scaling"] = methods.compile_scaling(loaded, tokens, lengths, sources,
                                                        args.compile_layers)
  (args.workdir / f"{name}.json").write_text(json.dumps(report))


# The parent: inputs, one subprocess per method, agreement, figures ---------------------------------


def child(args, method: str) -> dict:
  command = [sys.executable, __file__, "--method", method, "--workdir", str(args.workdir),
             "--sources", str(args.sources), "--torch-sources", str(args.torch_sources),
             "--jax-loop-sources", str(args.jax_loop_sources),
             "--repeats", str(args.repeats),
             "--compile-layers", *map(str, args.compile_layers)]
  env = dict(os.environ, PYTHONPATH=str(ROOT))
  subprocess.run(command, check=True, env=env, cwd=ROOT)
  name = METHODS[method]
  return json.loads((args.workdir / f"{name}.json").read_text())


def method_sources(args) -> dict[str, int]:
  """How many of the K sources each method runs."""
  return {"incremental": args.sources, "full": args.sources, "jax_loop": args.jax_loop_sources,
          "torch_hooks": args.torch_sources}


def agreement(ref: dict, res: dict) -> dict:
  """Largest differences from (c) on the same cells, relative to the largest clean |logit|."""
  scale = float(np.abs(ref["clean_logit"]).max())
  same_token = ref["token"] == res["token"]
  diff = lambda name, a, b: float(np.abs(a[same_token] - b[same_token]).max()) / scale
  return {"scored_token_agrees": float(same_token.mean()),
          "total_effect": diff("te", ref["total_effect"], res["total_effect"]),
          "response": diff("dde", ref["response"], res["response"]),
          "clean_logit": diff("logit", ref["clean_logit"], res["clean_logit"])}


def main(argv=None) -> dict:
  args = parse_args(argv)
  if args.method:
    run_method(args)
    return {}
  sys.path[:0] = [str(ROOT)]
  started = time.time()
  with tempfile.TemporaryDirectory() as workdir:
    args.workdir = Path(workdir)
    make_inputs(args, args.workdir)
    peak_before = matmul_peak()
    reports = {METHODS[m]: child(args, m) for m in ("c", "b", "a", "d")}
    load = lambda name, count: dict(np.load(args.workdir / f"{name}_{count}.npz"))
    agree = {name: agreement(load("incremental", count), load(name, count))
             for name, count in method_sources(args).items() if name != "incremental"}
    peak_after = matmul_peak()
  peaks = [peak_before, peak_after] + [r["peak_gflops"] for r in reports.values()]
  summary = summarise(args, reports, agree, max(peaks), started)
  print_summary(summary)
  if args.json:
    args.json.write_text(json.dumps(summary, indent=2, default=_plain))
  return summary


def _plain(value):
  """numpy scalars and arrays as JSON numbers and lists."""
  return value.tolist() if hasattr(value, "tolist") else str(value)


def summarise(args, reports: dict, agree: dict, peak: float, started: float) -> dict:
  from hydra_jax.model.config import ModelConfig
  config = ModelConfig.from_dict(reports["incremental"]["config"])
  T, K, C = args.lengths[1], args.sources, config.num_components
  per_forward = flops(config, T)
  amortised_clean = per_forward["clean_per_prompt"] / (K * C)          # the sweep's clean pass
  methods = {}
  for name, report in reports.items():
    work = per_forward[name] + (amortised_clean if name in ("full", "incremental") else 0.0)
    rate = report["forwards_per_s"]
    methods[name] = {
        "compile_s": report["compile_s"], "run_s": report["run_s"], "ablated_forwards": report["ablations"],
        "forwards_per_s": rate, "flops_per_forward": work, "gflops_per_s": work * rate / 1e9,
        "utilisation": work * rate / 1e9 / peak, "rss_peak_mb": report["rss_peak_mb"],
        "rss_after_load_mb": report["rss_loaded_mb"], "load_average": [report["load_before"], report["load_after"]],
        **{key: report[key] for key in report if key.startswith(("xla_", "torch_", "loop_", "cell_"))}}
  rate = lambda name: methods[name]["forwards_per_s"]
  incremental = reports["incremental"]
  scaling = incremental["compile_scaling"]
  small, large = (scaling[str(layers)]["compile_s"] for layers in args.compile_layers)
  ratios = {"full/jax_loop": rate("full") / rate("jax_loop"),
            "incremental/jax_loop": rate("incremental") / rate("jax_loop"),
            "incremental/torch_hooks": rate("incremental") / rate("torch_hooks"),
            "incremental/full": rate("incremental") / rate("full")}
  return {
      "setup": {"layers": config.num_layers, "d_model": config.d_model, "heads": config.num_heads,
                "mlp_width": config.mlp_width, "vocab": config.vocab_size, "prompts": args.prompts,
                "prompt_lengths": list(args.lengths), "padded_length": T, "sources": K,
                "sources_run": method_sources(args), "cells": C * K, "repeats": args.repeats, "quick": args.quick,
                "cpu_count": os.cpu_count(), "matmul_peak_gflops": peak,
                "wall_s": time.time() - started},
      "methods": methods, "ratios": ratios, "agreement_vs_incremental": agree,
      "compile_scaling": {**scaling, "ratio": large / small},
      "targets": {"incremental/jax_loop >= 20": ratios["incremental/jax_loop"] >= 20,
                  "incremental/torch_hooks >= 50": ratios["incremental/torch_hooks"] >= 50,
                  f"compile {args.compile_layers[1]} layers < 2x {args.compile_layers[0]}": large < 2 * small,
                  "results agree (1e-4 of the clean logit scale)": all(
                      a["scored_token_agrees"] == 1.0 and max(a["total_effect"], a["response"]) < 1e-4
                      for a in agree.values())},
  }


def print_summary(summary: dict) -> None:
  setup = summary["setup"]
  print(f"\nHydra sweep benchmark: {setup['layers']} layers, d_model {setup['d_model']}, vocab {setup['vocab']}, "
        f"{setup['prompts']} prompts of {setup['prompt_lengths'][0]}-{setup['prompt_lengths'][1]} tokens, "
        f"{setup['cells']} cells (2L components x {setup['sources']} sources) of {setup['prompts']} prompts each; "
        "sources run: " + ", ".join(f"{k} {v}" for k, v in setup["sources_run"].items()))
  print(f"float32 matmul peak measured in this run: {setup['matmul_peak_gflops']:.1f} GFLOP/s "
        f"({setup['cpu_count']} CPUs)\n")
  header = f"{'method':<14}{'compile s':>10}{'fwd/s':>10}{'MFLOP/fwd':>11}{'GFLOP/s':>9}{'of peak':>9}{'peak RSS MB':>12}{'load':>12}"
  print(header)
  for name, m in summary["methods"].items():
    load = "/".join(f"{x[0]:.1f}" for x in m["load_average"])
    print(f"{name:<14}{m['compile_s']:>10.2f}{m['forwards_per_s']:>10.1f}{m['flops_per_forward'] / 1e6:>11.1f}"
          f"{m['gflops_per_s']:>9.1f}{m['utilisation']:>9.1%}{m['rss_peak_mb']:>12.0f}{load:>12}")
  print("\nratios (ablated forwards per second): " +
        ", ".join(f"{k} = {v:.1f}x" for k, v in summary["ratios"].items()))
  scaling = summary["compile_scaling"]
  print("incremental compile time by depth: " + ", ".join(
      f"{k} layers {v['compile_s']:.2f} s" for k, v in scaling.items() if k != "ratio") +
      f" (ratio {scaling['ratio']:.2f})")
  print("agreement with incremental (max |difference| / max |clean logit|): " + "; ".join(
      f"{k}: TE {v['total_effect']:.1e}, dDE {v['response']:.1e}, token {v['scored_token_agrees']:.0%}"
      for k, v in summary["agreement_vs_incremental"].items()))
  print("targets: " + ", ".join(f"{k}: {'met' if v else 'NOT met'}" for k, v in summary["targets"].items()))


if __name__ == "__main__":
  main()
