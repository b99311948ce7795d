"""Running a study: every run's model, its sweeps, then the comparison. Resumable.

    run_study(config, workdir, log=print) -> study.json's content

The workdir holds

  study_config.json                 the flattened study config (a later call with a
                                    config that differs in a result-changing key stops)
  runs/<run>/model/                 the run's model folder (`hydra_jax.study.build`)
  runs/<run>/<variant>/             the main job's store of each sweep variant and its
                                    results.npz (its report too with variant_reports)
  runs/<run>/<variant>/measures.json  the study's measures of that sweep
  study.json, study.md, study.png   the comparison (`hydra_jax.study.compare`), with the
                                    mediation check (`hydra_jax.study.mediation`) of the
                                    run whose attention slope has the highest lower CI

A sweep that stops with a ValueError (say, too few prompts answered to draw K sources)
is logged and listed in study.md, and the other runs go on; the next call retries it.
Every step is skipped when its output is on disk (a model folder with training.json,
a measures.json made with the same bootstrap settings; other settings recompute the
measures from the saved sweep), and an interrupted sweep resumes from its saved chunks,
so running the same command after a kill continues where it stopped. Progress: one line per
step, with the time spent and an estimate of the time left.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Callable

import ml_collections

from hydra_jax import store
from hydra_jax.study import arms, compare, mediation
from hydra_jax.study import workers as workers_lib
from hydra_jax.study.entry import MEASURES_FILE, run_entry  # noqa: F401  (re-exported)

CONFIG_FILE = "study_config.json"
RESULT_NEUTRAL = ("name", "bootstrap.", "variant_reports")   # keys that change no sweep


def claim(workdir: Path, config: ml_collections.ConfigDict) -> None:
  """Write study_config.json, or check that the one there matches `config`."""
  flat = store.flatten(config.to_dict())
  path = workdir / CONFIG_FILE
  if path.is_file():
    stored = json.loads(path.read_text())
    differing = [k for k in store.config_differences(stored, flat)
                 if not k.startswith(RESULT_NEUTRAL)]
    if differing:
      raise ValueError(f"{workdir} holds a study with other settings ({', '.join(differing)}): "
                       "use a fresh --workdir or the same config")
  workdir.mkdir(parents=True, exist_ok=True)
  store.atomic_write_text(str(path), json.dumps(flat, indent=1, default=str))


def run_study(config: ml_collections.ConfigDict, workdir: str,
              log: Callable[[str], None] = print, workers: int = 1) -> dict[str, Any]:
  """Build and sweep every run of `config` in `workdir`, then write the comparison.

  With `workers` > 1 that many processes (`hydra_jax.study.workers`) first share the
  runs, each pinned to its own core; then this process collects them from disk.
  """
  runs = arms.expand(config)
  root = Path(workdir)
  claim(root, config)
  start, entries = time.time(), []
  if workers > 1:
    workers_lib.run_in_parallel(config, root, workers, log)
  for index, run in enumerate(runs):
    log(f"[{index + 1}/{len(runs)}] {run.name}")
    entries.append(run_entry(run, root, config, log))
    spent = time.time() - start
    log(f"  done; {spent:.0f} s in this call, about "
        f"{spent / (index + 1) * (len(runs) - index - 1):.0f} s left at this pace")
  best, check = compare.best_run(entries), None
  if best is not None:
    measures = next(e for e in entries if e["run"] == best)["variants"]["resample"]
    layer = compare.best_middle_layer(measures)
    log(f"mediation check on {best}: attention layer {layer} (its best middle layer) and "
        "its strongest responder")
    check = dict(run=best, **mediation.check_run(root / "runs" / best, ablated=layer))
  study = compare.write(str(root), config.name, entries, check)
  log(f"study written to {root / compare.MARKDOWN_FILE} ({time.time() - start:.0f} s)")
  return study
