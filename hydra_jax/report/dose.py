"""The dose-response check: does the compensation grow in proportion to the lost DE?

The job's dose sweep (`hydra_jax.job.dose`, dose.npz) ablates M of the kept prompts at
strengths w < 1; the main sweep is w = 1 on the same prompts. Read with the clean final
sigma, the lost DE at dose w is exactly w times the full one, so a compensation that
restores a fixed fraction of what is lost has the same within-prompt slope at every w.
Per component and part (total, attention), at every dose: the within-prompt slope with
its cluster-bootstrap 95% interval, the mean lost DE and the ratio of means; then

  proportional   the full ablation's slope lies inside the interval of every smaller dose
  grows          it lies above the smallest dose's interval: the repair sets in late
                 (a threshold)
  shrinks        it lies below: the repair saturates
  mixed          none of these (e.g. inside the smallest dose's interval but not another's)

Shapes: W doses, M prompts, K sources, C = 2L components, R resamples.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional

import numpy as np

from hydra_jax.report import estimators, restored, statistics
from hydra_jax.sweep.measures import BY_SOURCE_PARTS, by_source_name

PARTS = ("total", "attn")
_CLEAN_NAMES = tuple(by_source_name(part, "clean") for part in BY_SOURCE_PARTS)


def _at_doses(arrays, dose_arrays, part: str) -> list[np.ndarray]:
  """[W + 1] arrays [M, K, C] of `part` (clean sigma), the smaller doses first, then w = 1."""
  rows, names = np.asarray(dose_arrays["dose_rows"]), _CLEAN_NAMES
  full = restored.part_values({name: np.asarray(arrays[name])[rows] for name in names},
                              part, "clean")
  swept = [restored.part_values({name: np.asarray(dose_arrays[name])[w] for name in names},
                                part, "clean") for w in range(len(dose_arrays["dose"]))]
  return swept + [full]


def verdict(slopes: np.ndarray, bands: np.ndarray) -> Optional[str]:
  """The reading of slopes [W + 1] (the last at w = 1) and their intervals [W + 1, 2]."""
  full, smaller = slopes[-1], bands[:-1]
  if not np.isfinite(full) or not np.isfinite(smaller).all():
    return None
  if ((smaller[:, 0] <= full) & (full <= smaller[:, 1])).all():
    return "proportional"
  if full > smaller[0, 1]:
    return "grows"
  if full < smaller[0, 0]:
    return "shrinks"
  return "mixed"


def summarize(arrays: Mapping[str, np.ndarray], dose_arrays: Optional[Mapping[str, np.ndarray]],
              counts_of, middle: list[int], reads: np.ndarray) -> Optional[dict[str, Any]]:
  """summary.json's dose_response section; counts_of(rows) gives the bootstrap counts [R, M]
  of those prompts, middle the middle attention components, reads the downstream mask
  [C, C]. None without a dose sweep (or without per-source arrays)."""
  if dose_arrays is None or not restored.has_per_source(arrays):
    return None
  rows = np.asarray(dose_arrays["dose_rows"])
  counts = counts_of(rows)
  doses = [float(w) for w in dose_arrays["dose"]] + [1.0]
  lost = _at_doses(arrays, dose_arrays, "lost")
  section = dict(doses=doses, prompts=int(len(rows)), middle_components=list(middle), parts={})
  defined = restored.defined_columns(reads)
  for part in PARTS:
    outcome = [np.where(defined[part], y, np.nan) for y in _at_doses(arrays, dose_arrays, part)]
    slopes = np.stack([estimators.within_slope(x, y) for x, y in zip(lost, outcome)])      # [W+1, C]
    samples = [estimators.within_slope(x, y, counts) for x, y in zip(lost, outcome)]      # [R, C]
    bands = np.stack([statistics.interval(s).T for s in samples])                       # [W+1, C, 2]
    middle_samples = [np.nanmean(s[:, middle], 1) if middle else s[:, 0] for s in samples]
    section["parts"][part] = dict(
        within=slopes.T.tolist(), within_ci=bands.transpose(1, 0, 2).tolist(),
        ratio_of_means=np.stack([estimators.ratio(x, y) for x, y in zip(lost, outcome)]).T.tolist(),
        verdict=[verdict(slopes[:, c], bands[:, c]) for c in range(slopes.shape[1])],
        middle_within=np.nanmean(slopes[:, middle], 1).tolist() if middle else [],
        middle_within_ci=[statistics.interval(s).tolist() for s in middle_samples])
    section["parts"][part]["middle_verdict"] = verdict(
        np.array(section["parts"][part]["middle_within"]),
        np.array(section["parts"][part]["middle_within_ci"])) if middle else None
  section["mean_lost_direct_effect"] = np.stack([x.mean((0, 1)) for x in lost]).T.tolist()
  return section
