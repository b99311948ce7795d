"""Studies (issue 12): the arms of a config, the bootstrap slopes, the mediation check, and
the two-arm miniature end to end with an interruption and a resumption.

The miniature trains two 2-layer models for 30 steps and sweeps each with the main job
(its reports without figures); under a minute on 2 idle CPU cores (most of it compiling).
"""

import importlib
import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

import hydra_jax as hj
from hydra_jax import checkpoints
from hydra_jax.data import tokenizers
from hydra_jax.job import config as run_config
from hydra_jax.job import loading as job_inputs
from hydra_jax.study import arms, build, mediation, runner, statistics, sweeps
from tests.conftest import TINY_VARIANTS, random_tokens, tiny_config

from tests.test_configs import load_config as study_config

CONFIGS = pathlib.Path(__file__).resolve().parents[1] / "configs"


def test_arms_expand_to_one_run_per_seed_with_their_changes():
  config = study_config("study_dropout")
  runs = arms.expand(config)
  names = [run.name for run in runs]
  assert len(names) == len(set(names))
  by_name = {run.name: run for run in runs}
  noisy = [run for run in runs if run.world["label_noise"] > 0]
  assert noisy and all(run.world["label_noise"] == 0.2 for run in noisy)
  assert {run.arm for run in runs if run.model.dropout_rate == 0.1}
  assert any(run.train["sublayer_drop"] > 0 for run in runs)
  assert any(run.train["steps"] == 0 for run in runs)                # the random-init control
  assert any(run.world["shuffle_answers"] for run in runs)           # the shuffled control
  assert all(run.model.num_layers >= 8 for run in runs)
  three_seeds = [arm for arm in {r.arm for r in runs} if sum(r.arm == arm for r in runs) >= 3]
  assert {"no_dropout", "dropout", "stochastic_depth"} <= set(three_seeds)  # the conclusion's arms
  assert by_name[names[0]].model.dropout_rate == config.model.dropout_rate


def test_the_dropout_study_fits_three_hours_on_two_cores():
  study = importlib.import_module("configs.study_dropout")
  seconds = study.estimated_seconds()
  assert 3600 < seconds <= 3 * 3600
  config = study.get_config()
  config.train.steps = 2500                           # 2.5x longer: over the budget
  assert study.estimated_seconds(config) > 3 * 3600


def test_bad_arms_are_named():
  config = study_config("study_mini")
  config.arms.no_noise.train = dict(stepz=3)
  with pytest.raises(ValueError, match="no_noise.*stepz"):
    arms.expand(config)
  config = study_config("study_mini")
  config.arms.no_noise.variants = ("resample", "noise")
  with pytest.raises(ValueError, match="variants"):
    arms.expand(config)
  config = study_config("study_mini")
  config.arms.no_noise.world = dict(label_noise=1.5)
  with pytest.raises(ValueError, match="label_noise"):
    arms.expand(config)


def test_sweep_sample_is_seeded_and_in_id_order():
  records = [dict(id=i) for i in range(20)]
  sample = build.sweep_sample(records, 5, seed=1)
  assert len(sample) == 5 and sample == sorted(sample, key=lambda r: r["id"])
  assert sample == build.sweep_sample(records, 5, seed=1) != build.sweep_sample(records, 5, 2)
  assert build.sweep_sample(records, 0, 1) == build.sweep_sample(records, 50, 1) == records


SEQUENTIAL = np.triu(np.ones((6, 6), bool), 1)     # the downstream mask of 3 sequential layers


