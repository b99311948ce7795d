"""The estimators of the fraction restored, and the standard error of the within-prompt one.

Write x for the lost direct effect of an ablated component and y for a part of the
compensation (attention, MLP, their total) or the norm remainder, per prompt n, resample
source k and ablated component c: arrays [N, K, C]. Each estimator answers its own
question (docs/method.md, "Estimators of the fraction restored"):

  across prompts   least squares of each prompt's mean over its sources, y_n. on x_n.
                   (slope, intercept, R^2; the paper's figure 7). Do prompts that lose
                   more get more back? A covariance across prompts: prompt-level
                   confounds (a prompt whose logit is large loses more and is also read
                   out differently) enter it, and it can differ in sign from the mean.
  ratio of means   mean y / mean x over all (n, k): the share restored on average.
  within prompt    least squares of y_nk - y_n. on x_nk - x_n. over all (n, k): prompt fixed
                   effects. Different sources remove different amounts of the same
                   component in the same context, so this slope is the causal fraction
                   restored, free of confounds between prompts (it needs K >= 2).

`within_slope` and `ratio` take prompt weights [R, N] (bootstrap counts: a prompt drawn
twice counts twice, with all its sources) and give one estimate per row; the across-prompt
fit with weights is `effects.weighted_fits`. `within_standard_error` is the cluster-robust
(CR1) standard error of the within-prompt slope, exactly what statsmodels reports for OLS
of y on x with prompt dummies and cov_type="cluster" (tests/test_estimators.py).

Shapes: N prompts, K sources, C = 2L components, R bootstrap resamples
(one row of prompt weights each).
"""

from __future__ import annotations

import numpy as np

from hydra_jax.sweep.effects import Fit, weighted_fits  # noqa: F401  (the one fit)

TINY = 1e-12   # a variance below TINY x the mean square of x counts as no variation


def prompt_means(values: np.ndarray) -> np.ndarray:
  """[N, C]: each prompt's mean over its K sources of values [N, K, C] (float64)."""
  return np.asarray(values, np.float64).mean(1)


def within_sums(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """(Sxx, Sxy) [N, C]: per prompt, the sums over sources of x~^2 and x~ y~, where
  x~ = x - (the prompt's mean over sources), y~ likewise; x, y [N, K, C]."""
  x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
  dx, dy = x - x.mean(1, keepdims=True), y - y.mean(1, keepdims=True)               # [N, K, C]
  return (dx * dx).sum(1), (dx * dy).sum(1)


def within_slope(x: np.ndarray, y: np.ndarray, weights=None, sums=None) -> np.ndarray:
  """The within-prompt slope of y on x [N, K, C]: [C], or [R, C] for prompt weights [R, N].
  NaN where x does not vary within prompts. sums: `within_sums(x, y)`, if already made."""
  sxx, sxy = within_sums(x, y) if sums is None else sums                             # [N, C]
  rows = np.ones((1, sxx.shape[0])) if weights is None else np.asarray(weights, np.float64)
  total_xx, total_xy = rows @ sxx, rows @ sxy                                        # [R, C]
  varies = total_xx > TINY * rows.sum(1, keepdims=True) * _mean_square(x)
  slope = np.where(varies, total_xy / np.where(varies, total_xx, 1.0), np.nan)
  return slope[0] if weights is None else slope


def _mean_square(x: np.ndarray) -> np.ndarray:
  """[C] the mean over prompts of the sum over sources of x^2 (at least the smallest float)."""
  return np.maximum(np.square(np.asarray(x, np.float64)).sum(1).mean(0), np.finfo(float).tiny)


def within_standard_error(x: np.ndarray, y: np.ndarray, clusters) -> np.ndarray:
  """[C] cluster-robust (CR1) standard error of the within-prompt slope, clusters [N] (ints:
  the cluster of each prompt; every source of a prompt is in its cluster).

  By Frisch-Waugh-Lovell, the slope's entry of the sandwich of OLS with prompt dummies is
  sum_g (sum_{i in g} x~_i e_i)^2 / (sum x~^2)^2, e the residuals y~ - slope x~; CR1 scales it
  by Q / (Q - 1) x (n - 1) / (n - p), n = N K observations, p = N + 1 parameters (the
  intercept, N - 1 dummies, the slope), Q clusters: statsmodels' cov_type="cluster".
  """
  x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
  (num_prompts, num_sources, _), clusters = x.shape, np.asarray(clusters)
  dx, dy = x - x.mean(1, keepdims=True), y - y.mean(1, keepdims=True)               # [N, K, C]
  sxx = (dx * dx).sum(1)                                                             # [N, C]
  slope = within_slope(x, y, sums=(sxx, (dx * dy).sum(1)))                           # [C]
  scores = (dx * (dy - slope * dx)).sum(1)                                           # [N, C]
  groups = np.unique(clusters, return_inverse=True)[1]                               # [N]
  num_groups = groups.max() + 1
  by_group = np.zeros((num_groups, scores.shape[1]))
  np.add.at(by_group, groups, scores)                                                # [Q, C]
  n, p = num_prompts * num_sources, num_prompts + 1
  if num_groups < 2 or n <= p:
    return np.full(scores.shape[1], np.nan)
  correction = num_groups / (num_groups - 1) * (n - 1) / (n - p)
  variance = correction * (by_group ** 2).sum(0) / sxx.sum(0) ** 2
  return np.sqrt(variance)


def weighted_means(values: np.ndarray, weights=None) -> np.ndarray:
  """Mean over prompts (and sources) of values [N, K, C] or [N, C]: [C], or [R, C] for
  prompt weights [R, N]."""
  means = prompt_means(values) if np.ndim(values) == 3 else np.asarray(values, np.float64)
  rows = np.ones((1, means.shape[0])) if weights is None else np.asarray(weights, np.float64)
  found = rows @ means / rows.sum(1, keepdims=True)                                  # [R, C]
  return found[0] if weights is None else found


def ratio(x: np.ndarray, y: np.ndarray, weights=None) -> np.ndarray:
  """mean y / mean x over prompts and sources, x, y [N, K, C] (or their prompt means
  [N, C]): [C], or [R, C] for prompt weights [R, N]. Unguarded (NaN only where the mean
  lost DE is exactly 0); `statistics.ratio_of_means` says where it means something."""
  mean_x, mean_y = weighted_means(x, weights), weighted_means(y, weights)
  return np.where(mean_x != 0, mean_y / np.where(mean_x != 0, mean_x, 1.0), np.nan)


def across_prompts(x: np.ndarray, y: np.ndarray, weights=None) -> Fit:
  """The paper's fit of y's prompt means on x's, x, y [N, K, C]: Fit of [C] (or [R, C])."""
  mean_x, mean_y = prompt_means(x), prompt_means(y)
  if weights is None:
    fit = weighted_fits(np.ones((1, mean_x.shape[0])), mean_x, mean_y)
    return Fit(*(value[0] for value in fit))
  return weighted_fits(weights, mean_x, mean_y)
