"""The report of a sweep: results.npz, summary.json, figures/*.png and report.md.

    python -m hydra_jax.report --workdir=DIR      # redraw everything from DIR/results.npz

`results.npz` holds, for every kept prompt (N of them, in prompt order), every array
of the sweep plus the prompt's id, text, label, scored token and its text, and the
indices of its resample sources. `summary.json` holds the run's description (config,
model, prompt counts, timing: the `info` passed to `write`) and the statistics
computed here from the arrays. Components: c = 2l is layer l's attention, 2l + 1 its
MLP (METHOD.md); the per-layer statistics are means over prompts:

  direct_effect        DE of the component in the clean run
  total_effect         TE: change of the scored logit when the component is ablated
  lost_direct_effect   DE the component itself loses under the ablation (-direct_change)
  compensation_attn    CE, the Hydra part: downstream attention's change of DE
  compensation_mlp     CE, the erasure part: downstream MLPs' change of DE
  norm_remainder       TE - direct change - CE (the final norm's share)
  fraction_restored    mean CE / mean lost DE
  fraction_restored_with_norm  (mean CE + mean norm remainder) / mean lost DE = 1 + TE / lost DE
  regression           CE on lost DE across prompts: slope, intercept, R^2
  de_te_correlation    Pearson r of lost DE and -TE across prompts

Shapes: N prompts, K sources, L layers, C = 2L components.
"""

from __future__ import annotations

import json
import math
import os
import sys
from typing import Any, Mapping, Optional

import numpy as np

from hydra_jax.sweep import effects
from hydra_jax.report import figures
from hydra_jax.report import markdown as report_markdown
from hydra_jax import store as results_store

RESULTS_FILE = "results.npz"
SUMMARY_FILE = "summary.json"
REPORT_FILE = "report.md"
FIGURE_DIR = "figures"
DEFAULT_CHOICES = dict(ablated_layer=-1, ablated_kind="attn", regression_layers=(), late_mlps=0)


# Statistics ---------------------------------------------------------------------------------


def regressions(x: np.ndarray, y: np.ndarray) -> list[dict[str, float]]:
  """Per column of x, y [N, C]: the least-squares fit y = slope x + intercept and its R^2
  (`hydra_jax.effects.regress`; NaN where x or y does not vary)."""
  fit = effects.regress(x, y)
  return [dict(slope=float(s), intercept=float(i), r2=float(r))
          for s, i, r in zip(np.asarray(fit.slope), np.asarray(fit.intercept), np.asarray(fit.r2))]


def _correlation(x: np.ndarray, y: np.ndarray) -> float:
  if x.std() == 0 or y.std() == 0:
    return math.nan
  return float(np.corrcoef(x, y)[0, 1])


