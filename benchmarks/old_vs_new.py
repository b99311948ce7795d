"""Two versions of the code on the same work, in one run: did a change cost speed?

    git worktree add /tmp/old <commit>
    python benchmarks/old_vs_new.py /tmp/old .          # OLD_ROOT NEW_ROOT [--rounds 3]
    python benchmarks/old_vs_new.py /tmp/old . --work train_step

`--work sweep` (the default) times `hydra_sweep` (the default incremental, layer-skipping
path) of benchmarks/sweep.py's model (8 layers, d_model 512, SwiGLU 1376, vocabulary 32,000, rotary; random init) on 16
prompts of 10-16 tokens with K = 15 sources (3,840 ablated forwards per sweep). Each code
root runs in its own subprocess, started in that root (PYTHONPATH too), alternating OLD, NEW, OLD, NEW, ... so that
drift of a shared machine hits both; each subprocess compiles once, then times sweeps
for about 10 s and reports the median. The float32 matmul peak is measured in the same
run. Prints ablated forwards per second per round and the median ratio NEW / OLD; both
versions' results are compared (max |TE difference|).

`--work main_job` times the main job on the embedded model (`python -m hydra_jax.main
--config=configs/tiny.py` into a fresh workdir: loading, the sweep of 1,000 prompts, what
else the version computes, the report with its figures), reported as the wall time of the
whole command (rate: jobs per hour); the two versions' total effects are compared.

`--work train_step` times training steps of configs/study_dropout.py's model (8 layers,
d_model 96, MLP 384, relative positions, exact GELU; AdamW; 32 x 64 random tokens): 20
steps after a compiled first run of 20, reported as steps per second; the 20 losses of
the two versions are compared.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

SWEEP_CHILD = r"""
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
print("RESULT", json.dumps(dict(package=hj.__file__, first_call_s=first, seconds=float(np.median(times)),
                                rate=16 * 16 * 15 / float(np.median(times)),
                                values=np.asarray(result.total_effect).ravel()[:2000].tolist())))
"""

TRAIN_STEP_CHILD = r"""
import itertools, json, time
import numpy as np
import hydra_jax as hj
from hydra_jax.train import training

config = hj.ModelConfig(vocab_size=512, d_model=96, num_layers=8, num_heads=4, mlp_dim=384,
                        max_seq_len=64)
tokens = np.random.RandomState(0).randint(1, 512, (32, 64)).astype(np.int32)
batches = lambda: itertools.repeat((tokens, np.full(32, 64, np.int32)))
run = lambda: training.train(config, batches(), steps=20, learning_rate=3e-3, warmup_steps=5,
                             log_every=0)
start = time.time(); run(); first = time.time() - start
_, history = run()
print("RESULT", json.dumps(dict(package=hj.__file__, first_call_s=first, seconds=history.seconds / 20,
                                rate=20 / history.seconds, values=history.losses)))
"""
MAIN_JOB_CHILD = r"""
import json, os, subprocess, sys, tempfile, time
import numpy as np
import hydra_jax as hj
workdir = tempfile.mkdtemp(prefix="old_vs_new_job_")
start = time.time()
subprocess.run([sys.executable, "-m", "hydra_jax.main", "--config=configs/tiny.py",
                f"--workdir={workdir}"], check=True, capture_output=True)
seconds = time.time() - start
values = np.load(os.path.join(workdir, "results.npz"))["total_effect"].ravel()[:2000]
print("RESULT", json.dumps(dict(package=hj.__file__, first_call_s=seconds, seconds=seconds,
                                rate=3600 / seconds, values=values.tolist())))
"""
CHILDREN = {"sweep": (SWEEP_CHILD, "ablated forwards/s", "max |TE difference|"),
            "main_job": (MAIN_JOB_CHILD, "main jobs/hour", "max |TE difference|"),
            "train_step": (TRAIN_STEP_CHILD, "training steps/s", "max |loss difference|")}


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


def run_child(root: str, script: str) -> dict:
  root = os.path.abspath(root)     # run there: `-c` puts the working directory first on sys.path
  env = dict(os.environ, PYTHONPATH=root, JAX_PLATFORMS="cpu")
  done = subprocess.run([sys.executable, "-c", script], cwd=root, env=env, capture_output=True, text=True,
                        timeout=900)
  if done.returncode:
    raise SystemExit(f"{root}: {done.stderr[-2000:]}")
  line = [l for l in done.stdout.splitlines() if l.startswith("RESULT ")][-1]
  result = json.loads(line[len("RESULT "):])
  if not result["package"].startswith(root + os.sep):
    raise SystemExit(f"{root}: the child imported hydra_jax from {result['package']}")
  return result


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("old")
  parser.add_argument("new")
  parser.add_argument("--rounds", type=int, default=3)
  parser.add_argument("--work", choices=sorted(CHILDREN), default="sweep")
  args = parser.parse_args()
  script, unit, compared = CHILDREN[args.work]
  print(f"float32 matmul peak (2048^2, this run): {matmul_peak_gflops():.0f} GFLOP/s")
  rates = {"old": [], "new": []}
  results = {}
  for round_index in range(args.rounds):
    for name in ("old", "new"):
      result = run_child(getattr(args, name), script)
      rates[name].append(result["rate"])
      results[name] = result["values"]
      print(f"round {round_index + 1} {name}: {result['rate']:,.2f} {unit} "
            f"({result['seconds'] * 1e3:.0f} ms each, first call {result['first_call_s']:.1f} s)",
            flush=True)
  import numpy as np
  median = {name: float(np.median(values)) for name, values in rates.items()}
  difference = float(np.abs(np.subtract(results["old"], results["new"])).max())
  print(f"median: old {median['old']:,.2f}, new {median['new']:,.2f} {unit}; "
        f"new / old = {median['new'] / median['old']:.3f}; {compared} {difference:.2g}")


if __name__ == "__main__":
  main()
