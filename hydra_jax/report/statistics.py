"""Statistics of a sweep's per-prompt arrays, with their uncertainty (numpy only).

The paper reads "the fraction of the lost logit restored" as the slope of the least-squares
line of compensation (CE) on the lost direct effect (-direct_change) across prompts (its
figure 7d), not as a ratio of means (`estimators` has both, and the within-prompt slope).
Every estimate comes with a percentile bootstrap 95% interval: R resamples held as
counts [R, N] of how often each prompt is drawn, so that all R fits of all C columns are
a few matrix products. Prompts are not independent draws (in the synthetic world each
subject is asked about in five relations), so the resampled unit is a *cluster*:
prompts that share a subject are drawn together, each with all its sources; prompts
without a subject are clusters of their own (then it is the plain prompt bootstrap).

  clusters_of        cluster ids [N] from each prompt's subject ("" : its own cluster)
  cluster_counts     the seeded bootstrap draws of clusters, as counts per prompt [R, N]
  resample_counts    the same with every prompt its own cluster
  weighted_fits      slope, intercept, R^2 of y on x column by column, one fit per weight row
  fits               the plain fit (every prompt once)
  interval           the percentile interval of bootstrap samples
  mean_interval      the interval of a mean over prompts, from the same resamples
  ratio_of_means     mean CE / mean lost DE, only where that denominator is well away from 0
  source_spread      spread over the K sources of each prompt's compensation
  localisation       how many downstream components carry 80% of an ablation's response
  direct_exceeds     share of prompts whose lost DE exceeds the logit drop (-TE)

Shapes: N prompts, M prompts with per-source arrays, K sources, C = 2L components,
R bootstrap resamples.
"""

from __future__ import annotations

import warnings

import numpy as np

from hydra_jax.sweep.effects import Fit, fits, weighted_fits  # noqa: F401  (the one fit)

LEVEL = 0.95            # confidence level of every interval
MIN_STANDARD_ERRORS = 3.0   # ratio_of_means: the mean lost DE must exceed this many SEs ...
MIN_SHARE_OF_TOTAL = 0.25   # ... and this share of the logit's mean total change |TE|
LOCALISED_SHARE = 0.8   # localisation: the share of the |response| to account for


def clusters_of(subjects) -> np.ndarray:
  """int [N]: one id per distinct non-empty subject, numbered in order of first appearance;
  a prompt without a subject ("" or None) is a cluster of its own."""
  ids, found = {}, []
  for index, subject in enumerate(subjects):
    key = str(subject).strip() if subject is not None else ""
    found.append(ids.setdefault(key or ("", index), len(ids)))
  return np.array(found, np.int64)


def cluster_counts(clusters: np.ndarray, num_resamples: int, seed: int) -> np.ndarray:
  """int [R, N]: how many times each prompt is drawn in each bootstrap resample, when the
  Q clusters (ids 0..Q-1 in `clusters` [N]) are drawn Q times with replacement."""
  clusters = np.asarray(clusters, np.int64)
  num_clusters = int(clusters.max()) + 1 if clusters.size else 0
  rng = np.random.default_rng(seed)
  draws = rng.integers(0, num_clusters, (num_resamples, num_clusters))             # [R, Q]
  flat = (draws + num_clusters * np.arange(num_resamples)[:, None]).ravel()          # [R * Q]
  counts = np.bincount(flat, minlength=num_resamples * num_clusters)                 # [R * Q]
  return counts.reshape(num_resamples, num_clusters)[:, clusters]                    # [R, N]


def resample_counts(num_prompts: int, num_resamples: int, seed: int) -> np.ndarray:
  """int [R, N]: the plain prompt bootstrap (every prompt its own cluster)."""
  return cluster_counts(np.arange(num_prompts), num_resamples, seed)


def interval(samples: np.ndarray, level: float = LEVEL) -> np.ndarray:
  """[2, ...] the percentile interval over the first axis (NaN samples ignored; NaN where
  a column has no finite sample)."""
  tail = 100 * (1 - level) / 2
  with warnings.catch_warnings():
    warnings.simplefilter("ignore", RuntimeWarning)   # all-NaN columns
    return np.nanpercentile(np.asarray(samples, np.float64), [tail, 100 - tail], axis=0)


