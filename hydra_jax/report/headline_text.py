"""report.md's headline and its per-layer appendix, in Markdown, from summary.json.

  verdict(head)            what the rule finds, and what slope and mean say, in sentences
  table(head)              the short headline table: middle-layer means, the best layer,
                           the clear layers and the norm's own share, under both sigmas
  dose_lines(dose, head)   the dose-response check at the middle attention layers
  layer_table(entries, sigma)  the appendix: every layer's estimates under one sigma

`head` is summary.json's headline["restored"] (`report.headline.restored_headline`),
`entries` one kind's per_layer[kind]["restored"], `dose` its dose_response
(`report.dose`). Numbers: `report.formatting` (signed, three significant figures);
[a, b] are 95% cluster-bootstrap intervals; n/a where a value is undefined.

Shapes: L layers.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional

from hydra_jax.report.formatting import interval as with_ci, number as value

SIGMAS = (("clean", "clean σ"), ("ablated", "own σ"))
MAX_LISTED = 8      # layers named in a table cell before "..."


def _layers(layers: list[int], total: int, middle: list[int]) -> str:
  listed = ", ".join(str(l) for l in layers[:MAX_LISTED]) + (", ..." if len(layers) > MAX_LISTED
                                                              else "")
  in_middle = sum(l in middle for l in layers)
  return (f"{len(layers)} of {total} ({in_middle} of {len(middle)} middle)"
          + (f": {listed}" if layers else ""))


def _flagged(head: Mapping[str, Any], sigma: str, part: str, kind: str, num_layers: int) -> str:
  """The layers the rule's conditions flag; 'clear' only under the rule's own reading."""
  found = _layers(head["clear_layers"][sigma][part][kind], num_layers,
                  head["middle_attention_layers"])
  return found if sigma == head["clear_sigma"] else f"not counted: {found}"


def _best(entry: Mapping[str, Any]) -> str:
  within = entry["within"]
  return f"{with_ci(within['slope'], within['slope_ci'])}; {value(entry['ratio_of_means'])}"


def table(head: Mapping[str, Any], num_layers: int) -> list[str]:
  """The headline table (attention ablations), one column per part and sigma reading."""
  middle, best = head["middle_attention_layers"], head["best_attention_layer"]
  columns = [(sigma, part) for part in ("total", "attn") for sigma, _ in SIGMAS]
  titles = [f"{'total' if part == 'total' else 'attention part'}, {name}"
            for part in ("total", "attn") for _, name in SIGMAS]
  mean = lambda sigma, part: head["middle_mean"][sigma][part]
  rows = [
      ("within-prompt slope, mean over the middle layers",
       lambda s, p: with_ci(mean(s, p).get("within"), mean(s, p).get("within_ci"))),
      ("ratio of means, pooled over the middle layers",
       lambda s, p: with_ci(mean(s, p).get("ratio_of_means"), mean(s, p).get("ratio_of_means_ci"))),
      ("across-prompt slope (the paper's estimator), mean over the middle layers",
       lambda s, p: with_ci(mean(s, p).get("across"), mean(s, p).get("across_ci"))),
      (f"best attention layer, any depth ({best}): within-prompt slope; ratio of means",
       lambda s, p: _best(head["best"][s][p])),
      ("clear under the rule: attention layers (own σ: where its conditions hold)",
       lambda s, p: _flagged(head, s, p, "attn", num_layers)),
      ("clear under the rule: MLP layers (their ablations)",
       lambda s, p: _flagged(head, s, p, "mlp", num_layers)),
      ("the norm's own share: within-prompt slope of the norm remainder, middle mean",
       lambda s, p: with_ci(mean(s, "norm").get("within"), mean(s, "norm").get("within_ci"))
       if p == "total" else "-"),
  ]
  lines = [f"| attention ablations, middle layers {middle[0]}-{middle[-1]} of {num_layers} | "
           + " | ".join(titles) + " |", "|---" * (len(columns) + 1) + "|"] if middle else []
  for title, cell in rows if middle else []:
    lines.append(f"| {title} | " + " | ".join(cell(s, p) for s, p in columns) + " |")
  return lines + (["", "(A pooled ratio of means is n/a where the pooled DE lost is not "
                   "clearly above 0; the best layer is chosen after the fact, for display.)"]
                  if middle else [])


def verdict(head: Mapping[str, Any], num_layers: int) -> str:
  """The headline in sentences: the rule's count, then slope against mean."""
  middle = head["middle_attention_layers"]
  if not middle:
    return "No middle attention layer to read the repair from."
  found = {sigma: {part: head["clear_layers"][sigma][part]["attn"] for part in ("total", "attn")}
           for sigma, _ in SIGMAS}
  count = lambda sigma, part: (f"{len(found[sigma][part])} of {num_layers} attention layers"
                               f" ({sum(l in middle for l in found[sigma][part])} of "
                               f"{len(middle)} middle)")
  clean = head["middle_mean"]["clean"]["total"]
  within, ratio = clean.get("within"), clean.get("ratio_of_means")
  if within is not None and ratio is not None and within > 0 > ratio:
    agreement = ("they disagree in sign: within a prompt a source that removes more gets more "
                 "back, yet on average the ablation's loss is deepened, not repaired.")
  elif within is not None and ratio is not None and within < 0 < ratio:
    agreement = ("they disagree in sign: on average part of the loss is repaired, yet within "
                 "a prompt a source that removes more gets less back.")
  else:
    agreement = "they agree in sign."
  own = (" (the shuffled-answer control of studies/controls meets them under that reading "
         "too: the norm's rescaling counts as compensation there, so they are not called "
         "clear)" if any(found["ablated"].values()) else "")
  return (f"Rule: {head['rule']}. Total compensation is clear at {count('clean', 'total')}; "
          f"its attention part (the Hydra effect proper) at {count('clean', 'attn')}. Read with "
          f"each ablated run's own sigma, the same conditions hold at {count('ablated', 'total')} "
          f"and {count('ablated', 'attn')}{own}. Over "
          f"the middle attention layers the within-prompt slope of the total (clean sigma) is "
          f"{with_ci(within, clean.get('within_ci'))} and the ratio of means "
          f"{with_ci(ratio, clean.get('ratio_of_means_ci'))}: {agreement} Paper (Chinchilla "
          "7B): about 0.7 restored at middle layers, read from across-prompt slopes.")