def late_mlp_count(num_layers: int) -> int:
  """How many of the last MLP layers the erasure figure shows by default."""
  return max(min(2, num_layers), num_layers // 4)


def middle_layers(num_layers: int) -> list[int]:
  """The middle half of the layers (all of them below 4 layers)."""
  return list(range(num_layers // 4, num_layers - num_layers // 4))


def _ratio(numerator, denominator) -> float:
  return float(numerator / denominator) if denominator != 0 else math.nan


def per_component(arrays: Mapping[str, np.ndarray]) -> dict[str, list]:
  """Per-component statistics, each a list over the C components."""
  lost = -arrays["direct_change"]                                                   # [N, C]
  compensation = arrays["compensation_attn"] + arrays["compensation_mlp"]           # [N, C]
  num_components = lost.shape[1]
  fits = regressions(lost, compensation)
  mean_lost, mean_compensation = lost.mean(0), compensation.mean(0)
  return dict(
      direct_effect=arrays["direct_effect"].mean(0).tolist(),
      total_effect=arrays["total_effect_mean"].mean(0).tolist(),
      lost_direct_effect=mean_lost.tolist(),
      compensation_attn=arrays["compensation_attn"].mean(0).tolist(),
      compensation_mlp=arrays["compensation_mlp"].mean(0).tolist(),
      compensation=mean_compensation.tolist(),
      norm_remainder=arrays["norm_remainder"].mean(0).tolist(),
      fraction_restored=[_ratio(c, l) for c, l in zip(mean_compensation, mean_lost)],
      fraction_restored_with_norm=[_ratio(c + r, l) for c, r, l in zip(
          mean_compensation, arrays["norm_remainder"].mean(0), mean_lost)],
      regression=fits,
      de_te_correlation=[_correlation(lost[:, c], -arrays["total_effect_mean"][:, c])
                         for c in range(num_components)],
  )


def per_layer(components: Mapping[str, list]) -> dict[str, dict[str, list]]:
  """Split the per-component lists into {"attn": {stat: [L]}, "mlp": {stat: [L]}}."""
  return {kind: {name: values[offset::2] for name, values in components.items()}
          for offset, kind in enumerate(figures.KIND_NAMES)}


def choose_ablated(arrays, choices) -> int:
  """The component of figures 1/3: the configured one, else the one losing most DE among
  those of its kind with a later layer to respond (all of them in a one-layer model)."""
  offset = figures.KIND_NAMES.index(choices["ablated_kind"])
  if choices["ablated_layer"] >= 0:
    return 2 * choices["ablated_layer"] + offset
  lost = -arrays["direct_change"].mean(0)[offset::2]                                  # [L]
  candidates = lost[:-1] if len(lost) > 1 else lost
  return 2 * int(np.argmax(candidates)) + offset


def headline(arrays, components, num_layers: int, ablated: int, num_late: int) -> dict[str, Any]:
  """The numbers to set beside the paper's: repair in middle layers, who compensates, erasure."""
  middle = [2 * l for l in middle_layers(num_layers)]                                 # attention
  lost = -arrays["direct_change"][:, middle].mean()
  compensation = (arrays["compensation_attn"] + arrays["compensation_mlp"])[:, middle].mean()
  norm_share = arrays["norm_remainder"][:, middle].mean()
  attention_repair = np.asarray(components["compensation_attn"])
  has_later_attention = np.arange(2 * num_layers) < 2 * num_layers - 2                # [C]
  ranked = [int(c) for c in np.argsort(-attention_repair) if has_later_attention[c]][:3]
  response = arrays["response"].mean(0)                                             # [C, C]
  responders = {}
  for c in ranked:   # the later attention layer whose DE rises most (or falls least)
    later = np.where(np.arange(num_layers) * 2 > c, response[c, 0::2], -np.inf)        # [L]
    best = int(np.argmax(later))
    responders[figures.component_name(c)] = dict(responder=figures.component_name(2 * best),
                                                 dde=float(later[best]))
  late = list(range(2 * num_layers - 2 * num_late + 1, 2 * num_layers, 2))
  ablated_de = figures.ablated_direct_effects(arrays, ablated)
  slopes = [components["regression"][c]["slope"] for c in middle]
  return dict(
      middle_attention_layers=middle_layers(num_layers),
      fraction_restored_middle_attention=_ratio(compensation, lost),
      fraction_restored_with_norm_middle_attention=_ratio(compensation + norm_share, lost),
      mean_slope_middle_attention=float(np.nanmean(slopes)) if slopes else math.nan,
      largest_attention_compensation=[
          dict(ablated=figures.component_name(c), compensation_attn=float(attention_repair[c]))
          for c in ranked],
      strongest_attention_responder=responders,
      ablated_component=figures.component_name(ablated),
      late_mlp_erasure=[dict(component=figures.component_name(c),
                             intact=float(arrays["direct_effect"][:, c].mean()),
                             ablated=float(ablated_de[:, c].mean())) for c in late],
  )


def _finite(value):
  """JSON has no NaN: write it as null."""
  if isinstance(value, float) and not math.isfinite(value):
    return None
  if isinstance(value, dict):
    return {k: _finite(v) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [_finite(v) for v in value]
  if isinstance(value, np.generic):
    return _finite(value.item())
  return value


# Writing ------------------------------------------------------------------------------------


def _choices(info: Mapping[str, Any]) -> dict[str, Any]:
  choices = dict(DEFAULT_CHOICES)
  choices.update((info.get("config") or {}).get("report") or {})
  return choices


def summarize(arrays: Mapping[str, np.ndarray], info: Mapping[str, Any]) -> dict[str, Any]:
  """summary.json's content: `info` plus the statistics of the arrays."""
  choices = _choices(info)
  num_layers = arrays["direct_effect"].shape[1] // 2
  components = per_component(arrays)
  num_late = choices["late_mlps"] or late_mlp_count(num_layers)
  ablated = choose_ablated(arrays, choices)
  return _finite(dict(info, num_prompts=int(arrays["direct_effect"].shape[0]),
                      per_layer=per_layer(components),
                      headline=headline(arrays, components, num_layers, ablated, num_late)))


def regression_components(num_layers: int, requested) -> list[int]:
  """Attention components of figure 7: the requested layers, else up to 8 spread evenly."""
  layers = list(requested) or sorted(set(np.linspace(0, num_layers - 1, min(8, num_layers)).round()
                                         .astype(int).tolist()))
  return [2 * int(l) for l in layers]


def draw_figures(workdir: str, arrays, info) -> dict[str, str]:
  """Write the PNG figures under workdir/figures; returns name -> relative path."""
  choices = _choices(info)
  num_layers = arrays["direct_effect"].shape[1] // 2
  ablated = choose_ablated(arrays, choices)
  fit_components = regression_components(num_layers, choices["regression_layers"])
  lost = -arrays["direct_change"]
  compensation = arrays["compensation_attn"] + arrays["compensation_mlp"]
  fits = dict(zip(fit_components, regressions(lost[:, fit_components], compensation[:, fit_components])))
  num_late = choices["late_mlps"] or late_mlp_count(num_layers)
  path = lambda name: results_store.as_path(workdir) / FIGURE_DIR / (name + ".png")
  figures.intact_vs_ablated(arrays, ablated, path("intact_vs_ablated"))
  figures.de_vs_te(arrays, path("de_vs_te"))
  figures.compensation_fits(arrays, fit_components, fits, path("compensation_fits"))
  figures.response_heatmap(arrays, path("response_heatmap"))
  figures.late_mlp_erasure(arrays, ablated, num_late, path("late_mlp_erasure"))
  names = ("intact_vs_ablated", "de_vs_te", "compensation_fits", "response_heatmap",
           "late_mlp_erasure")
  return {name: f"{FIGURE_DIR}/{name}.png" for name in names}


def write(workdir: str, arrays: Mapping[str, np.ndarray], info: Mapping[str, Any],
          *, save_arrays: bool = True) -> dict[str, Any]:
  """Write results.npz (unless already saved), summary.json, the figures and report.md."""
  root = results_store.as_path(workdir)
  if save_arrays:
    results_store.atomic_save_npz(root / RESULTS_FILE, arrays)
  summary = summarize(arrays, info)
  results_store.atomic_write_text(root / SUMMARY_FILE, json.dumps(summary, indent=2, default=str))
  paths = draw_figures(workdir, arrays, info)
  results_store.atomic_write_text(root / REPORT_FILE, report_markdown.render(summary, paths))
  return summary


def redraw(workdir: str) -> dict[str, Any]:
  """Recompute summary.json, the figures and report.md from a workdir's saved results."""
  results_path = results_store.as_path(workdir) / RESULTS_FILE
  if not results_path.exists():
    raise ValueError(f"{results_path} does not exist: run hydra_jax.main with --workdir={workdir} first")
  arrays = results_store.load_npz(results_path)
  info = {}
  summary_path = results_store.as_path(workdir) / SUMMARY_FILE
  if summary_path.exists():
    saved = results_store.read_json(summary_path)
    info = {k: saved[k] for k in ("config", "model", "prompts", "timing") if k in saved}
  return write(workdir, arrays, info, save_arrays=False)


def main(argv: Optional[list[str]] = None) -> None:
  from absl import app, flags
  flags.DEFINE_string("workdir", None, "folder of a finished run (holding results.npz)")

  def run(unused_argv):
    if not flags.FLAGS.workdir:
      raise app.UsageError("--workdir is required")
    try:
      redraw(flags.FLAGS.workdir)
    except ValueError as error:
      sys.exit(f"hydra_jax.report: {error}")
    print(f"report redrawn in {os.path.join(flags.FLAGS.workdir, REPORT_FILE)}")

  app.run(run, argv=argv)

