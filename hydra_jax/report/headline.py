"""The headline of a sweep: the numbers to set beside the paper's (Chinchilla 7B).

  restored              (`restored_headline`) under both sigma readings, for the total
                        compensation and each part: the mean over the middle attention
                        layers of the within-prompt and across-prompt slopes and their
                        pooled ratio of means, the best attention layer, and the layers
                        the rule of `report.clear` calls clear
  middle-layer slopes   CE on lost DE at the middle attention layers, each with its
                        bootstrap 95% interval: the paper's "about 70% restored"
  their mean            the fraction restored as the paper reads it, with an interval from
                        the same resamples; also counting the final norm's remainder
  ratio of means        pooled over the middle layers, guarded (statistics.ratio_of_means)
  Hydra responders      attention ablations ranked by the attention part of CE, and the
                        later attention layer whose DE rises most after each
  erasure               DE of the last MLPs intact and with the chosen component ablated
  coupling              how many downstream components carry 80% of a response

Shapes: N prompts, R resamples, L layers, C = 2L components.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

import numpy as np

from hydra_jax.report import clear
from hydra_jax.report import figures
from hydra_jax.report import restored
from hydra_jax.report import statistics
from hydra_jax.sweep.measures import SIGMAS


def middle_layers(num_layers: int) -> list[int]:
  """The middle half of the layers (all of them below 4 layers)."""
  return list(range(num_layers // 4, num_layers - num_layers // 4))


def late_mlp_count(num_layers: int) -> int:
  """How many of the last MLP layers the erasure figure shows by default."""
  return max(min(2, num_layers), num_layers // 4)


def choose_ablated(arrays, choices) -> int:
  """The component of figures 1/3: the configured one, else the one losing most DE among
  those of its kind with a later layer to respond (all of them in a one-layer model)."""
  offset = figures.KIND_NAMES.index(choices["ablated_kind"])
  if choices["ablated_layer"] >= 0:
    return 2 * choices["ablated_layer"] + offset
  lost = -arrays["direct_change"].mean(0)[offset::2]                                  # [L]
  candidates = lost[:-1] if len(lost) > 1 else lost
  return 2 * int(np.argmax(candidates)) + offset


def _mean_slope(counts, lost, outcome) -> tuple[float, list[float]]:
  """The mean over columns of the slopes of outcome [N, S] on lost [N, S], and its interval."""
  if lost.shape[1] == 0:
    return math.nan, [math.nan, math.nan]
  plain = statistics.fits(lost, outcome).slope                                       # [S]
  if counts.shape[0] == 0:
    return float(np.nanmean(plain)), [math.nan, math.nan]
  samples = statistics.weighted_fits(counts, lost, outcome).slope                    # [R, S]
  return float(np.nanmean(plain)), statistics.interval(np.nanmean(samples, 1)).tolist()


def repair(arrays, components, num_layers: int, counts) -> dict[str, Any]:
  """Middle attention layers: per-layer slopes, their mean and the guarded ratio of means."""
  layers = middle_layers(num_layers)
  middle = [2 * l for l in layers]
  lost = -arrays["direct_change"][:, middle]                                          # [N, S]
  compensation = (arrays["compensation_attn"] + arrays["compensation_mlp"])[:, middle]
  with_norm = compensation + arrays["norm_remainder"][:, middle]
  slope, slope_ci = _mean_slope(counts, lost, compensation)
  slope_norm, slope_norm_ci = _mean_slope(counts, lost, with_norm)
  pooled = lambda values: values.mean(1, keepdims=True)                               # [N, 1]
  te = arrays["total_effect_mean"][:, middle]
  per_layer = [dict(layer=l, **{f"{part}_{key}": components[name][c][key]
                                for part, name in (("total", "regression"),
                                                   ("attn", "regression_attn"),
                                                   ("mlp", "regression_mlp"))
                                for key in ("slope", "slope_ci", "r2")})
               for l, c in zip(layers, middle)]
  return dict(
      middle_attention_layers=layers, middle_attention_slopes=per_layer,
      fraction_restored_middle_attention=slope, fraction_restored_middle_attention_ci=slope_ci,
      fraction_restored_with_norm_middle_attention=slope_norm,
      fraction_restored_with_norm_middle_attention_ci=slope_norm_ci,
      ratio_of_means_middle_attention=float(statistics.ratio_of_means(
          pooled(compensation), pooled(lost), pooled(te))[0]) if middle else math.nan)


def best_attention_layer(entries: list[dict[str, Any]], num_layers: int) -> int:
  """The attention layer with a later layer whose within-prompt slope of the total
  compensation (clean sigma) has the highest lower interval bound; entries: per component
  `restored.per_component`. A choice after the fact: for display, not for inference."""
  candidates = list(range(max(num_layers - 1, 1)))
  low = lambda l: entries[2 * l]["clean"]["total"]["within"]["slope_ci"][0]
  return max(candidates, key=lambda l: low(l) if math.isfinite(low(l)) else -math.inf)


def clear_layers(entries: list[dict[str, Any]]) -> dict[str, Any]:
  """{sigma: {part: {"attn": [layers], "mlp": [layers]}}}: where the rule's conditions hold
  (clear under clear.SIGMA; under the other reading they are reported, not called clear)."""
  return {sigma: {part: {kind: [c // 2 for c in range(offset, len(entries), 2)
                                if entries[c][sigma][part]["clear"]]
                         for offset, kind in enumerate(figures.KIND_NAMES)}
                  for part in clear.PARTS} for sigma in SIGMAS}


def restored_headline(found, entries: list[dict[str, Any]], num_layers: int) -> dict[str, Any]:
  """The fraction restored in few numbers (module docstring); found: `restored.estimate`."""
  layers = middle_layers(num_layers)
  best = best_attention_layer(entries, num_layers)
  return dict(
      rule=clear.RULE, min_effect=clear.MIN_EFFECT, clear_sigma=clear.SIGMA,
      middle_attention_layers=layers,
      middle_mean={sigma: {part: restored.pooled(found[sigma, part], [2 * l for l in layers])
                           for part in restored.PARTS} for sigma in SIGMAS},
      best_attention_layer=best, best=entries[2 * best], clear_layers=clear_layers(entries))


def responders(arrays, components, num_layers: int) -> dict[str, Any]:
  """Attention ablations only, ranked by the attention part of CE (the Hydra effect)."""
  attention_repair = np.asarray(components["compensation_attn"], np.float64)          # [C]
  with_later = [2 * l for l in range(num_layers - 1)]          # attention with a later one
  ranked = sorted(with_later, key=lambda c: -attention_repair[c])[:3]
  response = arrays["response"].mean(0)                                               # [C, C]
  strongest = {}
  for c in ranked:   # the later attention layer whose DE rises most (or falls least)
    later = np.where(np.arange(num_layers) * 2 > c, response[c, 0::2], -np.inf)          # [L]
    best = int(np.argmax(later))
    strongest[figures.component_name(c)] = dict(responder=figures.component_name(2 * best),
                                                 dde=float(later[best]))
  return dict(
      largest_attention_compensation=[
          dict(ablated=figures.component_name(c), compensation_attn=float(attention_repair[c]))
          for c in ranked],
      strongest_attention_responder=strongest)


def coupling(arrays, components) -> dict[str, Any]:
  """Means over ablated components with something downstream: k80 and the count downstream."""
  counts = np.asarray(components["localisation_80"], np.float64)                    # [C]
  available = np.asarray(components["downstream_components"], np.float64)            # [C]
  shares = np.asarray(components["direct_exceeds_drop"], np.float64)                 # [C]
  responding = np.isfinite(counts)
  summary = dict(direct_exceeds_drop_attn=float(shares[0::2].mean()),
                 direct_exceeds_drop_mlp=float(shares[1::2].mean()))
  if responding.any():
    summary.update(localisation_80=float(counts[responding].mean()),
                   downstream_components=float(available[responding].mean()))
  return summary


def ablated_response(arrays, ablated: int) -> dict[str, Any]:
  """Figures 1/3 and the heatmap in numbers: the mean dDE after ablating `ablated` (largest
  rise and fall among later components) and the largest mean response of the whole matrix."""
  matrix = arrays["response"].mean(0).astype(np.float64)                              # [C, C]
  matrix[np.diag_indices(len(matrix))] = np.nan   # own changes: lost DE, not responses
  row = matrix[ablated]                                                               # [C]
  name = figures.component_name
  if np.isfinite(matrix).any() and np.nanmax(np.abs(matrix)) > 0:
    a, b = np.unravel_index(np.nanargmax(np.abs(matrix)), matrix.shape)
    largest = dict(ablated=name(int(a)), responder=name(int(b)), dde=float(matrix[a, b]))
  else:
    largest = None
  later = np.where(np.arange(len(row)) > ablated, row, np.nan)
  facts = dict(largest_response=largest)
  if np.isfinite(later).any():
    rise, fall = int(np.nanargmax(later)), int(np.nanargmin(later))
    facts.update(ablated_largest_rise=dict(component=name(rise), dde=float(row[rise])),
                 ablated_largest_fall=dict(component=name(fall), dde=float(row[fall])))
  return facts


def headline(arrays, components: Mapping[str, list], num_layers: int, ablated: int,
             num_late: int, counts: np.ndarray) -> dict[str, Any]:
  """The numbers to set beside the paper's: repair in middle layers, who compensates, erasure."""
  late = list(range(2 * num_layers - 2 * num_late + 1, 2 * num_layers, 2))
  ablated_de = figures.ablated_direct_effects(arrays, ablated)
  return dict(
      repair(arrays, components, num_layers, counts),
      **responders(arrays, components, num_layers),
      **coupling(arrays, components),
      **ablated_response(arrays, ablated),
      ablated_component=figures.component_name(ablated),
      late_mlp_erasure=[dict(component=figures.component_name(c),
                             intact=float(arrays["direct_effect"][:, c].mean()),
                             ablated=float(ablated_de[:, c].mean())) for c in late])
