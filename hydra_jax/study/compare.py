"""The study's comparison: study.json, study.md and study.png from every run's measures.

    write(workdir, name, entries) -> the content of study.json

`entries` holds one dict per run: run, arm, seed, training (build.TRAINING_FILE's
record) and variants {variant: statistics.measures(...)}. study.json holds them and,
per (arm, variant) over its seeds, the mean and standard deviation of every slope per
ablated layer, how many seeds have the attention slope's CI above 0, and the seed-level
tests at the middle attention layers (`seeds.seed_tests`: t intervals over seeds, Holm
over layers and parts). study.md sets the arms side by side at every middle attention
layer (fixed in advance) with the within-prompt slopes and ratios of means and the rule
of `report.clear` (sweeps older than the per-source arrays show the across-prompt slopes),
then the runs at the middle attention layer whose slope has the highest lower CI bound
("best": for finding the strongest pair, not for the headline), then the attention slopes
of every layer, then the seed aggregates and tests, then the mediation check. study.png:
attention-part and total slopes with their CIs per ablated attention layer, one line per
(run, variant).

Shapes: L layers.
"""

from __future__ import annotations

import json
import math
import os
from typing import Any, Optional

import matplotlib.pyplot as plt
import numpy as np

from hydra_jax import store
from hydra_jax.report import figures as report_figures   # matplotlib on the Agg backend
from hydra_jax.report import summary as report
from hydra_jax.report.clear import RULE as clear_rule
from hydra_jax.study import seeds as seed_stats

JSON_FILE, MARKDOWN_FILE, FIGURE_FILE = "study.json", "study.md", "study.png"
SLOPES = ("attn", "mlp", "total", "norm")


def slope_keys(layer_measures: dict[str, Any], part: str) -> tuple[str, str]:
  """(slope, interval) keys of a part: the within-prompt ones where the sweep has them,
  else the across-prompt ones (sweeps older than the per-source arrays)."""
  if f"within_{part}" in layer_measures:
    return f"within_{part}", f"within_ci_{part}"
  return f"slope_{part}", f"ci_{part}"


def tested_layers(measures: dict[str, Any]) -> list[int]:
  """The middle attention layers with a later attention layer, fixed in advance."""
  return [l for l in measures["middle_layers"] if l < measures["num_layers"] - 1]


def best_middle_layer(measures: dict[str, Any]) -> int:
  """The middle attention layer with a later attention layer (so a Hydra effect can exist)
  whose attention slope has the highest lower CI bound."""
  attn = measures["per_layer"]["attn"]
  layers, (_, ci) = tested_layers(measures) or [0], slope_keys(attn, "attn")
  lower = [(attn[ci][l][0] if attn[ci][l][0] is not None else -math.inf) for l in layers]
  return layers[int(np.argmax(lower))]


def best_run(entries: list[dict[str, Any]], variant: str = "resample") -> Optional[str]:
  """The run whose best middle attention layer has the highest lower CI bound (`variant`);
  None when no run has that sweep."""
  def lower(entry):
    m = entry["variants"].get(variant)
    ci = slope_keys(m["per_layer"]["attn"], "attn")[1] if m else None
    bound = m["per_layer"]["attn"][ci][best_middle_layer(m)][0] if m else None
    return -math.inf if bound is None else bound
  swept = [entry for entry in entries if variant in entry["variants"]]
  return max(swept, key=lower)["run"] if swept else None


