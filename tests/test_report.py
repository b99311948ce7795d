"""The report: statistics from hand-made sweep arrays, the files it writes, redrawing;
and the resumable chunk storage under it (atomic writes, the config guard).

Runtime: about 15 s (most of it drawing figures twice and one `python -m` subprocess).
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from hydra_jax.report import summary as report
from hydra_jax.report import markdown as report_markdown
from hydra_jax import store as results_store

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


def test_regressions_exact():
  x = np.array([0.0, 1.0, 2.0, 3.0])
  fits = report.regressions(np.stack([x, x, np.ones(4), x], 1),
                            np.stack([2 * x + 1, [1.0, 0.0, 1.0, 0.0], x, np.ones(4)], 1))
  assert fits[0] == pytest.approx(dict(slope=2.0, intercept=1.0, r2=1.0))
  assert fits[1]["slope"] == pytest.approx(-0.2) and fits[1]["r2"] == pytest.approx(0.2)
  assert np.isnan(fits[2]["slope"])                     # x does not vary
  assert fits[3]["slope"] == 0.0 and np.isnan(fits[3]["r2"])   # y does not vary


def test_per_component_statistics_by_hand():
  # Two prompts, one layer: components 0 (attention) and 1 (MLP).
  arrays = dict(direct_effect=np.array([[1.0, -2.0], [3.0, -4.0]]),
                total_effect_mean=np.array([[-0.5, 0.0], [-1.5, 0.0]]),
                direct_change=np.array([[-1.0, -1.0], [-3.0, -1.0]]),
                compensation_attn=np.zeros((2, 2)),
                compensation_mlp=np.array([[0.5, 0.0], [1.5, 0.0]]),
                norm_remainder=np.array([[0.0, 1.0], [0.0, 1.0]]))   # TE - change - CE
  stats = report.per_component(arrays)
  assert stats["direct_effect"] == [2.0, -3.0]
  assert stats["lost_direct_effect"] == [2.0, 1.0]
  assert stats["compensation"] == [1.0, 0.0]
  assert stats["fraction_restored"] == [0.5, 0.0]
  assert stats["fraction_restored_with_norm"] == [0.5, 1.0]    # = 1 + mean TE / mean lost
  assert stats["regression"][0] == pytest.approx(dict(slope=0.5, intercept=0.0, r2=1.0))
  layers = report.per_layer(stats)
  assert layers["attn"]["direct_effect"] == [2.0] and layers["mlp"]["direct_effect"] == [-3.0]


def test_headline_and_choices():
  arrays = sweep_arrays()
  summary = report.summarize(arrays, INFO)
  headline = summary["headline"]
  # CE = 0.2 x (number of downstream components) x lost DE by construction.
  assert headline["middle_attention_layers"] == [0, 1, 2]
  assert summary["per_layer"]["attn"]["regression"][0]["slope"] == pytest.approx(1.0, abs=0.05)
  assert summary["per_layer"]["mlp"]["compensation"][2] == 0.0     # the last MLP has no downstream
  assert len(headline["late_mlp_erasure"]) == 2
  # Counting the norm remainder, what is restored is 1 + TE / lost DE (TE = change + CE + rest).
  middle = [0, 2, 4]
  lost, te = -arrays["direct_change"][:, middle].mean(), arrays["total_effect_mean"][:, middle].mean()
  assert headline["fraction_restored_with_norm_middle_attention"] == pytest.approx(1 + te / lost, rel=1e-4)
  assert report.choose_ablated(arrays, dict(report.DEFAULT_CHOICES, ablated_layer=1,
                                            ablated_kind="mlp")) == 3
  assert report.regression_components(32, ()) == [0, 8, 18, 26, 36, 44, 54, 62]
  assert report.regression_components(4, (1, 3)) == [2, 6]


def test_write_produces_every_file(tmp_path):
  arrays = sweep_arrays()
  summary = report.write(str(tmp_path), arrays, INFO)
  saved = results_store.load_npz(str(tmp_path / "results.npz"))
  assert sorted(saved) == sorted(arrays)
  np.testing.assert_array_equal(saved["response"], arrays["response"])
  assert saved["prompt"][3] == "prompt 3"
  loaded = json.loads((tmp_path / "summary.json").read_text())
  assert loaded["prompts"]["dropped"] == {"answered wrongly": 6}
  assert loaded["per_layer"]["attn"]["total_effect"] == pytest.approx(summary["per_layer"]["attn"]["total_effect"])
  assert loaded["per_layer"]["mlp"]["regression"][2]["r2"] is None   # NaN written as null
  markdown = (tmp_path / "report.md").read_text()
  for name in report_markdown.FIGURE_CAPTIONS:
    png = tmp_path / "figures" / f"{name}.png"
    assert f"](figures/{name}.png)" in markdown
    assert png.read_bytes()[:8] == PNG_MAGIC and png.stat().st_size > 10_000
  assert "| 2 |" in markdown and "about 0.7" in markdown and "hand-made" in markdown


def test_redraw_from_saved_results(tmp_path):
  arrays = sweep_arrays()
  first = report.write(str(tmp_path), arrays, INFO)
  os.remove(tmp_path / "figures" / "de_vs_te.png")
  os.remove(tmp_path / "report.md")
  command = [sys.executable, "-m", "hydra_jax.report", f"--workdir={tmp_path}"]
  done = subprocess.run(command, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120)
  assert done.returncode == 0, done.stderr
  assert (tmp_path / "figures" / "de_vs_te.png").read_bytes()[:8] == PNG_MAGIC
  assert (tmp_path / "report.md").exists()
  again = json.loads((tmp_path / "summary.json").read_text())
  assert again["timing"] == INFO["timing"]
  assert again["headline"]["fraction_restored_middle_attention"] == pytest.approx(
      first["headline"]["fraction_restored_middle_attention"])


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
