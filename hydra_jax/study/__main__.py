"""Run a study: python -m hydra_jax.study --config=configs/study_<name>.py --workdir=DIR

Trains every arm's models, sweeps each with the main job and writes DIR/study.md,
study.json and study.png. Running the same command again continues where it stopped.
Every field can be overridden, e.g. `--config.train.steps=300`. `--workers=N` shares the
runs among N processes, one core each (`hydra_jax.study.workers`).
"""

import logging
import sys

from absl import app, flags
from ml_collections import config_flags

from hydra_jax.job import output

_CONFIG = config_flags.DEFINE_config_file("config", None, "study config (configs/study_*.py)",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "folder for the models, sweeps and comparison")
_WORKERS = flags.DEFINE_integer("workers", 1, "processes sharing the runs, one core each "
                                "(2 on a 2-core CPU: up to 1.3x the throughput of one)", lower_bound=1)


def main(argv) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  if _CONFIG.value is None or not _WORKDIR.value:
    raise app.UsageError("--config=configs/study_<name>.py and --workdir=DIR are required")
  logging.getLogger("jax._src.xla_bridge").setLevel(logging.WARNING)
  output.use_log_dir()      # the sweeps' lines as the main job's (`hydra_jax.job.output`)
  from hydra_jax.study import runner   # after flag parsing, so --help stays fast
  try:
    runner.run_study(_CONFIG.value, _WORKDIR.value, workers=_WORKERS.value)
  except (ValueError, FileNotFoundError) as error:   # the project's "bad input" errors
    sys.exit(f"hydra_jax.study: error: {error}")


def _parse_flags(argv: list[str]) -> list[str]:
  """absl's flag parsing, with a bad flag or an override naming no field as one line."""
  try:
    return flags.FLAGS(argv)
  except flags.Error as error:
    sys.exit(f"hydra_jax.study: error: {error}")
  except (AttributeError, KeyError, TypeError) as error:   # --config.<path> naming no field
    message = " ".join(str(error.args[0] if error.args else error).split())
    sys.exit(f"hydra_jax.study: error: bad config override: {message}")


if __name__ == "__main__":
  output.plain_lines()
  app.run(main, flags_parser=_parse_flags)
