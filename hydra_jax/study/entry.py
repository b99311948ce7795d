"""One run of a study: its model, built once, and the measures of each of its sweeps.

    run_entry(run, root, config, log) -> the run's study.json entry

runs/<run>/model/ holds the model (`hydra_jax.study.build`), runs/<run>/<variant>/ the
main job's store of each sweep variant, its results.npz and its measures.json (computed
from the arrays the job hands back, with the model's downstream mask). Every step is skipped
when its output is on disk. Both the sequential study (`hydra_jax.study.runner`) and its
worker processes (`hydra_jax.study.workers`) run a study's runs through this.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hydra_jax import store
from hydra_jax.study import arms, build, statistics, sweeps

MEASURES_FILE = "measures.json"


def _model(run: arms.Run, directory: Path, log) -> dict[str, Any]:
  if build.is_built(directory):
    log(f"  model already built in {directory}")
  else:
    log(f"  building the model ({run.train['steps']} training steps)")
    build.build_run(run, directory, log)
  record = json.loads((directory / build.TRAINING_FILE).read_text())
  log(f"  facts answered: {record['fact_accuracy']:.3f} ({record['num_correct']}/"
      f"{record['num_facts']}), training {record['train_seconds']:.0f} s")
  return record


def _measures(run: arms.Run, variant: str, run_dir: Path, config, log) -> dict[str, Any]:
  """The measures of one sweep variant: measures.json when made with the same bootstrap
  settings, else computed from the sweep's arrays (swept now, or read from results.npz)."""
  path, bootstrap = run_dir / variant / MEASURES_FILE, config.bootstrap
  settings = dict(resamples=bootstrap.resamples, seed=bootstrap.seed, version=statistics.VERSION)
  if path.is_file():
    saved = json.loads(path.read_text())
    if saved.get("bootstrap") == settings:
      log(f"  sweep {variant}: already measured")
      return saved
  log(f"  sweep {variant}")           # a finished sweep is only read again (results.npz)
  arrays = sweeps.sweep_variant(run, run_dir / "model", variant, run_dir / variant,
                                reports=config.variant_reports)
  reads = sweeps.downstream(run, run_dir / "model")                              # [C, C]
  measures = dict(statistics.measures(arrays, reads, bootstrap.resamples, bootstrap.seed),
                  bootstrap=settings)
  store.atomic_write_text(str(path), json.dumps(measures, indent=1))
  return measures


def run_entry(run: arms.Run, root: Path, config, log) -> dict[str, Any]:
  """Build and sweep one run (each step skipped when on disk); its study.json entry."""
  run_dir = root / "runs" / run.name
  record = _model(run, run_dir / "model", log)
  variants, errors = {}, {}
  for variant in run.variants:   # a sweep that cannot run is reported, the study goes on
    try:
      variants[variant] = _measures(run, variant, run_dir, config, log)
    except ValueError as error:
      errors[variant] = str(error)
      log(f"  sweep {variant} failed: {error}")
  return dict(run=run.name, arm=run.arm, seed=run.seed, training=record,
              variants=variants, errors=errors)
