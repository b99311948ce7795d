"""The Hydra paper's figures of direct effects and responses, drawn from a sweep's arrays
(matplotlib, Agg).

Every function takes the arrays of `results.npz` (see `report.summary`) and a PNG
path, and writes one figure. Components are numbered c = 2l (attention of layer l)
and c = 2l + 1 (MLP of layer l); "lost DE" is the direct effect a component loses
when it is ablated (minus the sweep's `direct_change`). Where `response_by_source`
[M, K, C, C] is present, figures 1 and 3 draw one faint line per source for an example
prompt (the one of the first M that loses most DE), as the paper draws one per patch.

  intact_vs_ablated    per-layer DE, intact and with one component ablated    (paper fig 1)
  downstream_response  the change of every later layer's DE after it           (paper fig 3)
  de_vs_te             per-prompt unembedding- vs ablation-based impact curves, and the
                       share of prompts where the first exceeds the second    (paper fig 2)
  response_heatmap     the mean dDE matrix, ablated rows x responding columns
  late_mlp_erasure     DE of the last MLPs, intact and after the ablation

(regression_figures draws the paper's figures 7 and 8 and the localisation.)

Shapes: N prompts, M prompts with per-source arrays, K sources, L layers, C = 2L components.
"""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402,F401
import numpy as np  # noqa: E402

from hydra_jax import store as results_store  # noqa: E402
from hydra_jax.report import statistics  # noqa: E402
from hydra_jax.report.formatting import number  # noqa: E402

KIND_NAMES = ("attn", "mlp")
KIND_COLOURS = {"attn": "#1f77b4", "mlp": "#d62728"}
ERROR_STYLE = dict(ecolor="black", elinewidth=0.8, capsize=2)   # every error bar
COLOUR_PERCENTILE = 98.0   # response_heatmap: the colour scale's limit, a percentile of |dDE|


def component_name(component: int) -> str:
  return f"{KIND_NAMES[component % 2]} {component // 2}"


def ablated_direct_effects(arrays, component: int) -> np.ndarray:
  """[N, C] every component's DE in the run with `component` ablated (sigma frozen)."""
  ablated = arrays["direct_effect"] + arrays["response"][:, component, :]          # [N, C]
  own = arrays["direct_effect"][:, component] + arrays["direct_change"][:, component]  # [N]
  ablated[:, component] = own
  return ablated


def save(fig, path, rect=None) -> str:
  """Write the figure as PNG to `path` (local or a bucket, through `hydra_jax.store`);
  rect: the part of the figure the axes are laid out in (room for a figure legend)."""
  fig.tight_layout(rect=rect)
  image = io.BytesIO()
  fig.savefig(image, format="png", dpi=110)
  plt.close(fig)
  results_store.atomic_write_bytes(path, image.getvalue())
  return path


def mean_with_error(values: np.ndarray, counts=None):
  """The mean over prompts of values [N, ...] and the distances from it to its 95%
  cluster-bootstrap interval, [2, ...] (matplotlib's yerr; None without resamples)."""
  mean = np.asarray(values, np.float64).mean(0)
  if counts is None or len(counts) == 0:
    return mean, None
  low, high = statistics.mean_interval(values, counts)
  return mean, np.nan_to_num(np.stack([mean - low, high - mean]).clip(0))


def layer_axis(ax):
  """Integer ticks on a layer axis, labelled."""
  ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
  ax.set_xlabel("layer")