def test_measures_carry_both_estimators_in_the_flat_layout():
  from tests.test_report import sweep_arrays, with_per_source
  found = statistics.measures(with_per_source(sweep_arrays()), SEQUENTIAL, resamples=200, seed=0)
  attn = found["per_layer"]["attn"]
  assert found["num_clusters"] == 8 and found["middle_layers"] == [0, 1, 2]
  assert attn["within_attn"][0] == pytest.approx(0.3, abs=1e-5)
  assert attn["within_total_ablated_sigma"][0] == pytest.approx(0.45, abs=1e-5)
  assert attn["slope_total"][0] == pytest.approx(1.0, abs=0.05)      # across prompts
  assert attn["ci_total"][0][0] < attn["slope_total"][0] < attn["ci_total"][0][1]
  assert attn["clear_total"] == [True, True, True] and "clear_norm" not in attn
  assert attn["ratio_total"][0] == pytest.approx(1.0, abs=0.05)
  plain = statistics.measures(sweep_arrays(), SEQUENTIAL, resamples=50, seed=0)["per_layer"]["attn"]
  assert "within_attn" not in plain and len(plain["slope_attn"]) == 3   # older sweeps
  with pytest.raises(ValueError, match=r"reads \(4, 4\): the downstream mask must be \[6, 6\]"):
    statistics.measures(sweep_arrays(), SEQUENTIAL[:4, :4])


def test_measures_use_the_downstream_mask_of_a_parallel_block_model():
  """In a parallel block, layer l's MLP does not read its attention: attention l's MLP
  compensation leaves out MLP l, as the report's own per-component statistics do."""
  from hydra_jax.report import statistics as report_statistics
  from hydra_jax.report import summary as report
  from hydra_jax.sweep import effects
  from tests.test_report import sweep_arrays
  arrays = sweep_arrays()
  parallel = effects.downstream_mask(tiny_config(num_layers=3, parallel_block=True))
  assert not parallel[0, 1] and SEQUENTIAL[0, 1]
  found = statistics.measures(arrays, parallel, resamples=20, seed=0)["per_layer"]
  counts = report_statistics.cluster_counts(report.clusters(arrays), 20, 0)
  expected = report.per_layer(report.per_component(arrays, counts, parallel))
  assert found["attn"]["slope_mlp"] == report.json_ready(
      [fit["slope"] for fit in expected["attn"]["regression_mlp"]])       # JSON: NaN as None
  sequential = statistics.measures(arrays, SEQUENTIAL, resamples=20, seed=0)["per_layer"]
  assert found["attn"]["slope_mlp"][2] is None                  # the last attention: no MLP after it
  assert sequential["attn"]["slope_mlp"][2] is not None         # its own layer's MLP, sequentially


def test_a_variant_report_is_drawn_only_on_request(tmp_path, monkeypatch):
  from hydra_jax.job import runtime
  calls, swept = [], runtime.Swept({"direct_effect": np.ones((3, 4), np.float32)}, {})
  monkeypatch.setattr(sweeps.job, "sweep_to_store",
                      lambda config, workdir: calls.append(("sweep", workdir)) or swept)
  monkeypatch.setattr(sweeps.job, "write_report",
                      lambda config, workdir, found, start: calls.append(("report", workdir)))
  arrays = sweeps._run_job(None, tmp_path / "off", reports=False)
  assert calls == [("sweep", str(tmp_path / "off"))] and arrays is swept.arrays
  assert (tmp_path / "off" / "results.npz").is_file() and len(list((tmp_path / "off").iterdir())) == 1
  assert sweeps._run_job(None, tmp_path / "off", reports=False)["direct_effect"].shape == (3, 4)
  assert len(calls) == 1                             # read back from results.npz, not swept again
  sweeps._run_job(None, tmp_path / "on", reports=True)
  assert calls[1:] == [("sweep", str(tmp_path / "on")), ("report", str(tmp_path / "on"))]


