"""A candidate for the embedded default: configs/study_dropout.py's stochastic-depth arm,
trained three times as long so that it answers most of its facts.

    python -m hydra_jax.study --config=configs/study_candidate.py --workdir=/tmp/study_candidate

In the dropout study (700 steps) the stochastic-depth arm (every attention and MLP
sublayer dropped with probability 0.15 per example in training) was the one arm whose
middle attention layer met the issue's floor (attention slope CI above 0 and a total
slope between 0.2 and 1.0 at attention layer 2), but it answered only 18% of its facts:
too few for the embedded default (at least 90%). This config trains the same model for
2,100 steps (one seed) to see whether the effect survives training to high accuracy.
About 25 minutes on 2 idle CPU cores (0.55 s a step in one process).

Measured (29 Nov 2026, studies/candidate/): 1,000 of 1,000 facts answered; the attention
part at middle attention layers 2-5 is -0.22, +0.05, -0.05, +0.04 and the total -0.39,
-0.09, -0.27, -0.13 (every total's CI below 0): it does not survive, no model to ship.
"""

import importlib.util
import pathlib

import ml_collections

_SPEC = importlib.util.spec_from_file_location(
    "study_dropout", pathlib.Path(__file__).with_name("study_dropout.py"))
study_dropout = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(study_dropout)


def get_config() -> ml_collections.ConfigDict:
  config = study_dropout.get_config()
  config.name = "candidate"
  config.train.update(steps=2100, warmup_steps=100)
  config.arms = ml_collections.ConfigDict(dict(
      stochastic_depth=dict(seeds=(3,), train=dict(sublayer_drop=0.15)),
  ))
  return config
