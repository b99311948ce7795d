"""The report: statistics from hand-made sweep arrays, the files it writes, redrawing;
and the resumable chunk storage under it (atomic writes, the config guard).

Runtime: about 30 s on 2 busy cores (most of it drawing the nine figures twice and one
`python -m` subprocess).
"""

import dataclasses
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from hydra_jax.report import captions as report_captions
from hydra_jax.report import clear
from hydra_jax.report import drawing
from hydra_jax.report import headline as report_headline
from hydra_jax.report import statistics
from hydra_jax.report import summary as report
from hydra_jax import store as results_store
from hydra_jax.sweep import effects, measures
from hydra_jax.sweep.options import SweepOptions

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def sweep_arrays(num_prompts=24, num_layers=3, num_sources=2, seed=0):
  """Arrays shaped like a sweep's, with its identities: upstream responses are zero,
  CE is the sum of the downstream responses, norm remainder = TE - direct change - CE."""
  rng = np.random.RandomState(seed)
  C = 2 * num_layers
  direct_effect = rng.normal(0, 1, (num_prompts, C)).astype(np.float32)
  direct_change = -np.abs(rng.normal(1, 0.3, (num_prompts, C))).astype(np.float32)
  response = np.zeros((num_prompts, C, C), np.float32)
  for c in range(C):
    response[:, c, c] = direct_change[:, c]
    response[:, c, c + 1:] = -0.2 * direct_change[:, c:c + 1] + rng.normal(0, 0.05, (num_prompts, C - c - 1))
  downstream = np.triu(np.ones((C, C), bool), 1)
  attention = np.arange(C) % 2 == 0
  compensation_attn = (response * (downstream & attention[None])).sum(-1)
  compensation_mlp = (response * (downstream & ~attention[None])).sum(-1)
  total = (direct_change + compensation_attn + compensation_mlp)[:, None] + rng.normal(
      0, 0.1, (num_prompts, num_sources, C))
  total_mean = total.mean(1)
  return dict(
      prompt_id=np.arange(num_prompts), prompt=np.array([f"prompt {i}" for i in range(num_prompts)]),
      label=np.array(["x"] * num_prompts), token=np.arange(num_prompts, dtype=np.int32),
      token_text=np.array(["tok"] * num_prompts), clean_logit=np.ones(num_prompts, np.float32),
      direct_effect=direct_effect, embed_direct_effect=np.zeros(num_prompts, np.float32),
      total_effect=total.astype(np.float32), total_effect_mean=total_mean.astype(np.float32),
      direct_change=direct_change, response=response,
      compensation_attn=compensation_attn.astype(np.float32),
      compensation_mlp=compensation_mlp.astype(np.float32),
      norm_remainder=(total_mean - direct_change - compensation_attn - compensation_mlp).astype(np.float32),
      sources=rng.randint(0, num_prompts, (num_prompts, num_sources)))


INFO = dict(config=dict(sweep=dict(kind="resample", num_sources=2, seed=0, path="incremental")),
            model=dict(name="hand-made", source="test", num_params=1234, num_layers=3, d_model=8,
                       position="relative", norm="rms"),
            prompts=dict(dataset="test", total=30, kept=24, dropped={"answered wrongly": 6}),
            timing=dict(wall_seconds=2.0, ablated_forwards=288, ablated_forwards_per_second=144.0))


def test_regressions_are_the_effects_fit_per_column_as_floats():
  """The fit itself is tested in test_effects.py; here: one plain dict per column."""
  x = np.array([[0.0, 0.0], [1.0, 1.0], [2.0, 2.0], [3.0, 3.0]])
  y = np.stack([2 * x[:, 0] + 1, [1.0, 0.0, 1.0, 0.0]], 1)
  fits, fit = report.regressions(x, y), effects.regress(x, y)
  assert fits == [dict(slope=float(fit.slope[c]), intercept=float(fit.intercept[c]),
                       r2=float(fit.r2[c])) for c in range(2)]
  assert all(type(value) is float for column in fits for value in column.values())