def aggregate(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
  """Per (arm, variant): mean and sd over seeds of each attention-layer slope [L]."""
  groups: dict[tuple, list] = {}
  for entry in entries:
    for variant, measures in entry["variants"].items():
      groups.setdefault((entry["arm"], variant), []).append(measures)
  rows = []
  for (arm, variant), members in groups.items():
    layers = [m["per_layer"]["attn"] for m in members]
    row = dict(arm=arm, variant=variant, seeds=len(layers),
               seed_tests=seed_stats.seed_tests(tested_layers(members[0]), layers)
               if len(layers) > 1 else [])
    for part in SLOPES:
      values = np.array([[np.nan if v is None else v for v in m[f"slope_{part}"]] for m in layers])
      row[f"slope_{part}_mean"] = np.nanmean(values, 0).tolist() if values.size else []
      row[f"slope_{part}_sd"] = (np.nanstd(values, 0, ddof=1).tolist() if len(layers) > 1
                                 else [None] * values.shape[1])
    row["seeds_attn_ci_above_0"] = np.sum([[ci[0] is not None and ci[0] > 0 for ci in m["ci_attn"]]
                                           for m in layers], 0).tolist()
    rows.append(row)
  return report.json_ready(rows)


def _num(value, digits=2) -> str:
  return "n/a" if value is None else f"{value:+.{digits}f}"


def _with_ci(value, ci) -> str:
  return f"{_num(value)} [{_num(ci[0])}, {_num(ci[1])}]"


def _run_rows(entries) -> list[str]:
  lines = ["| run | variant | facts answered | prompts | best middle attn layer | attention slope "
           "[95% CI] | MLP slope [CI] | total slope [CI] | R² total | fraction restored | "
           "norm share | DE-TE r | late-MLP DE (change) |", "|" + " --- |" * 13]
  for entry in entries:
    for variant, m in entry["variants"].items():
      l = best_middle_layer(m)
      attn = m["per_layer"]["attn"]
      lines.append(
          f"| {entry['run']} | {variant} | {entry['training']['fact_accuracy']:.3f} | "
          f"{m['num_prompts']} | {l} | {_with_ci(attn['slope_attn'][l], attn['ci_attn'][l])} | "
          f"{_with_ci(attn['slope_mlp'][l], attn['ci_mlp'][l])} | "
          f"{_with_ci(attn['slope_total'][l], attn['ci_total'][l])} | {_num(attn['r2_total'][l])} | "
          f"{_num(attn['fraction_restored'][l])} | {_num(attn['norm_share'][l])} | "
          f"{_num(attn['de_te_correlation'][l])} | {_num(m['late_mlp_direct_effect'])} "
          f"({_num(attn['late_mlp_change'][l])}) |")
  return lines


def _layer_rows(entries) -> list[str]:
  num_layers = max((m["num_layers"] for e in entries for m in e["variants"].values()), default=0)
  lines = ["| run | variant | " + " | ".join(f"attn {l}" for l in range(num_layers)) + " |",
           "|" + " --- |" * (num_layers + 2)]
  for entry in entries:
    for variant, m in entry["variants"].items():
      attn = m["per_layer"]["attn"]
      key, ci = slope_keys(attn, "attn")
      cells = [_with_ci(s, c) for s, c in zip(attn[key], attn[ci])]
      cells[-1] = "— (no later attention)"
      lines.append(f"| {entry['run']} | {variant} | " + " | ".join(cells) + " |")
  return lines


def _aggregate_rows(rows) -> list[str]:
  lines = ["| arm | variant | seeds | attention slope per layer: mean ± sd (seeds with CI > 0) |",
           "| --- | --- | --- | --- |"]
  for row in rows:
    cells = [f"{_num(m)} ± {'n/a' if s is None else f'{s:.2f}'} ({k})" for m, s, k in zip(
        row["slope_attn_mean"], row["slope_attn_sd"], row["seeds_attn_ci_above_0"])]
    lines.append(f"| {row['arm']} | {row['variant']} | {row['seeds']} | " + "; ".join(cells) + " |")
  return lines


def _over_seeds(layers: list[dict[str, Any]], part: str, layer: int) -> str:
  """One seed: slope [CI] (within-prompt where swept: with the ratio of means and the rule's
  verdict); several: mean ± sd over seeds (seeds whose CI lies above 0)."""
  key, ci = slope_keys(layers[0], part)
  slopes = [m[key][layer] for m in layers]
  if len(layers) == 1:
    text = _with_ci(slopes[0], layers[0][ci][layer])
    if key.startswith("within"):
      text += f", ratio {_num(layers[0][f'ratio_{part}'][layer])}"
      text += ", clear" if layers[0][f"clear_{part}"][layer] else ""
    return text
  values = np.array([np.nan if v is None else v for v in slopes])
  above = sum(m[ci][layer][0] is not None and m[ci][layer][0] > 0 for m in layers)
  return f"{_num(float(np.nanmean(values)))} ± {np.nanstd(values, ddof=1):.2f} ({above}/{len(layers)})"


def _seed_test_rows(rows) -> list[str]:
  tests = [(row, test) for row in rows for test in row.get("seed_tests") or []]
  if not tests:
    return ["(no arm with several seeds and within-prompt slopes)"]
  lines = ["| arm | variant | attn layer | part | seeds | mean within-prompt slope [95% t CI] | "
           "p | Holm p | mean ratio of means | clear |", "|" + " --- |" * 10]
  for row, t in tests:
    lines.append(f"| {row['arm']} | {row['variant']} | {t['layer']} | {t['part']} | {t['seeds']} | "
                 f"{_with_ci(t['mean'], t['ci'])} | {_num(t['p'], 3)} | {_num(t['p_holm'], 3)} | "
                 f"{_num(t['ratio_mean'])} | {'yes' if t['clear'] else ''} |")
  return lines


def _middle_rows(entries) -> list[str]:
  """Per (arm, variant), at every middle attention layer (fixed in advance, not the best):
  facts answered and the attention-part and total slopes over the arm's seeds."""
  groups: dict[tuple, list] = {}
  for entry in entries:
    for variant, m in entry["variants"].items():
      groups.setdefault((entry["arm"], variant), []).append((entry, m))
  if not groups:
    return []
  first = next(iter(groups.values()))[0][1]
  layers = [l for l in first["middle_layers"] if l < first["num_layers"] - 1]
  lines = ["| arm | variant | seeds | facts answered | " + " | ".join(
      f"attn {l}: {part}" for l in layers for part in ("attention", "total")) + " |",
           "|" + " --- |" * (4 + 2 * len(layers))]
  for (arm, variant), members in groups.items():
    accuracy = [entry["training"]["fact_accuracy"] for entry, _ in members]
    per_layer = [m["per_layer"]["attn"] for _, m in members]
    cells = [_over_seeds(per_layer, part, l) for l in layers for part in ("attn", "total")]
    lines.append(f"| {arm} | {variant} | {len(members)} | {np.mean(accuracy):.3f} | "
                 + " | ".join(cells) + " |")
  return lines


def _error_lines(entries) -> list[str]:
  failed = [f"- {e['run']} {variant}: {message}" for e in entries
            for variant, message in e.get("errors", {}).items()]
  return ["## Sweeps that did not run", "", *failed, ""] if failed else []


def markdown(name: str, entries, rows) -> str:
  return "\n".join([
      f"# Study {name}: the Hydra effect per arm", "",
      "Slopes of each compensation part on the lost direct effect of ablating an attention "
      "layer (clean final sigma): within-prompt (prompt fixed effects, across the sources of "
      "each prompt) where the sweep kept per-source arrays, else across prompts (the "
      "paper's); [..]: 95% cluster-bootstrap CI (prompts sharing a subject resampled "
      "together). 'clear': the rule of hydra_jax.report.clear (" + clear_rule + "). "
      "'norm share': mean norm remainder / mean lost DE. Late-MLP DE: clean direct effect "
      "of the last MLPs (negative: erasure), in brackets its change under the ablation.", "",
      "## Arms at the middle attention layers", "",
      "Every middle attention layer, chosen in advance. One seed: slope [95% CI], the ratio "
      "of means and the rule's verdict; several: mean ± sd over seeds (seeds whose CI lies "
      "above 0 / seeds).", "",
      *_middle_rows(entries), "",
      "## Runs at their best middle attention layer", "",
      "The paper's estimator here: slopes across prompts, with their cluster-bootstrap CIs.", "",
      *_run_rows(entries), "",
      "## Attention-part slope per ablated attention layer", "",
      "Within-prompt where swept with per-source arrays (else across prompts), clean sigma.", "",
      *_layer_rows(entries), "",
      "## Over seeds", "", *_aggregate_rows(rows), "",
      "## Seed-level tests at the middle attention layers", "",
      "The seed is the unit: mean over training seeds of the within-prompt slope, a t "
      "interval, the two-sided p of a one-sample t-test and Holm's correction over every "
      "layer and part of the arm; clear: Holm p < 0.05, mean slope and mean ratio of means "
      "at least the rule's floor.", "", *_seed_test_rows(rows), "", *_error_lines(entries),
      f"![slopes]({FIGURE_FILE})", ""])


def figure(entries, path: str) -> None:
  """study.png: per run and variant, the across-prompt slopes of the attention part and of
  the total compensation per ablated attention layer, with their 95% intervals."""
  fig, axes = plt.subplots(1, 2, figsize=(12, 4.5), sharex=True)
  for entry in entries:
    for variant, m in entry["variants"].items():
      attn = m["per_layer"]["attn"]
      for axis, part in zip(axes, ("attn", "total")):
        slope = np.array([np.nan if v is None else v for v in attn[f"slope_{part}"]])
        ci = np.array([[np.nan if v is None else v for v in c] for c in attn[f"ci_{part}"]])
        axis.errorbar(np.arange(len(slope)), slope, yerr=np.abs(ci.T - slope), capsize=2,
                      marker="o", label=f"{entry['run']} {variant}")
  for axis, title in zip(axes, ("attention part (Hydra effect)", "total compensation")):
    axis.axhline(0, color="grey", lw=0.8)
    axis.set(title=f"slope of {title} on lost DE", xlabel="ablated attention layer")
  axes[0].legend(fontsize=6)
  report_figures.save(fig, path)      # through the store: atomic, made as the umask says


def _mediation_lines(check: Optional[dict[str, Any]]) -> list[str]:
  if check is None:
    return []
  shares = check.get("shares") or {}
  return ["## Mediation check", "",
          f"Run {check['run']}, attention layer {check['ablated_attention_layer']} ablated "
          f"(first resample source), responder attention layer "
          f"{check['responding_attention_layer']}, {check['num_prompts']} prompts; means:", "",
          "| response | heads held (0 by construction) | fed the ablated residual | direct "
          "path only | TE | TE held | TE held - TE |", "| --- | --- | --- | --- | --- | --- | --- |",
          "| " + " | ".join(_num(check.get(f"mean_{k}"), 3) for k in (
              "response", "response_held", "response_fed", "response_direct", "total_effect",
              "total_effect_held", "held_minus_total_effect")) + " |", "",
          f"Of the responder's mean response, the direct path a -> r carries "
          f"{_num(shares.get('direct'))} and the layers in between "
          f"{_num(shares.get('between'))} (n/a when the mean response is too small to "
          f"divide by); of its variation over prompts (slope of the direct part on the "
          f"response) {_num(shares.get('direct_slope'))} and {_num(shares.get('between_slope'))}; "
          f"holding the responder moves the logit by "
          f"{_num(check.get('mean_held_minus_total_effect'), 3)} (TE held - TE: its share of "
          "the repair, with what its change does downstream).", ""]


def write(workdir: str, name: str, entries: list[dict[str, Any]],
          mediation: Optional[dict[str, Any]]) -> dict[str, Any]:
  """study.json, study.md and study.png in `workdir`; returns study.json's content."""
  rows = aggregate(entries)
  study = dict(name=name, runs=entries, aggregates=rows, mediation=mediation)
  store.atomic_write_text(os.path.join(workdir, JSON_FILE), json.dumps(study, indent=1))
  store.atomic_write_text(os.path.join(workdir, MARKDOWN_FILE),
                          "\n".join([markdown(name, entries, rows), *_mediation_lines(mediation)]))
  figure(entries, os.path.join(workdir, FIGURE_FILE))
  return study
