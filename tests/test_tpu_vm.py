"""launch/tpu_vm.sh, through --dry-run (no gcloud on the PATH: a dry run must call none):

  * the TPU runtime follows the accelerator type (v4, v5e, v5p, v6e), --version overrides;
  * the workers install into a Python 3.11 venv made by uv, and run the job under nohup
    with a log file; logs / status / fetch / delete subcommands;
  * it ships `git archive HEAD` and refuses uncommitted changes or an uncommitted config
    (a scratch repository holding the script); a local or gs:// checkpoint reaches every
    worker and the job.

Runtime: about 3 s.
"""

import os
import shlex
import shutil
import subprocess

import pytest

from tests.conftest import PROJECT_ROOT

TPU_SCRIPT = PROJECT_ROOT / "launch" / "tpu_vm.sh"
RUNTIMES = {"v4-32": "tpu-ubuntu2204-base", "v5litepod-16": "v2-alpha-tpuv5-lite",
            "v5p-8": "v2-alpha-tpuv5", "v6e-8": "v2-alpha-tpuv6e"}


def tpu_vm(tmp_path, *args, script=TPU_SCRIPT):
  """(returncode, stdout, stderr) of the script, without gcloud on the PATH."""
  env = dict(os.environ, PATH=f"{tmp_path}:/usr/bin:/bin")
  done = subprocess.run(["bash", str(script), *args], capture_output=True, text=True, env=env,
                        timeout=60)
  return done.returncode, done.stdout, done.stderr


def commands(stdout: str) -> list[list[str]]:
  """The printed commands (not the # comments), split as a shell would."""
  return [shlex.split(line) for line in stdout.splitlines() if line and not line.startswith("#")]


def remote(command: list[str]) -> str:
  """The --command=... of a gcloud ssh command."""
  (found,) = [arg for arg in command if arg.startswith("--command=")]
  return found[len("--command="):]


def test_the_script_parses():
  done = subprocess.run(["bash", "-n", str(TPU_SCRIPT)], capture_output=True, text=True)
  assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("accelerator", sorted(RUNTIMES))
def test_runtime_uv_venv_and_nohup_launch_per_accelerator(tmp_path, accelerator):
  code, out, err = tpu_vm(tmp_path, "--dry-run", "--name", "h", "--accelerator-type", accelerator)
  assert code == 0, err
  found = commands(out)
  assert found[0][:3] == ["git", "-C", str(PROJECT_ROOT)] and found[0][3:] == [
      "archive", "--format=tar.gz", "-o", "/tmp/hydra_jax_src.tar.gz", "HEAD"]
  (create,) = [c for c in found if c[4:5] == ["create"]]
  assert f"--accelerator-type={accelerator}" in create
  assert f"--version={RUNTIMES[accelerator]}" in create
  install, launch = [remote(c) for c in found if c[4:5] == ["ssh"]]
  assert "curl -LsSf https://astral.sh/uv/install.sh | sh" in install
  assert "uv venv --python 3.11 ~/hydra_jax_venv" in install
  assert ("uv pip install -q --python ~/hydra_jax_venv/bin/python -e ~/hydra_jax_src "
          "'jax[tpu]'") in install
  assert "python3 -m pip" not in install                  # not the VM's Python 3.10
  assert launch.startswith("cd ~/hydra_jax_src && nohup ~/hydra_jax_venv/bin/python -m "
                           "hydra_jax.main --config=configs/tiny.py ")
  assert launch.endswith(" > ~/hydra_jax_run.log 2>&1 < /dev/null & echo $! > ~/hydra_jax_run.pid")


def test_version_overrides_and_an_unknown_type_asks_for_it(tmp_path):
  code, out, _ = tpu_vm(tmp_path, "--dry-run", "--accelerator-type", "v6e-8", "--version",
                        "v2-alpha-tpuv6e-custom")
  (create,) = [c for c in commands(out) if c[4:5] == ["create"]]
  assert code == 0 and "--version=v2-alpha-tpuv6e-custom" in create
  code, out, err = tpu_vm(tmp_path, "--dry-run", "--accelerator-type", "v3-8")
  assert code == 2 and "no known TPU runtime for --accelerator-type v3-8: pass --version" in err
  assert "gcloud" not in out


def test_run_wait_delete_in_order_with_the_job_arguments(tmp_path):
  code, out, err = tpu_vm(
      tmp_path, "run", "--dry-run", "--name", "hydra-test", "--zone", "europe-west4-a",
      "--accelerator-type", "v4-32", "--spot", "--config", "configs/chinchilla7b.py",
      "--workdir", "/tmp/run7b", "--results", str(tmp_path / "back"), "--wait", "--delete",
      "--", "--config.mesh.model=8", "--config.sweep.chunk_size=16")
  assert code == 0, err
  gcloud = [c for c in commands(out) if c[0] == "gcloud"]
  assert [c[4] for c in gcloud] == ["describe", "create", "scp", "ssh", "ssh", "ssh", "scp",
                                    "delete"]
  assert all(c[:4] == ["gcloud", "compute", "tpus", "tpu-vm"] and "--zone=europe-west4-a" in c
             for c in gcloud)
  assert "--spot" in gcloud[1] and "--worker=all" in gcloud[2]
  job = remote(gcloud[4]).split(" && ", 1)[1].split(" > ")[0]
  assert shlex.split(job) == ["nohup", "~/hydra_jax_venv/bin/python", "-m", "hydra_jax.main",
                              "--config=configs/chinchilla7b.py", "--workdir=/tmp/run7b",
                              "--config.distributed=auto", "--config.mesh.model=8",
                              "--config.sweep.chunk_size=16"]
  assert "--worker=0" in gcloud[5] and "while kill -0 $(cat ~/hydra_jax_run.pid" in remote(gcloud[5])
  assert gcloud[6][5:7] == ["--recurse", "hydra-test:/tmp/run7b"] and "--worker=0" in gcloud[6]
  assert not (tmp_path / "back").exists()


