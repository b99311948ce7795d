"""Benchmark: per-head self-repair sweep, compiled, against a PyTorch forward-hook loop.

GPT-2-small shape (12 layers x 12 heads, d_model 768, vocabulary 50,257), a random-init
`transformers` GPT2LMHeadModel written once as a Hugging Face checkpoint and read back by
`hydra_jax.checkpoints.load_hf`, so both sides run the same weights. B sequences of 64
random tokens, K = 4 resample sources: L x H x K = 576 cells, each one ablated forward
of the B sequences with one head's output replaced at every position.

  compiled     hydra_jax.sweep.heads.sweep (direct_logprob=False: the hook loop computes
               no direct path either): one jitted program, layers below the ablated
               head skipped, all 576 cells
  torch_hooks  one forward per (head, source) cell, a forward pre-hook on that layer's
               c_proj replacing the head's slice of its input; TE on the next token's
               centred logit and log-prob at every position

The compiled sweep runs the heads of layers 0 and L - 1 only (`layers=`): the cells of
layer l run L - l layers, and those two layers' mean, (L + 1) / 2, is the full sweep's,
so their rate is the full sweep's (the clean pass, shared, weighs a little more).
Identical work and results: the hook loop runs every source of a subset of heads
(--torch-heads, spread over the layers), and its TE (both scores, mean over sources,
every position) is compared with the compiled sweep's on those heads. Its per-cell time
(median) is extrapolated to all 576 cells: a hook cell is a full forward whatever the
layer, so its cost does not depend on which head it ablates.

Printed: compile and run seconds, ablated sequence-forwards per second, the ratio, the
largest TE difference, and this machine's float32 matmul peak (best 2048^3 jnp matmul)
measured in the same run.

    python benchmarks/heads.py                  # about 5 minutes on 2 CPU cores

Shapes: B sequences, T positions, K sources, L layers, H heads, E head size.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def parse_args(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--sequences", type=int, default=5, help="B sequences per cell (> K)")
  parser.add_argument("--length", type=int, default=64)
  parser.add_argument("--sources", type=int, default=4)
  parser.add_argument("--torch-heads", type=int, default=4, help="heads the hook loop runs (x K)")
  parser.add_argument("--cells-per-step", type=int, default=12)
  parser.add_argument("--init", type=float, default=0.05, help="weight std of the random model")
  return parser.parse_args(argv)


def matmul_peak(size: int = 2048, repeats: int = 5) -> float:
  """Best float32 GFLOP/s of a size^3 jnp matmul."""
  import jax
  import jax.numpy as jnp
  a = jax.random.normal(jax.random.PRNGKey(0), (size, size), jnp.float32)
  matmul = jax.jit(lambda x: x @ x)
  matmul(a).block_until_ready()
  best = min(_timed(lambda: matmul(a).block_until_ready())[1] for _ in range(repeats))
  return 2 * size ** 3 / best / 1e9


def _timed(fn):
  start = time.perf_counter()
  out = fn()
  return out, time.perf_counter() - start


def forward_flops(config, length: int, layers_run: float) -> float:
  """Matmul FLOPs of one sequence's pass through `layers_run` layers and the unembedding."""
  D, H, G, E, F = config.d_model, config.num_heads, config.kv_heads, config.head_size, config.mlp_width
  weights = D * (H + 2 * G) * E + H * E * D + D * F * (3 if config.gated_mlp else 2)
  per_layer = 2 * length * weights + 2 * 2 * length * length * H * E
  return layers_run * per_layer + 2 * length * D * config.vocab_size


def build_model(directory, init: float):
  import torch
  import transformers
  config = transformers.GPT2Config(n_layer=12, n_head=12, n_embd=768, vocab_size=50257,
                                   n_positions=1024, initializer_range=init)
  torch.manual_seed(0)
  model = transformers.GPT2LMHeadModel(config).eval()
  model.save_pretrained(directory, safe_serialization=True)
  return model


def compiled(params, config, tokens, sources, args, layers):
  """The compiled sweep of the heads of `layers`: (result, compile and run seconds)."""
  import jax
  import jax.numpy as jnp
  from hydra_jax.sweep import heads
  options = heads.options(config, direct_logprob=False, cells_per_step=args.cells_per_step,
                          layers=layers)
  tokens, sources = jnp.asarray(tokens), jnp.asarray(sources)
  program, compile_s = _timed(lambda: heads._sweep.lower(params, config, tokens, sources,
                                                         options).compile())
  result, run_s = _timed(lambda: jax.block_until_ready(program(params, tokens, sources)))
  return result, dict(compile_s=compile_s, run_s=run_s)


