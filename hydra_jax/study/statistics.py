"""The study's measures of one sweep: the report's estimates, per layer, in a flat layout.

    measures(arrays, reads, resamples, seed) -> per-layer measures of one sweep (JSON-ready)

Everything is computed by the main job's report code (`hydra_jax.report.summary`: its
per-component statistics, `report.statistics` and `report.estimators` under it), with the
swept model's downstream mask reads [C, C] (a parallel block's MLP does not read its own
layer's attention: `effects.downstream_mask`) and the report's cluster bootstrap
(prompts sharing a subject resampled together): per ablated component and part of the
compensation - attention (the Hydra effect), MLP (reduced erasure), their total - and the
norm remainder,

  slope_<part>, ci_<part>, r2_<part>   the across-prompt slope of the part on the lost DE
                                       (the paper's estimator) and its 95% interval
  within_<part>, within_ci_<part>      the within-prompt slope and its interval
  ratio_<part>                         the ratio of means (null unless well defined)
  clear_<part>                         the rule of `report.clear` (not for the norm)

each also read with every ablated run's own final sigma (suffix `_ablated_sigma`; the
others use the clean sigma). The within-prompt entries need the per-source arrays a
sweep keeps since they exist; older sweeps have none of them. Further: the ratio of
means, the norm's share (mean norm remainder / mean lost DE), the DE-TE correlation,
and late-MLP erasure (the clean direct effect summed over the last MLPs, negative when
they erase, and its change when each component is ablated).

Shapes: N prompts, C = 2L components.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

import numpy as np

from hydra_jax.report import clear, headline, restored, statistics
from hydra_jax.report import summary as report

PARTS = ("attn", "mlp", "total", "norm")
VERSION = 2     # of the measures' layout: measures.json of another version are recomputed
_REGRESSIONS = dict(attn="regression_attn", mlp="regression_mlp", total="regression",
                    norm="regression_norm")
_SUFFIX = dict(clean="", ablated="_ablated_sigma")


def _late_mlps(num_layers: int) -> list[int]:
  """Components of the last MLP layers (as many as the report's erasure figure shows)."""
  count = headline.late_mlp_count(num_layers)
  return [2 * l + 1 for l in range(num_layers - count, num_layers)]


def _across(components: Mapping[str, Any]) -> dict[str, list]:
  """The across-prompt slopes of every part, per component."""
  found = {}
  for part, name in _REGRESSIONS.items():
    found[f"slope_{part}"] = [fit["slope"] for fit in components[name]]
    found[f"r2_{part}"] = [fit["r2"] for fit in components[name]]
    found[f"ci_{part}"] = [fit["slope_ci"] for fit in components[name]]
  return found


def _within(entries: list[dict[str, Any]]) -> dict[str, list]:
  """The within-prompt slopes, ratios and clear flags of every part and sigma, per component."""
  found = {}
  for sigma, suffix in _SUFFIX.items():
    for part in PARTS:
      at = [entry[sigma][part] for entry in entries]
      found[f"within_{part}{suffix}"] = [e["within"]["slope"] for e in at]
      found[f"within_ci_{part}{suffix}"] = [e["within"]["slope_ci"] for e in at]
      found[f"ratio_{part}{suffix}"] = [e["ratio_of_means"] for e in at]
      if part in clear.PARTS:
        found[f"clear_{part}{suffix}"] = [e["clear"] for e in at]
  return found


def measures(arrays: Mapping[str, np.ndarray], reads: np.ndarray, resamples: int = 1000,
             seed: int = 0) -> dict[str, Any]:
  """Per-layer measures of one sweep: {"attn": {measure: [L]}, "mlp": {...}} and more;
  reads bool [C, C] is the swept model's downstream mask."""
  lost = -np.asarray(arrays["direct_change"], np.float64)                           # [N, C]
  num_components = lost.shape[1]
  if np.shape(reads) != (num_components, num_components):
    raise ValueError(f"reads {np.shape(reads)}: the downstream mask must be "
                     f"[{num_components}, {num_components}] for the sweep's components")
  groups = report.clusters(arrays)
  counts = statistics.cluster_counts(groups, resamples, seed)                       # [R, N]
  components = report.per_component(arrays, counts, reads)
  found = restored.estimate(arrays, counts, groups, reads)
  late = _late_mlps(num_components // 2)
  per_component = dict(
      _across(components),
      lost_direct_effect=components["lost_direct_effect"],
      fraction_restored=[fit["slope"] for fit in components["regression"]],   # the paper's reading
      ratio_of_means_restored=components["ratio_of_means_restored"],
      norm_share=[_share(r, l) for r, l in zip(components["norm_remainder"],
                                                components["lost_direct_effect"])],
      de_te_correlation=components["de_te_correlation"],
      late_mlp_change=np.asarray(arrays["response"])[:, :, late].sum(-1).mean(0).tolist())
  per_component["fraction_restored_with_norm"] = [
      a + b for a, b in zip(per_component["slope_total"], per_component["slope_norm"])]
  if found is not None:
    per_component.update(_within(restored.per_component(found)))
  return report.json_ready(dict(
      num_prompts=int(lost.shape[0]), num_layers=num_components // 2,
      num_clusters=int(groups.max()) + 1, middle_layers=headline.middle_layers(num_components // 2),
      late_mlps=[c // 2 for c in late],
      late_mlp_direct_effect=float(np.asarray(arrays["direct_effect"])[:, late].sum(-1).mean()),
      per_layer=report.per_layer(per_component)))


def _share(part: float, whole: float) -> float:
  return part / whole if whole and math.isfinite(whole) else math.nan
