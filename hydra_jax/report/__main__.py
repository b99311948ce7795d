"""Redraw a finished run's report: python -m hydra_jax.report --workdir=DIR."""

from hydra_jax.report import summary

if __name__ == "__main__":
  summary.main()
