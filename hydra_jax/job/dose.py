"""The dose-response sweep: the same ablations at intermediate strengths, on a subset of prompts.

A dose w in [0, 1] replaces each component by (1 - w) x its clean value + w x its resample
source (`engine.run_rows(..., dose=w)`: the main sweep's compiled program, the dose a
runtime input). With the clean final sigma the lost DE of the ablated component is
exactly w times the full ablation's, so the compensation of a proportional repair grows
as w too; a threshold (nothing until the loss is large) or a saturation shows as a
within-prompt slope that changes with w (`hydra_jax.report.dose`).

config.sweep.doses are the strengths below 1 (the main sweep is w = 1) and
config.sweep.dose_prompts how many kept prompts, spread evenly over the kept set, at most
one chunk (sweep.chunk_size), so that a dose costs at most a chunk's sweep (0: no dose
sweep). The result, dose.npz in the workdir (`report.summary.DOSE_FILE`), holds

  dose        [W]           the strengths swept
  dose_rows   [M]           the kept prompts swept (indices into results.npz)
  <part>_by_source(...)     [W, M, K, C] the per-source arrays of `measures.by_source_name`

`run` (called by the job after the chunks) writes it once; a run that finds it skips the
dose sweep (the config guard of the workdir covers the dose options).

Shapes: W doses, M prompts, K sources, C = 2L components.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Callable, Optional

import numpy as np

from hydra_jax import store as results_store
from hydra_jax.job import runtime
from hydra_jax.report import summary as report
from hydra_jax.sweep import batching, sharding
from hydra_jax.sweep.measures import BY_SOURCE_PARTS, SIGMAS, by_source_name

NAMES = tuple(by_source_name(part, sigma) for sigma in SIGMAS for part in BY_SOURCE_PARTS)


def dose_rows(num_prompts: int, count: int) -> np.ndarray:
  """int [M]: `count` kept prompts spread evenly over all of them (all when fewer)."""
  if count >= num_prompts:
    return np.arange(num_prompts)
  return np.unique(np.linspace(0, num_prompts - 1, count).round().astype(np.int64))


def sweep_doses(prepared, rows: np.ndarray, doses) -> dict[str, np.ndarray]:
  """The per-source arrays [W, M, K, C] of `rows` at each dose, with dose and dose_rows.
  The main sweep's program and batch, unless M is under half a batch: then batches of M
  rows (the program retraced once for them), so that no dose pays for a chunk's padding."""
  if 2 * len(rows) <= prepared.batch:
    batch = batching.round_up(len(rows), sharding.data_size(prepared.mesh))
    prepared = dataclasses.replace(prepared, batch=batch)
  found = {name: [] for name in NAMES}
  for dose in doses:
    parts = {name: [] for name in NAMES}
    for batch in batching.batches(len(rows), prepared.batch):
      measured, _ = prepared.run_rows(rows[batch], float(dose))
      for name in NAMES:
        parts[name].append(runtime.to_host(measured[name])[:len(batch)])
    for name in NAMES:
      found[name].append(np.concatenate(parts[name]))
  arrays = {name: np.stack(values) for name, values in found.items()}
  return dict(arrays, dose=np.asarray(doses, np.float64), dose_rows=rows)


def run(config, prepare: Callable, num_prompts: int, workdir: str,
        say: Callable[[str], None]) -> Optional[dict[str, np.ndarray]]:
  """dose.npz's arrays: read from the workdir, or swept now by every process (`prepare()`
  gives the engine) and written by process 0; None when config.sweep.dose_prompts is 0."""
  if not config.sweep.dose_prompts or not config.sweep.doses:
    return None
  path = results_store.as_path(workdir) / report.DOSE_FILE
  on_disk = runtime.process_zero_view(np.array([runtime.writes() and path.exists()]))[0]
  if on_disk:
    return results_store.load_npz(path) if runtime.writes() else None
  count = min(config.sweep.dose_prompts, config.sweep.chunk_size)   # at most one chunk a dose
  start, rows = time.time(), dose_rows(num_prompts, count)
  arrays = sweep_doses(prepare(), rows, config.sweep.doses)
  if runtime.writes():
    results_store.atomic_save_npz(path, arrays)
  say(f"dose response: {len(rows)} prompts at doses {list(config.sweep.doses)}, "
      f"{time.time() - start:.1f} s")
  return arrays
