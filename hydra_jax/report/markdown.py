"""report.md: the summary of a sweep as a results section that reads on its own.

`render(summary, figure_paths)` lays out summary.json (see `report.summary`): how to
read it, what was run (with the sweep's options), the headline - the fraction restored
per layer as a figure, a table of a few rows and the rule's verdict (`headline_text`),
then the dose-response check - each figure with a sentence on this run and the paper's
finding (`captions`), and an appendix of per-layer tables and the paper comparison. Its
length does not grow with the depth except in the appendix.
"""

from __future__ import annotations

from typing import Any, Mapping

from hydra_jax import provenance
from hydra_jax.report import captions as report_captions
from hydra_jax.report import headline_text
from hydra_jax.report.captions import slope_text
from hydra_jax.report.formatting import number, percent

HEADLINE_FIGURE = "restored_attn"

HOW_TO_READ = [
    "## How to read this", "",
    "- Each attention or MLP output (a *component*) is ablated in turn at the last prompt "
    "position, once per resample source, and the model is re-run. The *direct effect* (DE) "
    "of a component is what it adds to the scored token's logit through the unembedding; "
    "*DE lost* is how much of it the ablation removes; TE is the change of the logit itself.",
    "- If the model did not react, the logit would fall by the DE lost. Later components "
    "that change their own DE make up the difference: that is the *compensation* (CE), "
    "split into later attention layers (the Hydra effect) and later MLPs (reduced erasure). "
    "The rest of the difference comes from the final norm's scale (*norm remainder*).",
    "- *Fraction restored*, three ways. The **within-prompt slope** of CE on DE lost compares "
    "the sources of the same prompt (prompt fixed effects): the same component in the same "
    "context loses different amounts, so it is the causal fraction restored. The "
    "**across-prompt slope** (the paper's figure 7) compares prompts: prompts that lose more "
    "get more back; it can differ in sign from the **ratio of means** (mean CE / mean DE "
    "lost, shown only where the DE lost is well away from zero).",
    "- *Sigma*: DE is read with the final norm's factor fixed. With the clean run's factor "
    "(clean σ) the norm's rescaling after an ablation falls into the norm remainder; with "
    "each ablated run's own factor (own σ) its downstream share counts as compensation. "
    "Both are shown.",
    "- [Brackets] are 95% intervals of a cluster bootstrap: prompts that share a subject are "
    "resampled together, each with all its sources. *Clear* means the rule stated in the "
    "headline holds (not merely an interval excluding 0).", ""]

TABLE = (("direct_effect", "DE"), ("total_effect", "TE"), ("lost_direct_effect", "DE lost"),
         ("compensation_attn", "CE attn"), ("compensation_mlp", "CE mlp"),
         ("norm_remainder", "norm rem."))
SLOPES = (("regression", "slope CE"), ("regression_attn", "slope attn part"),
          ("regression_mlp", "slope MLP part"), ("regression_norm", "slope norm rem."))
TAIL = (("ratio_of_means_restored", "ratio of means", True),      # (name, title, signed)
        ("de_te_correlation", "r(DE,TE)", True), ("direct_exceeds_drop", "DE lost > -TE", False),
        ("localisation_80", "k80", False))


def _table(stats: Mapping[str, list]) -> list[str]:
  header = (["layer"] + [title for _, title in TABLE] + [title for _, title in SLOPES]
            + ["R²"] + [title for _, title, _ in TAIL])
  lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
  for layer in range(len(stats["direct_effect"])):
    row = [str(layer)] + [number(stats[name][layer]) for name, _ in TABLE]
    row += [slope_text(stats[name][layer]) for name, _ in SLOPES]
    row += [number(stats["regression"][layer]["r2"], signed=False)]
    row += [number(stats[name][layer], signed) for name, _, signed in TAIL]
    lines.append("| " + " | ".join(row) + " |")
  return lines


def _options_line(summary: Mapping[str, Any]) -> list[str]:
  options, boot = summary.get("sweep_options") or {}, summary.get("bootstrap") or {}
  if not options:
    return []
  draw = (summary.get("config") or {}).get("sweep") or {}       # the job's draw of sources
  kind, count = options["kind"], draw.get("num_sources", options["noise_draws"])
  drawn = ("from the prompt's relation" if draw.get("sources") == "same_relation"
           else "uniformly from the prompts")
  replaced = {"resample": f"resample ablation, {count} sources per prompt drawn {drawn}",
              "noise": f"noise ablation (input embeddings + N(0, ({options['noise_scale']} "
                       f"x their std)^2)), {count} draws per prompt"}.get(kind, f"{kind} ablation")
  scale = ("the ablated run's own final-norm scale" if options["response_scale"] == "ablated"
           else "the clean run's final-norm scale")
  return [f"- **Sweep**: {replaced} (seed {draw.get('seed', options['noise_seed'])}), of every "
          f"attention and MLP output at the final position, {options['path']} path; responses "
          f"read with {scale}; final scale {'frozen' if options['freeze_final_scale'] else 'free'} "
          f"in the ablated runs; consistency checks {'on' if options['check'] else 'off'}; "
          f"full per-source response matrices kept for {options['keep_sources']} prompts",
          f"- **Statistics**: {boot.get('resamples', '?')} bootstrap resamples of "
          f"{boot.get('num_clusters', '?')} clusters ({_cluster_words(boot)}; seed "
          f"{boot.get('seed', '?')}), {percent(boot.get('level', 0.95))} percentile "
          "intervals"]