def test_per_component_statistics_by_hand():
  # Four prompts, one layer: components 0 (attention) and 1 (MLP, nothing downstream).
  lost = np.array([1.0, 2.0, 3.0, 2.0])
  arrays = dict(direct_effect=np.stack([lost + 1, -2 * np.ones(4)], 1),
                total_effect_mean=np.stack([-0.5 * lost, np.zeros(4)], 1),
                direct_change=np.stack([-lost, -np.ones(4)], 1),
                compensation_attn=np.zeros((4, 2)),
                compensation_mlp=np.stack([0.5 * lost, np.zeros(4)], 1),
                norm_remainder=np.array([[0.0, 1.0]] * 4))   # TE - change - CE
  arrays["response"] = np.zeros((4, 2, 2))
  arrays["response"][:, 0, 1] = 0.5 * lost
  stats = report.per_component(arrays, statistics.resample_counts(4, 200, 0))
  assert stats["direct_effect"] == [3.0, -2.0]
  assert stats["lost_direct_effect"] == [2.0, 1.0]
  assert stats["compensation"] == [1.0, 0.0]
  # mean lost 2 > 3 SE (0.41) and > |mean TE| / 4: kept; the MLP's too (lost 1, TE 0).
  assert stats["ratio_of_means_restored"] == [0.5, 0.0]
  assert stats["ratio_of_means_restored_with_norm"] == [0.5, 1.0]
  fit = stats["regression"][0]
  assert fit["slope"] == pytest.approx(0.5) and fit["r2"] == pytest.approx(1.0)
  assert fit["slope_ci"] == pytest.approx([0.5, 0.5])    # every resample lies on the line
  assert np.isnan(stats["regression"][1]["slope"])       # nothing downstream of the last MLP
  assert np.isnan(stats["regression_attn"][0]["slope"])  # no attention after attn 0
  assert stats["regression_mlp"][0]["slope"] == pytest.approx(0.5)
  assert stats["direct_exceeds_drop"] == [1.0, 1.0]      # lost > -TE on every prompt
  assert stats["localisation_80"][0] == 1.0 and np.isnan(stats["localisation_80"][1])
  assert stats["downstream_components"] == [1, 0]
  layers = report.per_layer(stats)
  assert layers["attn"]["direct_effect"] == [3.0] and layers["mlp"]["direct_effect"] == [-2.0]


def test_headline_and_choices():
  arrays = sweep_arrays()
  summary = report.summarize(arrays, INFO)
  headline = summary["headline"]
  # CE = 0.2 x (number of downstream components) x lost DE by construction.
  assert headline["middle_attention_layers"] == [0, 1, 2]
  first = summary["per_layer"]["attn"]["regression"][0]
  assert first["slope"] == pytest.approx(1.0, abs=0.05)
  assert first["slope_ci"][0] < first["slope"] < first["slope_ci"][1]
  assert summary["per_layer"]["mlp"]["compensation"][2] == 0.0     # the last MLP has no downstream
  assert len(headline["late_mlp_erasure"]) == 2
  # The fraction restored is the mean of the middle attention layers' slopes (1.0, 0.6, 0.2).
  slopes = [e["total_slope"] for e in headline["middle_attention_slopes"]]
  assert slopes == pytest.approx([1.0, 0.6, 0.2], abs=0.05)
  assert headline["fraction_restored_middle_attention"] == pytest.approx(np.mean(slopes))
  low, high = headline["fraction_restored_middle_attention_ci"]
  assert low < np.mean(slopes) < high and high - low < 0.2
  assert summary["bootstrap"] == dict(resamples=1000, seed=0, level=0.95, clusters="prompt",
                                      num_clusters=24)
  assert summary["sweep_options"] == dataclasses.asdict(SweepOptions(    # the rest: defaults
      kind="resample", noise_draws=2, noise_seed=0, path="incremental"))
  assert summary["per_source"] is None
  assert "restored" not in headline and "restored" not in summary["per_layer"]["attn"]
  assert report_headline.choose_ablated(arrays, dict(report.DEFAULT_CHOICES, ablated_layer=1,
                                                     ablated_kind="mlp")) == 3
  assert drawing.regression_layers(32, ()) == [0, 4, 9, 13, 18, 22, 27, 31]
  assert drawing.regression_layers(4, (1, 3)) == [1, 3]


