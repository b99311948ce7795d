"""The headline figure: the fraction restored per ablated layer, at any depth (matplotlib).

    restored_by_layer(stats, kind, path)

stats is summary.json's per_layer (`report.summary`), whose "restored" entries hold, per
layer, sigma reading and part, the within-prompt and across-prompt slopes and the ratio of
means with their 95% cluster-bootstrap intervals, and the clear flag (`report.restored`).
One row per part (the total compensation, its attention part), one column per sigma
reading (clean, ablated); per panel, against the ablated layer of `kind`:

  within-prompt slope   line, its interval a band; clear layers (`report.clear`) starred
                        (hollow stars: the rule's conditions met with each run's own
                        sigma, which a control meets too: not called clear)
  across-prompt slope   dashed line and band (the paper's estimator)
  ratio of means        points with intervals, where the lost DE is well away from 0
  norm's own share      grey: the within-prompt slope of the norm remainder (total row)

The middle layers are shaded, 0 and the rule's floor (0.1) are drawn. The y axis holds
the layers whose lost DE is well away from 0 (cut at +-LIMIT); values beyond it are
named in the panel. Nothing depends on the depth but the tick spacing, so 8 and 30
layers read the same way.

Shapes: L layers.
"""

from __future__ import annotations

import numpy as np

from hydra_jax.report import clear
from hydra_jax.report.figures import layer_axis, plt, save
from hydra_jax.report.formatting import number
from hydra_jax.report.headline import middle_layers

LIMIT = 1.5
COLOURS = dict(within="#1f77b4", across="#ff7f0e", ratio="#2ca02c", norm="#7f7f7f")
PART_TITLES = dict(total="total compensation", attn="attention part (Hydra)")
SIGMA_TITLES = dict(clean="clean final sigma", ablated="each run's own final sigma")


def _number(value) -> float:
  return np.nan if value is None else float(value)


def _series(entries, sigma: str, part: str, path: tuple) -> np.ndarray:
  """[L] or [L, 2]: one field of every layer's entry (None read as NaN)."""
  def field(entry):
    value = entry[sigma][part]
    for key in path:
      value = value[key]
    return [_number(v) for v in value] if isinstance(value, list) else _number(value)
  return np.array([field(entry) for entry in entries], np.float64)


def _line(ax, layers, values, band, colour, label, limits, style="-"):
  ax.plot(layers, np.clip(values, *limits), style, color=colour, label=label, linewidth=1.4)
  ax.fill_between(layers, *np.clip(band.T, *limits), color=colour, alpha=0.18, linewidth=0)


def _fields(entries, sigma: str, part: str) -> dict[str, np.ndarray]:
  """The panel's series: slopes and ratio [L], their intervals [L, 2]."""
  get = lambda *path: _series(entries, sigma, part, path)
  return dict(within=get("within", "slope"), within_ci=get("within", "slope_ci"),
              across=get("across", "slope"), across_ci=get("across", "slope_ci"),
              ratio=get("ratio_of_means"), ratio_ci=get("ratio_of_means_ci"))


