"""The report of a sweep: results.npz, summary.json, figures/*.png and report.md.

    python -m hydra_jax.report --workdir=DIR      # redraw everything from DIR/results.npz

`results.npz` holds, for every kept prompt (N of them, in prompt order), every array
of the sweep plus the prompt's id, text, label, scored token and its text, and the
indices of its resample sources: the means over sources [N, C] and the per-source lost DE
and parts of the compensation [N, K, C] under both readings of the final sigma
(`measures.by_source_name`); optionally `response_by_source` [M, K, C, C], the
per-source dDE of the first M prompts (its mean over K is `response[:M]`), `relation` [N]
and `subject` [N] (the bootstrap's clusters), and the names of the components and of every
array's axes (`report.results`; `report.load(workdir)` reads them). `dose.npz` (`DOSE_FILE`,
optional) holds the dose-response sweep (`hydra_jax.job.dose`).
`summary.json` holds the run's description (config, model, prompt counts, timing, sweep
options: the `info` passed to `write`; provenance: `hydra_jax.provenance`) and statistics
of the arrays. Components: c = 2l is layer l's attention, 2l + 1 its MLP (docs/method.md);
the per-layer statistics are over prompts:

  direct_effect        mean DE of the component in the clean run
  total_effect         mean TE: change of the scored logit when the component is ablated
  lost_direct_effect   mean DE the component itself loses under the ablation (-direct_change)
  compensation_attn    mean CE, the Hydra part: downstream attention's change of DE
  compensation_mlp     mean CE, the erasure part: downstream MLPs' change of DE
  norm_remainder       mean TE - direct change - CE (the final norm's share)
  restored             per sigma reading ("clean", "ablated") and part (total, attn, mlp,
                       norm): the mean, the ratio of means, the across-prompt fit and the
                       within-prompt slope with 95% cluster-bootstrap intervals, and the
                       clear flag of `report.clear` (`report.restored`)
  regression           CE on lost DE across prompts (the means over sources as swept,
                       sweep.response_scale): slope, intercept, R^2, and the bootstrap 95%
                       intervals slope_ci, r2_ci; regression_attn, regression_mlp,
                       regression_norm: the same for each part of CE and for the norm
                       remainder. The slope is the fraction restored as the paper reads it
  ratio_of_means_restored (_with_norm)  mean CE (+ norm remainder) / mean lost DE, null
                       unless the lost DE is well away from zero (statistics.ratio_of_means)
  de_te_correlation    Pearson r of lost DE and -TE across prompts
  direct_exceeds_drop  share of prompts with lost DE > -TE
  localisation_80      mean over prompts of how many downstream components carry 80% of
                       the |dDE| (downstream_components: how many there are), with its
                       bootstrap 95% interval localisation_80_ci
  *_std_over_sources   with response_by_source: std over the K sources of CE (total, attn,
                       mlp), averaged over the M prompts

Every interval is the cluster bootstrap's (`statistics.cluster_counts`: prompts sharing a
subject are resampled together, each with all its sources). The headline
(`report.headline`) holds the middle layers' means, the best layer and the clear layers
under the rule of `report.clear`; dose_response the dose-response check (`report.dose`).
Config: `config.report` (`report.options`, whose defaults fill missing keys); the sweep's
options: `sweep.options.SweepOptions` (serialised, its defaults fill missing keys).

Shapes: N prompts, M prompts with per-source arrays, K sources, L layers, C = 2L components.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from typing import Any, Mapping, Optional

import numpy as np

from hydra_jax.sweep import effects
from hydra_jax.sweep.options import SweepOptions
from hydra_jax.report import dose as report_dose
from hydra_jax.report import drawing
from hydra_jax.report import figures
from hydra_jax.report import headline as report_headline
from hydra_jax.report import markdown as report_markdown
from hydra_jax.report import options as report_options
from hydra_jax.report import restored
from hydra_jax.report import results as report_results
from hydra_jax.report import statistics
from hydra_jax import provenance
from hydra_jax import store as results_store

RESULTS_FILE = report_results.RESULTS_FILE
SUMMARY_FILE = report_results.SUMMARY_FILE
REPORT_FILE = "report.md"
FIGURE_DIR = drawing.FIGURE_DIR
DOSE_FILE = "dose.npz"
DEFAULT_CHOICES = report_options.DEFAULT_CHOICES


# Statistics ---------------------------------------------------------------------------------


def regressions(x: np.ndarray, y: np.ndarray) -> list[dict[str, float]]:
  """Per column of x, y [N, C]: the least-squares fit y = slope x + intercept and its R^2
  (NaN where x or y does not vary)."""
  fit = statistics.fits(x, y)
  return [dict(slope=float(s), intercept=float(i), r2=float(r))
          for s, i, r in zip(fit.slope, fit.intercept, fit.r2)]


def regressions_with_intervals(x, y, counts, defined=None) -> list[dict[str, Any]]:
  """`regressions` plus the bootstrap intervals slope_ci, r2_ci over the resamples counts
  [R, N]; columns where `defined` [C] is False (nothing downstream to compensate) are NaN."""
  if defined is not None:
    y = np.where(defined, y, np.nan)
  fits = regressions(x, y)
  if counts.shape[0] == 0:
    return [dict(fit, slope_ci=[math.nan] * 2, r2_ci=[math.nan] * 2) for fit in fits]
  samples = statistics.weighted_fits(counts, x, y)                                   # [R, C]
  slope_ci, r2_ci = statistics.interval(samples.slope), statistics.interval(samples.r2)  # [2, C]
  return [dict(fit, slope_ci=slope_ci[:, c].tolist(), r2_ci=r2_ci[:, c].tolist())
          for c, fit in enumerate(fits)]


def _correlation(x: np.ndarray, y: np.ndarray) -> float:
  if x.std() == 0 or y.std() == 0:
    return math.nan
  return float(np.corrcoef(x, y)[0, 1])


# bool [C, C] from (num_components, parallel_block): [c, c2] when c2 reads the output of c
downstream = effects.downstream_of


def source_spread(arrays, reads: np.ndarray) -> dict[str, list]:
  """Per component, the spread over sources of CE (empty without response_by_source)."""
  by_source = arrays.get("response_by_source")
  if by_source is None or by_source.shape[0] == 0 or by_source.shape[1] < 2:
    return {}   # no spread to measure over fewer than two sources
  spread = statistics.source_spread(by_source, reads)
  return {f"compensation_{name}": values.tolist() for name, values in spread.items()}


def per_component(arrays: Mapping[str, np.ndarray], counts: Optional[np.ndarray] = None,
                  reads: Optional[np.ndarray] = None) -> dict[str, list]:
  """Per-component statistics, each a list over the C components; counts [R, N] are the
  bootstrap resamples (None: no intervals), reads the downstream mask [C, C]."""
  lost = -arrays["direct_change"]                                                   # [N, C]
  num_prompts, num_components = lost.shape
  counts = np.zeros((0, num_prompts)) if counts is None else counts
  reads = downstream(num_components) if reads is None else reads
  attn, mlp = arrays["compensation_attn"], arrays["compensation_mlp"]                # [N, C]
  compensation, norm, te = attn + mlp, arrays["norm_remainder"], arrays["total_effect_mean"]
  carried = statistics.localisation(arrays["response"], reads)                      # [N, C]
  stats = dict(
      direct_effect=arrays["direct_effect"].mean(0).tolist(), total_effect=te.mean(0).tolist(),
      lost_direct_effect=lost.mean(0).tolist(), compensation_attn=attn.mean(0).tolist(),
      compensation_mlp=mlp.mean(0).tolist(), compensation=compensation.mean(0).tolist(),
      norm_remainder=norm.mean(0).tolist(),
      ratio_of_means_restored=statistics.ratio_of_means(compensation, lost, te).tolist(),
      ratio_of_means_restored_with_norm=statistics.ratio_of_means(compensation + norm, lost,
                                                                  te).tolist(),
      de_te_correlation=[_correlation(lost[:, c], -te[:, c]) for c in range(num_components)],
      direct_exceeds_drop=statistics.direct_exceeds(lost, te).tolist(),
      localisation_80=_nanmean0(carried).tolist(),
      localisation_80_ci=statistics.mean_interval(carried, counts).T.tolist(),
      downstream_components=reads.sum(1).tolist())
  attention = np.arange(num_components) % 2 == 0                                      # [C]
  parts = (("regression", compensation, reads), ("regression_attn", attn, reads & attention),
           ("regression_mlp", mlp, reads & ~attention), ("regression_norm", norm, None))
  for name, y, columns in parts:
    defined = None if columns is None else columns.any(1)      # something downstream to respond
    stats[name] = regressions_with_intervals(lost, y, counts, defined=defined)
  stats.update(source_spread(arrays, reads))
  return stats


def _nanmean0(values: np.ndarray) -> np.ndarray:
  """Mean over the first axis, NaN where every value is NaN (no warning)."""
  finite = np.isfinite(values)
  total = np.where(finite, values, 0.0).sum(0)
  return np.where(finite.any(0), total / np.maximum(finite.sum(0), 1), np.nan)


def per_layer(components: Mapping[str, list]) -> dict[str, dict[str, list]]:
  """Split the per-component lists into {"attn": {stat: [L]}, "mlp": {stat: [L]}}."""
  return {kind: {name: values[offset::2] for name, values in components.items()}
          for offset, kind in enumerate(figures.KIND_NAMES)}


def json_ready(value):
  """JSON has no NaN: write it as null."""
  if isinstance(value, float) and not math.isfinite(value):
    return None
  if isinstance(value, dict):
    return {k: json_ready(v) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [json_ready(v) for v in value]
  if isinstance(value, np.generic):
    return json_ready(value.item())
  return value


# Writing ------------------------------------------------------------------------------------


def _choices(info: Mapping[str, Any]) -> dict[str, Any]:
  return dict(DEFAULT_CHOICES, **((info.get("config") or {}).get("report") or {}))


def sweep_options(info: Mapping[str, Any]) -> dict[str, Any]:
  """The engine's options as run (`SweepOptions`, serialised): info's "sweep_options", else
  those of the run's config.sweep (an older run); what neither says, SweepOptions' default."""
  stored = info.get("sweep_options")
  return dataclasses.asdict(SweepOptions(**stored) if stored is not None else
                            SweepOptions.from_config((info.get("config") or {}).get("sweep") or {}))


def per_source_info(arrays) -> Optional[dict[str, Any]]:
  """How many prompts and sources response_by_source holds, and how far its mean over
  sources is from the stored response (0 up to float rounding); None without it."""
  by_source = arrays.get("response_by_source")
  if by_source is None or by_source.shape[0] == 0:
    return None
  mean = np.asarray(by_source, np.float64).mean(1)                                   # [M, C, C]
  stored = np.asarray(arrays["response"][:by_source.shape[0]], np.float64)          # [M, C, C]
  return dict(prompts=int(by_source.shape[0]), sources=int(by_source.shape[1]),
              max_difference_from_response=float(np.abs(mean - stored).max()))


def clusters(arrays) -> np.ndarray:
  """int [N]: the bootstrap's cluster of each prompt (its subject; its own without one)."""
  subjects = arrays.get("subject")
  return statistics.clusters_of(subjects if subjects is not None
                                else [""] * len(arrays["direct_effect"]))


