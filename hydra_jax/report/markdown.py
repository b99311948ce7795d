"""report.md: the summary of a sweep as a results section that reads on its own.

`render(summary, figure_paths)` lays out summary.json (see `report.summary`): how to
read it, what was run (with the sweep's options), the headline (middle-layer slopes with
their bootstrap intervals first) beside the paper's numbers, each figure with a sentence
on this run and the paper's finding (`captions`), and the per-layer tables.
"""

from __future__ import annotations

from typing import Any, Mapping

from hydra_jax.report import captions as report_captions
from hydra_jax.report.captions import number, part_slope, slope_text

HOW_TO_READ = [
    "## How to read this", "",
    "- Each attention or MLP output (a *component*) is ablated in turn at the last prompt "
    "position and the model is re-run. The *direct effect* (DE) of a component is what it "
    "adds to the scored token's logit through the unembedding; *DE lost* is how much of it "
    "the ablation removes; TE is the change of the logit itself.",
    "- If the model did not react, the logit would fall by the DE lost. Later components "
    "that change their own DE make up the difference: that is the *compensation* (CE), "
    "split into later attention layers (the Hydra effect) and later MLPs (reduced erasure). "
    "The rest of the difference comes from the final norm's scale (*norm remainder*).",
    "- The paper reads the *fraction restored* as the slope of CE on DE lost across prompts: "
    "1 is full repair, 0 none, negative means the later layers deepen the loss. Numbers in "
    "[brackets] are 95% bootstrap intervals over prompts; an interval that excludes 0 is a "
    "clear effect, one that straddles 0 is not.",
    "- The ratio of means (mean CE / mean DE lost) is shown only where the mean DE lost is "
    "well away from zero (positive, at least 3 standard errors and at least a quarter of "
    "|mean TE|); elsewhere it is n/a.", ""]

TABLE = (("direct_effect", "DE"), ("total_effect", "TE"), ("lost_direct_effect", "DE lost"),
         ("compensation_attn", "CE attn"), ("compensation_mlp", "CE mlp"),
         ("norm_remainder", "norm rem."))
SLOPES = (("regression", "slope CE"), ("regression_attn", "slope attn part"),
          ("regression_mlp", "slope MLP part"), ("regression_norm", "slope norm rem."))
TAIL = (("ratio_of_means_restored", "ratio of means"), ("de_te_correlation", "r(DE,TE)"),
        ("direct_exceeds_drop", "DE lost > -TE"), ("localisation_80", "k80"))


def _table(stats: Mapping[str, list]) -> list[str]:
  header = (["layer"] + [title for _, title in TABLE] + [title for _, title in SLOPES]
            + ["R²"] + [title for _, title in TAIL])
  lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
  for layer in range(len(stats["direct_effect"])):
    row = [str(layer)] + [number(stats[name][layer]) for name, _ in TABLE]
    row += [slope_text(stats[name][layer]) for name, _ in SLOPES]
    row += [number(stats["regression"][layer]["r2"], 2)]
    row += [number(stats[name][layer]) for name, _ in TAIL]
    lines.append("| " + " | ".join(row) + " |")
  return lines


def _options_line(summary: Mapping[str, Any]) -> list[str]:
  options, boot = summary.get("sweep_options") or {}, summary.get("bootstrap") or {}
  if not options:
    return []
  kind, count = options.get("kind", "?"), options.get("num_sources")
  drawn = ("from the prompt's relation" if options.get("sources") == "same_relation"
           else "uniformly from the prompts")
  replaced = {"resample": f"resample ablation, {count} sources per prompt drawn {drawn}",
              "noise": f"noise ablation (input embeddings + N(0, ({options.get('noise_scale')} "
                       f"x their std)^2)), {count} draws per prompt"}.get(kind, f"{kind} ablation")
  scale = ("the ablated run's own final-norm scale" if options.get("response_scale") == "ablated"
           else "the clean run's final-norm scale")
  return [f"- **Sweep**: {replaced} (seed {options.get('seed', '?')}), of every attention and "
          f"MLP output at the final position, {options.get('path', '?')} path; responses read "
          f"with {scale}; final scale {'frozen' if options.get('freeze_final_scale') else 'free'} "
          f"in the ablated runs; consistency checks {'on' if options.get('check') else 'off'}; "
          f"per-source arrays kept for {options.get('keep_sources', 0)} prompts",
          f"- **Statistics**: {boot.get('resamples', '?')} bootstrap resamples of the prompts "
          f"(seed {boot.get('seed', '?')}), {number(100 * boot.get('level', 0.95), 2)}% "
          "percentile intervals"]