def _panel(ax, entries, sigma: str, part: str, limits) -> list[str]:
  """One panel, values clipped to `limits`; returns the values left beyond them."""
  layers, found = np.arange(len(entries)), _fields(entries, sigma, part)
  middle = middle_layers(len(entries))
  if middle:
    ax.axvspan(middle[0] - 0.5, middle[-1] + 0.5, color="#f0f0f0", zorder=0)
  _line(ax, layers, found["within"], found["within_ci"], COLOURS["within"],
        "within-prompt slope", limits)
  _line(ax, layers, found["across"], found["across_ci"], COLOURS["across"],
        "across-prompt slope (paper)", limits, "--")
  shown, ratio = np.isfinite(found["ratio"]), np.clip(found["ratio"], *limits)
  ax.errorbar(layers[shown], ratio[shown],
              yerr=np.abs(np.clip(found["ratio_ci"][shown].T, *limits) - ratio[shown]), fmt="o",
              color=COLOURS["ratio"], markersize=3.5, capsize=2, label="ratio of means")
  if part == "total":
    ax.plot(layers, np.clip(_series(entries, sigma, "norm", ("within", "slope")), *limits), ":",
            color=COLOURS["norm"], label="norm remainder (within-prompt slope)")
  marked = np.array([bool(entry[sigma][part].get("clear")) for entry in entries])
  style = (dict(color="black", label="clear (rule)") if sigma == clear.SIGMA else
           dict(color="none", markeredgecolor="black", label="meets the rule with own sigma"))
  ax.plot(layers[marked], np.clip(found["within"][marked], *limits), "*", markersize=11,
          zorder=5, **style)
  ax.axhline(0, color="black", linewidth=0.7)
  ax.axhline(clear.MIN_EFFECT, color="black", linewidth=0.7, linestyle=":")
  layer_axis(ax)
  return [f"{name} {l}: {number(found[name][l])}" for name in ("within", "across", "ratio")
          for l in np.flatnonzero((found[name] < limits[0]) | (found[name] > limits[1]))]


def _limits(entries) -> tuple[float, float]:
  """y limits: the slopes and ratios with their intervals at the layers whose lost DE is
  well away from 0 (a defined ratio of means: there a slope means something), cut at
  +-LIMIT, with 0 and the rule's floor; the others may fall beyond the axis."""
  values = [np.zeros(1), np.full(1, 2 * clear.MIN_EFFECT)]
  for sigma in ("clean", "ablated"):
    kept = np.isfinite(_series(entries, sigma, "total", ("ratio_of_means",)))
    for part in ("total", "attn"):
      values += [v[kept].ravel() for v in _fields(entries, sigma, part).values()]
  shown = np.clip(np.concatenate(values), -LIMIT, LIMIT)
  low, high = np.nanmin(shown), np.nanmax(shown)
  pad = 0.08 * (high - low)
  return low - pad, high + pad


def _beyond_note(cut: list[str], per_line: int = 3, lines: int = 2) -> str:
  """The values beyond the axis, three to a line and at most two lines (they fit a panel
  at any depth), with how many more were left out."""
  shown = cut[:per_line * lines]
  rows = ["; ".join(shown[i:i + per_line]) for i in range(0, len(shown), per_line)]
  more = f" (+{len(cut) - len(shown)} more)" if len(cut) > len(shown) else ""
  return "beyond the axis: " + "\n".join(rows) + more


def restored_by_layer(stats, kind: str, path: str) -> str:
  """The headline figure (module docstring) for ablations of `kind` ("attn" or "mlp")."""
  entries = stats[kind]["restored"]
  fig, axes = plt.subplots(2, 2, figsize=(12.5, 7.6), sharex=True, sharey=True)
  limits = _limits(entries)
  for row, part in enumerate(("total", "attn")):
    for column, sigma in enumerate(("clean", "ablated")):
      ax = axes[row, column]
      cut = _panel(ax, entries, sigma, part, limits)
      ax.set_title(f"{PART_TITLES[part]}, {SIGMA_TITLES[sigma]}", fontsize=10)
      if cut:
        ax.text(0.01, 0.02, _beyond_note(cut), transform=ax.transAxes, fontsize=7, color="grey")
    axes[row, 0].set_ylabel("fraction of the lost DE restored")
  axes[0, 0].set_ylim(*limits)
  handles, labels = axes[0, 0].get_legend_handles_labels()
  for handle, label in zip(*axes[0, 1].get_legend_handles_labels()):
    if label not in labels:
      handles, labels = handles + [handle], labels + [label]
  fig.legend(handles, labels, loc="lower center", ncol=len(labels), frameon=False, fontsize=8)
  name = "attention" if kind == "attn" else "MLP"
  fig.suptitle(f"Fraction restored after ablating each {name} layer (bands, bars: 95% "
               f"cluster-bootstrap intervals; shaded: middle layers; dotted: the rule's floor "
               f"{clear.MIN_EFFECT})", fontsize=10)
  return save(fig, path, rect=(0, 0.04, 1, 1))
