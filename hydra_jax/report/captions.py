"""One sentence per figure of report.md, computed from this run's summary.json, and what
the paper (McGrath et al. 2023, Chinchilla 7B) found there.

`captions(summary)` -> {figure name: Markdown text}. Every number comes from the summary
(`hydra_jax.report.summary`: per_layer statistics, headline, per_source); nothing about
this run is fixed text. Where a number is missing (a one-layer model, no per-source
arrays) the sentence says so.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Mapping

import numpy as np

from hydra_jax.report.figures import COLOUR_PERCENTILE
from hydra_jax.report.formatting import interval, number, percent

PAPER = {
    "intact_vs_ablated": "the paper's figure 1 shows the ablated layer's DE vanish while a "
                         "downstream attention layer (layer 20 in its examples) raises its own",
    "downstream_response": "its figure 3 shows the same as a change: a few downstream attention "
                           "layers rise, late MLPs lower the logit less (reduced erasure)",
    "de_vs_te": "its figure 2 finds the two impacts correlate poorly except in late layers",
    "compensation_fits": "its figure 7 finds about 70% of the lost logit restored at middle "
                         "layers (slope below 1 past layer 13)",
    "slopes_by_layer": "its figure 7d has slopes near 0.7 at middle layers and below 1 past "
                       "layer 13; at attention layer 23 compensation explains 92% of the "
                       "variance of the downstream changes",
    "compensation_parts": "its figure 8 splits the compensation into attention (the Hydra "
                          "effect) and MLP (reduced erasure) parts",
    "localisation": "the paper finds layers loosely coupled: one ablation moves few "
                    "downstream layers",
    "response_heatmap": "the paper shows individual rows of this matrix (figures 1 and 3)",
    "late_mlp_erasure": "the paper finds late MLPs lower the scored logit, and less so after "
                        "an ablation (erasure)",
}


def slope_text(fit: Mapping[str, Any]) -> str:
  """'+0.710 [+0.620, +0.800]': a slope and its bootstrap interval."""
  return interval(fit.get("slope"), fit.get("slope_ci"))


def _values(stats, kind: str, name: str, key: str = "slope") -> np.ndarray:
  """[L] a statistic of one kind, regressions' `key`, None read as NaN."""
  entries = stats[kind][name]
  if entries and isinstance(entries[0], dict):
    entries = [entry.get(key) for entry in entries]
  return np.array([np.nan if v is None else v for v in entries], np.float64)


def _significant(stats, kind: str, name: str = "regression") -> tuple[int, int]:
  """How many layers' slope intervals lie wholly above 0, and wholly below."""
  bands = [entry.get("slope_ci") or [None, None] for entry in stats[kind][name]]
  lows = np.array([np.nan if b[0] is None else b[0] for b in bands], np.float64)
  highs = np.array([np.nan if b[1] is None else b[1] for b in bands], np.float64)
  return int((lows > 0).sum()), int((highs < 0).sum())


def _intact_vs_ablated(summary) -> str:
  head, spread = summary["headline"], summary.get("per_source")
  stats = summary["per_layer"]
  ablated = head.get("ablated_component", "? 0")
  kind, layer = ablated.split()[0], int(ablated.split()[1])
  if spread:
    std = stats[kind].get("compensation_total_std_over_sources") or [None] * (layer + 1)
    sources = (f"faint lines: the {spread['sources']} sources of one prompt; over the first "
               f"{spread['prompts']} prompts the compensation of {ablated} has a standard "
               f"deviation of {number(std[layer], signed=False)} across sources")
  else:
    sources = "no per-source arrays were kept (sweep.keep_sources = 0): one line, the mean"
  lost = stats[kind]["lost_direct_effect"][layer]
  moves = "falls" if lost is None or lost >= 0 else "rises"
  size = None if lost is None else abs(lost)
  return (f"With {ablated} ablated its own DE {moves} by {number(size, signed=False)} on "
          f"average, while the later components' DE changes by "
          f"{number(stats[kind]['compensation_attn'][layer])} (attention) and "
          f"{number(stats[kind]['compensation_mlp'][layer])} (MLPs); {sources}.")


def _downstream_response(summary) -> str:
  head = summary["headline"]
  rise, fall = head.get("ablated_largest_rise"), head.get("ablated_largest_fall")
  if not rise:
    return f"{head.get('ablated_component')} has no downstream component here."
  return (f"After ablating {head.get('ablated_component')}, {rise_and_fall(rise, fall)} "
          f"(mean change of a later component's DE over prompts).")