def _cluster_words(boot: Mapping[str, Any]) -> str:
  return ("prompts sharing a subject drawn together, each with all its sources"
          if boot.get("clusters") == "subject" else "each prompt with all its sources")


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
    lines.append(f"- **Time**: {number(timing.get('wall_seconds'), signed=False)} s wall on "
                 f"{timing.get('devices', '?')} (mesh {timing.get('mesh', '?')}), "
                 f"{number(timing.get('ablated_forwards'), signed=False)} ablated forwards at "
                 f"{number(timing.get('ablated_forwards_per_second'), signed=False)} per second")
  return lines + provenance.line(summary.get("provenance"))


def _ranked(entries: list[str], top) -> str:
  """A ranked list of 'name (value)', led by what its sign says when the top is not a rise."""
  if not entries:
    return "n/a"
  lead = "" if top is not None and top > 0 else "none positive; the least negative first: "
  return lead + ", ".join(entries)


def _paper_lines(head: Mapping[str, Any]) -> list[str]:
  """The paper's other findings beside this run's (appendix): responders, erasure, coupling."""
  compensating = head.get("largest_attention_compensation", [])
  largest = _ranked([f"{h['ablated']} ({number(h['compensation_attn'])})" for h in compensating],
                    compensating[0]["compensation_attn"] if compensating else None)
  strongest = head.get("strongest_attention_responder") or {}
  responders = ", ".join(f"{a} -> {r['responder']} (dDE {number(r['dde'])}"
                         f"{'' if r['dde'] > 0 else ': none rises, falls least'})"
                         for a, r in strongest.items())
  erasure = ", ".join(f"{e['component']}: {number(e['intact'])} intact, {number(e['ablated'])} "
                      f"with {head.get('ablated_component')} ablated"
                      for e in head.get("late_mlp_erasure", []))
  coupled = (f"{number(head.get('localisation_80'), signed=False)} of "
             f"{number(head.get('downstream_components'), signed=False)} downstream")
  return [
      "| measure | this run | paper (Chinchilla 7B) |", "|---|---|---|",
      f"| largest attention compensation (attention ablations ranked by mean CE attn) | "
      f"{largest} | a downstream attention layer raises its DE |",
      f"| strongest responding attention layer (the later one whose DE rises most) | "
      f"{responders or 'n/a'} | layer 20 |",
      f"| late-MLP direct effect (mean; negative: erasure) | {erasure or 'n/a'} | late MLPs lower "
      "the logit, less after an ablation |",
      f"| components carrying 80% of a response | {coupled} | few (loosely coupled) |"]


def _headline(summary: Mapping[str, Any], figure_paths: Mapping[str, str]) -> list[str]:
  head = summary.get("headline") or {}
  restored, num_layers = head.get("restored"), (summary.get("model") or {}).get("num_layers")
  num_layers = num_layers or len((summary.get("per_layer") or {}).get("attn", {}).get(
      "direct_effect", []))
  if not restored:
    return ["## Headline", "", report_captions.verdict(head), "",
            "(no per-source arrays in these results: the within-prompt estimator, both sigma "
            "readings and the rule need a sweep made with this version)", ""]
  lines = ["## Headline", "", headline_text.verdict(restored, num_layers), ""]
  if HEADLINE_FIGURE in figure_paths:
    lines += [f"![{HEADLINE_FIGURE}]({figure_paths[HEADLINE_FIGURE]})", ""]
  lines += headline_text.table(restored, num_layers) + [""]
  return lines + headline_text.dose_lines(summary.get("dose_response")) + [""]


def _appendix(summary: Mapping[str, Any]) -> list[str]:
  stats, head = summary.get("per_layer") or {}, summary.get("headline") or {}
  lines = ["## Appendix: per layer", ""]
  for kind, title in (("attn", "attention"), ("mlp", "MLP")):
    entries = (stats.get(kind) or {}).get("restored")
    for sigma, name in (("clean", "the clean final sigma"), ("ablated", "each run's own sigma")):
      if entries:
        lines += [f"### Ablating the {title} output of each layer: fraction restored, "
                  f"{name}", ""] + headline_text.layer_table(entries, sigma) + [""]
  for kind, title in (("attn", "attention"), ("mlp", "MLP")):
    if stats.get(kind):
      lines += [f"### Ablating the {title} output of each layer: means over prompts and "
                "across-prompt slopes", ""] + _table(stats[kind]) + [""]
  return lines + ["### The paper's other findings", ""] + _paper_lines(head) + [""]


def render(summary: Mapping[str, Any], figure_paths: Mapping[str, str]) -> str:
  lines = ["# Hydra effect sweep", "",
           "Every attention and MLP output is ablated at the final position of every kept "
           "prompt; the scored token is the clean run's top prediction.", ""]
  lines += HOW_TO_READ + ["## What was run", ""] + _run_lines(summary) + [""]
  lines += _headline(summary, figure_paths)
  lines += ["## Results, figure by figure", ""]
  texts = report_captions.captions(summary)
  for name, path in figure_paths.items():
    if name != HEADLINE_FIGURE:
      lines += [f"![{name}]({path})", "", texts.get(name, name), ""]
  return "\n".join(lines + _appendix(summary)) + "\n"
