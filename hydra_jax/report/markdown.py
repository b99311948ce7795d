"""report.md: the summary of a sweep as a Markdown page that reads on its own.

`render(summary, figure_paths)` lays out summary.json (see `report.summary`): what
was run, the headline numbers beside the paper's, the per-layer table of each
ablated component kind, and the figures (paths relative to the workdir).
"""

from __future__ import annotations

import math
from typing import Any, Mapping

PAPER = {  # Chinchilla 7B, McGrath et al. 2023 (METHOD.md)
    "fraction_restored": "about 0.7 at middle layers",
    "slope": "below 1 past layer 13",
    "responder": "a downstream attention layer (layer 20 in the examples) raises its impact",
    "erasure": "late MLPs lower the scored logit, and less so after an ablation",
}

FIGURE_CAPTIONS = {
    "intact_vs_ablated": "Direct effect of every layer, intact and with the chosen component "
                         "resample-ablated (paper figs 1 and 3).",
    "de_vs_te": "Unembedding-based impact (direct effect lost) against ablation-based impact "
                "(logit drop) per layer and per prompt (paper fig 2).",
    "compensation_fits": "Compensatory effect against the direct effect lost, with the "
                         "least-squares line, one point per prompt (paper fig 7).",
    "response_heatmap": "Mean change of each component's direct effect (columns) when one "
                        "component is ablated (rows); upstream entries are zero by construction.",
    "late_mlp_erasure": "Direct effect of the last MLP layers intact and after ablations "
                        "(erasure shrinks when it moves towards zero).",
}

COLUMNS = (("direct_effect", "DE"), ("total_effect", "TE"), ("lost_direct_effect", "DE lost"),
           ("compensation_attn", "CE attn"), ("compensation_mlp", "CE mlp"),
           ("norm_remainder", "norm rem."), ("fraction_restored", "restored"),
           ("fraction_restored_with_norm", "restored incl. norm"))


def _number(value) -> str:
  if value is None or (isinstance(value, float) and not math.isfinite(value)):
    return "n/a"
  if isinstance(value, int):
    return f"{value:,}"
  if abs(value) >= 1000:
    return f"{value:,.0f}"
  return f"{value:.3g}"


def _table(stats: Mapping[str, list]) -> list[str]:
  header = ["layer"] + [title for _, title in COLUMNS] + ["slope", "intercept", "R²", "r(DE,TE)"]
  lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
  for layer in range(len(stats["direct_effect"])):
    fit = stats["regression"][layer]
    row = [str(layer)] + [_number(stats[name][layer]) for name, _ in COLUMNS]
    row += [_number(fit["slope"]), _number(fit["intercept"]), _number(fit["r2"]),
            _number(stats["de_te_correlation"][layer])]
    lines.append("| " + " | ".join(row) + " |")
  return lines


def _run_lines(summary: Mapping[str, Any]) -> list[str]:
  model, prompts, timing = (summary.get(k) or {} for k in ("model", "prompts", "timing"))
  config = summary.get("config") or {}
  sweep = config.get("sweep") or {}
  lines = []
  if model:
    lines.append(f"- **Model**: {model.get('name', '?')} ({model.get('source', '?')}), "
                 f"{_number(model.get('num_params'))} parameters, {model.get('num_layers', '?')} "
                 f"layers, d_model {model.get('d_model', '?')}, {model.get('position', '?')} "
                 f"positions, {model.get('norm', '?')} norm")
  if prompts:
    dropped = prompts.get("dropped") or {}
    why = ", ".join(f"{count} {reason}" for reason, count in dropped.items()) or "none"
    lines.append(f"- **Prompts**: {prompts.get('dataset', '?')}: {prompts.get('total', '?')} in "
                 f"total, {prompts.get('kept', summary.get('num_prompts'))} kept; dropped: {why}")
  if sweep:
    sources = (f", {sweep.get('num_sources', '?')} sources per prompt (seed {sweep.get('seed', '?')})"
               if sweep.get("kind") == "resample" else "")
    lines.append(f"- **Sweep**: {sweep.get('kind', '?')} ablation of every attention and MLP "
                 f"output at the final position{sources}, {sweep.get('path', '?')} path")
  if timing:
    lines.append(f"- **Time**: {_number(timing.get('wall_seconds'))} s wall on "
                 f"{timing.get('devices', '?')} (mesh {timing.get('mesh', '?')}), "
                 f"{_number(timing.get('ablated_forwards'))} ablated forwards at "
                 f"{_number(timing.get('ablated_forwards_per_second'))} per second"
                 + (f" ({_number(timing['ablated_forwards_per_second_after_compile'])} after the "
                    "compile)" if timing.get("ablated_forwards_per_second_after_compile") else ""))
  return lines


def _headline_lines(headline: Mapping[str, Any]) -> list[str]:
  largest = ", ".join(f"{h['ablated']} ({_number(h['compensation_attn'])})"
                      for h in headline.get("largest_attention_compensation", []))
  responders = ", ".join(f"{a} -> {r['responder']} (dDE {_number(r['dde'])})" for a, r in
                         (headline.get("strongest_attention_responder") or {}).items())
  erasure = ", ".join(f"{e['component']}: {_number(e['intact'])} intact, {_number(e['ablated'])} "
                      f"with {headline.get('ablated_component')} ablated"
                      for e in headline.get("late_mlp_erasure", []))
  layers = headline.get("middle_attention_layers")
  return [
      "| measure | this run | paper (Chinchilla 7B) |", "|---|---|---|",
      f"| fraction of lost logit restored, attention layers {layers} | "
      f"{_number(headline.get('fraction_restored_middle_attention'))} | {PAPER['fraction_restored']} |",
      f"| the same, counting the final norm's remainder | "
      f"{_number(headline.get('fraction_restored_with_norm_middle_attention'))} | "
      "n/a (Rushing & Nanda 2024: up to ~30% of self-repair) |",
      f"| mean regression slope there | {_number(headline.get('mean_slope_middle_attention'))} | "
      f"{PAPER['slope']} |",
      f"| largest attention compensation (ablated: CE attn) | {largest} | {PAPER['responder']} |",
      f"| strongest responding attention layer | {responders or 'n/a'} | layer 20 |",
      f"| late-MLP direct effect | {erasure} | {PAPER['erasure']} |",
  ]


def render(summary: Mapping[str, Any], figure_paths: Mapping[str, str]) -> str:
  lines = ["# Hydra effect sweep", "",
           "Every attention and MLP output is ablated at the final position of every kept "
           "prompt; the scored token is the clean run's top prediction. DE: direct effect "
           "(unembedding with the final norm's scale frozen), TE: total effect on the "
           "centred logit, CE: compensatory effect of the downstream components, split "
           "into attention (the Hydra effect) and MLP (reduced erasure).", ""]
  lines += _run_lines(summary) + ["", "## Headline", ""]
  lines += _headline_lines(summary.get("headline") or {})
  for kind, title in (("attn", "attention"), ("mlp", "MLP")):
    stats = (summary.get("per_layer") or {}).get(kind)
    if stats:
      lines += ["", f"## Ablating the {title} output of each layer (means over prompts)", ""]
      lines += _table(stats)
  lines += ["", "## Figures", ""]
  for name, path in figure_paths.items():
    lines += [f"![{name}]({path})", "", f"*{FIGURE_CAPTIONS.get(name, name)}*", ""]
  return "\n".join(lines) + "\n"