def mean_interval(values: np.ndarray, counts, level: float = LEVEL) -> np.ndarray:
  """[2, ...] the percentile interval of the mean over prompts of values [N, ...] (NaN
  values left out of each resample's mean) under the resamples counts [R, N]; NaN without
  resamples (counts None or R = 0)."""
  values = np.asarray(values, np.float64)
  if counts is None or len(counts) == 0:
    return np.full((2,) + values.shape[1:], np.nan)
  flat = values.reshape(values.shape[0], -1)                                         # [N, V]
  finite = np.isfinite(flat)
  weights = np.asarray(counts, np.float64)                                            # [R, N]
  with np.errstate(invalid="ignore", divide="ignore"):
    means = (weights @ np.where(finite, flat, 0.0)) / (weights @ finite)             # [R, V]
  return interval(means, level).reshape((2,) + values.shape[1:])


def ratio_of_means(numerator: np.ndarray, lost: np.ndarray, total_effect: np.ndarray) -> np.ndarray:
  """[C] mean numerator / mean lost DE over prompts, NaN unless the lost DE is well away from
  zero: positive, at least MIN_STANDARD_ERRORS standard errors of its mean, and at least
  MIN_SHARE_OF_TOTAL of the mean |total effect| (a component that acts mostly through later
  ones, like an early attention layer, loses little DE and its ratio would only restate TE)."""
  mean_lost = lost.mean(0)                                                          # [C]
  standard_error = lost.std(0, ddof=1) / np.sqrt(lost.shape[0]) if lost.shape[0] > 1 else np.inf
  well_away = ((mean_lost > MIN_STANDARD_ERRORS * standard_error)
               & (mean_lost >= MIN_SHARE_OF_TOTAL * np.abs(total_effect.mean(0))))
  return np.where(well_away, numerator.mean(0) / np.where(well_away, mean_lost, 1.0), np.nan)


def compensation_parts(response: np.ndarray, downstream: np.ndarray) -> dict[str, np.ndarray]:
  """The CE of dDE [..., C, C] (ablated, responding): {"attn", "mlp", "total"} each [..., C]."""
  attention = np.arange(downstream.shape[0]) % 2 == 0                                 # [C]
  attn = (response * (downstream & attention)).sum(-1)                               # [..., C]
  mlp = (response * (downstream & ~attention)).sum(-1)
  return dict(total=attn + mlp, attn=attn, mlp=mlp)


def source_spread(response_by_source: np.ndarray, downstream: np.ndarray) -> dict[str, np.ndarray]:
  """Spread over the K sources of each prompt's compensation, from dDE [M, K, C, C]:
  per part, the standard deviation over sources (ddof 1) averaged over the M prompts [C],
  beside the mean over prompts of the compensation itself [C]."""
  parts = compensation_parts(np.asarray(response_by_source, np.float64), downstream)  # [M, K, C]
  spread = {f"{name}_std_over_sources": values.std(1, ddof=1).mean(0)
            for name, values in parts.items()}
  spread.update({f"{name}_mean": values.mean((0, 1)) for name, values in parts.items()})
  return spread


def localisation(response: np.ndarray, downstream: np.ndarray,
                 share: float = LOCALISED_SHARE) -> np.ndarray:
  """[N, C] per prompt and ablated component, how many downstream components carry `share`
  of the summed |dDE| over downstream components (NaN where nothing responds)."""
  magnitude = np.abs(np.asarray(response, np.float64)) * downstream                   # [N, C, C]
  ordered = -np.sort(-magnitude, axis=-1)                                            # [N, C, C]
  carried = np.cumsum(ordered, axis=-1)                                              # [N, C, C]
  total = carried[..., -1:]                                                          # [N, C, 1]
  count = (carried < share * total * (1 - 1e-9)).sum(-1) + 1.0                       # [N, C]
  return np.where(total[..., 0] > 0, count, np.nan)


def direct_exceeds(lost: np.ndarray, total_effect: np.ndarray) -> np.ndarray:
  """[C] share of prompts whose lost DE (unembedding-based impact) exceeds the logit drop
  -TE (ablation-based impact): the downstream components make up part of the loss."""
  return (lost > -total_effect).mean(0)
