"""Multi-host runs on one machine: the main job as a pod of 2 processes x 4 CPU devices.

`python -m hydra_jax.launch_local` joins two processes of `hydra_jax.main` through
jax.distributed (gloo collectives), so the multi-host code (one global mesh, results
gathered across processes, process 0 alone writing, finished chunks broadcast) runs here:

  * the pod gives the results.npz of one process on 8 devices, bit for bit, and of one
    process on one device (floats to 1e-5: other per-device batch shapes sum in another
    order), for a data-only mesh with a chunk size dividing the data axis (8) and a
    4 x 2 data x model mesh with one that does not (6 prompts over 4; sources outside
    each chunk: the main job's regression case for resample sources read from padding
    rows, the sweep's are in tests/test_sharding.py);
  * one process on 8 devices (the 4 x 2 mesh) gives the one-device results, and its
    summary names the mesh (this runs without gloo too);
  * only process 0 writes: an audit hook (sitecustomize) logs every file that a process
    opens for writing, creates, moves or removes under the workdir;
  * one process killed mid-run: the other stops by itself within a bounded time with one
    clear line; both being dead, the same command resumes to identical results;
  * the launcher stops every process when one fails, naming it.

Runtime: about 3 minutes of CPU time (eight jobs without figures, two of them pods,
each paying its start-up; compiles shared through the test run's XLA cache), 97 s on 2
idle cores: the independent runs start together. On a shared machine (load 12-18 on 2
cores) it took 10-12 minutes.
"""

import json
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import time

import numpy as np
import pytest

from hydra_jax import launch_local
from tests.conftest import deadlocked_in_xla, with_devices

PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMALL = ["--config=configs/tiny.py", "--config.data.max_prompts=32", "--config.sweep.num_sources=2",
         "--config.report.figures=False"]   # the figures are tested elsewhere
DATA_ONLY = ["--config.sweep.chunk_size=8"]                      # 8 divides the data axis (8)
DATA_BY_MODEL = ["--config.sweep.chunk_size=6", "--config.mesh.data=4", "--config.mesh.model=2"]
HEADS = ["--config.sweep.protocol=heads", "--config.heads.num_sequences=16",   # 2 batches of 8
         "--config.heads.batch_size=8", "--config.heads.seq_len=8", "--config.heads.num_sources=2",
         "--config.heads.cells_per_step=8"]
POD_SECONDS = 540      # a hung pod (a collective deadlock) is stopped by the launcher
STOP_SECONDS = 90      # a surviving process stops within this (heartbeat 20 s; loaded machine)

AUDIT_HOOK = textwrap.dedent('''
    """Log (to $AUDIT_LOG.<process id>) every write-like file event under $AUDIT_ROOT."""
    import os, sys
    _root, _log = os.environ.get("AUDIT_ROOT"), os.environ.get("AUDIT_LOG")
    _id = os.environ.get("HYDRA_JAX_PROCESS_ID")
    _EVENTS = {"os.rename", "os.remove", "os.mkdir", "shutil.rmtree", "os.truncate"}

    def _writes(event, args):
      if event != "open":
        return event in _EVENTS
      mode, flags = args[1], args[2]
      if isinstance(mode, str):
        return any(c in mode for c in "wax+")
      return isinstance(flags, int) and bool(flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT))

    def _hook(event, args):
      if event not in _EVENTS and event != "open" or not args or not isinstance(args[0], (str, bytes)):
        return
      path = os.path.abspath(os.fsdecode(args[0]))
      if path.startswith(_root) and _writes(event, args):
        with open(f"{_log}.{_id}", "a") as f:
          f.write(f"{event} {path}\\n")

    if _root and _id is not None:
      sys.addaudithook(_hook)
''')


def gloo_available() -> bool:
  from jax._src import lib
  module = getattr(lib, "_jax", None) or getattr(lib, "xla_extension", None)
  return hasattr(module, "make_gloo_tcp_collectives")


needs_gloo = pytest.mark.skipif(not gloo_available(),
                                reason="this jaxlib has no gloo CPU collectives for multi-process runs")


@pytest.fixture(scope="module")
def audit(tmp_path_factory):
  """(env for the jobs, root of the audited workdirs, log prefix)."""
  folder = tmp_path_factory.mktemp("audit")
  (folder / "sitecustomize.py").write_text(AUDIT_HOOK)
  root = tmp_path_factory.mktemp("workdirs")
  path = [str(folder), PROJECT_ROOT] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
  env = dict(os.environ, PYTHONPATH=os.pathsep.join(path), AUDIT_ROOT=str(root),
             AUDIT_LOG=str(folder / "writes"))
  return env, root, str(folder / "writes")