def torch_hooks(model, tokens, sources, cells, head_size: int):
  """TE (centred logit, log-prob) [B, P] per cell, mean over sources, and the cell times."""
  from tests import hf_fixtures
  import torch
  z = hf_fixtures.head_outputs(model, "gpt2", tokens)                   # [B, L, T, H E]
  with torch.no_grad():
    clean = hf_fixtures.next_token_scores(model(torch.as_tensor(tokens).long()).logits, tokens)
  results, times = {}, []
  for layer, head in cells:
    te = []
    for k in range(sources.shape[1]):
      value = z[sources[:, k], layer][..., head * head_size:(head + 1) * head_size]
      start = time.perf_counter()
      logits = hf_fixtures.ablate_head(model, "gpt2", tokens, layer, head, value)
      scores = hf_fixtures.next_token_scores(logits, tokens)
      times.append(time.perf_counter() - start)
      te.append([scores[0] - clean[0], scores[1] - clean[1]])
    results[(layer, head)] = np.mean(te, axis=0)                         # [2, B, P]
  return results, times


def main(argv=None):
  args = parse_args(argv)
  import torch
  from hydra_jax.checkpoints import load_hf
  from hydra_jax.sweep import heads
  torch.set_num_threads(max(1, torch.get_num_threads()))
  peak = matmul_peak()
  print(f"float32 matmul peak (2048^3 jnp): {peak:.1f} GFLOP/s")
  with tempfile.TemporaryDirectory() as directory:
    model = build_model(directory, args.init)
    config, params = load_hf(directory)
  rows, T, K, L, H = args.sequences, args.length, args.sources, config.num_layers, config.num_heads
  tokens = np.random.default_rng(0).integers(0, config.vocab_size, (rows, T)).astype(np.int32)
  sources = heads.draw_sources(rows, K, seed=0)
  layers = (0, L - 1)      # their mean count of layers run, (L + 1) / 2, is the full sweep's
  result, timing = compiled(params, config, tokens, sources, args, layers)
  num_cells, run_cells = L * H * K, len(layers) * H * K
  cells = [(layers[i % 2], (5 * i) % H) for i in range(args.torch_heads)]
  reference, times = torch_hooks(model, tokens, sources, cells, config.head_size)
  differences = [np.abs(np.stack([np.asarray(result.total_effect)[:, layers.index(l), h],
                                  np.asarray(result.total_effect_logprob)[:, layers.index(l), h]])
                        - reference[(l, h)]).max() for l, h in cells]
  scale = max(np.abs(reference[c]).max() for c in cells)
  cell_s = statistics.median(times)
  compiled_rate, hook_rate = run_cells * rows / timing["run_s"], rows / cell_s
  print(f"model: GPT-2 small shape, {L} x {H} heads, d {config.d_model}; {rows} sequences of "
        f"{T} tokens (all scored and all sources), K = {K}: {num_cells} cells")
  print(f"compiled: the {run_cells} cells of layers {layers}: compile {timing['compile_s']:.1f} s, "
        f"run {timing['run_s']:.1f} s, {compiled_rate:.1f} ablated sequence-forwards/s; all "
        f"{num_cells} cells at that rate: {num_cells * rows / compiled_rate:.1f} s")
  print(f"torch hooks: {len(times)} cells timed (heads {cells}, every source), median "
        f"{cell_s * 1e3:.0f} ms per cell, {hook_rate:.1f} sequence-forwards/s; all {num_cells} "
        f"cells extrapolated: {cell_s * num_cells:.1f} s")
  mean_layers = np.mean([L - l for l in layers])
  for name, rate, flops in (("compiled", compiled_rate, forward_flops(config, T, mean_layers)),
                            ("torch hooks", hook_rate, forward_flops(config, T, L))):
    print(f"{name}: {flops / 1e9:.1f} GFLOP per ablated sequence-forward, "
          f"{rate * flops / 1e9:.1f} GFLOP/s = {rate * flops / 1e9 / peak:.0%} of the matmul peak")
  print(f"ratio compiled / hooks: {compiled_rate / hook_rate:.2f}x")
  print(f"largest TE difference on the hooked heads: {max(differences):.2e} (largest |TE| {scale:.2f})")


if __name__ == "__main__":
  main()
