"""The report of a heads run: self-repair per attention head (Rushing & Nanda 2024).

Reads the per-sequence arrays of `hydra_jax.sweep.heads` (means over K sources, per
position) and writes summary.json, PNG figures and report.md:

  heatmaps      heads x layers: each head's clean direct effect, and its self-repair
                fraction = mean self-repair / mean lost direct effect (-direct change)
  de_vs_te      per head: direct change against total effect of its ablation (their fig 1);
                on the diagonal nothing repairs, above it the rest of the model restores
  split         per layer: self-repair carried by later heads, by MLPs, by the final norm
  fractions     the heads' distribution of self-repair fraction

Means are over sequences and positions (every scored position weighs the same).

Shapes: N sequences, T-1 scored positions, L layers, H heads.
"""

from __future__ import annotations

import json
from typing import Any, Mapping

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from hydra_jax import store  # noqa: E402
from hydra_jax.report import figures  # noqa: E402
from hydra_jax.report.formatting import number  # noqa: E402

SPLIT = ("repair_heads", "repair_mlps", "repair_norm")
SPLIT_NAMES = {"repair_heads": "later heads", "repair_mlps": "MLPs", "repair_norm": "final norm"}
PER_HEAD = ("direct_effect", "direct_change", "total_effect", "self_repair", "direct_change_logprob",
            "total_effect_logprob") + SPLIT
MIN_LOSS = 0.1       # a head losing less mean DE than this share of the largest loss gets no fraction


def head_name(layer: int, head: int) -> str:
  return f"L{layer}H{head}"