def launch(env, workdir, *args, devices=None, processes=2):
  """Popen of the launcher (processes > 1) or of one main job on `devices` host devices."""
  job = [*SMALL, *args, f"--workdir={workdir}"]
  if processes > 1:
    command = [sys.executable, "-m", "hydra_jax.launch_local", f"--num_processes={processes}",
               "--devices_per_process=4", f"--timeout={POD_SECONDS}", "--", *job]
  else:
    command = [sys.executable, "-m", "hydra_jax.main", *job]
    env = dict(env, XLA_FLAGS=with_devices(devices)["XLA_FLAGS"])
  out, err = tempfile.TemporaryFile(), tempfile.TemporaryFile()   # pipes could fill up
  process = subprocess.Popen(command, cwd=PROJECT_ROOT, env=env, stdout=out, stderr=err)
  process.logs, process.command, process.env = (out, err), command, env
  return process


def finish(process, timeout=600, rerun_on_deadlock=True) -> str:
  """process's stdout + stderr once it has ended successfully. A single-process job that XLA
  aborted for a deadlocked collective (conftest) is run once more: it resumes."""
  process.wait(timeout=timeout)
  out, err = (stream.seek(0) or stream.read().decode() for stream in process.logs)
  if rerun_on_deadlock and deadlocked_in_xla(process.returncode, err):
    again = subprocess.Popen(process.command, cwd=PROJECT_ROOT, env=process.env,
                             stdout=process.logs[0], stderr=process.logs[1])
    again.logs = process.logs
    return finish(again, timeout, rerun_on_deadlock=False)
  assert process.returncode == 0, err[-3000:]
  return out + err


def load_npz(path):
  with np.load(path) as data:
    return {name: data[name] for name in data.files}


def load(workdir):
  return load_npz(os.path.join(workdir, "results.npz"))


def assert_same(results, reference, *, atol=0.0):
  assert sorted(results) == sorted(reference)
  for name, expected in reference.items():
    if atol and expected.dtype.kind == "f":
      np.testing.assert_allclose(results[name], expected, atol=atol, rtol=0, err_msg=name)
    else:
      np.testing.assert_array_equal(results[name], expected, err_msg=name)


@pytest.fixture(scope="module")
def runs(audit):
  """Finished workdirs: one device, one process x 8 devices (both meshes; the data-only one
  and the 4 x 2 pod where gloo is available)."""
  env, root, _ = audit
  jobs = {"one_device": launch(env, root / "one_device", *DATA_ONLY, devices=1, processes=1),
          "eight_data_model": launch(env, root / "eight_data_model", *DATA_BY_MODEL, devices=8,
                                     processes=1)}
  if gloo_available():
    jobs["eight_data"] = launch(env, root / "eight_data", *DATA_ONLY, devices=8, processes=1)
    jobs["pod_data_model"] = launch(env, root / "pod_data_model", *DATA_BY_MODEL)
  outputs = {name: finish(process) for name, process in jobs.items()}
  return {name: (root / name, outputs[name]) for name in jobs}


def written_by(log_prefix, process_id) -> list[str]:
  path = f"{log_prefix}.{process_id}"
  return open(path).read().splitlines() if os.path.exists(path) else []


def test_one_process_on_a_data_by_model_mesh_matches_one_device(runs):
  """The job over 8 host devices of one process (data 4 x model 2) gives the one-device
  numbers, and its summary names the mesh."""
  workdir, out = runs["eight_data_model"]
  assert "mesh: data=4 x model=2" in out
  assert json.loads((workdir / "summary.json").read_text())["timing"]["mesh"] == "data=4 x model=2"
  assert_same(load(workdir), load(runs["one_device"][0]), atol=1e-4)


@needs_gloo
def test_pod_on_a_data_by_model_mesh_matches_one_process(runs):
  pod, out = runs["pod_data_model"]
  assert "cpu: 8 devices (cpu) in 2 processes" in out and "mesh: data=4 x model=2" in out
  results = load(pod)
  assert_same(results, load(runs["eight_data_model"][0]))
  assert_same(results, load(runs["one_device"][0]), atol=1e-4)


