"""Which figures report.md shows, in which order, drawn with which arguments.

`draw_figures(workdir, arrays, summary, choices, counts)` writes the headline figure
(`headline_figure`, for attention ablations, where the sweep kept its per-source arrays;
the MLP ablations' numbers are the report's appendix tables), every figure of `figures`
and `regression_figures` under workdir/figures from the arrays of results.npz, the
per-layer statistics of summary.json and config.report (`choices`: ablated_layer,
ablated_kind, regression_layers, late_mlps). Every mean drawn over prompts has its 95%
interval from the report's cluster-bootstrap resamples `counts` [R, N]
(`summary.bootstrap_counts`; None: no intervals).

Shapes: N prompts, L layers, C = 2L components.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from hydra_jax.report import figures
from hydra_jax.report import headline as report_headline
from hydra_jax.report import headline_figure
from hydra_jax import store as results_store
from hydra_jax.report import regression_figures

FIGURE_DIR = "figures"


def regression_layers(num_layers: int, requested) -> list[int]:
  """Layers of figure 7: the requested ones, else up to 8 spread evenly."""
  return [int(l) for l in requested] or sorted(set(
      np.linspace(0, num_layers - 1, min(8, num_layers)).round().astype(int).tolist()))


def draw_figures(workdir: str, arrays, summary: Mapping[str, Any],
                 choices: Mapping[str, Any], counts=None) -> dict[str, str]:
  """Write the PNG figures under workdir/figures; returns name -> relative path (in the
  order report.md shows them). choices: config.report with its defaults."""
  num_layers = arrays["direct_effect"].shape[1] // 2
  ablated = report_headline.choose_ablated(arrays, choices)
  num_late = choices["late_mlps"] or report_headline.late_mlp_count(num_layers)
  layers = regression_layers(num_layers, choices["regression_layers"])
  stats = summary["per_layer"]
  path = lambda name: results_store.as_path(workdir) / FIGURE_DIR / (name + ".png")
  drawings = ({"restored_attn": lambda p: headline_figure.restored_by_layer(stats, "attn", p)}
              if "restored" in stats["attn"] else {})
  drawings.update(
      intact_vs_ablated=lambda p: figures.intact_vs_ablated(arrays, ablated, p, counts),
      de_vs_te=lambda p: figures.de_vs_te(arrays, p, counts),
      downstream_response=lambda p: figures.downstream_response(arrays, ablated, p, counts),
      compensation_fits=lambda p: regression_figures.compensation_fits(arrays, layers, stats, p),
      slopes_by_layer=lambda p: regression_figures.slopes_by_layer(stats, p),
      compensation_parts=lambda p: regression_figures.compensation_parts(arrays, stats, ablated, p),
      localisation=lambda p: regression_figures.localisation(stats, p),
      response_heatmap=lambda p: figures.response_heatmap(arrays, p),
      late_mlp_erasure=lambda p: figures.late_mlp_erasure(arrays, ablated, num_late, p, counts))
  for name, draw in drawings.items():
    draw(path(name))
  return {name: f"{FIGURE_DIR}/{name}.png" for name in drawings}