def test_logs_status_fetch_and_delete_subcommands(tmp_path):
  code, out, _ = tpu_vm(tmp_path, "logs", "--dry-run", "--name", "h", "--worker", "3")
  (logs,) = commands(out)
  assert code == 0 and "--worker=3" in logs and remote(logs) == "tail -n 100 -F ~/hydra_jax_run.log"
  code, out, _ = tpu_vm(tmp_path, "status", "--dry-run", "--name", "h")
  (status,) = commands(out)
  assert code == 0 and "--worker=all" in status
  assert remote(status).startswith("if kill -0 $(cat ~/hydra_jax_run.pid 2>/dev/null)")
  code, out, _ = tpu_vm(tmp_path, "fetch", "--dry-run", "--name", "h", "--bucket", "gs://b/",
                        "--results", str(tmp_path / "back"))
  assert code == 0 and commands(out) == [["gcloud", "storage", "cp", "--recursive",
                                          "gs://b/hydra_jax/h", str(tmp_path / "back")]]
  code, out, _ = tpu_vm(tmp_path, "delete", "--dry-run", "--name", "h")
  assert code == 0 and commands(out) == [["gcloud", "compute", "tpus", "tpu-vm", "delete", "h",
                                          "--zone=us-central2-b", "--quiet"]]


def test_checkpoints_local_and_in_a_bucket_reach_every_worker(tmp_path):
  checkpoint = tmp_path / "smollm2"
  checkpoint.mkdir()
  code, out, err = tpu_vm(tmp_path, "--dry-run", "--name", "h", "--checkpoint", str(checkpoint))
  assert code == 0, err
  found = commands(out)
  (copy,) = [c for c in found if c[4:6] == ["scp", "--recurse"]]
  assert copy[6:8] == [str(checkpoint), "h:~/hydra_jax_checkpoint/"] and "--worker=all" in copy
  launch = remote([c for c in found if c[4:5] == ["ssh"]][-1])
  assert "--config.checkpoint=../hydra_jax_checkpoint/smollm2" in launch
  code, out, err = tpu_vm(tmp_path, "--dry-run", "--name", "h", "--bucket", "gs://b",
                          "--checkpoint", "gs://b/models/gemma/")
  found = commands(out)
  install, launch = [remote(c) for c in found if c[4:5] == ["ssh"]]
  assert code == 0 and not [c for c in found if c[4:6] == ["scp", "--recurse"]]
  assert "gcloud storage cp --recursive gs://b/models/gemma ~/hydra_jax_checkpoint/" in install
  assert "uv pip install -q --python ~/hydra_jax_venv/bin/python gcsfs" in install
  assert "--config.checkpoint=../hydra_jax_checkpoint/gemma" in launch
  code, out, err = tpu_vm(tmp_path, "--dry-run", "--checkpoint", str(tmp_path / "absent"))
  assert code == 2 and f"no checkpoint {tmp_path / 'absent'}" in err and not out


@pytest.fixture
def scratch_repo(tmp_path):
  """A committed repository holding the script and configs/tiny.py."""
  repo = tmp_path / "repo"
  (repo / "launch").mkdir(parents=True)
  (repo / "configs").mkdir()
  shutil.copy(TPU_SCRIPT, repo / "launch" / "tpu_vm.sh")
  shutil.copy(PROJECT_ROOT / "configs" / "tiny.py", repo / "configs" / "tiny.py")
  git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.com"]
  for args in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "scratch"]):
    subprocess.run(git + args, check=True, capture_output=True)
  return repo


def test_uncommitted_changes_and_configs_are_refused_before_any_gcloud(tmp_path, scratch_repo):
  script = scratch_repo / "launch" / "tpu_vm.sh"
  (scratch_repo / "configs" / "tiny.py").write_text("# changed\n")
  code, out, err = tpu_vm(tmp_path, "--name", "h", script=script)       # not a dry run
  assert code == 2 and "uncommitted changes in" in err and "commit or stash them" in err
  assert "gcloud" not in out
  code, out, _ = tpu_vm(tmp_path, "--dry-run", "--name", "h", script=script)
  assert code == 0 and "# warning: uncommitted changes" in out          # a dry run only warns
  subprocess.run(["git", "-C", str(scratch_repo), "checkout", "-q", "--", "."], check=True)
  (scratch_repo / "configs" / "mine.py").write_text("# not committed\n")
  code, _, err = tpu_vm(tmp_path, "--name", "h", "--config", "configs/mine.py", script=script)
  assert code == 2 and "--config configs/mine.py is not committed" in err


def test_bad_options_are_refused(tmp_path):
  for args, message in ((["--zones", "x"], "unknown option --zones"),
                        (["--bucket", "my-bucket"], "--bucket must be a gs:// URL"),
                        (["--delete"], "--delete needs --wait"),
                        (["--config", "configs/none.py"], "no config file")):
    code, out, err = tpu_vm(tmp_path, "--dry-run", *args)
    assert code == 2 and message in err and "gcloud" not in out, (args, err)