def bootstrap_counts(arrays, choices: Mapping[str, Any]) -> np.ndarray:
  """int [R, N]: the seeded cluster-bootstrap resamples of every interval of the report
  (config.report's bootstrap and bootstrap_seed), the same for the statistics and figures."""
  return statistics.cluster_counts(clusters(arrays), int(choices["bootstrap"]),
                                   int(choices["bootstrap_seed"]))


def summarize(arrays: Mapping[str, np.ndarray], info: Mapping[str, Any],
              doses: Optional[Mapping[str, np.ndarray]] = None) -> dict[str, Any]:
  """summary.json's content: `info` plus the statistics of the arrays (and of the dose sweep)."""
  choices = _choices(info)
  num_prompts, num_components = arrays["direct_effect"].shape
  num_layers = num_components // 2
  parallel = bool((info.get("model") or {}).get("parallel_block", False))
  reads = downstream(num_components, parallel)
  groups = clusters(arrays)
  resamples, seed = int(choices["bootstrap"]), int(choices["bootstrap_seed"])
  counts = bootstrap_counts(arrays, choices)                                          # [R, N]
  components = per_component(arrays, counts, reads)
  found = restored.estimate(arrays, counts, groups, reads)
  if found is not None:
    components["restored"] = restored.per_component(found)
  num_late = choices["late_mlps"] or report_headline.late_mlp_count(num_layers)
  ablated = report_headline.choose_ablated(arrays, choices)
  headline = report_headline.headline(arrays, components, num_layers, ablated, num_late, counts)
  if found is not None:
    headline["restored"] = report_headline.restored_headline(found, components["restored"],
                                                            num_layers)
  middle = [2 * l for l in report_headline.middle_layers(num_layers)]
  counts_of = lambda rows: statistics.cluster_counts(statistics.clusters_of(
      np.asarray(groups)[rows]), resamples, seed)
  return json_ready(dict(
      info, num_prompts=int(num_prompts), sweep_options=sweep_options(info),
      bootstrap=dict(resamples=resamples, seed=seed, level=statistics.LEVEL,
                     clusters="subject" if "subject" in arrays else "prompt",
                     num_clusters=int(groups.max()) + 1),
      per_source=per_source_info(arrays), per_layer=per_layer(components), headline=headline,
      dose_response=report_dose.summarize(arrays, doses, counts_of, middle, reads),
      num_relations=len(set(arrays["relation"].tolist())) if "relation" in arrays else None))