def test_headline_ranks_attention_ablations_only():
  arrays = sweep_arrays()
  arrays["compensation_attn"][:, 1] += 100.0    # an MLP ablation with huge attention repair
  arrays["compensation_attn"][:, 4] += 50.0     # the last attention layer (no later attention)
  arrays["compensation_attn"][:, 2] += 10.0
  components = report.per_component(arrays)
  ranked = report_headline.responders(arrays, components, num_layers=3)
  assert [h["ablated"] for h in ranked["largest_attention_compensation"]] == ["attn 1", "attn 0"]
  assert set(ranked["strongest_attention_responder"]) == {"attn 1", "attn 0"}
  assert ranked["strongest_attention_responder"]["attn 1"]["responder"] == "attn 2"


def test_headline_verdict_reads_the_interval():
  entry = dict(layer=1, attn_slope=0.1, attn_slope_ci=[0.05, 0.15])
  head = dict(middle_attention_layers=[1], middle_attention_slopes=[entry],
              fraction_restored_middle_attention=-0.4,
              fraction_restored_middle_attention_ci=[-0.5, -0.3],
              fraction_restored_with_norm_middle_attention=0.3,
              fraction_restored_with_norm_middle_attention_ci=[0.2, 0.4])
  text = report_captions.verdict(head)
  assert "-0.400 [-0.500, -0.300]: negative: the later layers deepen the loss" in text
  assert "remainder it is +0.300 [+0.200, +0.400]" in text and "clearly above 0 at 1 of 1" in text
  partial = dict(head, fraction_restored_middle_attention=0.65,
                 fraction_restored_middle_attention_ci=[0.5, 0.8])
  assert "partial repair, 65.0% of the lost DE restored" in report_captions.verdict(partial)
  unclear = dict(head, fraction_restored_middle_attention_ci=[-0.5, 0.1])
  assert "no clear repair" in report_captions.verdict(unclear)


def per_source(arrays, num_kept=5, num_sources=4, step=0.1):
  """response_by_source [M, K, C, C] = response[:M] + (k - mean k) x step on every response
  below the diagonal's right (its mean over K is response[:M] up to float rounding)."""
  C = arrays["response"].shape[1]
  offsets = (np.arange(num_sources) - (num_sources - 1) / 2) * step                 # [K]
  downstream = np.triu(np.ones((C, C)), 1)
  by_source = arrays["response"][:num_kept, None] + offsets[:, None, None] * downstream
  return dict(arrays, response_by_source=by_source.astype(np.float32))


def test_per_source_spread_and_mean():
  arrays = per_source(sweep_arrays())
  summary = report.summarize(arrays, INFO)
  assert summary["per_source"]["prompts"] == 5 and summary["per_source"]["sources"] == 4
  assert summary["per_source"]["max_difference_from_response"] < 1e-6
  # CE of source k moves by offset_k x (components downstream): std over sources known.
  C = 6
  expected = np.std((np.arange(4) - 1.5) * 0.1, ddof=1) * (C - 1 - np.arange(C))     # [C]
  spread = summary["per_layer"]["attn"]["compensation_total_std_over_sources"]
  assert spread == pytest.approx(expected[0::2], rel=1e-4)
  attn_part = summary["per_layer"]["mlp"]["compensation_attn_std_over_sources"]
  expected_attn = np.std(np.arange(4) * 0.1, ddof=1) * np.array([2, 1, 0])   # attention after
  assert attn_part == pytest.approx(expected_attn, abs=1e-6)
  mismatched = dict(arrays, response_by_source=arrays["response_by_source"] + 0.5)
  assert report.per_source_info(mismatched)["max_difference_from_response"] == pytest.approx(0.5)


