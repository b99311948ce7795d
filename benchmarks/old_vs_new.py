"""Two versions of the code on the same sweep, in one run: did an engine change cost speed?

    git worktree add /tmp/old <commit>
    python benchmarks/old_vs_new.py /tmp/old .          # OLD_ROOT NEW_ROOT [--rounds 3]

Times `hydra_sweep` (the default incremental, layer-skipping path) of benchmarks/sweep.py's
model (8 layers, d_model 512, SwiGLU 1376, vocabulary 32,000, rotary; random init) on 16
prompts of 10-16 tokens with K = 15 sources (3,840 ablated forwards per sweep). Each code
root runs in its own subprocess (PYTHONPATH), alternating OLD, NEW, OLD, NEW, ... so that
drift of a shared machine hits both; each subprocess compiles once, then times sweeps
for about 10 s and reports the median. The float32 matmul peak is measured in the same
run. Prints ablated forwards per second per round and the median ratio NEW / OLD; both
versions' results are compared (max |TE difference|).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

CHILD = r"""
import json, sys, time
import jax, jax.numpy as jnp, numpy as np
import hydra_jax as hj
from hydra_jax.sweep import draw_sources, hydra_sweep

config = hj.ModelConfig(vocab_size=32000, d_model=512, num_layers=8, num_heads=8, mlp_dim=1376,
                        gated_mlp=True, activation="silu", norm="rms", position="rotary",
                        max_seq_len=64, tie_embeddings=False)
params = hj.init_params(config, seed=0)
rng = np.random.RandomState(0)
lengths = rng.randint(10, 17, size=16).astype(np.int32)
tokens = np.zeros((16, 16), np.int32)
for b, n in enumerate(lengths):
  tokens[b, :n] = rng.randint(0, 32000, size=n)
sources = draw_sources(16, 15, seed=0)
run = lambda: jax.block_until_ready(hydra_sweep(params, config, tokens, lengths, sources))
start = time.time(); result = run(); first = time.time() - start
times, deadline = [], time.time() + 10
while time.time() < deadline or len(times) < 3:
  start = time.time(); run(); times.append(time.time() - start)
print("RESULT", json.dumps(dict(first_call_s=first, sweep_s=float(np.median(times)),
                                forwards_per_s=16 * 16 * 15 / float(np.median(times)),
                                total_effect=np.asarray(result.total_effect).ravel()[:2000].tolist())))
"""


def matmul_peak_gflops(size: int = 2048, seconds: float = 3.0) -> float:
  import jax
  import jax.numpy as jnp
  a = jnp.ones((size, size), jnp.float32)
  f = jax.jit(lambda x: x @ x)
  f(a).block_until_ready()
  count, start = 0, time.time()
  while time.time() - start < seconds:
    f(a).block_until_ready()
    count += 1
  return 2 * size ** 3 * count / (time.time() - start) / 1e9


def run_child(root: str) -> dict:
  env = dict(os.environ, PYTHONPATH=os.path.abspath(root), JAX_PLATFORMS="cpu")
  done = subprocess.run([sys.executable, "-c", CHILD], env=env, capture_output=True, text=True,
                        timeout=900)
  if done.returncode:
    raise SystemExit(f"{root}: {done.stderr[-2000:]}")
  line = [l for l in done.stdout.splitlines() if l.startswith("RESULT ")][-1]
  return json.loads(line[len("RESULT "):])


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("old")
  parser.add_argument("new")
  parser.add_argument("--rounds", type=int, default=3)
  args = parser.parse_args()
  print(f"float32 matmul peak (2048^2, this run): {matmul_peak_gflops():.0f} GFLOP/s")
  rates = {"old": [], "new": []}
  results = {}
  for round_index in range(args.rounds):
    for name in ("old", "new"):
      result = run_child(getattr(args, name))
      rates[name].append(result["forwards_per_s"])
      results[name] = result["total_effect"]
      print(f"round {round_index + 1} {name}: {result['forwards_per_s']:,.0f} ablated forwards/s "
            f"(sweep {result['sweep_s'] * 1e3:.0f} ms, first call {result['first_call_s']:.1f} s)",
            flush=True)
  import numpy as np
  median = {name: float(np.median(values)) for name, values in rates.items()}
  difference = float(np.abs(np.subtract(results["old"], results["new"])).max())
  print(f"median: old {median['old']:,.0f}, new {median['new']:,.0f} forwards/s; "
        f"new / old = {median['new'] / median['old']:.3f}; max |TE difference| {difference:.2g}")


if __name__ == "__main__":
  main()
