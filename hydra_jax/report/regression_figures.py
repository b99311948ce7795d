"""The paper's regression figures and the coupling of layers (matplotlib, Agg).

Each function takes summary.json's `per_layer` statistics (`stats`: {"attn"|"mlp":
{name: [L]}}, regressions as dicts with slope, intercept, r2, slope_ci, r2_ci; null for
NaN) and, where it scatters prompts, the arrays of `results.npz`; it writes one PNG.

  compensation_fits   CE against lost DE per prompt with the fitted line, for chosen
                      attention AND MLP layers, four a row                   (paper fig 7)
  slopes_by_layer     slope and R^2 of CE on lost DE against layer, 95% bands (paper fig 7d)
  compensation_parts  attention vs MLP parts of CE: one layer's scatter with both fits,
                      and each part's slope against layer (the y axis fits the layers
                      whose lost DE is well away from 0; the others are named) (paper fig 8)
  localisation        how many downstream components carry 80% of each ablation's
                      response, against how many there are ("loosely coupled layers")

Shapes: N prompts, L layers, C = 2L components.
"""

from __future__ import annotations

import numpy as np

from hydra_jax.report.figures import (ERROR_STYLE, KIND_COLOURS, KIND_NAMES, save,
                                      component_name, layer_axis, plt)
from hydra_jax.report.formatting import interval, number

PART_COLOURS = {"regression": "black", "regression_attn": "#1f77b4",
                "regression_mlp": "#d62728", "regression_norm": "#7f7f7f"}
PART_LABELS = {"regression": "CE (total)", "regression_attn": "attention part (Hydra)",
               "regression_mlp": "MLP part (erasure)", "regression_norm": "norm remainder"}


def _field(entries, key: str) -> np.ndarray:
  """[L] or [L, 2]: one field of a list of regression dicts, None read as NaN."""
  return np.array([entry[key] if entry[key] is not None else np.nan for entry in entries],
                  dtype=np.float64)


def _interval(entries, key: str) -> np.ndarray:
  """[L, 2] the interval of a field (NaN where missing)."""
  return np.array([[np.nan if v is None else v for v in (entry.get(key) or [None, None])]
                   for entry in entries], dtype=np.float64)


def _band(ax, entries, key: str, colour: str, label: str, marker: str = "o-"):
  """A field of the regressions against layer, with its bootstrap interval as a band."""
  layers = np.arange(len(entries))
  band = _interval(entries, key + "_ci")                                             # [L, 2]
  ax.plot(layers, _field(entries, key), marker, color=colour, label=label)
  ax.fill_between(layers, band[:, 0], band[:, 1], color=colour, alpha=0.2, linewidth=0)


def _focus(ax, stats_kind, parts):
  """Fit the y axis to the layers whose lost DE is well away from zero (a finite ratio of
  means), where a slope means something, and name the layers left off the axis."""
  kept = np.array([v is not None for v in stats_kind["ratio_of_means_restored"]])     # [L]
  if not kept.any() or kept.all():
    return
  bands = np.stack([_interval(stats_kind[part], "slope_ci") for part in parts])        # [P, L, 2]
  slopes = np.stack([_field(stats_kind[part], "slope") for part in parts])             # [P, L]
  shown = np.concatenate([bands[:, kept].ravel(), slopes[:, kept].ravel(), [0.0]])
  low, high = np.nanmin(shown), np.nanmax(shown)
  pad = 0.1 * (high - low or 1.0)
  ax.set_ylim(low - pad, high + pad)
  outside = [l for l in np.flatnonzero(~kept)
             if ((slopes[:, l] < low - pad) | (slopes[:, l] > high + pad)).any()]
  if outside:
    ax.text(0.01, 0.01, "off the axis (lost DE not well away from 0): layer " + ", ".join(
        f"{l} ({' / '.join(number(v) for v in slopes[:, l])})" for l in outside),
        transform=ax.transAxes, fontsize=7, color="grey")


def _scatter_fit(ax, lost, outcome, fit, colour, label):
  ax.plot(lost, outcome, "o", markersize=2.2, alpha=0.4, color=colour, markeredgewidth=0)
  span = np.array([lost.min(), lost.max()])
  if fit["slope"] is not None:
    ax.plot(span, fit["slope"] * span + fit["intercept"], color=colour, linewidth=1.4,
            label=f"{label}: slope {number(fit['slope'])}")


def _ci_text(fit) -> str:
  return (f"slope {interval(fit['slope'], fit.get('slope_ci'))}, "
          f"R² {number(fit['r2'], signed=False)}")


