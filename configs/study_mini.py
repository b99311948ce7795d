"""A two-arm miniature of the dropout study: seconds on a CPU, for tests and a first look.

    python -m hydra_jax.study --config=configs/study_mini.py --workdir=/tmp/study_mini

Two arms of a 2-layer model on a 12-person, 2-relation world, trained without dropout:
without and with 20% label noise (the arms differ in their data only, so both train
with one compiled step). Too small to show anything; it exercises every step of
configs/study_dropout.py (world, training, saving, the main job's sweep of each model,
the comparison, the mediation check) in under a minute.
"""

import ml_collections

from hydra_jax.study import arms


def get_config() -> ml_collections.ConfigDict:
  config = arms.defaults()
  config.name = "mini"
  config.model.update(name="mini", vocab_size=160, d_model=32, num_layers=2, num_heads=2,
                      mlp_dim=64, max_seq_len=64)
  config.world.update(num_entities=12, num_relations=2)
  config.tokenizer.update(vocab_size=160, lines=2000)
  config.train.update(steps=30, batch_size=16, learning_rate=1e-2, warmup_steps=3)
  config.sweep.update(num_sources=3, chunk_size=32, filter_correct=False)
  config.bootstrap.resamples = 200
  config.arms = ml_collections.ConfigDict(dict(
      no_noise=dict(seeds=(0,)),
      label_noise=dict(seeds=(0,), world=dict(label_noise=0.2)),
  ))
  return config
