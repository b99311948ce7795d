"""The two controls of the dropout study (configs/study_dropout.py), regenerated alone.

    python -m hydra_jax.study --config=configs/study_controls.py --workdir=/tmp/study_controls

Same models, worlds, training and sweeps as the dropout study's control arms (an untrained
random initialisation, and a model trained for 1,000 steps on answers shuffled across
people), swept by the main job as it is now, which keeps the per-source arrays the
within-prompt estimator needs (the dropout study's committed output, studies/dropout,
predates them). The rule for a clear effect (`hydra_jax.report.clear`) must find no clear
middle layer on either. Output: studies/controls/.

Time (2 CPU cores shared with other jobs, one worker): the shuffled control's 1,000
training steps dominate; see the README for the measured time.
"""

import importlib.util
import pathlib

import ml_collections


def _dropout_study():
  path = pathlib.Path(__file__).with_name("study_dropout.py")
  spec = importlib.util.spec_from_file_location("study_dropout", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def get_config() -> ml_collections.ConfigDict:
  config = _dropout_study().get_config()
  config.name = "controls"
  config.arms = ml_collections.ConfigDict(
      {name: config.arms[name] for name in ("control_random_init", "control_shuffled")})
  return config