@needs_gloo
def test_killed_process_stops_the_other_and_the_rerun_resumes(runs, audit):
  """Data-only mesh. Process 1 is killed after the first chunk: process 0 stops by itself
  (no launcher watching) with one clear line; then the same command finishes the run."""
  env, root, _ = audit
  workdir = root / "pod_data"
  first_chunk = workdir / "chunks" / "chunk_00000.npz"
  processes = launch_local.start([*SMALL, *DATA_ONLY, f"--workdir={workdir}"], 2, 4, env=env,
                                 capture_all=True)
  try:
    deadline = time.time() + 600
    while not first_chunk.exists() and time.time() < deadline and processes[0].poll() is None:
      time.sleep(0.02)
    processes[1].send_signal(signal.SIGKILL)
    killed = time.time()
    processes[0].wait(timeout=STOP_SECONDS)
    stopped = time.time() - killed
  finally:
    launch_local.stop(processes)
  output = launch_local.output(processes[0])
  assert stopped < STOP_SECONDS
  if processes[0].returncode == -signal.SIGABRT:
    # Blocked inside a cross-process gather when its peer died: XLA's coordination agent
    # ends the process itself once the peer's heartbeats stop, naming the cause.
    assert "stopped sending heartbeats" in output, output[-3000:]
  else:
    assert processes[0].returncode == 1, output[-3000:]
    errors = [line for line in output.splitlines() if line.startswith("hydra_jax.main: error:")]
    assert len(errors) == 1 and "process 0 stopped" in errors[0], output[-3000:]
    assert "lost contact with another process" in errors[0]
  assert not (workdir / "results.npz").exists()
  finished = len([n for n in os.listdir(workdir / "chunks") if n.startswith("chunk_")])
  assert 1 <= finished < 4

  out = finish(launch(env, workdir, *DATA_ONLY))
  assert f"{finished} already finished" in out
  results = load(workdir)
  assert_same(results, load(runs["eight_data"][0]))
  assert_same(results, load(runs["one_device"][0]), atol=1e-4)


@needs_gloo
def test_heads_pod_matches_one_process(audit):
  """The heads protocol as a pod of 2 processes (data=8 over both): process 0 alone writes,
  and its batches and summary are those of one process on one device."""
  env, root, log_prefix = audit
  pod = launch(env, root / "heads_pod", *HEADS)
  single = launch(env, root / "heads_one", *HEADS, devices=1, processes=1)
  out = finish(pod)
  finish(single)
  assert "cpu: 8 devices (cpu) in 2 processes" in out and "mesh: data=8 x model=1" in out
  for index in range(2):
    name = f"chunks/chunk_{index:05d}.npz"
    assert_same(load_npz(root / "heads_pod" / name), load_npz(root / "heads_one" / name), atol=1e-4)
  summaries = [json.loads((root / name / "summary.json").read_text()) for name in ("heads_pod", "heads_one")]
  np.testing.assert_allclose(*(np.array(s["per_head"]["self_repair"]) for s in summaries), atol=1e-4)
  assert not [line for line in written_by(log_prefix, 1) if "heads_pod" in line]


@needs_gloo
def test_only_process_zero_writes(runs, audit):
  _, root, log_prefix = audit
  assert written_by(log_prefix, 1) == []
  pod_writes = [line for line in written_by(log_prefix, 0) if "pod_data_model" in line]
  assert any(line.endswith("results.npz") for line in pod_writes)   # the hook does see writes
  assert sorted(os.listdir(root / "pod_data_model")) == sorted(os.listdir(root / "eight_data_model"))


def test_launcher_stops_the_others_when_one_fails(tmp_path, capsys):
  """supervise() on stand-in processes: one exits with 3, the sleeping one is stopped."""
  sleeper = subprocess.Popen(["sleep", "60"])
  failing = subprocess.Popen(["sh", "-c", "echo broken pipe; exit 3"],
                             stdout=open(tmp_path / "log", "w+b"), stderr=subprocess.STDOUT)
  sleeper.log, failing.log = None, open(tmp_path / "log", "rb")
  start = time.time()
  code = launch_local.supervise([sleeper, failing])
  assert code == 1 and time.time() - start < 10
  assert sleeper.returncode == -signal.SIGTERM
  err = capsys.readouterr().err
  assert "--- output of process 1 ---\nbroken pipe" in err
  assert err.splitlines()[-1] == ("hydra_jax.launch_local: error: process 1 exited with code 3; "
                                  "stopped the other processes")


def test_launcher_rejects_bad_options(capsys):
  with pytest.raises(SystemExit) as stopped:
    launch_local.parse(["--num_processes=0", "--", "--config=configs/tiny.py"])
  assert stopped.value.code == 2
  assert "--num_processes and --devices_per_process must be" in capsys.readouterr().err
  options, job = launch_local.parse(["--devices_per_process=2", "--", "--workdir=x", "--", "y"])
  assert (options.num_processes, options.devices_per_process, job) == (2, 2, ["--workdir=x", "--", "y"])


def test_process_env_sets_the_pod_and_replaces_the_device_count():
  env = launch_local.process_env({"XLA_FLAGS": "--xla_force_host_platform_device_count=8 --x=1",
                                  "HOME": "/h"}, 1, 2, 4, 1234)
  assert env["XLA_FLAGS"] == "--x=1 --xla_force_host_platform_device_count=4"
  assert env[launch_local.ENV_COORDINATOR] == "127.0.0.1:1234" and env["HOME"] == "/h"
  assert (env[launch_local.ENV_NUM_PROCESSES], env[launch_local.ENV_PROCESS_ID]) == ("2", "1")