def compensation_fits(arrays, layers, stats, path: str, columns: int = 4) -> str:
  """Per chosen layer, for attention and MLP ablations: the scatter and its fit; at most
  `columns` panels a row (so 8 layers read as well as 2)."""
  lost = -arrays["direct_change"]                                                   # [N, C]
  compensation = arrays["compensation_attn"] + arrays["compensation_mlp"]           # [N, C]
  width = min(columns, len(layers))
  per_kind = -(-len(layers) // width)                                               # rows a kind
  fig, axes = plt.subplots(2 * per_kind, width, figsize=(3.2 * width + 0.5, 3.3 * 2 * per_kind),
                           squeeze=False)
  for kind, name in enumerate(KIND_NAMES):
    for index, layer in enumerate(layers):
      ax, c = axes[kind * per_kind + index // width, index % width], 2 * layer + kind
      fit = stats[name]["regression"][layer]
      _scatter_fit(ax, lost[:, c], compensation[:, c], fit, KIND_COLOURS[name], "fit")
      span = np.array([lost[:, c].min(), lost[:, c].max()])
      ax.plot(span, span, color="grey", linestyle=":", linewidth=1, label="full repair")
      ax.set_title(f"{component_name(c)}\n{_ci_text(fit)}", fontsize=8)
      ax.set_xlabel("direct effect lost", fontsize=8)
    for ax in axes[kind * per_kind:(kind + 1) * per_kind, 0]:
      ax.set_ylabel(f"{name} ablated: compensation (CE)")
  for ax in axes.ravel()[[i for i in range(axes.size) if i % (per_kind * width) >= len(layers)]]:
    ax.axis("off")
  axes[0, 0].legend(frameon=False, fontsize=7)
  fig.suptitle("Compensatory effect against lost direct effect, one point per prompt (the "
               "across-prompt slope; [95% cluster-bootstrap CI])", fontsize=10)
  return save(fig, path)


def slopes_by_layer(stats, path: str) -> str:
  fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.0))
  for name in KIND_NAMES:
    entries = stats[name]["regression"]
    _band(left, entries, "slope", KIND_COLOURS[name], f"{name} ablated")
    _band(right, entries, "r2", KIND_COLOURS[name], f"{name} ablated")
  left.axhline(1, color="grey", linestyle=":", linewidth=1)
  left.axhline(0, color="black", linewidth=0.6)
  left.set_ylabel("slope of CE on lost DE")
  left.set_title("fraction restored (1: full repair, 0: none)", fontsize=10)
  right.set_ylim(-0.02, 1.02)
  right.set_ylabel("R²")
  right.set_title("variance of CE explained by the lost DE", fontsize=10)
  for ax in (left, right):
    layer_axis(ax)
    ax.legend(frameon=False, fontsize=8)
  fig.suptitle("Regression of compensation on lost direct effect across prompts, per layer "
               "(bands: 95% cluster-bootstrap CI)", fontsize=10)
  return save(fig, path)


def compensation_parts(arrays, stats, component: int, path: str) -> str:
  lost = -arrays["direct_change"][:, component]                                     # [N]
  kind, layer = KIND_NAMES[component % 2], component // 2
  fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
  for part, values in (("regression_attn", arrays["compensation_attn"]),
                       ("regression_mlp", arrays["compensation_mlp"])):
    _scatter_fit(axes[0], lost, values[:, component], stats[kind][part][layer],
                 PART_COLOURS[part], PART_LABELS[part])
  axes[0].set_xlabel("direct effect lost")
  axes[0].set_ylabel("part of the compensation")
  axes[0].set_title(f"{component_name(component)} ablated, one point per prompt", fontsize=10)
  for ax, name in zip(axes[1:], KIND_NAMES):
    parts = ("regression_attn", "regression_mlp", "regression_norm")
    for part in parts:
      _band(ax, stats[name][part], "slope", PART_COLOURS[part], PART_LABELS[part])
    _focus(ax, stats[name], parts)
    ax.axhline(0, color="black", linewidth=0.6)
    layer_axis(ax)
    ax.set_ylabel("slope on lost DE")
    ax.set_title(f"{name} ablations: each part's slope", fontsize=10)
  for ax in axes:
    ax.legend(frameon=False, fontsize=8)
  fig.suptitle("Attention (Hydra) vs MLP (reduced erasure) parts of the compensation; "
               "the norm remainder for reference", fontsize=10)
  return save(fig, path)


def localisation(stats, path: str) -> str:
  fig, ax = plt.subplots(figsize=(8, 3.8))
  num_layers = len(stats["attn"]["localisation_80"])
  layers = np.arange(num_layers)
  for offset, name in zip((-0.2, 0.2), KIND_NAMES):
    carried = _field([dict(v=v) for v in stats[name]["localisation_80"]], "v")          # [L]
    available = np.asarray(stats[name]["downstream_components"], np.float64)          # [L]
    band = _interval([dict(ci=v) for v in stats[name].get("localisation_80_ci")
                      or [None] * num_layers], "ci")                                   # [L, 2]
    error = np.nan_to_num(np.stack([carried - band[:, 0], band[:, 1] - carried]).clip(0))
    ax.bar(layers + offset, carried, 0.4, color=KIND_COLOURS[name], yerr=error,
           error_kw=ERROR_STYLE, label=f"{name} ablated: components carrying 80% (95% CI)")
    ax.plot(layers + offset, available, "_", color="black", markersize=14,
            label="downstream components available" if name == "mlp" else None)
  ax.set_xticks(layers if num_layers <= 16 else layers[::4])
  ax.set_xlabel("ablated layer")
  ax.set_ylabel("components (mean over prompts)")
  ax.set_title("How localised is the response? (few of many: loosely coupled layers)",
               fontsize=10)
  ax.legend(frameon=False, fontsize=8)
  return save(fig, path)