def test_mediation_shares_need_a_mean_response_away_from_zero():
  ones = np.ones(50)
  found = mediation.Mediation(response=ones + np.linspace(-0.1, 0.1, 50), response_held=0 * ones,
                              response_fed=ones, response_direct=0.25 * ones,
                              total_effect=-ones, total_effect_held=-2 * ones)
  assert mediation.shares(found) == pytest.approx(dict(direct=0.25, between=0.75,
                                                      direct_slope=0.0, between_slope=1.0))
  noisy = mediation.Mediation(**dict(vars(found), response=np.linspace(-1, 1.1, 50),
                                     response_direct=0.4 * np.linspace(-1, 1.1, 50)))
  found_shares = mediation.shares(noisy)
  assert found_shares["direct"] is None and found_shares["between"] is None
  assert found_shares["direct_slope"] == pytest.approx(0.4)


@pytest.mark.parametrize("variant", ["chinchilla", "pythia"])
def test_mediation_check_on_a_tiny_random_model(variant):
  config = tiny_config(**TINY_VARIANTS[variant])
  params = hj.init_params(config, seed=1)
  tokens = random_tokens(config, batch=4, length=7)
  lengths = np.array([7, 6, 5, 7], np.int32)
  found = mediation.mediation(params, config, tokens, lengths, ablated=1, responder=2)
  assert np.abs(found.response).max() > 1e-3                       # the responder does respond
  np.testing.assert_allclose(found.response_held, 0.0, atol=1e-5)  # held heads: no response
  np.testing.assert_allclose(found.response_fed, found.response, rtol=1e-4, atol=1e-6)
  assert np.abs(found.total_effect_held - found.total_effect).max() > 1e-4
  if config.parallel_block:   # nothing between attention 1 and layer 2 reads a^1 but the stream
    np.testing.assert_allclose(found.response_direct, found.response, rtol=1e-4, atol=1e-6)
  else:                       # m^1 reads a^1: part of the response runs through it
    assert np.abs(found.response_direct - found.response).max() > 1e-5
  with pytest.raises(ValueError, match="ablated < responder"):
    mediation.mediation(params, config, tokens, lengths, ablated=2, responder=1)


def test_strongest_pair_is_the_largest_later_attention_response():
  response = np.zeros((2, 8, 8))                     # [B, C, C]: 4 layers, attention at even C
  response[:, 0, 6] = 3.0                             # attn 0 -> attn 3: the strongest overall
  response[:, 2, 4], response[:, 2, 6] = 1.0, 2.0     # attn 1 -> attn 2, attn 3
  response[:, 4, 2] = 9.0                             # attn 2 -> attn 1: upstream, never counted
  response[:, 3, 7] = 9.0                             # mlp 1 -> mlp 3: not attention
  assert mediation.strongest_pair({"response": response}) == (0, 3)
  assert mediation.strongest_pair({"response": response}, ablated=1) == (1, 3)
  with pytest.raises(ValueError, match="after the ablated"):
    mediation.strongest_pair({"response": response}, ablated=3)


def test_facts_file_data_needs_an_existing_file(tmp_path):
  config = run_config.defaults()
  config.data.name = "facts_file"
  config.data.facts_file = str(tmp_path / "absent.json")
  with pytest.raises(ValueError, match="data.facts_file"):
    run_config.check(config)
  bad = tmp_path / "bad.json"
  for text, why in (("{not json", "not valid JSON"), ('{"id": 0}', "JSON list")):
    bad.write_text(text)
    with pytest.raises(ValueError, match=why):
      job_inputs.read_facts_file(str(bad))


def test_the_command_line_names_a_bad_override_in_one_line(tmp_path):
  command = [sys.executable, "-m", "hydra_jax.study", "--config=configs/study_mini.py",
             "--config.trian.steps=3", f"--workdir={tmp_path}"]
  done = subprocess.run(command, capture_output=True, text=True, cwd=CONFIGS.parent,
                        env={**os.environ, "PYTHONPATH": str(CONFIGS.parent)})
  assert done.returncode != 0
  assert done.stderr.strip().splitlines()[-1] == (
      "hydra_jax.study: error: bad config override: 'trian' Did you mean \"train\" instead of "
      "\"trian\"?")
  assert "Traceback" not in done.stderr