def dose_lines(dose: Optional[Mapping[str, Any]]) -> list[str]:
  """The dose-response check at the middle attention layers, as a short table."""
  if not dose or not dose["parts"]["total"]["middle_within"]:
    return []
  doses = dose["doses"]
  lines = [f"Dose response ({dose['prompts']} prompts; each component replaced by (1 - w) x "
           "clean + w x source; within-prompt slopes, clean sigma, mean over the middle "
           "attention layers):", "", "| part | " + " | ".join(f"w = {w:g}" for w in doses)
           + " | reading |", "|---" * (len(doses) + 2) + "|"]
  for part, title in (("total", "total"), ("attn", "attention part")):
    found = dose["parts"][part]
    cells = [with_ci(v, ci) for v, ci in zip(found["middle_within"], found["middle_within_ci"])]
    verdicts = [found["verdict"][c] for c in dose["middle_components"] if found["verdict"][c]]
    share = sum(v == "proportional" for v in verdicts)
    lines.append(f"| {title} | " + " | ".join(cells) + f" | {found['middle_verdict'] or 'n/a'} "
                 f"(each layer alone: proportional at {share} of {len(verdicts)}) |")
  return lines


def layer_table(entries: list[Mapping[str, Any]], sigma: str) -> list[str]:
  """Every layer's estimates under one sigma reading (the appendix)."""
  header = ["layer", "DE lost", "total: within [CI]", "across (intercept)", "ratio [CI]", "clear",
            "attn part: within [CI]", "ratio", "clear", "MLP part: within [CI]", "ratio", "clear",
            "norm rem.: within", "across"]
  lines = ["| " + " | ".join(header) + " |", "|---" * len(header) + "|"]
  for layer, entry in enumerate(entries):
    at = entry[sigma]
    cells = [str(layer), value(entry["lost_direct_effect"][sigma])]
    total = at["total"]
    cells += [with_ci(total["within"]["slope"], total["within"]["slope_ci"]),
              f"{value(total['across']['slope'])} ({value(total['across']['intercept'])})",
              with_ci(total["ratio_of_means"], total["ratio_of_means_ci"]),
              "yes" if total["clear"] else ""]
    for part in ("attn", "mlp"):
      cells += [with_ci(at[part]["within"]["slope"], at[part]["within"]["slope_ci"]),
                value(at[part]["ratio_of_means"]), "yes" if at[part]["clear"] else ""]
    cells += [value(at["norm"]["within"]["slope"]), value(at["norm"]["across"]["slope"])]
    lines.append("| " + " | ".join(cells) + " |")
  return lines