def _run_lines(summary: Mapping[str, Any]) -> list[str]:
  model, prompts, timing = (summary.get(k) or {} for k in ("model", "prompts", "timing"))
  lines = []
  if model:
    lines.append(f"- **Model**: {model.get('name', '?')} ({model.get('source', '?')}), "
                 f"{number(model.get('num_params'))} parameters, {model.get('num_layers', '?')} "
                 f"layers, d_model {model.get('d_model', '?')}, {model.get('position', '?')} "
                 f"positions, {model.get('norm', '?')} norm")
  if prompts:
    dropped = prompts.get("dropped") or {}
    why = ", ".join(f"{count} {reason}" for reason, count in dropped.items()) or "none"
    relations = (f", {summary['num_relations']} relations" if summary.get("num_relations")
                 else "")
    lines.append(f"- **Prompts**: {prompts.get('dataset', '?')}: {prompts.get('total', '?')} in "
                 f"total, {prompts.get('kept', summary.get('num_prompts'))} kept{relations}; "
                 f"dropped: {why}")
  lines += _options_line(summary)
  if timing:
    lines.append(f"- **Time**: {number(timing.get('wall_seconds'))} s wall on "
                 f"{timing.get('devices', '?')} (mesh {timing.get('mesh', '?')}), "
                 f"{number(timing.get('ablated_forwards'))} ablated forwards at "
                 f"{number(timing.get('ablated_forwards_per_second'))} per second")
  return lines


def _headline_lines(head: Mapping[str, Any]) -> list[str]:
  per_layer = "; ".join(f"attn {e['layer']}: {part_slope(e, 'total')} (attention part "
                        f"{part_slope(e, 'attn')}, MLP part {part_slope(e, 'mlp')})"
                        for e in head.get("middle_attention_slopes", []))
  mean = lambda key: slope_text(dict(slope=head.get(key), slope_ci=head.get(key + "_ci")))
  largest = ", ".join(f"{h['ablated']} ({number(h['compensation_attn'])})"
                      for h in head.get("largest_attention_compensation", []))
  responders = ", ".join(f"{a} -> {r['responder']} (dDE {number(r['dde'])})"
                         for a, r in (head.get("strongest_attention_responder") or {}).items())
  erasure = ", ".join(f"{e['component']}: {number(e['intact'])} intact, {number(e['ablated'])} "
                      f"with {head.get('ablated_component')} ablated"
                      for e in head.get("late_mlp_erasure", []))
  layers = head.get("middle_attention_layers")
  return [
      "| measure | this run | paper (Chinchilla 7B) |", "|---|---|---|",
      f"| slope of CE on DE lost, middle attention layers | {per_layer or 'n/a'} | about 0.7 |",
      f"| fraction restored (mean of those slopes), layers {layers} | "
      f"{mean('fraction_restored_middle_attention')} | "
      "about 0.7 at middle layers, slope below 1 past layer 13 |",
      f"| the same counting the final norm's remainder | "
      f"{mean('fraction_restored_with_norm_middle_attention')} | n/a (Rushing & Nanda 2024: "
      "up to ~30% of self-repair is the norm's) |",
      f"| ratio of means there (guarded) | "
      f"{number(head.get('ratio_of_means_middle_attention'))} | n/a |",
      f"| largest attention compensation (attention ablations: CE attn) | {largest or 'n/a'} | "
      "a downstream attention layer raises its DE |",
      f"| strongest responding attention layer | {responders or 'n/a'} | layer 20 |",
      f"| late-MLP direct effect | {erasure or 'n/a'} | late MLPs lower the logit, less after an "
      "ablation |",
      f"| components carrying 80% of a response | {number(head.get('localisation_80'), 2)} of "
      f"{number(head.get('downstream_components'), 2)} downstream | few (loosely coupled) |"]


def render(summary: Mapping[str, Any], figure_paths: Mapping[str, str]) -> str:
  lines = ["# Hydra effect sweep", "",
           "Every attention and MLP output is ablated at the final position of every kept "
           "prompt; the scored token is the clean run's top prediction.", ""]
  lines += HOW_TO_READ + ["## What was run", ""] + _run_lines(summary)
  head = summary.get("headline") or {}
  lines += ["", "## Headline", "", report_captions.verdict(head), ""] + _headline_lines(head)
  lines += ["", "## Results, figure by figure", ""]
  texts = report_captions.captions(summary)
  for name, path in figure_paths.items():
    lines += [f"![{name}]({path})", "", texts.get(name, name), ""]
  for kind, title in (("attn", "attention"), ("mlp", "MLP")):
    stats = (summary.get("per_layer") or {}).get(kind)
    if stats:
      lines += ["", f"## Ablating the {title} output of each layer (over prompts)", ""]
      lines += _table(stats)
  return "\n".join(lines) + "\n"
