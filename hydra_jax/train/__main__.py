"""Rebuild the embedded default model: python -m hydra_jax.train --build_embedded [--out DIR].

The build runs on one CPU core (pinned before JAX starts), as each worker of a study
does: XLA's CPU reductions depend on how many threads share a matrix product, so one
core makes the weights the same on every machine with the recorded versions, and equal
to the study run the recipe comes from (configs/study_candidate.py, seed 4).
"""

import os

from absl import app, flags

_BUILD = flags.DEFINE_bool("build_embedded", False, "rebuild the embedded default model's assets")
_OUT = flags.DEFINE_string("out", None, "output directory (default: the package's assets/tiny)")
_STEPS = flags.DEFINE_integer("steps", None, "override the recipe's training steps (experiments)")


def main(argv) -> None:
  del argv
  if not _BUILD.value:
    raise SystemExit("nothing to do: pass --build_embedded to rebuild the embedded model")
  if hasattr(os, "sched_setaffinity"):
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
  from hydra_jax.train import embedded   # JAX starts after the pinning
  embedded.build(_OUT.value or embedded.ASSET_DIR, steps=_STEPS.value)


if __name__ == "__main__":
  app.run(main)
