"""A candidate for the embedded default: configs/study_dropout.py's label-noise arm
without dropout (no_dropout_noise), trained twice as long so that it answers most of its
facts, with the three seeds of the study.

    python -m hydra_jax.study --config=configs/study_candidate.py --workdir=/tmp/study_candidate --workers=2

In the dropout study (1,000 steps) no_dropout_noise was the arm whose middle attention
layer met the issue's floor (attention slope CI above 0 and a total slope between 0.2 and
1.0) in 2 of 3 seeds, but its models answered 71-81% of their facts: too few for the
embedded default (at least 90%). This config trains the same arm for 2,000 steps (seeds
3, 4, 5) to see whether the effect survives training to high accuracy.

Measured (29 Nov 2026, studies/candidate/; 3,388 s with two workers on 2 cores): every
seed answers 1,000 of 1,000 facts; at its best middle attention layer the attention part
is +0.03 (s3, layer 3), +0.09 [+0.06, +0.11] (s4, layer 4), +0.05 (s5, layer 4) and the
total -0.05, +0.26 [+0.18, +0.33], -0.03: the floor in 1 seed of 3. Seed 4 is the
embedded default (hydra_jax/train/embedded.py RECIPE rebuilds it byte for byte).

History: the first candidate (the stochastic-depth arm at 2,100 steps, one seed, after a
700-step signal) answered 1,000 of 1,000 facts but lost the effect: attention parts at
layers 2-5 of -0.22, +0.05, -0.05, +0.04, every total's CI below 0.
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
  config.train.update(steps=2000, warmup_steps=100)
  config.arms = ml_collections.ConfigDict(dict(
      no_dropout_noise=dict(seeds=study_dropout.SEEDS, world=study_dropout.NOISE),
  ))
  return config