def write(workdir: str, arrays: Mapping[str, np.ndarray], info: Mapping[str, Any],
          *, save_arrays: bool = True, doses: Optional[Mapping[str, np.ndarray]] = None
          ) -> dict[str, Any]:
  """Write results.npz (unless already saved), summary.json, the figures (unless
  config.report.figures is False) and report.md; `doses`: dose.npz's arrays, if any.
  summary.json's "provenance" is info's (a redraw keeps the run's), else this process's."""
  root = results_store.as_path(workdir)
  info = dict(info, provenance=info.get("provenance") or provenance.collect())
  if save_arrays:
    results_store.atomic_save_npz(root / RESULTS_FILE, report_results.with_layout(arrays))
  summary = summarize(arrays, info, doses)
  results_store.atomic_write_text(root / SUMMARY_FILE, json.dumps(summary, indent=2, default=str))
  choices = _choices(summary)
  paths = (drawing.draw_figures(workdir, arrays, summary, choices,
                                bootstrap_counts(arrays, choices)) if choices["figures"] else {})
  results_store.atomic_write_text(root / REPORT_FILE, report_markdown.render(summary, paths))
  return summary


def redraw(workdir: str) -> dict[str, Any]:
  """Recompute summary.json, the figures and report.md from a workdir's saved results."""
  results_path = results_store.as_path(workdir) / RESULTS_FILE
  if not results_path.exists():
    raise ValueError(f"{results_path} does not exist: run hydra_jax.main with --workdir={workdir} first")
  arrays = results_store.load_npz(results_path)
  dose_path = results_store.as_path(workdir) / DOSE_FILE
  doses = results_store.load_npz(dose_path) if dose_path.exists() else None
  summary_path = results_store.as_path(workdir) / SUMMARY_FILE
  saved = results_store.read_json(summary_path) if summary_path.exists() else {}
  info = {k: saved[k] for k in ("config", "model", "prompts", "timing", "provenance",
                                "sweep_options") if k in saved}
  return write(workdir, arrays, info, save_arrays=False, doses=doses)