def rise_and_fall(rise: Mapping[str, Any], fall: Mapping[str, Any]) -> str:
  """The largest and smallest change of a row, in words that match their signs; rise and
  fall: {"component", "dde"} of the row's maximum and minimum."""
  high, low = (f"{e['component']} ({number(e['dde'])})" for e in (rise, fall))
  if rise["dde"] <= 0 and fall["dde"] < 0:
    return f"no later component rises: the smallest fall is {high}, the largest {low}"
  if fall["dde"] >= 0 and rise["dde"] > 0:
    return f"no later component falls: the largest rise is {high}, the smallest {low}"
  if rise["dde"] == fall["dde"] == 0:
    return "no later component's DE changes"
  return f"the largest rise is {high} and the largest fall {low}"


def _de_vs_te(summary) -> str:
  head, stats = summary["headline"], summary["per_layer"]
  correlation = _values(stats, "attn", "de_te_correlation")
  best = int(np.nanargmax(correlation)) if np.isfinite(correlation).any() else None
  where = (f"r(DE lost, -TE) over prompts at attention layers runs from "
           f"{number(float(np.nanmin(correlation)))} to {number(float(correlation[best]))} "
           f"(highest at layer {best})" if best is not None else "r(DE lost, -TE) is undefined")
  return (f"DE lost exceeds -TE (downstream components make up part of the loss) on "
          f"{percent(head.get('direct_exceeds_drop_attn'))} of prompts x attention layers and "
          f"{percent(head.get('direct_exceeds_drop_mlp'))} "
          f"x MLP layers; {where}.")


def _extremes(values: np.ndarray, names: list[str]) -> str:
  """'from a (name) to b (name), mean m' over the finite values."""
  finite = np.flatnonzero(np.isfinite(values))
  low, high = finite[np.argmin(values[finite])], finite[np.argmax(values[finite])]
  return (f"from {number(float(values[low]))} ({names[low]}) to {number(float(values[high]))} "
          f"({names[high]}), mean {number(float(values[finite].mean()))}")


def _compensation_fits(summary) -> str:
  entries = summary["headline"].get("middle_attention_slopes") or []
  slopes = np.array([np.nan if e["total_slope"] is None else e["total_slope"] for e in entries])
  if not np.isfinite(slopes).any():
    return "No middle attention layer has a defined slope."
  names = [f"attn {e['layer']}" for e in entries]
  r2 = np.array([np.nan if e["total_r2"] is None else e["total_r2"] for e in entries])
  return (f"Across-prompt slopes of CE on lost DE at the {len(entries)} middle attention layers "
          f"run {_extremes(slopes, names)}; R² at most "
          f"{number(float(np.nanmax(r2)), signed=False)}.")


def _slopes_by_layer(summary) -> str:
  stats = summary["per_layer"]
  counts = {kind: _significant(stats, kind) for kind in ("attn", "mlp")}
  r2 = {kind: _values(stats, kind, "regression", "r2") for kind in ("attn", "mlp")}
  best = max(((kind, int(np.nanargmax(values))) for kind, values in r2.items()
              if np.isfinite(values).any()), key=lambda kl: r2[kl[0]][kl[1]], default=None)
  best_text = (f"; the highest R² is {number(r2[best[0]][best[1]], signed=False)} at "
               f"{best[0]} {best[1]}"
               if best else "")
  return (f"The across-prompt slope's 95% interval lies above 0 at {counts['attn'][0]} attention "
          f"and {counts['mlp'][0]} MLP layers, below 0 (the loss amplified) at {counts['attn'][1]} "
          f"and {counts['mlp'][1]} (of {len(stats['attn']['regression'])} each; an interval above "
          f"0 is not the headline's rule for a clear effect){best_text}.")


def _compensation_parts(summary) -> str:
  stats = summary["per_layer"]
  attn, mlp = (_values(stats, "attn", name) for name in ("regression_attn", "regression_mlp"))
  both = np.flatnonzero(np.isfinite(attn) & np.isfinite(mlp))
  if not len(both):
    return "No attention ablation has both attention and MLP components downstream to split."
  names = [f"attn {l}" for l in both]
  more_mlp = int((mlp[both] > attn[both]).sum())
  return (f"Across-prompt slopes on DE lost, per ablated attention layer: the attention part "
          f"runs {_extremes(attn[both], names)}, the MLP part {_extremes(mlp[both], names)}; the "
          f"MLP part's slope is the larger at {more_mlp} of {len(both)} layers (the deepest: "
          f"{'MLP' if mlp[both[-1]] > attn[both[-1]] else 'attention'}).")


