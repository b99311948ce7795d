"""The command line: flags -> config -> run -> report. Nothing else lives here.

    python -m hydra_jax.main --config=configs/tiny.py --workdir=/tmp/hydra_tiny
    python -m hydra_jax.main --config=configs/hf.py --config.checkpoint=PATH --workdir=...
    python -m hydra_jax.main --config=configs/chinchilla7b.py --config.dry_run=True

Every config field can be overridden, e.g. `--config.sweep.num_sources=5`
(`hydra_jax.run_config` lists them). Running the same command again after an
interruption resumes from the chunks already saved in --workdir. A bad config stops
with one message naming the field, no traceback.
"""

from __future__ import annotations

import difflib
import importlib.util
import logging
import os
import sys
import traceback

from absl import app
from absl import flags
from ml_collections import config_flags

_REPO_CONFIG = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                            "configs", "tiny.py")

_CONFIG = config_flags.DEFINE_config_file(
    "config", _REPO_CONFIG if os.path.exists(_REPO_CONFIG) else None,
    "job config file (configs/tiny.py, configs/hf.py, configs/chinchilla7b.py)",
    lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "folder for the chunks and the report")


def _multi_host() -> bool:
  """Whether this process is one of several hosts of a TPU slice (or told a coordinator)."""
  hosts = os.environ.get("TPU_WORKER_HOSTNAMES", "")
  return "," in hosts or bool(os.environ.get("JAX_COORDINATOR_ADDRESS"))


def _initialize_distributed(mode: str) -> bool:
  """Join the other hosts (True when it did): a process of `hydra_jax.launch_local` joins its
  local pod, a host of a TPU slice (or one told JAX_COORDINATOR_ADDRESS) lets JAX find them."""
  from hydra_jax import launch_local
  if launch_local.launched():
    if mode == "off":
      raise ValueError("config.distributed='off', but hydra_jax.launch_local started this job as "
                       "one of several processes: use 'auto' or 'on'")
    launch_local.join()
    return True
  if mode == "on" or (mode == "auto" and _multi_host()):
    import jax
    jax.distributed.initialize()
    return True
  return False


def _lost_peer(error: Exception) -> bool:
  """Whether `error` is a collective or coordination failure: another process went away."""
  import jax
  return isinstance(error, jax.errors.JaxRuntimeError) and jax.process_count() > 1


def main(argv) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  config = _CONFIG.value
  if config is None:
    raise app.UsageError("--config=FILE is required")
  from hydra_jax.job import config as run_config  # after flag parsing, so --help stays fast
  # JAX reports at INFO that it found no TPU on machines without one: not news for a user.
  logging.getLogger("jax._src.xla_bridge").setLevel(logging.WARNING)
  joined = False
  try:
    run_config.check(config)
    if not config.dry_run and not _WORKDIR.value:
      raise ValueError("--workdir=DIR is required: the folder that receives the results")
    joined = _initialize_distributed(config.distributed)
    from hydra_jax.job import run as job
    job.run(config, _WORKDIR.value)
  except (ValueError, FileNotFoundError) as error:  # the project's "bad input" errors
    _stop(f"hydra_jax.main: error: {error}", joined)
  except Exception as error:
    if not joined:
      raise
    if not _lost_peer(error):
      traceback.print_exc()
    import jax
    _stop(f"hydra_jax.main: error: process {jax.process_index()} stopped: {_first_line(error)}"
          + (" (lost contact with another process: did one of them die?)"
             if _lost_peer(error) else ""), joined)


def _first_line(error: Exception) -> str:
  return (str(error).splitlines() or [type(error).__name__])[0]


def _stop(message: str, joined: bool) -> None:
  """Exit with `message`. A process of a multi-host job exits at once: JAX's exit-time
  shutdown would wait for every other process (which may be gone or stuck), then abort."""
  if not joined:
    sys.exit(message)
  print(message, file=sys.stderr, flush=True)
  sys.stdout.flush()
  os._exit(1)


def _unknown_overrides(argv: list[str]) -> list[str]:
  """The --config.a.b=... overrides naming no field of the config file, with a suggestion."""
  files = [a.split("=", 1)[1] for a in argv if a.startswith("--config=")] or [_REPO_CONFIG]
  spec = importlib.util.spec_from_file_location("job_config", files[-1].split(":")[0])
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  config, unknown = module.get_config(), []
  for arg in argv:
    if not arg.startswith("--config."):
      continue
    keys = arg.split("=", 1)[0][len("--config."):].split(".")
    node = config
    for depth, key in enumerate(keys):
      fields = list(node.keys()) if hasattr(node, "keys") else []
      if key not in fields:
        close = difflib.get_close_matches(key, fields, n=1)
        hint = f" (did you mean --config.{'.'.join(keys[:depth] + close)}?)" if close else ""
        unknown.append(f"--config.{'.'.join(keys)}{hint}")
        break
      node = node[key]
  return unknown


def _parse_flags(argv: list[str]) -> list[str]:
  """absl's flag parsing, with every bad flag or override reported as one line."""
  try:
    return flags.FLAGS(argv)
  except flags.Error as error:                      # wrong type, malformed value, unknown flag
    sys.exit(f"hydra_jax.main: error: {error}")
  except (AttributeError, KeyError, TypeError) as error:   # --config.<path> naming no field
    try:
      culprits = ", ".join(_unknown_overrides(argv))
    except Exception:  # the config file itself cannot be read again: report what absl said
      culprits = str(error).splitlines()[0]
    sys.exit(f"hydra_jax.main: error: unknown config key {culprits}: the config has no such "
             "field (hydra_jax/run_config.py lists them)")


def run() -> None:
  """Entry point for `python -m hydra_jax.main` and console scripts."""
  app.run(main, flags_parser=_parse_flags)


if __name__ == "__main__":
  run()
