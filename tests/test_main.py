"""The main job end to end, as a user runs it: `python -m hydra_jax.main` in a subprocess.

  * the embedded default (with few prompts and sources) writes the whole report;
  * a run killed after its first chunk resumes to exactly the arrays of an uninterrupted run;
  * a workdir of another config is refused, naming the differing keys.

Bad configs and config files, and the other configs (hf, chinchilla7b), are in
tests/test_main_configs.py: a file of its own, so that pytest-xdist runs the two files
on both workers at once. The job on a data x model mesh against one device is
tests/test_multihost.py::test_one_process_on_a_data_by_model_mesh_matches_one_device.

Runtime: about a minute of CPU time (measured: 68 s on a loaded 2-core machine): three
sweeps of the embedded model, one of them interrupted, and a refused start.
"""

import json
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
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
  assert re.search(r"^I\d{4} [\d:.]+ +\d+ layers\.py:\d+\] chunk 1/", logged, re.M), logged
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