def with_per_source(arrays, num_sources=4, attn_slope=0.3, mlp_slope=0.15, seed=1):
  """The per-source arrays [N, K, C] under both sigma readings, whose means over sources
  are the arrays' own: lost DE moves by d_nk (mean 0 over k) and each part of CE by its
  slope x d_nk where something of that kind is downstream (within-prompt slopes known)."""
  rng = np.random.RandomState(seed)
  N, C = arrays["direct_change"].shape
  deviation = rng.normal(0, 0.3, (N, num_sources, C))
  deviation -= deviation.mean(1, keepdims=True)
  reads = np.triu(np.ones((C, C), bool), 1)
  attention = np.arange(C) % 2 == 0
  slopes = dict(compensation_attn=attn_slope * (reads & attention).any(1),
                compensation_mlp=mlp_slope * (reads & ~attention).any(1))
  parts = dict(lost_de=-arrays["direct_change"][:, None] + deviation,
               norm_remainder=arrays["norm_remainder"][:, None] + 0.0 * deviation,
               **{name: arrays[name][:, None] + slope * deviation for name, slope in slopes.items()})
  found = dict(arrays, subject=np.array([f"person {n // 3}" for n in range(N)]))
  for sigma in ("clean", "ablated"):
    found.update({measures.by_source_name(part, sigma): value.astype(np.float32)
                  for part, value in parts.items()})
  return found


def test_summary_carries_both_estimators_both_sigmas_and_the_rule():
  summary = report.summarize(with_per_source(sweep_arrays()), INFO)
  assert summary["bootstrap"]["clusters"] == "subject" and summary["bootstrap"]["num_clusters"] == 8
  attn = summary["per_layer"]["attn"]["restored"]
  for sigma in ("clean", "ablated"):
    first = attn[0][sigma]
    assert first["attn"]["within"]["slope"] == pytest.approx(0.3, abs=1e-5)
    assert first["mlp"]["within"]["slope"] == pytest.approx(0.15, abs=1e-5)
    assert first["total"]["within"]["slope"] == pytest.approx(0.45, abs=1e-5)
    assert first["total"]["within"]["slope_ci"] == pytest.approx([0.45, 0.45], abs=1e-5)
    # across prompts: CE = 0.2 x 5 downstream x lost DE by construction; the ratio near 1
    assert first["total"]["across"]["slope"] == pytest.approx(1.0, abs=0.05)
    assert first["total"]["ratio_of_means"] == pytest.approx(1.0, abs=0.05)
    assert {"intercept", "r2", "slope_ci", "intercept_ci"} <= set(first["total"]["across"])
    assert first["total"]["clear"] and first["attn"]["clear"] and "clear" not in first["norm"]
  assert attn[2]["clean"]["attn"]["within"]["slope"] is None       # no attention after layer 2
  assert attn[2]["clean"]["attn"]["clear"] is False
  assert summary["per_layer"]["mlp"]["restored"][2]["clean"]["total"]["clear"] is False
  head = summary["headline"]["restored"]
  assert head["rule"] == clear.RULE and head["min_effect"] == 0.1
  assert head["clear_layers"]["clean"]["total"] == dict(attn=[0, 1, 2], mlp=[0, 1])
  assert head["clear_layers"]["clean"]["attn"] == dict(attn=[0, 1], mlp=[0, 1])
  middle = head["middle_mean"]["clean"]["total"]
  assert middle["within"] == pytest.approx((0.45 + 0.45 + 0.15) / 3, abs=1e-5)
  assert middle["ratio_of_means_ci"][0] < middle["ratio_of_means"] < middle["ratio_of_means_ci"][1]
  assert head["best"] == attn[head["best_attention_layer"]]


def dose_arrays(arrays, response):
  """dose.npz's arrays for doses 0.25 and 0.5 on every other prompt: the lost DE scales with
  the dose, each part of CE is response(dose, lost per source) (both sigma readings)."""
  rows = np.arange(0, len(arrays["direct_change"]), 2)
  found = dict(dose=np.array([0.25, 0.5]), dose_rows=rows)
  for sigma in ("clean", "ablated"):
    name = lambda part: measures.by_source_name(part, sigma)
    lost = arrays[name("lost_de")][rows]
    found[name("lost_de")] = np.stack([w * lost for w in (0.25, 0.5)])
    found[name("norm_remainder")] = np.zeros_like(found[name("lost_de")])
    for part in ("compensation_attn", "compensation_mlp"):
      found[name(part)] = np.stack([response(w, lost) for w in (0.25, 0.5)])
  return found


