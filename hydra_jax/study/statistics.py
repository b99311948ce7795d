"""The study's measures of one sweep, with bootstrap confidence intervals over prompts.

    bootstrap_slopes(x [N, C], y [N, P, C], resamples, seed) -> slope, r2 [P, C], ci [P, C, 2]
    measures(arrays, resamples, seed) -> per-layer measures of one sweep (JSON-ready)

For every ablated component c (row of the sweep) and each part of the response -
attention compensation (the Hydra effect), MLP compensation (reduced erasure), their
total, and the norm remainder - the least-squares slope across prompts of the part on
the lost direct effect (-direct change), its R^2, and a percentile bootstrap 95% CI:
prompts are resampled with replacement, the same draws for every part and component
(paired). The other per-layer measures come from the main job's report code
(`hydra_jax.report.summary.per_component`): the ratio of means, the norm's share,
and the DE-TE correlation. Late-MLP erasure: the clean direct effect summed over the
last MLPs (negative: they erase), and its change when each component is ablated.

The fits and the bootstrap are the report's (`hydra_jax.report.statistics`).

Shapes: N prompts, C = 2L components, P parts, R resamples.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

import numpy as np

from hydra_jax.report import headline, statistics
from hydra_jax.report import summary as report

PARTS = ("attn", "mlp", "total", "norm")


def bootstrap_slopes(x: np.ndarray, y: np.ndarray, resamples: int = 1000, seed: int = 0):
  """(slope [P, C], r2 [P, C], ci [P, C, 2]) of each part y[p] [N, C] on x [N, C].

  The fits and the percentile bootstrap are the report's (`report.statistics`): the same
  resampled prompts for every part and component (NaN where no draw gives a slope).
  """
  x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
  if x.ndim != 2 or y.ndim != 3 or y.shape[1:] != x.shape:
    raise ValueError(f"need x [N, C] and y [P, N, C], got {x.shape} and {y.shape}")
  if x.shape[0] < 3 or resamples < 1:
    raise ValueError(f"need at least 3 prompts and 1 resample, got {x.shape[0]} and {resamples}")
  counts = statistics.resample_counts(x.shape[0], resamples, seed)                  # [R, N]
  fits = [statistics.fits(x, part) for part in y]
  ci = [statistics.interval(statistics.weighted_fits(counts, x, part).slope).T for part in y]
  return (np.stack([f.slope for f in fits]), np.stack([f.r2 for f in fits]),
          np.stack(ci))                                                            # [P, C, 2]


def _late_mlps(num_layers: int) -> list[int]:
  """Components of the last MLP layers (as many as the report's erasure figure shows)."""
  count = headline.late_mlp_count(num_layers)
  return [2 * l + 1 for l in range(num_layers - count, num_layers)]


def measures(arrays: Mapping[str, np.ndarray], resamples: int = 1000, seed: int = 0) -> dict[str, Any]:
  """Per-layer measures of one sweep: {"attn": {measure: [L]}, "mlp": {...}} and more."""
  lost = -np.asarray(arrays["direct_change"], np.float64)                           # [N, C]
  parts = np.stack([arrays["compensation_attn"], arrays["compensation_mlp"],
                    arrays["compensation_attn"] + arrays["compensation_mlp"],
                    arrays["norm_remainder"]])                                        # [P, N, C]
  slope, r2, ci = bootstrap_slopes(lost, parts, resamples, seed)
  components = report.per_component(arrays)
  num_components = lost.shape[1]
  late = _late_mlps(num_components // 2)
  late_change = np.asarray(arrays["response"])[:, :, late].sum(-1).mean(0)           # [C]
  per_component = dict(
      lost_direct_effect=components["lost_direct_effect"],
      fraction_restored=slope[PARTS.index("total")].tolist(),       # the paper's reading: a slope
      fraction_restored_with_norm=(slope[PARTS.index("total")] + slope[PARTS.index("norm")]).tolist(),
      ratio_of_means_restored=components["ratio_of_means_restored"],
      norm_share=[_share(r, l) for r, l in zip(components["norm_remainder"],
                                                components["lost_direct_effect"])],
      de_te_correlation=components["de_te_correlation"],
      late_mlp_change=late_change.tolist())
  for p, part in enumerate(PARTS):
    per_component[f"slope_{part}"] = slope[p].tolist()
    per_component[f"r2_{part}"] = r2[p].tolist()
    per_component[f"ci_{part}"] = ci[p].tolist()
  layers = report.per_layer(per_component)
  return report.json_ready(dict(
      num_prompts=int(lost.shape[0]), num_layers=num_components // 2,
      middle_layers=headline.middle_layers(num_components // 2),
      late_mlps=[c // 2 for c in late],
      late_mlp_direct_effect=float(np.asarray(arrays["direct_effect"])[:, late].sum(-1).mean()),
      per_layer=layers))


def _share(part: float, whole: float) -> float:
  return part / whole if whole and math.isfinite(whole) else math.nan
