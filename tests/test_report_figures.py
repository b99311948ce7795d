"""The report's figures at any depth and its words: the compensation fits' grid, the
heatmap's robust colour scale, error bars on every mean drawn, the one number format,
captions whose words follow their numbers' signs.

The figures are kept open instead of written (`drawn`), so no PNG is rendered.
Runtime: a few seconds.
"""

import matplotlib.container
import numpy as np
import pytest

from hydra_jax.report import captions as report_captions
from hydra_jax.report import figures
from hydra_jax.report import formatting
from hydra_jax.report import markdown as report_markdown
from hydra_jax.report import regression_figures
from hydra_jax.report import statistics
from hydra_jax.report import summary as report
from tests.test_report import INFO, sweep_arrays


@pytest.fixture
def drawn(monkeypatch):
  """The figures drawn in a test, kept open (no PNG written); closed afterwards."""
  kept = []
  def keep(fig, path, rect=None):
    kept.append(fig)
    return path
  for module in (figures, regression_figures):
    monkeypatch.setattr(module, "save", keep)
  yield kept
  for fig in kept:
    figures.plt.close(fig)


def errorbars(ax) -> list:
  return [c for c in ax.containers if isinstance(c, matplotlib.container.ErrorbarContainer)]


def test_number_format():
  number = formatting.number
  assert [number(v) for v in (0.45, -0.00232, 11.9, -0.2, 0.0059, 2.0, 100.0)] == [
      "+0.450", "-0.00232", "+11.9", "-0.200", "+0.00590", "+2.00", "+100"]
  assert number(-1234.5) == "-1,230" and number(999.96) == "+1,000"
  assert number(1.2e-5) == "+1.20e-05"
  assert number(0.0) == number(-0.0) == "0" and number(1000) == "1,000"      # an int: a count
  assert number(None) == number(float("nan")) == number(float("inf")) == "n/a"
  assert number(0.328, signed=False) == "0.328"
  assert formatting.interval(0.45, [0.4, 0.5]) == "+0.450 [+0.400, +0.500]"
  assert formatting.interval(0.45, [None, None]) == formatting.interval(0.45, None) == "+0.450"
  assert formatting.percent(0.552) == "55.2%" and formatting.percent(None) == "n/a"


def test_compensation_fits_wrap_into_a_grid_of_four_columns(drawn):
  arrays = sweep_arrays(num_layers=8)
  stats = report.summarize(arrays, INFO)["per_layer"]
  regression_figures.compensation_fits(arrays, list(range(8)), stats, "unused.png")
  shown = [ax for ax in drawn[0].axes if ax.axison]
  assert len(shown) == 16                                       # 8 layers x (attn, mlp)
  columns = {round(ax.get_position().x0, 3) for ax in shown}
  rows = {round(ax.get_position().y0, 3) for ax in shown}
  assert len(columns) == 4 and len(rows) == 4
  assert shown[0].get_title().startswith("attn 0\nslope ")
  regression_figures.compensation_fits(arrays, [1, 5], stats, "unused.png")
  assert len([ax for ax in drawn[1].axes if ax.axison]) == 4   # 2 layers: one row a kind


def test_heatmap_colour_limits_are_a_percentile_of_the_responses(drawn):
  arrays = sweep_arrays(num_layers=4)
  arrays["response"][:, 0, 1] = -50.0                           # one extreme cell
  figures.response_heatmap(arrays, "unused.png")
  ax = drawn[0].axes[0]
  matrix = arrays["response"].mean(0).astype(np.float64)
  matrix[np.diag_indices(8)] = np.nan
  values = np.abs(matrix[np.isfinite(matrix) & (matrix != 0)])
  low, high = ax.images[0].get_clim()
  assert high == -low == pytest.approx(np.percentile(values, figures.COLOUR_PERCENTILE,
                                                     method="lower"))
  assert high < 5.0 < values.max()                             # the extreme cell is cut
  assert drawn[0].axes[1].get_ylabel().startswith("dDE") and "98th percentile" in ax.get_title()
  assert figures.colour_limit(np.full((3, 3), np.nan)) == 1.0


def test_mean_interval_is_the_bootstrap_of_the_mean():
  rng = np.random.RandomState(0)
  values = rng.normal(size=(30, 4))
  values[3, 1] = np.nan
  counts = statistics.resample_counts(30, 200, seed=0)                                 # [R, N]
  found = statistics.mean_interval(values, counts)                                     # [2, 4]
  means = np.array([[np.nanmean(np.repeat(values[:, c], row)) for c in range(4)] for row in counts])
  np.testing.assert_allclose(found, np.percentile(means, [2.5, 97.5], axis=0))
  assert np.isnan(statistics.mean_interval(values, None)).all()