def test_dose_response_reads_proportional_and_threshold_repair():
  arrays = with_per_source(sweep_arrays(num_prompts=40), attn_slope=0.3, mlp_slope=0.3)
  for name in [n for n in arrays if n.startswith("compensation_") and "by_source" in n]:
    arrays[name] = (0.3 * arrays[measures.by_source_name("lost_de", "clean")]).astype(np.float32)
  proportional = report.summarize(arrays, INFO, dose_arrays(arrays, lambda w, lost: 0.3 * w * lost))
  dose = proportional["dose_response"]
  assert dose["doses"] == [0.25, 0.5, 1.0] and dose["prompts"] == 20
  assert dose["parts"]["attn"]["within"][0] == pytest.approx([0.3, 0.3, 0.3], abs=1e-5)
  assert dose["parts"]["total"]["verdict"][0] == "proportional"
  assert dose["mean_lost_direct_effect"][0][0] == pytest.approx(0.25 * dose["mean_lost_direct_effect"][0][2])
  late = report.summarize(arrays, INFO, dose_arrays(arrays, lambda w, lost: 0.3 * w * w * lost))
  assert late["dose_response"]["parts"]["total"]["verdict"][0] == "grows"
  assert late["dose_response"]["parts"]["total"]["middle_verdict"] == "grows"


def test_write_produces_every_file(tmp_path):
  arrays = with_per_source(per_source(sweep_arrays()))
  arrays["relation"] = np.array(["P19", "P27", "P19"] * 8)
  summary = report.write(str(tmp_path), arrays, INFO)
  assert summary["num_relations"] == 2
  saved = results_store.load_npz(str(tmp_path / "results.npz"))
  assert sorted(saved) == sorted([*arrays, "components", *(f"axes/{name}" for name in arrays)])
  np.testing.assert_array_equal(saved["response"], arrays["response"])
  assert saved["prompt"][3] == "prompt 3"
  loaded = json.loads((tmp_path / "summary.json").read_text())
  assert loaded["prompts"]["dropped"] == {"answered wrongly": 6}
  assert SweepOptions(**loaded["sweep_options"]) == SweepOptions.from_config(
      INFO["config"]["sweep"])
  assert loaded["per_layer"]["attn"]["total_effect"] == pytest.approx(
      summary["per_layer"]["attn"]["total_effect"])
  assert loaded["per_layer"]["mlp"]["regression"][2]["r2"] is None   # NaN written as null
  markdown = (tmp_path / "report.md").read_text()
  for name in report_captions.SENTENCES:
    png = tmp_path / "figures" / f"{name}.png"
    assert f"](figures/{name}.png)" in markdown
    assert png.read_bytes()[:8] == PNG_MAGIC and png.stat().st_size > 10_000
  assert "| 2 |" in markdown and "about 0.7" in markdown and "hand-made" in markdown
  assert "24 kept, 2 relations" in markdown and "drawn uniformly" in markdown
  assert "How to read this" in markdown and "the 4 sources of one prompt" in markdown
  headline = markdown.split("## Headline")[1].split("## Results, figure by figure")[0]
  assert headline.index("Rule: clear:") < headline.index("![restored_attn](figures/restored_attn.png)")
  table = [line for line in headline.splitlines() if line.startswith("|")]
  assert len(table) == 9 and "within-prompt slope, mean over the middle layers" in table[2]
  assert table[6].startswith("| clear under the rule: attention layers (own σ: where its "
                             "conditions hold) | 3 of 3 (3 of 3 middle): 0, 1, 2 | not counted: 3")
  appendix = markdown.split("## Appendix: per layer")[1]
  assert appendix.count("fraction restored, the clean final sigma") == 2
  assert "| 0 | +1.02 | +0.450 [+0.450, +0.450] | +1.02 (-0.0552) |" in appendix
  assert (tmp_path / "figures" / "restored_attn.png").read_bytes()[:8] == PNG_MAGIC


