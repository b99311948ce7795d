"""The command line: flags -> config -> run -> report. Nothing else lives here.

    python -m hydra_jax.main --config=configs/tiny.py --workdir=/tmp/hydra_tiny
    python -m hydra_jax.main --config=configs/hf.py --config.checkpoint=PATH --workdir=...
    python -m hydra_jax.main --config=configs/chinchilla7b.py --config.dry_run=True

Every config field can be overridden, e.g. `--config.sweep.num_sources=5`
(`hydra_jax/job/config.py` lists them). Running the same command again after an
interruption resumes from the chunks already saved in --workdir. A bad config file,
field or input file stops with one line naming it, no traceback. The job's lines go
through absl logging to stderr (`hydra_jax.job.output`: --verbosity=-1 or
--stderrthreshold=warning for quiet, --log_dir=DIR for a log file).
"""

from __future__ import annotations

import difflib
import importlib.util
import logging
import os
import sys
from typing import Optional
import traceback

from absl import app
from absl import flags
from ml_collections import config_flags

from hydra_jax.job import output

_REPO_CONFIG = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                            "configs", "tiny.py")

CONFIG_HELP = ("the job config, from --config=FILE (configs/tiny.py, configs/hf.py, "
               "configs/chinchilla7b.py); a field is overridden with --config.<field>=VALUE")
_WORKDIR = flags.DEFINE_string("workdir", None, "folder for the chunks and the report")


def _lost_peer(error: Exception) -> bool:
  """Whether `error` is a collective or coordination failure: another process went away."""
  import jax
  return isinstance(error, jax.errors.JaxRuntimeError) and jax.process_count() > 1


def main(argv) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  config = flags.FLAGS.config
  # JAX reports at INFO that it found no TPU on machines without one: not news for a user.
  logging.getLogger("jax._src.xla_bridge").setLevel(logging.WARNING)
  output.use_log_dir()
  from hydra_jax.job import run as job, runtime  # after flag parsing, so --help stays fast
  try:
    job.run(config, _WORKDIR.value)      # checks the config first, before any device use
  except (ValueError, FileNotFoundError) as error:  # the project's "bad input" errors
    _stop(f"hydra_jax.main: error: {error}", runtime.joined())
  except Exception as error:
    joined = runtime.joined()
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


def _config_file(argv: list[str]) -> tuple[Optional[str], list[str]]:
  """(the file of --config=FILE or --config FILE, the last one given, without absl's ":args";
  argv without those arguments)."""
  path, rest, arguments = _REPO_CONFIG if os.path.exists(_REPO_CONFIG) else None, [], iter(argv)
  for arg in arguments:
    if arg.startswith("--config="):
      path = arg[len("--config="):]
    elif arg == "--config":
      path = next(arguments, path)
    else:
      rest.append(arg)
  return path and path.split(":")[0], rest


def _load_config(path: str):
  """The config file's get_config(); a ValueError naming the file when it cannot give one."""
  if not os.path.isfile(path):
    why = "is a directory" if os.path.isdir(path) else "no such file"
    raise ValueError(f"--config={path}: {why} (e.g. --config=configs/tiny.py)")
  spec = importlib.util.spec_from_file_location("job_config", path)
  module = importlib.util.module_from_spec(spec)
  try:
    spec.loader.exec_module(module)
    get_config = getattr(module, "get_config", None)
    config = get_config() if callable(get_config) else None
  except Exception as error:  # whatever the file raises, reported as one line
    raise ValueError(f"--config={path} cannot be loaded: {type(error).__name__}: {error}") from None
  if config is None:
    raise ValueError(f"--config={path} defines no get_config() returning the job config")
  return config


def _unknown_overrides(argv: list[str], config) -> list[str]:
  """The --config.a.b=... overrides naming no field of `config`, with a suggestion."""
  unknown = []
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
  """absl's flag parsing, the config file loaded once (here: absl gets the config itself
  and applies the overrides), every bad flag, config file or override reported as one line."""
  path, rest = _config_file(argv)
  if path is None:
    sys.exit("hydra_jax.main: error: --config=FILE is required")
  try:
    config = _load_config(path)
  except ValueError as error:
    sys.exit(f"hydra_jax.main: error: {error}")
  unknown = _unknown_overrides(rest, config)
  if unknown:
    sys.exit(f"hydra_jax.main: error: unknown config key {', '.join(unknown)}: the config has "
             "no such field (hydra_jax/job/config.py lists them)")
  config_flags.DEFINE_config_dict("config", config, CONFIG_HELP, lock_config=True, sys_argv=rest)
  try:
    return flags.FLAGS(rest)
  except flags.Error as error:                      # wrong type, malformed value, unknown flag
    sys.exit(f"hydra_jax.main: error: {error}")
  except (AttributeError, KeyError, TypeError) as error:   # e.g. a value for a whole section
    sys.exit(f"hydra_jax.main: error: {str(error).splitlines()[0]}")


def run() -> None:
  """Entry point for `python -m hydra_jax.main` and console scripts."""
  output.plain_lines()
  app.run(main, flags_parser=_parse_flags)


if __name__ == "__main__":
  run()
