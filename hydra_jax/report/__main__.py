"""Redraw a finished run's report: python -m hydra_jax.report --workdir=DIR.

Reads DIR/results.npz (and the config, model and timing of DIR/summary.json) and
writes summary.json, figures/*.png and report.md again.
"""

import os
import sys

from absl import app, flags

from hydra_jax.report import summary

_WORKDIR = flags.DEFINE_string("workdir", None, "folder of a finished run (holding results.npz)")


def main(argv) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  if not _WORKDIR.value:
    raise app.UsageError("--workdir is required")
  try:
    summary.redraw(_WORKDIR.value)
  except ValueError as error:
    sys.exit(f"hydra_jax.report: error: {error}")
  print(f"report redrawn in {os.path.join(_WORKDIR.value, summary.REPORT_FILE)}")


if __name__ == "__main__":
  app.run(main)
