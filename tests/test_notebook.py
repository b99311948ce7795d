"""launch/: colab.ipynb runs top to bottom offline against this checkout, and tpu_vm.sh
parses and prints the gcloud commands it would run.

The notebook's install cell is skipped (HYDRA_JAX_OFFLINE, and the package is importable
through PYTHONPATH); HYDRA_JAX_QUICK shrinks the sweep. Runtime: about 25 s (kernel
start, a small sweep of the embedded model with its compile, the figures).
"""

import os
import pathlib
import shlex
import subprocess
import sys

import nbformat
from nbclient import NotebookClient

from hydra_jax.train import embedded

PROJECT_ROOT = pathlib.Path(__file__).resolve().parents[1]
NOTEBOOK = PROJECT_ROOT / "launch" / "colab.ipynb"
TPU_SCRIPT = PROJECT_ROOT / "launch" / "tpu_vm.sh"


def _text(cell) -> str:
  return "".join(output.get("text", "") for output in cell.outputs if output.output_type == "stream")


def test_colab_notebook_runs_offline(tmp_path, monkeypatch):
  monkeypatch.setenv("HYDRA_JAX_OFFLINE", "1")
  monkeypatch.setenv("HYDRA_JAX_QUICK", "1")
  monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
      [str(PROJECT_ROOT)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]))
  # The kernel spec runs `python`: make it this interpreter (the one with jax installed).
  monkeypatch.setenv("PATH", os.pathsep.join([os.path.dirname(sys.executable), os.environ["PATH"]]))
  notebook = nbformat.read(NOTEBOOK, as_version=4)
  NotebookClient(notebook, timeout=600, kernel_name="python3",
                 resources={"metadata": {"path": str(tmp_path)}}).execute()
  code = [cell for cell in notebook.cells if cell.cell_type == "code"]
  assert f"hydra_jax from {PROJECT_ROOT / 'hydra_jax'}" in _text(code[0])
  assert "fraction_restored_middle_attention" in _text(code[1])
  assert (tmp_path / "hydra_tiny" / "report.md").exists()
  intervention = _text(code[2])
  layer = embedded.RECIPE.model.num_layers // 2                     # the notebook's choice
  assert f"zeroing attention layer {layer}: logit" in intervention
  assert f"layer {layer + 1}: attn DE" in intervention
  images = [output for output in code[3].outputs if "image/png" in output.get("data", {})]
  assert len(images) == 5
  for cell in code:
    assert not [output for output in cell.outputs if output.output_type == "error"]


def test_tpu_vm_script_parses():
  done = subprocess.run(["bash", "-n", str(TPU_SCRIPT)], capture_output=True, text=True)
  assert done.returncode == 0, done.stderr


def test_tpu_vm_dry_run_prints_the_gcloud_commands(tmp_path):
  # No gcloud on PATH: a dry run must not call it.
  env = dict(os.environ, PATH=f"{tmp_path}:/usr/bin:/bin")
  done = subprocess.run(
      ["bash", str(TPU_SCRIPT), "--dry-run", "--name", "hydra-test", "--zone", "europe-west4-a",
       "--accelerator-type", "v4-32", "--spot", "--config", "configs/chinchilla7b.py",
       "--workdir", "/tmp/run7b", "--results", str(tmp_path / "back"), "--delete", "--",
       "--config.mesh.model=8", "--config.sweep.chunk_size=16"],
      capture_output=True, text=True, env=env, timeout=60)
  assert done.returncode == 0, done.stderr
  commands = [shlex.split(line) for line in done.stdout.splitlines() if line.startswith("gcloud ")]
  verbs = [c[4] for c in commands]
  assert verbs == ["describe", "create", "scp", "ssh", "ssh", "scp", "delete"]
  assert all(c[:4] == ["gcloud", "compute", "tpus", "tpu-vm"] and "--zone=europe-west4-a" in c
             for c in commands)
  create = commands[1]
  assert "--accelerator-type=v4-32" in create and "--spot" in create
  install, run = commands[3], commands[4]
  assert "--worker=all" in install and "pip install" in install[-1]
  assert "--worker=all" in run
  remote = shlex.split(run[-1].split("=", 1)[1].split("&&", 1)[1])
  assert remote == ["python3", "-m", "hydra_jax.main", "--config=configs/chinchilla7b.py",
                    "--workdir=/tmp/run7b", "--config.distributed=auto",
                    "--config.mesh.model=8", "--config.sweep.chunk_size=16"]
  copy_back = commands[5]
  assert copy_back[5:7] == ["--recurse", "hydra-test:/tmp/run7b"] and "--worker=0" in copy_back
  assert not (tmp_path / "back").exists()


def test_tpu_vm_script_rejects_unknown_options():
  done = subprocess.run(["bash", str(TPU_SCRIPT), "--dry-run", "--zones", "x"],
                        capture_output=True, text=True, timeout=60)
  assert done.returncode == 2 and "unknown option --zones" in done.stderr


def test_tpu_vm_dry_run_with_a_bucket_keeps_the_workdir_there(tmp_path):
  """--bucket: the job's workdir defaults to a path in the bucket (which outlives a preempted
  VM, so the same command resumes), gcsfs is installed for it, and the results come back
  from the bucket rather than from worker 0's disk."""
  env = dict(os.environ, PATH=f"{tmp_path}:/usr/bin:/bin")
  done = subprocess.run(
      ["bash", str(TPU_SCRIPT), "--dry-run", "--name", "hydra-spot", "--spot", "--bucket",
       "gs://my-bucket/", "--results", str(tmp_path / "back")],
      capture_output=True, text=True, env=env, timeout=60)
  assert done.returncode == 0, done.stderr
  commands = [shlex.split(line) for line in done.stdout.splitlines()
              if line.startswith("gcloud ")]
  install, run, copy_back = commands[3], commands[4], commands[5]
  assert "pip install -q gcsfs" in install[-1]
  assert "--workdir=gs://my-bucket/hydra_jax/hydra-spot" in shlex.split(run[-1].split("&&", 1)[1])
  assert copy_back == ["gcloud", "storage", "cp", "--recursive", "gs://my-bucket/hydra_jax/hydra-spot",
                       str(tmp_path / "back")]
  refused = subprocess.run(["bash", str(TPU_SCRIPT), "--dry-run", "--bucket", "my-bucket"],
                           capture_output=True, text=True, env=env, timeout=60)
  assert refused.returncode == 2 and "--bucket must be a gs:// URL" in refused.stderr
