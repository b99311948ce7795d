"""Benchmark: the memory plan (`--config.dry_run=True`) against what a sweep really takes.

The model is configs/chinchilla7b.py's architecture (RMSNorm, relative positions, GELU
MLP 4 x d_model, vocabulary 32,000) narrowed and shortened to about 1B parameters: 16
layers, d_model 2048, 16 heads of 128, MLP 8192, float32, random init, on random token
prompts (the 7B config's data). For each setting the plan's bytes per device
(`hydra_jax.job.plan`, as the job prints it) stands beside

  XLA   the compiled memory_analysis() of the job's sweep program for its first chunk
        (`hydra_jax.sweep.lower_sweep` on the very batch the job builds: the chunk's
        scored prompts, and as an argument every prompt's clean components [N, C, D], the
        resample table): arguments + outputs + temporaries - aliased bytes, i.e. the
        buffers the program holds at once;
  RSS   (the executed setting only) the process's peak resident memory minus its
        resident memory before the model was made, after sweeping every chunk.

Settings: "run", a few prompts that are swept for real, and compile-only ones at the
7B config's sweep sizes (chunk 32, K = 15 sources) where the working set matters.

    python benchmarks/memory.py            # about 3 minutes on 2 CPU cores, 7 GB of RAM

Shapes: N prompts, T prompt length, K sources, C = 2L components, B scored rows of a sweep
batch (the chunk size).
"""

from __future__ import annotations

import argparse
import importlib.util
import resource
import sys
import time
from pathlib import Path

import jax
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hydra_jax.job import chunks, loading as inputs, plan as plan_lib, layers, runtime  # noqa: E402
from hydra_jax.sweep import engine as sweep  # noqa: E402

MIB = 2 ** 20
SETTINGS = {   # name: (prompts N, length T, sources K, chunk size, executed)
    "run": (4, 16, 2, 4, True),
    "7b sweep sizes": (1209, 16, 15, 32, False),
    "long prompts": (256, 64, 15, 8, False),
}


def job_config(args, num_prompts, length, sources, chunk):
  """configs/chinchilla7b.py at ~1B parameters, with this setting's sweep sizes."""
  spec = importlib.util.spec_from_file_location("chinchilla7b", ROOT / "configs" / "chinchilla7b.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  config = module.get_config()
  config.model.update(name="chinchilla_1b", num_layers=args.layers, d_model=args.d_model,
                      num_heads=args.d_model // 128, mlp_dim=4 * args.d_model, dtype=args.dtype)
  config.data.update(num_prompts=num_prompts, prompt_length=length)
  config.sweep.update(num_sources=sources, chunk_size=chunk)
  config.mesh.update(data=1, model=1)
  return config


def resident_bytes() -> int:
  with open("/proc/self/status") as f:
    return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS:"))


def first_chunk(config, model):
  """(prompts, sources, layout, T, the job's sweep program for chunk 0, lowered). One device:
  no mesh (which would place the weights, and these may be shapes only)."""
  prompts = inputs.load_prompts(config, model)
  sources = layers.draw_sources(config, prompts)
  layout = chunks.make_layout(len(prompts), config.sweep.chunk_size)
  tokens, lengths = prompts.tokens, prompts.lengths                              # [N, T], [N]
  lowered = sweep.lower_sweep(model.params, model.config, tokens, lengths, sources,
                              kind=config.sweep.kind, path=config.sweep.path,
                              batch_size=layout.size)
  return prompts, sources, layout, tokens.shape[1], lowered


def xla_bytes(compiled) -> int:
  stats = compiled.memory_analysis()
  return (stats.argument_size_in_bytes + stats.output_size_in_bytes + stats.temp_size_in_bytes
          - stats.alias_size_in_bytes)


def measure(args, name, num_prompts, length, sources, chunk, executed) -> dict:
  config = job_config(args, num_prompts, length, sources, chunk)
  shape = runtime.mesh_shape(config)
  mesh = runtime.make_mesh(shape)
  model_config = inputs.model_config_of(config)
  plan = layers.plan_for(config, model_config, shape)
  before = resident_bytes()
  if executed:
    model = inputs.load_model(config, mesh)
  else:    # shapes only: nothing allocated, the program compiled but not run
    model = inputs.Model(model_config, plan_lib.param_shapes(model_config), None, {})
  prompts, source_rows, layout, length, lowered = first_chunk(config, model)
  start = time.time()
  figures = dict(setting=name, params=plan.num_params, rows=layout.size, length=length,
                 prompts=len(prompts), plan=plan.bytes_per_device,
                 plan_weights=plan.param_bytes_per_device, xla=xla_bytes(lowered.compile()))
  if executed:
    prepared = chunks.prepare(model, prompts, source_rows, layout, layers.sweep_options(config),
                              mesh=mesh)
    for index in range(layout.num_chunks):
      chunks.sweep_chunk(prepared, prompts, layout, index)
    figures["rss"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - before
  figures["seconds"] = time.time() - start
  return figures


def row(f) -> str:
  rss = f"{f['rss'] / MIB:,.0f}" if "rss" in f else "-"
  worst = max(abs(f[k] / f["plan"] - 1) for k in ("xla", "rss") if k in f)
  return (f"| {f['setting']} | {f['rows']} x {f['length']} | {f['plan'] / MIB:,.0f} "
          f"({f['plan_weights'] / MIB:,.0f} weights) | {f['xla'] / MIB:,.0f} | {rss} | "
          f"{worst:.0%} | {f['seconds']:.0f} |")


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--layers", type=int, default=16)
  parser.add_argument("--d-model", type=int, default=2048)
  parser.add_argument("--dtype", default="float32")
  parser.add_argument("--settings", nargs="*", default=list(SETTINGS), choices=list(SETTINGS))
  args = parser.parse_args(argv)
  print(f"jax {jax.__version__} on {jax.devices()[0].device_kind}; MiB throughout")
  print("| setting | batch B x T | plan | XLA | peak RSS | largest gap | seconds |")
  print("| --- | --- | --- | --- | --- | --- | --- |")
  for name in args.settings:   # the executed setting first: RSS is a peak over the process
    print(row(measure(args, name, *SETTINGS[name])), flush=True)


if __name__ == "__main__":
  main()
