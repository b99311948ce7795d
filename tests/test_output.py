"""The job's output lines: the chunks' progress (the first chunk includes compiling and
gives no ETA; rates and ETAs come from the later ones), the final line's time covering
the report, and absl's flags (--verbosity, --stderrthreshold, --log_dir) acting on them.

Runtime: about 15 s on 2 busy cores (most of it one dry run of the embedded config).
"""

import os
import subprocess
import sys

import pytest

from hydra_jax.job import config as run_config
from hydra_jax.job import output
from hydra_jax.job import layers
from hydra_jax.job import run as job_run
from hydra_jax.job import runtime

PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DRY_RUN = [sys.executable, "-m", "hydra_jax.main", "--config=configs/tiny.py",
           "--config.dry_run=True"]


def test_the_rate_and_eta_come_from_the_chunks_after_the_first():
  marks = [(0.0, 0), (30.0, 4)]                    # start; the first chunk: 30 s compiling
  assert output.steady_rate(marks) is None and output.seconds_left(marks, 20) is None
  marks += [(32.0, 8), (34.0, 12)]                 # then 4 prompts every 2 s
  assert output.steady_rate(marks) == pytest.approx(2.0)
  assert output.seconds_left(marks, 20) == pytest.approx(10.0)


def test_progress_lines_say_compiling_first_then_rate_and_eta():
  times = iter([100.0, 130.0, 132.0, 135.0])
  progress = output.Progress(num_chunks=5, total=20, done_before=4, per_prompt=48,
                             clock=lambda: next(times))
  assert progress.steady_forwards_per_second() is None
  assert progress.line(1, 4) == "chunk 2/5: 8/20 prompts done in 30.0 s (compiling)"
  assert progress.line(2, 8) == "chunk 3/5: 12/20 prompts done, 96 ablated forwards/s, 4 s left"
  # 8 prompts in the 5 s after the first chunk: 1.6 prompts/s, 4 prompts left
  assert progress.line(3, 12) == "chunk 4/5: 16/20 prompts done, 77 ablated forwards/s, 2 s left"
  assert progress.steady_forwards_per_second() == pytest.approx(1.6 * 48)


def test_the_final_line_counts_the_report(monkeypatch):
  now, lines = [10.0], []
  def write(workdir, arrays, info, doses=None):     # a report that takes 7 s
    now[0] += 7.0
    return {"written": workdir}
  monkeypatch.setattr(layers.report_summary, "write", write)
  monkeypatch.setattr(job_run, "say", lines.append)
  config = run_config.defaults()
  summary = job_run.write_report(config, "/w", runtime.Swept({}, {}), start=1.0,
                                 clock=lambda: now[0])
  assert summary == {"written": "/w"}
  assert lines == ["report written to /w/report.md (16.0 s)"]   # 9 s of job + 7 s of report


def test_verbosity_silences_the_job_lines(tmp_path):
  """--verbosity=-1: no line on the terminal, none in the log file (test_main.py checks the
  lines on stderr and in a --log_dir file by default, and --stderrthreshold=warning)."""
  done = subprocess.run([*DRY_RUN, "--verbosity=-1", f"--log_dir={tmp_path}"], cwd=PROJECT_ROOT,
                        capture_output=True, text=True, timeout=120)
  assert done.returncode == 0, done.stderr
  assert done.stdout == "" and "plan for tiny" not in done.stderr
  assert "cpu: 1 device" not in done.stderr
  assert "plan for tiny" not in (tmp_path / "hydra_jax.main.INFO").read_text()