def _counting(monkeypatch, module, name, fail_on=None, error=KeyboardInterrupt):
  """Wrap module.name, counting calls; raise `error` when the run is `fail_on`."""
  calls, original = [], getattr(module, name)

  def wrapper(run, *args, **kwargs):
    calls.append(run.name)
    if run.name == fail_on:
      raise error("simulated failure")
    return original(run, *args, **kwargs)
  monkeypatch.setattr(module, name, wrapper)
  return calls


def test_the_miniature_runs_resumes_and_writes_the_comparison(tmp_path, monkeypatch):
  config = study_config("study_mini")
  with monkeypatch.context() as patch:
    _counting(patch, sweeps, "sweep_variant", fail_on="no_noise_s0")
    with pytest.raises(KeyboardInterrupt):
      runner.run_study(config, str(tmp_path), log=lambda line: None)
  first = tmp_path / "runs" / "label_noise_s0"
  assert (first / "resample" / runner.MEASURES_FILE).is_file()
  assert build.is_built(tmp_path / "runs" / "no_noise_s0" / "model")
  stamp = (first / "model" / build.TRAINING_FILE).stat().st_mtime_ns
  with monkeypatch.context() as patch:             # a sweep that cannot run: listed, study goes on
    _counting(patch, sweeps, "sweep_variant", fail_on="no_noise_s0", error=ValueError)
    partial = runner.run_study(config, str(tmp_path), log=lambda line: None)
  assert partial["runs"][1]["errors"] == {"resample": "simulated failure"}
  assert "- no_noise_s0 resample: simulated failure" in (tmp_path / "study.md").read_text()

  built = _counting(monkeypatch, build, "build_run")
  swept = _counting(monkeypatch, sweeps, "sweep_variant")
  lines = []
  study = runner.run_study(config, str(tmp_path), log=lines.append)
  assert built == [] and swept == ["no_noise_s0"]          # only what was left
  assert (first / "model" / build.TRAINING_FILE).stat().st_mtime_ns == stamp
  assert any("already built" in line for line in lines) and lines[0].startswith("[1/2]")

  saved = json.loads((tmp_path / "study.json").read_text())
  assert saved == json.loads(json.dumps(study))
  assert [r["run"] for r in saved["runs"]] == ["label_noise_s0", "no_noise_s0"]  # sorted
  for entry in saved["runs"]:
    assert 0.0 <= entry["training"]["fact_accuracy"] <= 1.0
    attn = entry["variants"]["resample"]["per_layer"]["attn"]
    for field in ("slope_attn", "ci_attn", "slope_mlp", "ci_mlp", "slope_total", "r2_total",
                  "fraction_restored", "norm_share", "slope_norm", "de_te_correlation",
                  "late_mlp_change", "within_attn", "within_ci_total", "ratio_total",
                  "clear_attn", "within_total_ablated_sigma", "clear_total_ablated_sigma"):
      assert len(attn[field]) == 2, field
    assert attn["ci_attn"][0][0] <= attn["slope_attn"][0] <= attn["ci_attn"][0][1]
  assert {row["arm"] for row in saved["aggregates"]} == {"no_noise", "label_noise"}
  assert (tmp_path / "study.md").read_text().count("| no_noise_s0 | resample |") == 2
  assert "| no_noise | resample | 1 | " in (tmp_path / "study.md").read_text().split("## Runs at")[0]
  assert (tmp_path / "study.png").stat().st_size > 0
  check = saved["mediation"]                        # on the run with the best attention CI
  assert check["run"] in {"no_noise_s0", "label_noise_s0"}
  assert (check["ablated_attention_layer"], check["responding_attention_layer"]) == (0, 1)
  assert abs(check["mean_response_held"]) < 1e-6
  np.testing.assert_allclose(check["mean_response_fed"], check["mean_response"], atol=1e-5)
  assert check["mean_held_minus_total_effect"] == pytest.approx(
      check["mean_total_effect_held"] - check["mean_total_effect"], abs=1e-6)
  assert set(check["shares"]) == {"direct", "between", "direct_slope", "between_slope"}
  assert "## Seed-level tests at the middle attention layers" in (tmp_path / "study.md").read_text()

  model_dir = first / "model"                       # any run can be swept again by the job
  model_config, params = checkpoints.load(model_dir)
  assert model_config.num_layers == 2 and tokenizers.load(model_dir).vocab_size <= 160
  assert not (first / "resample" / "summary.json").exists()   # no report unless asked for
  results_stamp = (first / "resample" / "results.npz").stat().st_mtime_ns
  config.bootstrap.resamples = 50                   # new CIs from the saved sweeps, no new sweep
  again = runner.run_study(config, str(tmp_path), log=lambda line: None)
  assert [e["variants"]["resample"]["bootstrap"]["resamples"] for e in again["runs"]] == [50, 50]
  assert (first / "resample" / "results.npz").stat().st_mtime_ns == results_stamp
  assert built == []
  config.train.steps = 31
  with pytest.raises(ValueError, match="train.steps"):
    runner.run_study(config, str(tmp_path), log=lambda line: None)


