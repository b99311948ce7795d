"""Inference over training seeds: the seed is the unit, at layers fixed in advance.

    over_seeds(values [S]) -> mean, sd, 95% t interval and two-sided p (H0: mean 0)
    holm(pvalues)          -> Holm's step-down adjusted p-values (same order, NaN kept)
    seed_tests(layers, per_seed, tested) -> per (layer, part): over_seeds of the seeds'
                              within-prompt slopes, the mean ratio of means, the Holm-
                              adjusted p over every (layer, part) tested, and `clear`

A slope's bootstrap interval over prompts says how well one trained model is measured;
whether a training recipe produces the effect is a question about seeds, of which a study
has few (3 here), so the t interval is wide by design. `clear` over seeds follows
`report.clear`: the mean within-prompt slope and the mean ratio of means are at least
MIN_EFFECT and the Holm-adjusted p is below 1 - LEVEL.

Shapes: S seeds.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import numpy as np
from scipy import stats

from hydra_jax.report import clear
from hydra_jax.report.statistics import LEVEL


def over_seeds(values: Sequence[float]) -> dict[str, Any]:
  """Mean, sd (ddof 1), 95% t interval and the two-sided one-sample t-test's p of the finite
  values; sd, interval and p are NaN below two seeds (p is 0 or 1 when sd is 0)."""
  found = np.array([v for v in values if v is not None and math.isfinite(v)], np.float64)
  seeds = len(found)
  mean = float(found.mean()) if seeds else math.nan
  if seeds < 2:
    return dict(seeds=seeds, mean=mean, sd=math.nan, ci=[math.nan] * 2, p=math.nan)
  sd = float(found.std(ddof=1))
  error = sd / math.sqrt(seeds)
  half = float(stats.t.ppf(0.5 + LEVEL / 2, seeds - 1)) * error
  if error == 0:
    p = 1.0 if mean == 0 else 0.0
  else:
    p = float(2 * stats.t.sf(abs(mean / error), seeds - 1))
  return dict(seeds=seeds, mean=mean, sd=sd, ci=[mean - half, mean + half], p=p)


def holm(pvalues: Sequence[float]) -> np.ndarray:
  """Holm's adjusted p-values: the i-th smallest of m is min(1, max over j <= i of
  (m - j + 1) p_(j)); NaN entries are left out of m and stay NaN."""
  p = np.asarray(pvalues, np.float64)
  adjusted = np.full(p.shape, np.nan)
  tested = np.flatnonzero(np.isfinite(p))
  order = tested[np.argsort(p[tested], kind="stable")]
  scaled = (len(order) - np.arange(len(order))) * p[order]
  adjusted[order] = np.minimum(1.0, np.maximum.accumulate(scaled))
  return adjusted


def seed_tests(layers: Sequence[int], per_seed: Sequence[Mapping[str, list]],
               tested: Sequence[str] = ("attn", "total")) -> list[dict[str, Any]]:
  """One dict per (layer, part) of `tested` at `layers`, from each seed's per_layer["attn"]
  measures (within_<part>, ratio_<part>); Holm over all of them. [] without within-prompt
  slopes (sweeps older than the per-source arrays)."""
  if not per_seed or any(f"within_{part}" not in m for m in per_seed for part in tested):
    return []
  rows = []
  for layer in layers:
    for part in tested:
      found = over_seeds([m[f"within_{part}"][layer] for m in per_seed])
      ratios = [m[f"ratio_{part}"][layer] for m in per_seed]
      ratio = [r for r in ratios if r is not None and math.isfinite(r)]
      rows.append(dict(layer=layer, part=part, **found,
                       ratio_mean=float(np.mean(ratio)) if len(ratio) == len(ratios) else math.nan))
  for row, adjusted in zip(rows, holm([row["p"] for row in rows])):
    row["p_holm"] = float(adjusted)
    row["clear"] = bool(math.isfinite(adjusted) and adjusted < 1 - LEVEL
                        and row["mean"] >= clear.MIN_EFFECT and row["ratio_mean"] >= clear.MIN_EFFECT)
  return rows
