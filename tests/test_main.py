"""The main job end to end, as a user runs it: `python -m hydra_jax.main` in a subprocess.

  * the embedded default (with few prompts and sources) writes the whole report;
  * a run killed after its first chunk resumes to exactly the arrays of an uninterrupted run;
  * a workdir of another config is refused, naming the differing keys;
  * bad configs and bad config files stop with one message and no traceback;
  * configs/chinchilla7b.py prints its plan in seconds, and refuses to run on a
    machine too small for it.

Runtime: about 80 s on 2 CPU cores (four sweeps of the embedded model, compile included,
and a batch of quick failing runs started in parallel).
"""

import json
import os
import pathlib
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from hydra_jax import checkpoints
from tests.conftest import run_on_devices, with_devices
from hydra_jax.model import transformer as model_lib
from hydra_jax.model.config import ModelConfig
from hydra_jax.train import embedded

PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED_DATA = pathlib.Path(PROJECT_ROOT).parent / "shared" / "data"
EMBEDDED_DIR = pathlib.Path(PROJECT_ROOT) / "hydra_jax" / "assets" / "tiny"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
FIGURES = ("intact_vs_ablated", "de_vs_te", "compensation_fits", "response_heatmap",
           "late_mlp_erasure")
SMALL = ["--config=configs/tiny.py", "--config.data.max_prompts=48",
         "--config.sweep.num_sources=3", "--config.sweep.chunk_size=4"]
NO_FIGURES = [*SMALL, "--config.report.figures=False"]
LOG_LINE = re.compile(r"^[IWE]\d{4} ")   # absl-prefixed log lines (warnings), not the job's


def main_command(*args):
  return [sys.executable, "-m", "hydra_jax.main", *args]


def run_main(*args, timeout=300):
  done = subprocess.run(main_command(*args), cwd=PROJECT_ROOT, capture_output=True, text=True,
                        timeout=timeout)
  return done.returncode, done.stdout, done.stderr


def error_lines(stderr: str) -> list[str]:
  """stderr from the first error line on, absl-prefixed log lines left out (the job's own
  lines, plain on stderr, come before it)."""
  lines = [line for line in stderr.splitlines() if line.strip() and not LOG_LINE.match(line)]
  first = next((i for i, line in enumerate(lines) if line.startswith("hydra_jax.main: error:")),
               0)
  return lines[first:]


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
  """One uninterrupted run of the embedded default, small, also logging to a --log_dir:
  (workdir, the job's lines (on stderr), seconds)."""
  workdir = str(tmp_path_factory.mktemp("full"))
  logs = tmp_path_factory.mktemp("logs")
  start = time.time()
  code, out, err = run_main(*SMALL, f"--workdir={workdir}", f"--log_dir={logs}")
  assert code == 0, err
  logged = (logs / "hydra_jax.main.INFO").read_text()          # the same lines, absl-prefixed
  assert re.search(r"^I\d{4} [\d:.]+ +\d+ run\.py:\d+\] chunk 1/", logged, re.M), logged
  return workdir, err, time.time() - start