def _localisation(summary) -> str:
  head = summary["headline"]
  return (f"On average {number(head.get('localisation_80'), signed=False)} of "
          f"{number(head.get('downstream_components'), signed=False)} downstream components "
          f"carry 80% of "
          f"an ablation's summed |dDE|.")


def _response_heatmap(summary) -> str:
  largest = summary["headline"].get("largest_response")
  if not largest:
    return "No ablation changes another component's DE."
  moves = "a rise" if largest["dde"] > 0 else "a fall"
  return (f"The mean response largest in size is {largest['ablated']} -> {largest['responder']}, "
          f"{moves} (dDE {number(largest['dde'])}); entries above the diagonal only, by "
          f"construction; colours saturate at the {COLOUR_PERCENTILE:g}th percentile of |dDE| "
          f"(arrows: beyond it).")


def _late_mlp_erasure(summary) -> str:
  head = summary["headline"]
  ablated, late = head.get("ablated_component"), head.get("late_mlp_erasure", [])
  if not late:
    return "No late MLP to show."
  erasing = [e for e in late if e["intact"] is not None and e["intact"] < 0]
  change = lambda e: ("" if e["ablated"] is None else ", erasing less"
                      if e["ablated"] > e["intact"] else ", erasing as much or more")
  listed = "; ".join(f"{e['component']}: {number(e['intact'])} intact, {number(e['ablated'])} "
                     f"with {ablated} ablated{change(e)}" for e in erasing)
  others = ", ".join(f"{e['component']} ({number(e['intact'])})" for e in late
                     if e not in erasing)
  verb = "lowers" if len(erasing) == 1 else "lower"
  return (f"{len(erasing)} of the last {len(late)} MLPs {verb} the scored logit on average "
          f"(erasure){': ' + listed if erasing else ''}"
          f"{'; not erasing: ' + others if others else ''}; bars: means over prompts with 95% "
          f"cluster-bootstrap intervals.")


def _reading(slope, band) -> str:
  """What a slope and its interval say about repair."""
  low, high = band if band and None not in band else (None, None)
  if slope is None:
    return "undefined"
  if low is None:
    return f"{number(slope)} (no interval)"
  if high < 0:
    return "negative: the later layers deepen the loss instead of repairing it"
  if low > 1:
    return "above 1: the later layers over-compensate"
  if low > 0:
    return f"partial repair, {percent(slope)} of the lost DE restored"
  return "no clear repair: the interval includes 0"


def verdict(head: Mapping[str, Any]) -> str:
  """The headline in words: repair at the middle attention layers, with and without the
  final norm, and how many of them show an attention (Hydra) part clearly above 0."""
  entries = head.get("middle_attention_slopes") or []
  if not entries:
    return "No middle attention layer to read the repair from."
  key, norm = "fraction_restored_middle_attention", "fraction_restored_with_norm_middle_attention"
  mean = lambda name: slope_text(dict(slope=head.get(name), slope_ci=head.get(name + "_ci")))
  hydra = sum(1 for e in entries if (e.get("attn_slope_ci") or [None])[0] is not None
              and e["attn_slope_ci"][0] > 0)
  return (f"At the middle attention layers {head.get('middle_attention_layers')} the mean slope "
          f"of CE on DE lost is {mean(key)}: {_reading(head.get(key), head.get(key + '_ci'))} "
          f"(paper: about 0.7). Counting the final norm's remainder it is {mean(norm)}. The "
          f"attention part alone (the Hydra effect proper) is clearly above 0 at {hydra} of "
          f"{len(entries)} of these layers.")


SENTENCES: dict[str, Callable[[Mapping[str, Any]], str]] = {
    "intact_vs_ablated": _intact_vs_ablated, "downstream_response": _downstream_response,
    "de_vs_te": _de_vs_te, "compensation_fits": _compensation_fits,
    "slopes_by_layer": _slopes_by_layer, "compensation_parts": _compensation_parts,
    "localisation": _localisation, "response_heatmap": _response_heatmap,
    "late_mlp_erasure": _late_mlp_erasure,
}


def captions(summary: Mapping[str, Any]) -> dict[str, str]:
  """Figure name -> 'This run: ... Paper: ...'."""
  return {name: f"**This run**: {sentence(summary)} **Paper**: {PAPER[name]}."
          for name, sentence in SENTENCES.items()}