def per_head_means(arrays: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
  """Every measure's mean over sequences and positions, [L, H] each."""
  values = dict(arrays)
  values["self_repair"] = arrays["total_effect"] - arrays["direct_change"]        # [N, L, H, T-1]
  means = {name: values[name].mean((0, -1)) for name in PER_HEAD}
  loss = -means["direct_change"]                                               # [L, H]
  enough = loss > MIN_LOSS * max(loss.max(), 0.0)
  means["self_repair_fraction"] = np.where(enough, means["self_repair"]
                                           / np.where(enough, loss, 1.0), np.nan)
  return means


def top_heads(means, response: np.ndarray, top_k: int) -> list[dict[str, Any]]:
  """The top_k heads by mean self-repair, each with its top_k responders (mean dDE)."""
  L, H = means["self_repair"].shape
  order = np.argsort(-means["self_repair"], axis=None)[:top_k]
  rows = []
  for flat in order:
    layer, head = divmod(int(flat), H)
    answer = response[layer, head]                                               # [L, H]
    picks = np.argsort(-np.abs(answer), axis=None)[:top_k]
    rows.append(dict(head=head_name(layer, head), **{
        name: float(means[name][layer, head]) for name in PER_HEAD + ("self_repair_fraction",)},
        responders=[dict(head=head_name(*divmod(int(p), H)), response=float(answer.flat[p]))
                    for p in picks if answer.flat[p] != 0]))
  return rows


def summarize(arrays: Mapping[str, np.ndarray], top_k: int) -> dict[str, Any]:
  """summary.json's measures: per head, per layer, the fraction's distribution, top heads."""
  means = per_head_means(arrays)
  fractions = means["self_repair_fraction"][np.isfinite(means["self_repair_fraction"])]
  quantiles = (0.1, 0.25, 0.5, 0.75, 0.9)
  de, te = means["direct_change"].ravel(), means["total_effect"].ravel()
  return dict(
      num_sequences=int(arrays["total_effect"].shape[0]),
      positions=int(arrays["total_effect"].shape[-1]),
      per_head={name: np.round(value, 6).tolist() for name, value in means.items()},
      per_layer={name: means[name].mean(1).tolist() for name in ("self_repair",) + SPLIT},
      fraction_quantiles=({str(q): float(np.quantile(fractions, q)) for q in quantiles}
                          if fractions.size else {}),
      heads_with_fraction=int(fractions.size),
      de_te_correlation=float(np.corrcoef(de, te)[0, 1]) if de.std() > 0 and te.std() > 0 else None,
      clean_logprob_mean=float(arrays["clean_logprob"].mean()),
      top_heads=top_heads(means, arrays["response"].mean(0), top_k))


# Figures -------------------------------------------------------------------------------------


def _save(fig, path) -> str:
  """Write the figure (local or a bucket, `figures.save`); its file name, for report.md."""
  return store.as_path(figures.save(fig, path)).name


def _finish(fig, ax, path, legend_size, **labels) -> str:
  """Label the axes (a legend of that font size, unless None) and save the figure."""
  ax.set(**labels)
  if legend_size:
    ax.legend(fontsize=legend_size)
  return _save(fig, path)


def heatmaps(means, path: str) -> str:
  fig, axes = plt.subplots(1, 2, figsize=(10, 4))
  for ax, name, title in ((axes[0], "direct_effect", "clean direct effect (centred logit)"),
                          (axes[1], "self_repair_fraction", "self-repair fraction")):
    values = means[name].T                                                       # [H, L]
    bound = np.nanmax(np.abs(values)) if np.isfinite(values).any() else 1.0
    image = ax.imshow(values, cmap="RdBu_r", vmin=-bound, vmax=bound, aspect="auto", origin="lower")
    ax.set(xlabel="layer", ylabel="head", title=title, xticks=range(values.shape[1]),
           yticks=range(values.shape[0]))
    fig.colorbar(image, ax=ax)
  return _save(fig, path)


def de_vs_te(means, path: str) -> str:
  fig, ax = plt.subplots(figsize=(5, 5))
  L = means["direct_change"].shape[0]
  for layer in range(L):
    ax.scatter(means["direct_change"][layer], means["total_effect"][layer], s=18,
               color=plt.cm.viridis(layer / max(L - 1, 1)), label=f"layer {layer}")
  lims = np.array([min(ax.get_xlim()[0], ax.get_ylim()[0]), max(ax.get_xlim()[1], ax.get_ylim()[1])])
  ax.plot(lims, lims, "k--", lw=0.8, label="TE = direct change")
  return _finish(fig, ax, path, 7, xlabel="direct change (mean over positions)",
                 ylabel="total effect", title="each head's ablation")


def split_by_layer(means, path: str) -> str:
  fig, ax = plt.subplots(figsize=(6, 4))
  layers = np.arange(means["self_repair"].shape[0])
  below, above = np.zeros(len(layers)), np.zeros(len(layers))
  for name in SPLIT:
    value = means[name].mean(1)                                                  # [L]
    base = np.where(value >= 0, above, below)
    ax.bar(layers, value, bottom=base, label=SPLIT_NAMES[name])
    above, below = above + np.maximum(value, 0), below + np.minimum(value, 0)
  ax.plot(layers, means["self_repair"].mean(1), "ko-", label="self-repair (sum)")
  ax.axhline(0, color="k", lw=0.5)
  return _finish(fig, ax, path, 8, xlabel="ablated head's layer",
                 ylabel="mean over the layer's heads", title="self-repair by mechanism")


def fraction_histogram(means, path: str) -> str:
  fig, ax = plt.subplots(figsize=(5, 3.5))
  values = means["self_repair_fraction"][np.isfinite(means["self_repair_fraction"])]
  ax.hist(np.clip(values, -2, 2), bins=20)
  return _finish(fig, ax, path, None, xlabel="self-repair fraction (clipped to [-2, 2])",
                 ylabel="heads", title="distribution over heads")


# report.md -----------------------------------------------------------------------------------


def _markdown(summary: Mapping[str, Any], figures: Mapping[str, str]) -> str:
  info, timing = summary["info"], summary["info"]["timing"]
  lines = ["# Self-repair per attention head", "",
           f"Model {info['model']['name']} ({info['model']['num_layers']} layers x "
           f"{info['model']['num_heads']} heads); {summary['num_sequences']} sequences of "
           f"{summary['positions'] + 1} tokens from {info['text']}; every head resample-ablated "
           f"at all positions from {info['config']['heads']['num_sources']} other sequences; "
           f"scored on the true next token. Sweep {number(timing['sweep_seconds'], signed=False)} s, "
           f"wall {number(timing['wall_seconds'], signed=False)} s on {timing['devices']}.", "",
           "Self-repair = total effect - direct change (centred logit; the final norm of the "
           "clean run frozen for the direct change). Fraction = mean self-repair / mean lost "
           f"direct effect (only for heads losing at least {MIN_LOSS:.0%} of the largest head's loss).", ""]
  if info.get("post_norms"):
    lines += ["The model normalises each sublayer's output (post-norms): a head's direct change is "
              "read through its layer's attention post-norm at the clean run's scale, and the "
              "final norm column also holds what the ablation carries by moving those post-norms' "
              "scales.", ""]
  quantiles = summary["fraction_quantiles"]
  lines += [f"Self-repair fraction over {summary['heads_with_fraction']} heads: "
            + ", ".join(f"q{float(q):.2f} {number(v)}" for q, v in quantiles.items()), "",
            "Correlation of direct change and total effect over heads: "
            + number(summary["de_te_correlation"]), "",
            "| layer | self-repair | later heads | MLPs | final norm |", "| --- | ---: | ---: | ---: | ---: |"]
  per_layer = summary["per_layer"]
  lines += [f"| {l} | " + " | ".join(number(per_layer[n][l]) for n in ("self_repair",) + SPLIT) + " |"
            for l in range(len(per_layer["self_repair"]))]
  lines += ["", "## Top self-repairing heads", "",
            "| head | direct change | total effect | self-repair | fraction | heads / MLPs / norm | main responders |",
            "| --- | ---: | ---: | ---: | ---: | --- | --- |"]
  for row in summary["top_heads"]:
    responders = ", ".join(f"{r['head']} {number(r['response'])}" for r in row["responders"][:3])
    lines.append(f"| {row['head']} | {number(row['direct_change'])} | {number(row['total_effect'])} | "
                 f"{number(row['self_repair'])} | {number(row['self_repair_fraction'])} | "
                 + " / ".join(number(row[n]) for n in SPLIT) + f" | {responders} |")
  lines += [""] + [f"![{name}]({file})" for name, file in figures.items()] + [""]
  return "\n".join(lines)


def write(workdir: str, arrays: Mapping[str, np.ndarray], info: Mapping[str, Any],
          top_k: int = 5) -> dict[str, Any]:
  """summary.json, the figures and report.md in workdir; returns the summary."""
  summary = dict(summarize(arrays, top_k), info=info)
  means = per_head_means(arrays)
  figures = {name: draw(means, store.as_path(workdir) / f"heads_{name}.png")
             for name, draw in (("heatmaps", heatmaps), ("de_vs_te", de_vs_te),
                                ("split", split_by_layer), ("fractions", fraction_histogram))}
  store.atomic_write_text(store.as_path(workdir) / "summary.json",
                          json.dumps(summary, indent=2, default=str, allow_nan=True))
  store.atomic_write_text(store.as_path(workdir) / "report.md", _markdown(summary, figures))
  return summary