def test_embedded_default_writes_the_report(finished_run):
  workdir, out, _ = finished_run
  results = np.load(os.path.join(workdir, "results.npz"))
  summary = json.load(open(os.path.join(workdir, "summary.json")))
  num_prompts = summary["prompts"]["kept"]
  assert 2 < num_prompts <= 48 and summary["num_prompts"] == num_prompts
  assert summary["prompts"]["total"] == 48
  assert summary["prompts"]["total"] - num_prompts == sum(summary["prompts"]["dropped"].values())
  C = 2 * summary["model"]["num_layers"]
  assert results["response"].shape == (num_prompts, C, C)
  assert results["total_effect"].shape == (num_prompts, 3, C)
  assert results["sources"].shape == (num_prompts, 3)
  assert len(set(results["prompt_id"].tolist())) == num_prompts
  assert all(text for text in results["prompt"]) and all(text for text in results["token_text"])
  # The scored token is the clean argmax, and kept prompts are those answered correctly.
  assert (results["token_text"] == results["label"]).mean() > 0.9
  # Upstream responses are exactly zero (the sweep's consistency property).
  upstream = np.tril(np.ones((C, C), bool), -1)
  assert np.all(results["response"][:, upstream] == 0)
  for section in ("config", "model", "prompts", "per_layer", "headline", "timing"):
    assert section in summary
  assert summary["timing"]["ablated_forwards"] == num_prompts * C * 3
  assert len(summary["per_layer"]["attn"]["regression"]) == C // 2
  markdown = open(os.path.join(workdir, "report.md")).read()
  for name in FIGURES:
    png = open(os.path.join(workdir, "figures", name + ".png"), "rb").read()
    assert png[:8] == PNG_MAGIC and len(png) > 10_000, name
    assert f"figures/{name}.png" in markdown
  progress = [line for line in out.splitlines() if line.startswith("chunk ")]
  assert len(progress) == -(-num_prompts // 4)
  assert re.fullmatch(r"chunk 1/\d+: 4/\d+ prompts done in [\d.,]+ s \(compiling\)", progress[0])
  assert re.fullmatch(r"chunk 2/\d+: 8/\d+ prompts done, [\d,]+ ablated forwards/s, [\d,]+ s left",
                      progress[1])
  assert any(re.fullmatch(r"report written to .*/report\.md \([\d.]+ s\)", line)
             for line in out.splitlines())


def test_interrupted_run_resumes_to_identical_results(finished_run, tmp_path):
  workdir = str(tmp_path / "resumed")
  chunk_dir = os.path.join(workdir, "chunks")
  process = subprocess.Popen(main_command(*NO_FIGURES, f"--workdir={workdir}"), cwd=PROJECT_ROOT,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  deadline = time.time() + 240
  while time.time() < deadline and process.poll() is None:
    if os.path.isdir(chunk_dir) and any(n.startswith("chunk_") for n in os.listdir(chunk_dir)):
      process.send_signal(signal.SIGKILL)
      break
    time.sleep(0.01)
  process.wait(timeout=60)
  assert process.returncode == -signal.SIGKILL, "the run ended before it could be interrupted"
  assert not os.path.exists(os.path.join(workdir, "results.npz"))
  finished = sorted(n for n in os.listdir(chunk_dir) if n.startswith("chunk_"))
  total = len([n for n in os.listdir(os.path.join(finished_run[0], "chunks"))])
  assert 1 <= len(finished) < total

  code, out, err = run_main(*NO_FIGURES, f"--workdir={workdir}")
  assert code == 0, err
  assert f"{len(finished)} already finished" in err
  assert os.path.isfile(os.path.join(workdir, "report.md"))     # report.figures=False: no PNGs
  assert not os.path.exists(os.path.join(workdir, "figures"))
  resumed = np.load(os.path.join(workdir, "results.npz"))
  reference = np.load(os.path.join(finished_run[0], "results.npz"))
  assert sorted(resumed.files) == sorted(reference.files)
  for name in reference.files:
    np.testing.assert_array_equal(resumed[name], reference[name], err_msg=name)


def test_workdir_of_another_config_is_refused(finished_run):
  code, _, err = run_main(*SMALL, "--config.sweep.num_sources=4", "--config.sweep.seed=7",
                          f"--workdir={finished_run[0]}")
  assert code == 1
  (line,) = error_lines(err)
  assert "holds results of a different config" in line
  assert "sweep.num_sources (3 there, 4 now)" in line and "sweep.seed (0 there, 7 now)" in line


def test_bad_configs_stop_with_one_message(tmp_path):
  other = ModelConfig(vocab_size=512, d_model=64, num_layers=2, num_heads=4, max_seq_len=64)
  checkpoints.save(tmp_path / "other", other, model_lib.init_params(other, 0))
  corrupt = tmp_path / "corrupt"          # the embedded model's config, its weights truncated
  corrupt.mkdir()
  (corrupt / "config.json").write_bytes((EMBEDDED_DIR / "config.json").read_bytes())
  (corrupt / "params.safetensors").write_bytes((EMBEDDED_DIR / "params.safetensors").read_bytes()[:20])
  cases = {
      "unknown key": (["--config.sweep.num_source=3"], "unknown config key --config.sweep.num_source"),
      "wrong type": (["--config.sweep.num_sources=many"], "--config.sweep.num_sources=many"),
      "bad value": (["--config.sweep.kind=gaussian"], "config.sweep.kind='gaussian': must be one of"),
      "missing checkpoint": (["--config.model_source=checkpoint",
                              f"--config.checkpoint={tmp_path / 'absent'}"], "no such directory"),
      "unknown gguf model": (["--config.model_source=gguf", "--config.checkpoint=llama9"],
                             "config.checkpoint='llama9': no such file, nor a model name of "
                             "hydra_jax.fetch (smollm2, gemma3-270m)"),
      "checkpoint mismatch": (["--config.model_source=checkpoint",
                               f"--config.checkpoint={tmp_path / 'other'}"],
                              "does not match config.model: d_model=96 (the model has 64), "
                              "mlp_dim=384 (the model has 256), num_layers=8 (the model has 2)"),
      "truncated weights": (["--config.model_source=checkpoint", f"--config.checkpoint={corrupt}"],
                            f"{corrupt / 'params.safetensors'}: not a readable safetensors file "
                            "(truncated or corrupt?)"),
      "no prompts left": (["--config.model_source=random", "--config.model.num_layers=1",
                           "--config.data.max_prompts=8"],
                          "no prompts left after filtering: 8 prompts: 0 kept"),
      "no workdir": ([], "--workdir=DIR is required"),
  }
  processes = {}
  for name, (args, _) in cases.items():
    workdir = [] if name == "no workdir" else [f"--workdir={tmp_path / name.replace(' ', '_')}"]
    processes[name] = subprocess.Popen(
        main_command("--config=configs/tiny.py", *args, *workdir), cwd=PROJECT_ROOT,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
  for name, (_, message) in cases.items():
    out, err = processes[name].communicate(timeout=300)
    assert processes[name].returncode == 1, (name, out, err)
    assert "Traceback" not in err, (name, err)
    lines = error_lines(err)
    assert len(lines) == 1 and lines[0].startswith("hydra_jax.main: error: "), (name, err)
    assert message in lines[0], (name, lines[0])


def test_bad_config_files_stop_with_one_line_naming_the_file(tmp_path):
  (tmp_path / "broken.py").write_text("def get_config(:\n")
  (tmp_path / "empty.py").write_text("x = 1\n")
  cases = {"configs/nope.py": "--config=configs/nope.py: no such file",
           str(tmp_path): f"--config={tmp_path}: is a directory",
           str(tmp_path / "broken.py"): f"--config={tmp_path / 'broken.py'} cannot be loaded: "
                                        "SyntaxError",
           str(tmp_path / "empty.py"): f"--config={tmp_path / 'empty.py'} defines no get_config()"}
  for path, message in cases.items():
    code, _, err = run_main(f"--config={path}", f"--workdir={tmp_path / 'run'}", timeout=60)
    assert code == 1 and "Traceback" not in err, (path, err)
    (line,) = error_lines(err)
    assert line.startswith(f"hydra_jax.main: error: {message}"), (path, line)
  assert not (tmp_path / "run").exists()


def test_sharded_run_matches_one_device(finished_run, tmp_path):
  """The same job over 4 host devices (data 2 x model 2) gives the one-device numbers."""
  env = with_devices(4)
  done = run_on_devices(main_command(*SMALL, "--config.mesh.model=2", f"--workdir={tmp_path}"),
                        cwd=PROJECT_ROOT, env=env, timeout=300)
  assert done.returncode == 0, done.stderr
  assert "data=2 x model=2" in json.dumps(json.load(open(tmp_path / "summary.json"))["timing"])
  sharded = np.load(tmp_path / "results.npz")
  reference = np.load(os.path.join(finished_run[0], "results.npz"))
  assert sorted(sharded.files) == sorted(reference.files)
  for name in reference.files:
    if reference[name].dtype.kind == "f":
      np.testing.assert_allclose(sharded[name], reference[name], atol=1e-4, err_msg=name)
    else:
      np.testing.assert_array_equal(sharded[name], reference[name], err_msg=name)


@pytest.mark.skipif(not (SHARED_DATA / "known_1000.json").exists(), reason="needs known_1000.json")
def test_hf_config_on_known_facts_with_a_checkpoint_directory(tmp_path):
  """configs/hf.py (known facts from manual_dir via TFDS, the tokenizer found beside the
  weights, config.model taken from the checkpoint) on the embedded model's directory."""
  code, out, err = run_main(
      "--config=configs/hf.py", "--config.model_source=checkpoint",
      f"--config.checkpoint={EMBEDDED_DIR}", f"--config.data.manual_dir={SHARED_DATA}",
      f"--config.data.data_dir={tmp_path / 'tfds'}", "--config.data.max_prompts=16",
      "--config.data.filter_correct=False", "--config.sweep.num_sources=2",
      "--config.sweep.chunk_size=8", f"--workdir={tmp_path / 'run'}")
  assert code == 0, err
  summary = json.load(open(tmp_path / "run" / "summary.json"))
  layers = embedded.RECIPE.model.num_layers                           # read from the checkpoint
  assert (summary["model"]["source"], summary["model"]["num_layers"]) == ("checkpoint", layers)
  assert summary["prompts"] == dict(dataset="known_facts", total=16, kept=16, correct=None,
                                    dropped={})
  results = np.load(tmp_path / "run" / "results.npz")
  assert "Vinson Massif is located in the continent of" in set(results["prompt"])   # record 0
  assert results["response"].shape == (16, 2 * layers, 2 * layers)


def test_chinchilla_dry_run_prints_the_plan_in_seconds():
  start = time.time()
  code, out, err = run_main("--config=configs/chinchilla7b.py", "--config.dry_run=True",
                            timeout=120)
  assert code == 0, err
  assert re.search(r"plan for chinchilla7b:\n  parameters +[\d,]+ \(", err), err
  for field in ("bytes per device", "FLOPs (whole sweep)", "devices needed", "mesh"):
    assert field in err
  assert time.time() - start < 60


def test_chinchilla_on_a_small_machine_stops_with_the_plan(tmp_path):
  code, out, err = run_main("--config=configs/chinchilla7b.py", f"--workdir={tmp_path}",
                            "--stderrthreshold=warning", timeout=120)
  assert code == 1
  assert "Traceback" not in err and "cpu: 1 device" not in err   # INFO silenced, not the error
  assert "this machine is too small for the sweep" in err and "plan for chinchilla7b" in err
  assert not os.listdir(tmp_path)     # nothing was written, nothing allocated
