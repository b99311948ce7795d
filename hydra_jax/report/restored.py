"""The fraction restored per ablated component: both estimators, both sigma readings, the rule.

From the per-source arrays of a sweep (`measures.by_source_name`: lost DE and the parts of
the compensation, per prompt, source and component, read with the clean final sigma and
with each ablated run's own), for every component c, sigma reading and part (total,
attention, MLP, and the norm remainder: the norm's own share):

  mean            mean of the part over prompts and sources
  ratio_of_means  mean part / mean lost DE (null unless the lost DE is well away from 0)
  across          the paper's fit across prompts: slope, intercept, R^2
  within          the within-prompt slope, with its cluster-robust standard errors
                  (clusters: prompts, and subjects)
  *_ci            95% intervals of the cluster bootstrap (the resamples `counts` [R, N])
  clear           the rule of `report.clear` (total, attention and MLP parts only)

`estimate` computes them once, keeping the bootstrap samples so that a mean over layers
gets its interval from the same resamples (`pooled`). Sweeps saved without per-source
arrays (older results) have none of this: `estimate` returns None.

Shapes: N prompts, K sources, C = 2L components, R resamples.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Optional

import numpy as np

from hydra_jax.report import clear, estimators, statistics
from hydra_jax.sweep.measures import SIGMAS, by_source_name

PARTS = ("total", "attn", "mlp", "norm")
_SOURCE_PARTS = dict(attn="compensation_attn", mlp="compensation_mlp", norm="norm_remainder")


@dataclasses.dataclass(frozen=True)
class Estimates:
  """Point estimates [C] and bootstrap samples [R, C] of one part under one sigma."""
  mean: np.ndarray
  mean_samples: np.ndarray
  lost: np.ndarray                  # mean lost DE [C]
  lost_samples: np.ndarray
  ratio: np.ndarray                 # guarded ratio of means
  across: estimators.Fit
  across_samples: estimators.Fit
  within: np.ndarray
  within_samples: np.ndarray
  se_prompts: np.ndarray
  se_subjects: np.ndarray


def has_per_source(arrays) -> bool:
  return all(by_source_name(part, sigma) in arrays for part in ("lost_de", *_SOURCE_PARTS.values())
             for sigma in SIGMAS)


def part_values(arrays, part: str, sigma: str) -> np.ndarray:
  """[N, K, C] one part ("total", "attn", "mlp", "norm", or "lost") read with `sigma`."""
  if part == "total":
    return part_values(arrays, "attn", sigma) + part_values(arrays, "mlp", sigma)
  name = "lost_de" if part == "lost" else _SOURCE_PARTS[part]
  return np.asarray(arrays[by_source_name(name, sigma)], np.float64)


def _estimates(x, y, te, counts, clusters, defined) -> Estimates:
  """One part: x, y [N, K, C], te [N, C] (for the ratio's guard), defined [C]."""
  y = np.where(defined, y, np.nan)
  mean_x, mean_y = estimators.prompt_means(x), estimators.prompt_means(y)            # [N, C]
  sums = estimators.within_sums(x, y)                                                # [N, C] each
  prompts, rows = np.ones((1, len(x))), np.asarray(counts, np.float64)
  fit = lambda weights: estimators.weighted_fits(weights, mean_x, mean_y)
  return Estimates(
      mean=mean_y.mean(0), mean_samples=estimators.weighted_means(mean_y, rows),
      lost=mean_x.mean(0), lost_samples=estimators.weighted_means(mean_x, rows),
      ratio=statistics.ratio_of_means(mean_y, mean_x, te),
      across=estimators.Fit(*(value[0] for value in fit(prompts))), across_samples=fit(rows),
      within=estimators.within_slope(x, y, sums=sums),
      within_samples=estimators.within_slope(x, y, rows, sums=sums),
      se_prompts=estimators.within_standard_error(x, y, np.arange(len(x))),
      se_subjects=estimators.within_standard_error(x, y, clusters))


def estimate(arrays, counts: np.ndarray, clusters: np.ndarray,
             reads: np.ndarray) -> Optional[dict[tuple[str, str], Estimates]]:
  """{(sigma, part): Estimates} for every sigma reading and part; None without per-source
  arrays. counts [R, N] the cluster bootstrap, clusters [N], reads the downstream mask [C, C]."""
  if not has_per_source(arrays):
    return None
  defined = defined_columns(reads)
  te = np.asarray(arrays["total_effect_mean"], np.float64)
  return {(sigma, part): _estimates(part_values(arrays, "lost", sigma),
                                    part_values(arrays, part, sigma), te, counts, clusters,
                                    defined[part])
          for sigma in SIGMAS for part in PARTS}


def defined_columns(reads: np.ndarray) -> dict[str, np.ndarray]:
  """{part: bool [C]}: the components with something downstream of that part to respond
  (the norm remainder is defined everywhere); reads: the downstream mask [C, C]."""
  attention = np.arange(reads.shape[0]) % 2 == 0
  return dict(total=reads.any(1), attn=(reads & attention).any(1),
              mlp=(reads & ~attention).any(1), norm=np.ones(reads.shape[0], bool))


def _interval(samples: np.ndarray) -> np.ndarray:
  return statistics.interval(samples)                                                # [2, C]


def _entry(found: Estimates, part: str, c: int, bands: dict[str, np.ndarray]) -> dict[str, Any]:
  """The JSON-ready estimates of component c (bands: name -> [2, C] intervals)."""
  band = lambda name: bands[name][:, c].tolist()
  entry = dict(
      mean=float(found.mean[c]), ratio_of_means=float(found.ratio[c]),
      ratio_of_means_ci=band("ratio"),
      across=dict(slope=float(found.across.slope[c]), intercept=float(found.across.intercept[c]),
                  r2=float(found.across.r2[c]), slope_ci=band("across"),
                  intercept_ci=band("intercept")),
      within=dict(slope=float(found.within[c]), slope_ci=band("within"),
                  se_prompts=float(found.se_prompts[c]), se_subjects=float(found.se_subjects[c])))
  if part in clear.PARTS:
    entry["clear"] = clear.is_clear(entry["within"]["slope"], entry["within"]["slope_ci"],
                                    entry["ratio_of_means"])
  return entry


def _ratio_samples(found: Estimates, columns=None) -> np.ndarray:
  """[R, C] the ratio of means in each resample, or [R] pooled over `columns`."""
  part, lost = found.mean_samples, found.lost_samples
  if columns is not None:
    part, lost = part[:, columns].sum(1), lost[:, columns].sum(1)
  return np.where(lost != 0, part / np.where(lost != 0, lost, 1.0), np.nan)


def per_component(found: dict[tuple[str, str], Estimates]) -> list[dict[str, Any]]:
  """One dict per component: {sigma: {part: entry}, "lost_direct_effect": {sigma: mean}}."""
  bands = {key: dict(ratio=np.where(np.isfinite(e.ratio), _interval(_ratio_samples(e)), np.nan),
                     across=_interval(e.across_samples.slope),
                     intercept=_interval(e.across_samples.intercept),
                     within=_interval(e.within_samples))
           for key, e in found.items()}
  num_components = len(next(iter(found.values())).mean)
  return [dict({sigma: {part: _entry(found[sigma, part], part, c, bands[sigma, part])
                        for part in PARTS} for sigma in SIGMAS},
               lost_direct_effect={sigma: float(found[sigma, "total"].lost[c]) for sigma in SIGMAS})
          for c in range(num_components)]


def _column_mean(values: np.ndarray, columns: list[int]) -> np.ndarray:
  """Mean over `columns` of the last axis, ignoring NaN columns (NaN when all are)."""
  chosen = values[..., columns]
  finite = np.isfinite(chosen)
  total = np.where(finite, chosen, 0.0).sum(-1)
  return np.where(finite.any(-1), total / np.maximum(finite.sum(-1), 1), np.nan)


def pooled(found: Estimates, columns: list[int]) -> dict[str, Any]:
  """Over `columns` (e.g. the middle attention layers): the mean of the within-prompt and
  across-prompt slopes (over the columns where they are defined), and the pooled ratio of
  means (sum of the mean parts / sum of the mean lost DE; null unless the pooled lost DE's
  95% interval lies above 0), each with its interval from the same resamples."""
  if not columns:
    return {}
  interval = lambda samples: statistics.interval(samples).tolist()
  lost_band = statistics.interval(found.lost_samples[:, columns].sum(1))
  defined = bool(np.isfinite(lost_band).all() and lost_band[0] > 0)
  ratio = found.mean[columns].sum() / found.lost[columns].sum() if defined else np.nan
  return dict(
      within=float(_column_mean(found.within, columns)),
      within_ci=interval(_column_mean(found.within_samples, columns)),
      across=float(_column_mean(found.across.slope, columns)),
      across_ci=interval(_column_mean(found.across_samples.slope, columns)),
      ratio_of_means=float(ratio),
      ratio_of_means_ci=interval(_ratio_samples(found, columns)) if defined else [np.nan] * 2)