def test_redraw_from_saved_results(tmp_path):
  arrays = sweep_arrays()
  results_store.atomic_save_npz(str(tmp_path / "results.npz"), arrays)
  kept = dataclasses.asdict(SweepOptions(check=True, keep_sources=3, noise_draws=2))
  (tmp_path / "summary.json").write_text(json.dumps(dict(INFO, headline={}, sweep_options=kept)))
  first = report.summarize(arrays, INFO)
  command = [sys.executable, "-m", "hydra_jax.report", f"--workdir={tmp_path}"]
  done = subprocess.run(command, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120)
  assert done.returncode == 0, done.stderr
  assert (tmp_path / "figures" / "de_vs_te.png").read_bytes()[:8] == PNG_MAGIC
  markdown = (tmp_path / "report.md").read_text()
  assert "no per-source arrays were kept" in markdown
  again = json.loads((tmp_path / "summary.json").read_text())
  assert again["timing"] == INFO["timing"]
  assert again["sweep_options"] == kept and "consistency checks on" in markdown
  assert again["headline"]["fraction_restored_middle_attention_ci"] == pytest.approx(
      first["headline"]["fraction_restored_middle_attention_ci"])   # the bootstrap is seeded


def test_redraw_without_results_is_a_clear_error(tmp_path):
  with pytest.raises(ValueError, match="results.npz does not exist"):
    report.redraw(str(tmp_path))


# Chunk storage ------------------------------------------------------------------------------


def test_flatten_and_differences():
  flat = results_store.flatten({"a": 1, "b": {"c": (1, 2), "d": {"e": "x"}}})
  assert flat == {"a": 1, "b.c": [1, 2], "b.d.e": "x"}
  stored = {"sweep.num_sources": 15, "report.late_mlps": 0, "mesh.data": -1, "seed": 0}
  current = {"sweep.num_sources": 5, "report.late_mlps": 3, "mesh.data": 8, "new": 1}
  assert results_store.config_differences(stored, current) == ["new", "seed", "sweep.num_sources"]


def test_chunks_round_trip_in_order(tmp_path):
  store = results_store.ResultStore(str(tmp_path))
  assert store.finished_chunks() == []
  store.save_chunk(1, {"x": np.array([3, 4]), "s": np.array(["c", "d"])})
  store.save_chunk(0, {"x": np.array([1, 2]), "s": np.array(["a", "b"])})
  assert store.finished_chunks() == [0, 1]
  merged = store.load_all(store.finished_chunks())
  np.testing.assert_array_equal(merged["x"], [1, 2, 3, 4])
  assert list(merged["s"]) == ["a", "b", "c", "d"]
  assert not [n for n in os.listdir(store.chunk_dir) if n.startswith(".tmp")]


def test_failed_write_leaves_no_file(tmp_path):
  path = str(tmp_path / "chunks" / "chunk_00000.npz")

  class Unsavable:
    def __array__(self, *args, **kwargs):
      raise RuntimeError("interrupted")

  with pytest.raises(RuntimeError):
    results_store.atomic_save_npz(path, {"ok": np.ones(3), "bad": Unsavable()})
  assert os.listdir(tmp_path / "chunks") == []


def test_claim_refuses_a_different_config(tmp_path):
  store = results_store.ResultStore(str(tmp_path))
  config = {"sweep.num_sources": 15, "data.name": "embedded", "report.late_mlps": 0}
  store.claim(config)
  store.claim(dict(config, **{"sweep.num_sources": 5}))   # no chunks yet: a fresh start
  store.claim(config)
  store.save_chunk(0, {"x": np.zeros(1)})
  store.claim(dict(config, **{"report.late_mlps": 2}))   # presentation only: fine
  with pytest.raises(ValueError, match=r"differing keys: data.name \('embedded' there, "
                                       r"'known_facts' now\), sweep.num_sources"):
    store.claim(dict(config, **{"sweep.num_sources": 5, "data.name": "known_facts"}))


def test_workdir_is_required():
  with pytest.raises(ValueError, match="--workdir is required"):
    results_store.ResultStore("")
