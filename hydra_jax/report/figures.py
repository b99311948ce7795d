"""The Hydra paper's figures, drawn from a sweep's per-prompt arrays (matplotlib, Agg).

Every function takes the arrays of `results.npz` (see `hydra_jax.report`) and a PNG
path, and writes one figure. Components are numbered c = 2l (attention of layer l)
and c = 2l + 1 (MLP of layer l); "lost DE" is the direct effect a component loses
when it is resampled (minus the sweep's `direct_change`).

  intact_vs_ablated   per-layer DE, intact and with one component ablated   (paper figs 1, 3)
  de_vs_te            unembedding-based vs ablation-based impact per layer  (paper fig 2)
  compensation_fits   CE against lost DE with the fitted line, some layers  (paper fig 7)
  response_heatmap    the mean dDE matrix, ablated rows x responding columns
  late_mlp_erasure    DE of the last MLPs, intact and after the ablation

Shapes: N prompts, L layers, C = 2L components.
"""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402,F401
import numpy as np  # noqa: E402

from hydra_jax import store as results_store  # noqa: E402

KIND_NAMES = ("attn", "mlp")
KIND_COLOURS = {"attn": "#1f77b4", "mlp": "#d62728"}


def component_name(component: int) -> str:
  return f"{KIND_NAMES[component % 2]} {component // 2}"


def ablated_direct_effects(arrays, component: int) -> np.ndarray:
  """[N, C] every component's DE in the run with `component` ablated (sigma frozen)."""
  ablated = arrays["direct_effect"] + arrays["response"][:, component, :]          # [N, C]
  ablated[:, component] = arrays["direct_effect"][:, component] + arrays["direct_change"][:, component]
  return ablated


def _save(fig, path) -> str:
  """Write the figure as PNG to `path` (local or a bucket, through `hydra_jax.store`)."""
  fig.tight_layout()
  image = io.BytesIO()
  fig.savefig(image, format="png", dpi=110)
  plt.close(fig)
  results_store.atomic_write_bytes(path, image.getvalue())
  return path