def _per_kind_bars(ax, values: dict, kind: int, title: str):
  """Grouped bars over layers for one component kind; values: label -> (means [C], their
  yerr [2, C] or None)."""
  layers = np.arange(len(next(iter(values.values()))[0]) // 2)
  width = 0.8 / len(values)
  for i, (label, (series, error)) in enumerate(values.items()):
    ax.bar(layers + (i - (len(values) - 1) / 2) * width, series[kind::2], width, label=label,
           yerr=None if error is None else error[:, kind::2], error_kw=ERROR_STYLE)
  ax.axhline(0, color="black", linewidth=0.6)
  ax.set_title(title)
  ax.set_xlabel("layer")
  ax.set_xticks(layers if len(layers) <= 16 else layers[::4])


def example_prompt(arrays, component: int) -> int:
  """The prompt of the per-source lines: of those with per-source arrays (else of all),
  the one whose `component` loses most DE."""
  by_source = arrays.get("response_by_source")
  count = by_source.shape[0] if by_source is not None and by_source.shape[0] else None
  return int(np.argmax(-arrays["direct_change"][:count, component]))


def source_rows(arrays, prompt: int, component: int) -> np.ndarray:
  """[K, C] dDE of every component with `component` ablated, one row per source of
  `prompt` ([1, C], the mean over sources, without per-source arrays)."""
  by_source = arrays.get("response_by_source")
  if by_source is not None and prompt < by_source.shape[0]:
    return by_source[prompt, :, component, :]
  return arrays["response"][prompt, component][None]


def _example_lines(ax, base: np.ndarray, rows: np.ndarray, kind: int, colour: str, label: str):
  """One faint line per source row (base + row) [K, C] and their mean, for one kind."""
  layers = np.arange(len(base) // 2)
  for row in rows:
    ax.plot(layers, (base + row)[kind::2], color=colour, alpha=0.25, linewidth=0.8)
  ax.plot(layers, (base + rows.mean(0))[kind::2], "o-", color=colour, linewidth=1.8,
          label=f"{label} (mean of {len(rows)} source{'s' if len(rows) > 1 else ''}; faint: each)")


def _prompt_title(arrays, prompt: int) -> str:
  text = str(arrays["prompt"][prompt]) if "prompt" in arrays else f"prompt {prompt}"
  token = str(arrays["token_text"][prompt]) if "token_text" in arrays else "?"
  return f"prompt {prompt}: {text[-60:]!r} -> {token!r}"


def intact_vs_ablated(arrays, component: int, path: str, counts=None) -> str:
  """Per-layer DE intact and with `component` ablated: means over prompts with their
  intervals (counts [R, N]: the bootstrap resamples), and one example prompt."""
  prompt = example_prompt(arrays, component)
  rows = source_rows(arrays, prompt, component)                                     # [K, C]
  fig, axes = plt.subplots(2, 2, figsize=(11, 7.2))
  series = {"intact": mean_with_error(arrays["direct_effect"], counts),             # [C], [2, C]
            f"{component_name(component)} ablated":
                mean_with_error(ablated_direct_effects(arrays, component), counts)}
  for kind in range(2):
    top, bottom = axes[0, kind], axes[1, kind]
    _per_kind_bars(top, series, kind, f"{KIND_NAMES[kind]} outputs, mean over prompts")
    clean = arrays["direct_effect"][prompt]                                         # [C]
    bottom.plot(np.arange(len(clean) // 2), clean[kind::2], "s--", color="black", label="intact")
    _example_lines(bottom, clean, rows, kind, KIND_COLOURS[KIND_NAMES[kind]], "ablated")
    bottom.axhline(0, color="black", linewidth=0.6)
    bottom.set_title(f"{KIND_NAMES[kind]} outputs, one prompt", fontsize=10)
    layer_axis(bottom)
    for ax in (top, bottom):
      ax.axvline(component // 2, color="grey", linestyle=":", linewidth=1)
  axes[0, 0].set_ylabel("direct effect on the scored logit")
  axes[1, 0].set_ylabel("direct effect on the scored logit")
  axes[0, 0].legend(frameon=False, fontsize=8)
  axes[1, 0].legend(frameon=False, fontsize=8)
  fig.suptitle(f"Direct effects with {component_name(component)} ablated (dotted: its layer)\n"
               f"bottom: {_prompt_title(arrays, prompt)}", fontsize=10)
  return save(fig, path)


def downstream_response(arrays, component: int, path: str, counts=None) -> str:
  """dDE of every component after ablating `component`: mean over prompts (bars, with
  intervals from the resamples counts [R, N]) and one example prompt, one faint line per
  source (upstream components are zero)."""
  mean, error = mean_with_error(arrays["response"][:, component, :], counts)        # [C], [2, C]
  mean[:component + 1] = np.nan   # upstream: zero; its own change: the lost DE
  prompt = example_prompt(arrays, component)
  rows = source_rows(arrays, prompt, component).astype(np.float64)                  # [K, C]
  rows[:, :component + 1] = np.nan
  layers = np.arange(len(mean) // 2)
  fig, axes = plt.subplots(1, 2, figsize=(11, 4.0), sharey=True)
  for kind, ax in enumerate(axes):
    ax.bar(layers, mean[kind::2], 0.6, color="#cccccc", label="mean over prompts (95% CI)",
           yerr=None if error is None else error[:, kind::2], error_kw=ERROR_STYLE)
    _example_lines(ax, np.zeros_like(mean), rows, kind, KIND_COLOURS[KIND_NAMES[kind]],
                   "one prompt")
    ax.axhline(0, color="black", linewidth=0.6)
    ax.axvline(component // 2, color="grey", linestyle=":", linewidth=1)
    ax.set_title(f"response of {KIND_NAMES[kind]} outputs", fontsize=10)
    ax.set_xlabel("layer")
    ax.set_xticks(layers if len(layers) <= 16 else layers[::4])
  axes[0].set_ylabel("change of direct effect (dDE)")
  axes[0].legend(frameon=False, fontsize=8)
  fig.suptitle(f"Downstream response to ablating {component_name(component)} (dotted: its "
               f"layer; positive: compensation)\none prompt: {_prompt_title(arrays, prompt)}",
               fontsize=10)
  return save(fig, path)


def _impact_curves(ax, lost: np.ndarray, drop: np.ndarray, kind: int, most: int = 40):
  """Per-prompt curves over layers of lost DE and -TE [N, C] for one kind (up to `most`
  prompts, faint) and their medians."""
  layers = np.arange(lost.shape[1] // 2)
  shown = np.linspace(0, lost.shape[0] - 1, min(most, lost.shape[0])).astype(int)
  for values, colour, label in ((lost, "#1f77b4", "DE lost (unembedding-based)"),
                                (drop, "#ff7f0e", "-TE (ablation-based)")):
    ax.plot(layers, values[shown][:, kind::2].T, color=colour, alpha=0.15, linewidth=0.7)
    ax.plot(layers, np.median(values[:, kind::2], 0), "o-", color=colour, linewidth=2,
            label=f"{label}, median")
  ax.axhline(0, color="black", linewidth=0.6)
  layer_axis(ax)
  ax.set_title(f"{KIND_NAMES[kind]} ablations, {len(shown)} prompts", fontsize=10)


def de_vs_te(arrays, path: str, counts=None) -> str:
  """Impact curves per kind, and the share of prompts whose DE lost exceeds -TE per layer
  (with its interval from the resamples counts [R, N])."""
  lost = -arrays["direct_change"]                                                   # [N, C]
  drop = -arrays["total_effect_mean"]                                               # [N, C]
  fig, axes = plt.subplots(1, 3, figsize=(14, 4.2))
  for kind in range(2):
    _impact_curves(axes[kind], lost, drop, kind)
  axes[0].set_ylabel("impact on the scored logit")
  axes[0].legend(frameon=False, fontsize=8)
  share, error = mean_with_error((lost > drop).astype(np.float64), counts)          # [C], [2, C]
  for kind, name in enumerate(KIND_NAMES):
    axes[2].errorbar(np.arange(len(share) // 2) + 0.15 * (kind - 0.5), share[kind::2], fmt="o-",
                     label=name, markersize=4,
                     yerr=None if error is None else error[:, kind::2], color=KIND_COLOURS[name],
                     capsize=2, elinewidth=0.8)
  axes[2].axhline(0.5, color="grey", linestyle=":", linewidth=1)
  axes[2].set_ylim(-0.02, 1.02)
  layer_axis(axes[2])
  axes[2].set_ylabel("share of prompts")
  axes[2].set_title("share of prompts where DE lost > -TE (95% CI)", fontsize=10)
  axes[2].legend(frameon=False, fontsize=8)
  fig.suptitle("Unembedding-based (DE lost) vs ablation-based (-TE) impact per layer "
               "(faint: single prompts)", fontsize=11)
  return save(fig, path)


def colour_limit(matrix: np.ndarray, percentile: float = COLOUR_PERCENTILE) -> float:
  """The heatmap's symmetric colour limit: the `percentile` of |value| over the finite,
  non-zero entries of matrix [C, C] (upstream entries are zero by construction), an entry
  itself (no interpolation towards a larger one), so that a few extreme cells do not wash
  out the rest; 1 where there is none."""
  values = np.abs(matrix[np.isfinite(matrix) & (matrix != 0)])
  return float(np.percentile(values, percentile, method="lower")) if values.size else 1.0


def response_heatmap(arrays, path: str) -> str:
  """The mean dDE matrix [C, C] (ablated rows, responding columns) on a symmetric colour
  scale cut at `colour_limit`; arrows on the colour bar where values lie beyond it."""
  matrix = arrays["response"].mean(0).astype(np.float64)                            # [C, C]
  num_components = matrix.shape[0]
  matrix[np.diag_indices(num_components)] = np.nan   # the ablated component's own change
  limit = colour_limit(matrix)
  size = min(12.0, 3.0 + 0.3 * num_components)
  fig, ax = plt.subplots(figsize=(size + 1.2, size))
  colours = matplotlib.colormaps["RdBu_r"].with_extremes(bad="#bbbbbb")
  image = ax.imshow(matrix, cmap=colours, vmin=-limit, vmax=limit)
  step = 1 if num_components <= 16 else 4
  ticks = np.arange(0, num_components, step)
  labels = [component_name(c).replace("attn ", "a").replace("mlp ", "m") for c in ticks]
  ax.set_xticks(ticks, labels, rotation=90)
  ax.set_yticks(ticks, labels)
  ax.set_xlabel("responding component")
  ax.set_ylabel("ablated component")
  ax.set_title("Mean change of direct effect (dDE) after an ablation\n(grey diagonal: the "
               f"ablated component itself; colours cut at the {COLOUR_PERCENTILE:g}th percentile "
               f"of |dDE|, ±{number(limit, signed=False)})", fontsize=10)
  below, above = np.nanmin(matrix) < -limit, np.nanmax(matrix) > limit
  extend = {(True, True): "both", (True, False): "min", (False, True): "max"}.get(
      (bool(below), bool(above)), "neither")
  fig.colorbar(image, ax=ax, label="dDE (red: raises the scored logit)", shrink=0.8,
               extend=extend)
  return save(fig, path)


def late_mlp_erasure(arrays, component: int, num_late: int, path: str, counts=None) -> str:
  """DE of the last `num_late` MLPs: intact, with `component` ablated and averaged over
  every upstream ablation; means over prompts with intervals from the resamples counts."""
  num_components = arrays["direct_effect"].shape[1]
  late = np.arange(num_components - 2 * num_late + 1, num_components, 2)            # MLP columns
  upstream = np.stack([(arrays["direct_effect"][:, None, c] + arrays["response"][:, :c, c]).mean(1)
                       for c in late], 1)                                            # [N, late]
  bars = (("intact", arrays["direct_effect"][:, late], "#7f7f7f"),
          (f"{component_name(component)} ablated",
           ablated_direct_effects(arrays, component)[:, late], "#d62728"),
          ("mean over upstream ablations", upstream, "#ff9896"))
  x = np.arange(len(late))
  fig, ax = plt.subplots(figsize=(4.0 + 1.4 * len(late), 3.8))
  for offset, (label, values, colour) in zip((-0.25, 0.0, 0.25), bars):
    mean, error = mean_with_error(values, counts)                                  # [late]
    ax.bar(x + offset, mean, 0.25, label=label, color=colour, yerr=error, error_kw=ERROR_STYLE)
  ax.axhline(0, color="black", linewidth=0.6)
  ax.set_xticks(x, [component_name(c) for c in late])
  ax.set_xlim(-0.6, len(late) - 0.4)
  ax.set_ylabel("direct effect on the scored logit\n(mean over prompts, 95% CI)")
  ax.set_title("Late-MLP erasure (negative DE: the MLP lowers the logit)", fontsize=10)
  ax.legend(frameon=False, fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
  return save(fig, path)
