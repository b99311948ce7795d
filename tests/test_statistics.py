"""The report's statistics on small exact cases: the vectorised bootstrap against explicit
refits, its coverage of a known slope, the guarded ratio of means, the spread over
sources, the localisation count and the DE-vs-TE share.

Runtime: about 2 s (100 bootstrap coverage runs of 500 resamples, vectorised).
"""

import numpy as np
import pytest

from hydra_jax.report import statistics


def test_resample_counts_are_seeded_draws_of_every_prompt():
  counts = statistics.resample_counts(7, 50, seed=3)
  assert counts.shape == (50, 7) and (counts.sum(1) == 7).all()
  np.testing.assert_array_equal(counts, statistics.resample_counts(7, 50, seed=3))
  assert not np.array_equal(counts, statistics.resample_counts(7, 50, seed=4))


def test_weighted_fits_equal_refits_of_the_resampled_prompts():
  rng = np.random.default_rng(0)
  x, y = rng.normal(size=(30, 3)), rng.normal(size=(30, 3))
  x[:, 2] = 1.5                                                   # x does not vary: NaN slope
  counts = statistics.resample_counts(30, 5, seed=1)
  batched = statistics.weighted_fits(counts, x, y)
  for r in range(5):
    rows = np.repeat(np.arange(30), counts[r])                    # the resample's prompts
    for c in range(2):
      slope, intercept = np.polyfit(x[rows, c], y[rows, c], 1)
      assert batched.slope[r, c] == pytest.approx(slope)
      assert batched.intercept[r, c] == pytest.approx(intercept)
      assert batched.r2[r, c] == pytest.approx(np.corrcoef(x[rows, c], y[rows, c])[0, 1] ** 2)
  assert np.isnan(batched.slope[:, 2]).all() and np.isnan(batched.r2[:, 2]).all()


def test_plain_fit_by_hand():
  x = np.array([[0.0], [1.0], [2.0], [3.0]])
  fit = statistics.fits(x, 2 * x + 1)
  assert fit.slope[0] == pytest.approx(2.0) and fit.intercept[0] == pytest.approx(1.0)
  assert fit.r2[0] == pytest.approx(1.0)
  constant = statistics.fits(x, np.ones((4, 1)))
  assert constant.slope[0] == 0.0 and np.isnan(constant.r2[0])


def test_bootstrap_interval_covers_the_true_slope_about_95_percent():
  """100 independent data sets (slope 0.7, N = 200): the 95% interval should hold the
  true slope about 95 times (binomial: 90-99 with probability > 0.98)."""
  covered = 0
  for seed in range(100):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(200, 1))
    y = 0.7 * x + 0.3 + rng.normal(scale=0.8, size=(200, 1))
    samples = statistics.weighted_fits(statistics.resample_counts(200, 500, seed + 1000), x, y)
    low, high = statistics.interval(samples.slope)[:, 0]
    covered += low <= 0.7 <= high
  assert 90 <= covered <= 99


def test_interval_is_the_percentile_range_and_ignores_nan():
  samples = np.stack([np.arange(1001.0), np.full(1001, np.nan)], 1)   # [R, 2]
  bands = statistics.interval(samples)
  assert bands[:, 0] == pytest.approx([25.0, 975.0])
  assert np.isnan(bands[:, 1]).all()


def test_ratio_of_means_only_where_the_lost_effect_is_well_away_from_zero():
  lost = np.array([[1.0, 0.1, 0.5, -1.0],
                   [3.0, 0.1, -0.4, -1.0],
                   [2.0, 0.1, 0.6, -1.0],
                   [2.0, 0.1, -0.5, -1.0]])
  compensation = np.ones((4, 4))
  total_effect = np.array([[-1.0, -4.0, -1.0, 0.0]] * 4)
  ratio = statistics.ratio_of_means(compensation, lost, total_effect)
  assert ratio[0] == pytest.approx(0.5)      # mean 2, 3 SE = 1.2, |TE| / 4 = 0.25
  assert np.isnan(ratio[1])                  # tiny beside the logit's change (0.1 < 4 / 4)
  assert np.isnan(ratio[2])                  # mean 0.05: within 3 standard errors of 0
  assert np.isnan(ratio[3])                  # the component gains DE when ablated


def test_compensation_parts_and_source_spread():
  # Three components (attn 0, mlp 0, attn 1); each source moves every response by k.
  response = np.zeros((2, 3, 3, 3))                                                 # [M, K, C, C]
  response += np.arange(3.0)[None, :, None, None]
  downstream = np.triu(np.ones((3, 3), bool), 1)
  parts = statistics.compensation_parts(response[0, 0], downstream)
  np.testing.assert_array_equal(parts["attn"], [0.0, 0.0, 0.0])
  np.testing.assert_array_equal(parts["mlp"], [0.0, 0.0, 0.0])
  spread = statistics.source_spread(response, downstream)
  # attn 0 has two downstream components, mlp 0 one (attention), attn 1 none.
  np.testing.assert_allclose(spread["total_std_over_sources"], [2.0, 1.0, 0.0])
  np.testing.assert_allclose(spread["attn_std_over_sources"], [1.0, 1.0, 0.0])
  np.testing.assert_allclose(spread["mlp_std_over_sources"], [1.0, 0.0, 0.0])
  np.testing.assert_allclose(spread["total_mean"], [2.0, 1.0, 0.0])


def test_localisation_counts_the_components_carrying_80_percent():
  response = np.zeros((1, 4, 4))
  response[0, 0, 1:] = [4.0, -3.0, 2.0]    # |.| 4 + 3 = 7 < 8 of 9 x 0.8 = 7.2: needs all 3
  response[0, 1, 2:] = [9.0, 0.5]          # 9 of 9.5 >= 80%: one
  response[0, 2, 3] = 0.0                  # nothing responds
  counts = statistics.localisation(response, np.triu(np.ones((4, 4), bool), 1))
  assert counts[0, 0] == 3.0 and counts[0, 1] == 1.0
  assert np.isnan(counts[0, 2]) and np.isnan(counts[0, 3])


def test_direct_exceeds_drop():
  lost = np.array([[1.0, 0.0], [2.0, 1.0]])
  total_effect = np.array([[-0.5, -1.0], [-3.0, -1.0]])
  np.testing.assert_array_equal(statistics.direct_exceeds(lost, total_effect), [0.5, 0.0])
