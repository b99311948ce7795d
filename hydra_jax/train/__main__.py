"""Rebuild the embedded default model: python -m hydra_jax.train --build_embedded [--out DIR]."""

from absl import app, flags

from hydra_jax.train import embedded

_BUILD = flags.DEFINE_bool("build_embedded", False, "rebuild the embedded default model's assets")
_OUT = flags.DEFINE_string("out", None, "output directory (default: the package's assets/tiny)")
_STEPS = flags.DEFINE_integer("steps", None, "override the recipe's training steps (experiments)")


def main(argv) -> None:
  del argv
  if not _BUILD.value:
    raise SystemExit("nothing to do: pass --build_embedded to rebuild the embedded model")
  embedded.build(_OUT.value or embedded.ASSET_DIR, steps=_STEPS.value)


if __name__ == "__main__":
  app.run(main)