def test_a_run_is_claimed_by_one_worker_and_stale_claims_are_cleared(tmp_path, monkeypatch):
  from hydra_jax.study import workers
  run_dir = tmp_path / "runs" / "a_s0"
  assert workers._claim(run_dir) and not workers._claim(run_dir)     # the second claim loses
  started = []

  class FakeProcess:                           # no real processes: only the claims matter here
    exitcode = 0
    def __init__(self, target, args):
      started.append(args[2])
    start = join = lambda self: None
  monkeypatch.setattr(workers.multiprocessing, "get_context",
                      lambda method: type("Context", (), {"Process": FakeProcess}))
  lines = []
  workers.run_in_parallel(study_config("study_mini"), tmp_path, 3, lines.append)
  assert started == [0, 1, 2] and lines[0].startswith("3 workers on cores")
  assert workers._claim(run_dir)                 # the claim left by a killed study was cleared


def test_arms_over_seeds_at_a_fixed_layer():
  from hydra_jax.study import compare
  seeds = [dict(slope_attn=[0.5, 0.1], ci_attn=[[0.4, 0.6], [0.05, 0.2]]),
           dict(slope_attn=[-0.5, 0.3], ci_attn=[[-0.6, -0.4], [-0.1, 0.5]])]
  assert compare._over_seeds(seeds, "attn", 1) == "+0.20 ± 0.14 (1/2)"     # sd with ddof 1
  assert compare._over_seeds(seeds[:1], "attn", 1) == "+0.10 [+0.05, +0.20]"


def test_the_rule_finds_no_clear_middle_layer_in_the_regenerated_controls():
  """studies/controls (configs/study_controls.py): the dropout study's two controls swept
  with per-source arrays. No middle component of either is clear under the rule (clean
  sigma); with each run's own sigma the shuffled control meets its conditions, which is
  why the rule reads the clean sigma (hydra_jax.report.clear)."""
  study = json.loads((CONFIGS.parent / "studies" / "controls" / "study.json").read_text())
  runs = {entry["run"]: entry["variants"]["resample"] for entry in study["runs"]}
  assert sorted(runs) == ["control_random_init_s3", "control_shuffled_s3"]
  own_sigma = 0
  for measures in runs.values():
    for kind in ("attn", "mlp"):
      layers = measures["per_layer"][kind]
      for layer in measures["middle_layers"]:
        for part in ("total", "attn", "mlp"):
          assert layers[f"clear_{part}"][layer] is False, (kind, layer, part)
          own_sigma += layers[f"clear_{part}_ablated_sigma"][layer]
  assert own_sigma > 0