def _per_kind_bars(ax, values: dict[str, np.ndarray], kind: int, title: str):
  """Grouped bars over layers for one component kind; values: label -> [C] means."""
  layers = np.arange(len(next(iter(values.values()))) // 2)
  width = 0.8 / len(values)
  for i, (label, series) in enumerate(values.items()):
    ax.bar(layers + (i - (len(values) - 1) / 2) * width, series[kind::2], width, label=label)
  ax.axhline(0, color="black", linewidth=0.6)
  ax.set_title(title)
  ax.set_xlabel("layer")
  ax.set_xticks(layers if len(layers) <= 16 else layers[::4])


def intact_vs_ablated(arrays, component: int, path: str) -> str:
  intact = arrays["direct_effect"].mean(0)                                          # [C]
  ablated = ablated_direct_effects(arrays, component).mean(0)                       # [C]
  fig, axes = plt.subplots(1, 2, figsize=(11, 3.8), sharey=True)
  series = {"intact": intact, f"{component_name(component)} ablated": ablated}
  for kind, ax in enumerate(axes):
    _per_kind_bars(ax, series, kind, f"{KIND_NAMES[kind]} outputs")
    ax.axvline(component // 2, color="grey", linestyle=":", linewidth=1)
  axes[0].set_ylabel("direct effect on the scored logit\n(mean over prompts)")
  axes[0].legend(frameon=False)
  fig.suptitle(f"Direct effects with {component_name(component)} resample-ablated "
               "(dotted line: the ablated layer)")
  return _save(fig, path)


def de_vs_te(arrays, path: str) -> str:
  lost = -arrays["direct_change"]                                                   # [N, C]
  drop = -arrays["total_effect_mean"]                                               # [N, C]
  num_components = lost.shape[1]
  fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
  for kind, name in enumerate(KIND_NAMES):
    layers = np.arange(kind, num_components, 2) // 2
    colour = KIND_COLOURS[name]
    left.plot(layers, lost.mean(0)[kind::2], "o-", color=colour, label=f"{name}: direct effect lost")
    left.plot(layers, drop.mean(0)[kind::2], "s--", color=colour, label=f"{name}: logit drop (-TE)")
  left.axhline(0, color="black", linewidth=0.6)
  left.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
  left.set_xlabel("layer")
  left.set_ylabel("mean over prompts")
  left.set_title("Unembedding- vs ablation-based impact per layer")
  left.legend(frameon=False, fontsize=8)
  points = right.scatter(lost.ravel(), drop.ravel(), s=6, alpha=0.5,
                         c=np.tile(np.arange(num_components) // 2, lost.shape[0]), cmap="viridis")
  lo, hi = np.nanmin([lost.min(), drop.min()]), np.nanmax([lost.max(), drop.max()])
  right.plot([lo, hi], [lo, hi], color="black", linewidth=0.8, linestyle=":", label="y = x")
  right.set_xlabel("direct effect lost (unembedding-based impact)")
  right.set_ylabel("logit drop when ablated (ablation-based impact)")
  right.set_title("Each prompt x component")
  right.legend(frameon=False, loc="upper left")
  fig.colorbar(points, ax=right, label="layer")
  return _save(fig, path)


def compensation_fits(arrays, components, fits, path: str) -> str:
  """fits: component -> dict(slope, intercept, r2)."""
  columns = min(4, len(components))
  rows = -(-len(components) // columns)
  fig, axes = plt.subplots(rows, columns, figsize=(3.4 * columns, 3.2 * rows), squeeze=False)
  for ax in axes.ravel()[len(components):]:
    ax.axis("off")
  for ax, component in zip(axes.ravel(), components):
    lost = -arrays["direct_change"][:, component]                                   # [N]
    compensation = (arrays["compensation_attn"] + arrays["compensation_mlp"])[:, component]
    fit = fits[component]
    ax.scatter(lost, compensation, s=8, alpha=0.6, color=KIND_COLOURS[KIND_NAMES[component % 2]])
    span = np.array([lost.min(), lost.max()])
    ax.plot(span, fit["slope"] * span + fit["intercept"], color="black", linewidth=1.2, label="fit")
    ax.plot(span, span, color="grey", linestyle=":", linewidth=1, label="full repair")
    ax.set_title(f"{component_name(component)}: slope {fit['slope']:.2f}, R² {fit['r2']:.2f}",
                 fontsize=9)
    ax.set_xlabel("direct effect lost")
    ax.set_ylabel("compensation (CE)")
  axes[0, 0].legend(frameon=False, fontsize=8)
  fig.suptitle("Compensatory effect against lost direct effect, one point per prompt")
  return _save(fig, path)


def response_heatmap(arrays, path: str) -> str:
  matrix = arrays["response"].mean(0)                                               # [C, C]
  num_components = matrix.shape[0]
  matrix[np.diag_indices(num_components)] = np.nan   # the ablated component's own change
  limit = float(np.nanmax(np.abs(matrix))) if num_components > 1 else 1.0
  size = min(12.0, 3.0 + 0.3 * num_components)
  fig, ax = plt.subplots(figsize=(size + 1.2, size))
  colours = matplotlib.colormaps["RdBu_r"].with_extremes(bad="#bbbbbb")
  image = ax.imshow(matrix, cmap=colours, vmin=-(limit or 1.0), vmax=limit or 1.0)
  step = 1 if num_components <= 16 else 4
  ticks = np.arange(0, num_components, step)
  labels = [component_name(c).replace("attn ", "a").replace("mlp ", "m") for c in ticks]
  ax.set_xticks(ticks, labels, rotation=90)
  ax.set_yticks(ticks, labels)
  ax.set_xlabel("responding component")
  ax.set_ylabel("ablated component")
  ax.set_title("Mean change of direct effect (dDE) after an ablation\n"
               "(grey diagonal: the ablated component itself)", fontsize=10)
  fig.colorbar(image, ax=ax, label="dDE (red: raises the scored logit)", shrink=0.8)
  return _save(fig, path)


def late_mlp_erasure(arrays, component: int, num_late: int, path: str) -> str:
  num_components = arrays["direct_effect"].shape[1]
  late = np.arange(num_components - 2 * num_late + 1, num_components, 2)            # MLP columns
  intact = arrays["direct_effect"].mean(0)[late]
  ablated = ablated_direct_effects(arrays, component).mean(0)[late]
  upstream_means = []
  for column in late:   # mean over every upstream ablation of this MLP's DE after it
    upstream = arrays["direct_effect"][:, None, column] + arrays["response"][:, :column, column]
    upstream_means.append(upstream.mean())
  x = np.arange(len(late))
  fig, ax = plt.subplots(figsize=(4.0 + 1.4 * len(late), 3.8))
  ax.bar(x - 0.25, intact, 0.25, label="intact", color="#7f7f7f")
  ax.bar(x, ablated, 0.25, label=f"{component_name(component)} ablated", color="#d62728")
  ax.bar(x + 0.25, upstream_means, 0.25, label="mean over upstream ablations", color="#ff9896")
  ax.axhline(0, color="black", linewidth=0.6)
  ax.set_xticks(x, [component_name(c) for c in late])
  ax.set_xlim(-0.6, len(late) - 0.4)
  ax.set_ylabel("direct effect on the scored logit\n(mean over prompts)")
  ax.set_title("Late-MLP erasure (negative DE: the MLP lowers the logit)", fontsize=10)
  ax.legend(frameon=False, fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
  return _save(fig, path)