def test_every_mean_drawn_has_error_bars(drawn):
  arrays = sweep_arrays(num_layers=4)
  summary = report.summarize(arrays, INFO)
  counts = statistics.resample_counts(24, 100, seed=0)
  figures.late_mlp_erasure(arrays, 2, 2, "unused.png", counts)
  figures.intact_vs_ablated(arrays, 2, "unused.png", counts)
  figures.downstream_response(arrays, 2, "unused.png", counts)
  figures.de_vs_te(arrays, "unused.png", counts)
  regression_figures.localisation(summary["per_layer"], "unused.png")
  erasure, intact, downstream, impact, local = (fig.axes for fig in drawn)
  assert len(errorbars(erasure[0])) == 3                       # intact, ablated, upstream
  assert [len(errorbars(ax)) for ax in intact] == [2, 2, 0, 0]  # the means, not one prompt
  assert [len(errorbars(ax)) for ax in downstream] == [1, 1]
  assert len(errorbars(impact[2])) == 2 and len(errorbars(local[0])) == 2
  low, high = statistics.mean_interval(arrays["direct_effect"][:, [5, 7]], counts)
  segments = errorbars(erasure[0])[0].lines[2][0].get_segments()   # intact bars' whiskers
  np.testing.assert_allclose([s[:, 1] for s in segments], np.stack([low, high], 1), rtol=1e-5)
  figures.late_mlp_erasure(arrays, 2, 2, "unused.png")            # no resamples: no bars
  assert not errorbars(drawn[-1].axes[0])


def _summary(rise, fall, largest, lost=0.5):
  stats = {"attn": dict(lost_direct_effect=[lost, 0.1], compensation_attn=[0.1, 0.0],
                        compensation_mlp=[-0.2, 0.0])}
  head = dict(ablated_component="attn 0", ablated_largest_rise=dict(component="attn 1", dde=rise),
              ablated_largest_fall=dict(component="mlp 1", dde=fall),
              largest_response=dict(ablated="attn 0", responder="mlp 1", dde=largest),
              late_mlp_erasure=[dict(component="mlp 1", intact=-0.2, ablated=-0.1)])
  return dict(headline=head, per_layer=stats)


def test_captions_words_follow_the_signs():
  negative = _summary(rise=-0.0126, fall=-0.143, largest=-2.67, lost=-0.3)
  assert ("no later component rises: the smallest fall is attn 1 (-0.0126), the largest "
          "mlp 1 (-0.143)") in report_captions._downstream_response(negative)
  assert "mlp 1, a fall (dDE -2.67)" in report_captions._response_heatmap(negative)
  assert "its own DE rises by 0.300" in report_captions._intact_vs_ablated(negative)
  mixed = _summary(rise=0.2, fall=-0.1, largest=0.2)
  assert "the largest rise is attn 1 (+0.200) and the largest fall mlp 1 (-0.100)" in (
      report_captions._downstream_response(mixed))
  assert "a rise (dDE +0.200)" in report_captions._response_heatmap(mixed)
  assert "its own DE falls by 0.500" in report_captions._intact_vs_ablated(mixed)
  rising = _summary(rise=0.3, fall=0.01, largest=0.3)
  assert "no later component falls" in report_captions._downstream_response(rising)
  erasure = report_captions._late_mlp_erasure(mixed)
  assert "1 of the last 1 MLPs lowers" in erasure and "erasing less" in erasure
  lines = report_markdown._paper_lines(dict(largest_attention_compensation=[
      dict(ablated="attn 5", compensation_attn=-0.00232)]))
  assert "none positive; the least negative first: attn 5 (-0.00232)" in lines[2]


def test_the_headline_figures_note_of_cut_values_fits_a_panel_at_any_depth():
  from hydra_jax.report import headline_figure
  cut = [f"within {layer}: +{layer}.00" for layer in range(9)]
  note = headline_figure._beyond_note(cut)
  assert note.count("\n") == 1 and note.endswith("(+3 more)")
  assert "within 5" in note and "within 6" not in note
  assert headline_figure._beyond_note(cut[:2]) == "beyond the axis: within 0: +0.00; within 1: +1.00"
