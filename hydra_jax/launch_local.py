"""A simulated pod on one machine: N processes of the main job joined into one global mesh.

    python -m hydra_jax.launch_local --num_processes=2 --devices_per_process=4 -- \
        --config=configs/tiny.py --workdir=/tmp/hydra_pod

starts `python -m hydra_jax.main <args after -->` N times. Process i sees
`devices_per_process` host (CPU) devices (XLA_FLAGS=--xla_force_host_platform_device_count)
and joins the others through `jax.distributed.initialize` with a coordinator on a free
local port and gloo CPU collectives, so the job runs exactly as on N hosts of a TPU pod:
one mesh over N x devices_per_process devices, results gathered across processes, only
process 0 writing. It is the way to debug multi-host code before renting a slice.

The contract between launcher and job is the environment (`ENV_*` below): the launcher
sets it, `join` (called by hydra_jax.main) reads it. Process 0's output is forwarded as it
comes; the others' is kept and printed when they fail. When one process ends with an
error (or is killed), the launcher stops the others and exits with an error naming it.
Should the launcher itself die, its children die with it (Linux), and a process that
loses its peers stops by itself once the coordinator's heartbeat times out.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from typing import Optional, Sequence

ENV_COORDINATOR = "HYDRA_JAX_COORDINATOR"
ENV_NUM_PROCESSES = "HYDRA_JAX_NUM_PROCESSES"
ENV_PROCESS_ID = "HYDRA_JAX_PROCESS_ID"
DEVICE_COUNT_FLAG = "--xla_force_host_platform_device_count"
HEARTBEAT_SECONDS = 20      # a process missing this long counts as dead: its peers stop
CONNECT_SECONDS = 60        # how long a process waits for all the others to join
GRACE_SECONDS = 5           # SIGTERM, then this long, then SIGKILL
PR_SET_PDEATHSIG = 1


# The job's side ---------------------------------------------------------------------------------


def launched() -> bool:
  """Whether this process was started by the local launcher."""
  return ENV_PROCESS_ID in os.environ


def join() -> None:
  """Join the local pod this process was launched into (gloo collectives on CPU)."""
  import jax
  env = os.environ
  jax.config.update("jax_cpu_collectives_implementation", "gloo")
  jax.distributed.initialize(
      coordinator_address=env[ENV_COORDINATOR], num_processes=int(env[ENV_NUM_PROCESSES]),
      process_id=int(env[ENV_PROCESS_ID]), initialization_timeout=CONNECT_SECONDS,
      heartbeat_timeout_seconds=HEARTBEAT_SECONDS, shutdown_timeout_seconds=CONNECT_SECONDS)


# The launcher's side ----------------------------------------------------------------------------


def free_port() -> int:
  with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
    probe.bind(("127.0.0.1", 0))
    return probe.getsockname()[1]


def with_device_count(base, devices: int) -> dict[str, str]:
  """`base` (an environment) with XLA_FLAGS giving `devices` host devices, other flags kept."""
  flags = [f for f in base.get("XLA_FLAGS", "").split() if not f.startswith(DEVICE_COUNT_FLAG)]
  return dict(base, XLA_FLAGS=" ".join(flags + [f"{DEVICE_COUNT_FLAG}={devices}"]))


def process_env(base, index: int, num_processes: int, devices: int, port: int) -> dict[str, str]:
  """The environment of process `index`: its share of host devices and the pod's address."""
  return dict(with_device_count(base, devices), JAX_PLATFORMS="cpu",
              **{ENV_COORDINATOR: f"127.0.0.1:{port}", ENV_NUM_PROCESSES: str(num_processes),
                 ENV_PROCESS_ID: str(index)})


def _die_with_parent() -> None:
  """In the child before exec: get SIGKILL when the launcher dies (Linux; elsewhere a no-op)."""
  try:
    ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
  except (OSError, AttributeError):
    pass


def start(job_args: Sequence[str], num_processes: int, devices: int, env=None,
          capture_all: bool = False) -> list:
  """Popen of every process, each with `.log`: its output file (None for process 0, which
  writes to this terminal, unless capture_all)."""
  port, processes = free_port(), []
  for index in range(num_processes):
    log = tempfile.TemporaryFile() if index or capture_all else None
    processes.append(subprocess.Popen(
        [sys.executable, "-m", "hydra_jax.main", *job_args],
        env=process_env(os.environ if env is None else env, index, num_processes, devices, port),
        stdout=log, stderr=subprocess.STDOUT if log else None, preexec_fn=_die_with_parent))
    processes[-1].log = log
    print(f"hydra_jax.launch_local: process {index} of {num_processes}: pid "
          f"{processes[-1].pid}", file=sys.stderr, flush=True)
  return processes


def output(process) -> str:
  """What a process started with a log file has written so far."""
  process.log.seek(0)
  return process.log.read().decode("utf-8", "replace").rstrip()


def stop(processes) -> None:
  """SIGTERM every process still running, SIGKILL those still there after the grace time."""
  for process in processes:
    if process.poll() is None:
      process.terminate()
  deadline = time.time() + GRACE_SECONDS
  for process in processes:
    try:
      process.wait(timeout=max(0.0, deadline - time.time()))
    except subprocess.TimeoutExpired:
      process.kill()
      process.wait()


def how_it_ended(code: int) -> str:
  return f"was killed by signal {-code}" if code < 0 else f"exited with code {code}"


def supervise(processes, timeout: float = 0) -> int:
  """Wait for all; on the first failure (or the timeout) stop the rest. The exit code."""
  deadline = time.time() + timeout if timeout else None
  while True:
    codes = [p.poll() for p in processes]
    failed = [i for i, code in enumerate(codes) if code not in (None, 0)]
    if not failed and all(code == 0 for code in codes):
      return 0
    if failed or (deadline and time.time() > deadline):
      stop(processes)
      break
    time.sleep(0.1)
  for index, process in enumerate(processes):
    if process.log and output(process):
      print(f"--- output of process {index} ---\n{output(process)}", file=sys.stderr)
  reason = (f"process {failed[0]} {how_it_ended(codes[failed[0]])}" if failed
            else f"the pod ran past --timeout={timeout:g} s")
  print(f"hydra_jax.launch_local: error: {reason}; stopped the other processes",
        file=sys.stderr, flush=True)
  return 1


def parse(argv: Sequence[str]) -> tuple[argparse.Namespace, list[str]]:
  """(the launcher's options, the job's arguments after `--`)."""
  split = list(argv).index("--") if "--" in argv else len(argv)
  parser = argparse.ArgumentParser(prog="python -m hydra_jax.launch_local",
                                   description=__doc__.split("\n\n")[0])
  parser.add_argument("--num_processes", type=int, default=2)
  parser.add_argument("--devices_per_process", type=int, default=4)
  parser.add_argument("--timeout", type=float, default=0,
                      help="stop the pod after this many seconds (0: no limit)")
  options = parser.parse_args(argv[:split])
  if options.num_processes < 1 or options.devices_per_process < 1:
    parser.error("--num_processes and --devices_per_process must be at least 1")
  return options, list(argv[split + 1:])


def main(argv: Optional[Sequence[str]] = None) -> int:
  options, job_args = parse(sys.argv[1:] if argv is None else argv)
  processes = start(job_args, options.num_processes, options.devices_per_process)
  try:
    return supervise(processes, options.timeout)
  except KeyboardInterrupt:
    stop(processes)
    return 130


if __name__ == "__main__":
  sys.exit(main())
