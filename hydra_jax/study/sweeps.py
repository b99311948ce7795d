"""Sweeping one run's model with the main job (hydra_jax.job.run), one variant at a time.

    job_config(run, model_dir, variant, facts_file) -> the main job's ConfigDict
    sweep_variant(run, model_dir, variant, workdir, reports=False)
                                                    -> results arrays [N, ...] (results.npz)
    downstream(run, model_dir)                      -> bool [C, C], the model's downstream mask

The job sweeps into the variant's store and hands the arrays back
(`job.run.sweep_to_store`); they are written to results.npz, and the job's report
(summary.json, figures, report.md) is drawn only with reports=True (the study's
variant_reports): the study's measures come from the arrays themselves (`study.statistics`).

The job reads the model folder as a hydra_jax checkpoint (model_source="checkpoint",
its tokenizer beside it) and the run's prompts from sweep_facts.json
(data.name="facts_file"). So any run can be swept again by hand:

    python -m hydra_jax.main --config=configs/hf.py --config.model_source=checkpoint \
      --config.checkpoint=DIR/runs/<run>/model --config.data.name=facts_file \
      --config.data.facts_file=DIR/runs/<run>/model/sweep_facts.json \
      --config.data.label_prefix="" --workdir=...

The "same_relation" variant sweeps each relation's prompts as a job of its own, so every
resample source is a prompt of the same relation; its arrays are the relations' results
concatenated (prompt order: relation by relation). A variant whose workdir already holds
results.npz is not run again (nor its report drawn); an interrupted job resumes from its
saved chunks.

Shapes: N prompts, C = 2L components.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import ml_collections
import numpy as np

from hydra_jax import store
from hydra_jax.job import config as run_config
from hydra_jax.job import loading as job_inputs
from hydra_jax.job import run as job
from hydra_jax.report import results as report_results
from hydra_jax.sweep import effects
from hydra_jax.study import build
from hydra_jax.study.arms import VARIANTS, Run


def job_config(run: Run, model_dir: str | Path, variant: str,
               facts_file: str | Path) -> ml_collections.ConfigDict:
  """The main job's config sweeping `run`'s model on the prompts of `facts_file`."""
  config = run_config.defaults()
  config.model_source = "checkpoint"
  config.checkpoint = str(model_dir)
  config.data.name = "facts_file"
  config.data.facts_file = str(facts_file)
  config.data.label_prefix = ""          # SentencePiece marks word starts itself
  config.data.filter_correct = bool(run.sweep["filter_correct"])
  config.sweep.kind = VARIANTS[variant]["kind"]
  for field in ("num_sources", "chunk_size", "seed", "path"):
    config.sweep[field] = run.sweep[field]
  return config


def _relation_files(model_dir: Path) -> dict[str, Path]:
  """One facts file per relation of sweep_facts.json, written beside it (same order)."""
  records = json.loads((model_dir / build.SWEEP_FACTS_FILE).read_text())
  by_relation: dict[str, list] = {}
  for record in records:
    by_relation.setdefault(record["relation"], []).append(record)
  files = {}
  for relation, group in by_relation.items():
    files[relation] = model_dir / f"sweep_facts_{relation}.json"
    store.atomic_write_text(str(files[relation]), json.dumps(group, indent=0))
  return files


def _run_job(config: ml_collections.ConfigDict, workdir: Path,
             reports: bool) -> dict[str, np.ndarray]:
  """The job's arrays: results.npz when there, else swept now (into workdir's store) and
  written to results.npz, with the job's report when `reports`."""
  results = workdir / report_results.RESULTS_FILE
  if results.is_file():
    return store.load_npz(str(results))
  start = time.time()
  swept = job.sweep_to_store(config, str(workdir))
  if reports:
    job.write_report(config, str(workdir), swept, start)     # results.npz included
  else:
    store.atomic_save_npz(str(results), report_results.with_layout(swept.arrays))
  return swept.arrays


def sweep_variant(run: Run, model_dir: str | Path, variant: str, workdir: str | Path,
                  reports: bool = False) -> dict[str, np.ndarray]:
  """The results arrays of `variant` on `run`'s model (run now, or read from `workdir`);
  reports: draw the job's report of a variant swept now."""
  model_dir, workdir = Path(model_dir), Path(workdir)
  if not VARIANTS[variant]["by_relation"]:
    return _run_job(job_config(run, model_dir, variant, model_dir / build.SWEEP_FACTS_FILE),
                    workdir, reports)
  parts = [_run_job(job_config(run, model_dir, variant, path), workdir / relation, reports)
           for relation, path in _relation_files(model_dir).items()]
  return concatenate(parts)


def downstream(run: Run, model_dir: str | Path) -> np.ndarray:
  """bool [C, C]: [c, c2] when component c2 reads the output of c, in the swept model (read
  from its config files, as the job plans it: a parallel block's MLP does not read its
  own layer's attention)."""
  config = job_config(run, model_dir, "resample", Path(model_dir) / build.SWEEP_FACTS_FILE)
  return effects.downstream_mask(job_inputs.model_config_of(config))


def concatenate(parts: list[dict[str, Any]]) -> dict[str, np.ndarray]:
  """Per-prompt arrays of several sweeps, one after another (the keys all share)."""
  keys = sorted(set.intersection(*(set(part) for part in parts)))
  return {key: np.concatenate([np.asarray(part[key]) for part in parts]) for key in keys
          if np.ndim(parts[0][key]) >= 1}

