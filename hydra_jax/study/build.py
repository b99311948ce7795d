"""Making one run's model: world -> corpus -> tokenizer -> trained model -> model folder.

    build_run(run, directory, log) -> training record (also written to training.json)

The folder is a hydra_jax checkpoint that the main job reads with
model_source="checkpoint" (its tokenizer beside it), plus the run's prompts:

  config.json, params.safetensors   the model (hydra_jax.checkpoints native format)
  tokenizer.model                   SentencePiece model (ids: 0 pad, 1 unk, 2 BOS, 3 EOS)
  facts.json                        every fact prompt of the world (uniform records)
  sweep_facts.json                  the prompts the sweeps use: a seeded sample of
                                    sweep.max_prompts records (all when 0), in id order
  training.json                     accuracy, losses, wall time; written last, so a
                                    folder holding it is finished (resumption)

A run with train.steps = 0 is the random-initialisation control: its parameters are
`init_params(model, seed)`, with the same tokenizer and prompts as a trained run.

Shapes: N prompts.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Callable

import jax
import numpy as np

from hydra_jax import checkpoints
from hydra_jax import store
from hydra_jax.data import tokenizers
from hydra_jax.model import transformer as model_lib
from hydra_jax.study.arms import Run
from hydra_jax.train import embedded, synthetic
from hydra_jax.train import training as train_lib

TOKENIZER_FILE, FACTS_FILE, SWEEP_FACTS_FILE = "tokenizer.model", "facts.json", "sweep_facts.json"
TRAINING_FILE = "training.json"


def is_built(directory: Path) -> bool:
  return (Path(directory) / TRAINING_FILE).is_file()


def sweep_sample(records: list[dict[str, Any]], max_prompts: int, seed: int) -> list[dict[str, Any]]:
  """A seeded sample of `max_prompts` records (all when 0 or more than there are), in id order."""
  if not max_prompts or max_prompts >= len(records):
    return list(records)
  chosen = np.sort(np.random.RandomState(seed).choice(len(records), max_prompts, replace=False))
  return [records[i] for i in chosen]


def _world_and_text(run: Run, num_lines: int):
  world_section = run.world
  world = synthetic.make_world(world_section["num_entities"], world_section["world_seed"],
                               relations=synthetic.relations(world_section["num_relations"]))
  records = synthetic.fact_records(world, world_section["prompt_seed"])
  lines = synthetic.corpus_lines(world, num_lines, world_section["corpus_seed"],
                                 **run.corpus_options())
  return world, records, lines


def _train(run: Run, tokenizer, lines, log):
  """(params, history or None): trained on the corpus, or the untrained initialisation."""
  options = run.train
  if options["steps"] == 0:
    return model_lib.init_params(run.model, run.seed), None
  rows = train_lib.pack_rows([tokenizer.encode(line) for line in lines], run.model.max_seq_len)
  batches = train_lib.batch_stream(rows, batch_size=options["batch_size"],
                                   seq_len=run.model.max_seq_len, seed=run.seed)
  return train_lib.train(
      run.model, batches, steps=options["steps"], learning_rate=options["learning_rate"],
      warmup_steps=min(options["warmup_steps"], options["steps"] - 1),
      weight_decay=options["weight_decay"], clip_norm=options["clip_norm"], seed=run.seed,
      sublayer_drop=options["sublayer_drop"], log_every=max(options["steps"] // 10, 1),
      log=lambda line: log(f"  {run.name}: {line}"))


def build_run(run: Run, directory: str | Path, log: Callable[[str], None] = print) -> dict[str, Any]:
  """Make `run`'s model folder (see the module docstring); returns its training record."""
  start = time.perf_counter()
  out = Path(directory)
  out.mkdir(parents=True, exist_ok=True)
  steps = max(run.train["steps"], 1)
  num_lines = max(int(steps * run.train["batch_size"] * run.train["lines_per_row"]),
                  run.tokenizer["lines"])
  world, records, lines = _world_and_text(run, num_lines)
  store.atomic_write_text(str(out / FACTS_FILE), json.dumps(records, indent=0))
  sample = sweep_sample(records, run.sweep["max_prompts"], run.world["prompt_seed"])
  store.atomic_write_text(str(out / SWEEP_FACTS_FILE), json.dumps(sample, indent=0))
  proto = synthetic.train_tokenizer(lines[:run.tokenizer["lines"]], run.tokenizer["vocab_size"],
                                    relations=world.relations)
  store.atomic_write_bytes(str(out / TOKENIZER_FILE), proto)
  tokenizer = tokenizers.load(out / TOKENIZER_FILE)
  params, history = _train(run, tokenizer, lines, log)
  params = jax.device_get(params)
  checkpoints.save(out, run.model, params)
  fits = [r for r in records if len(tokenizer.encode(r["prompt"])) <= run.model.max_seq_len]
  correct = embedded.fact_accuracy(params, run.model, tokenizer, fits)[1] if fits else []
  record = dict(   # a prompt longer than the context counts as not answered
      run=run.name, arm=run.arm, seed=run.seed, fact_accuracy=float(np.sum(correct)) / len(records),
      num_facts=len(records), num_correct=int(np.sum(correct)),
      num_too_long=len(records) - len(fits), num_sweep_prompts=len(sample),
      num_params=model_lib.count_params(params), steps=run.train["steps"],
      first_loss=history.losses[0] if history else None,
      final_loss=float(np.mean(history.losses[-50:])) if history else None,
      train_seconds=round(history.seconds, 1) if history else 0.0,
      seconds_per_step=history.seconds / len(history.losses) if history else None,
      total_seconds=round(time.perf_counter() - start, 1),
      model=run.model.to_dict(), world=run.world, train=run.train)
  store.atomic_write_text(str(out / TRAINING_FILE), json.dumps(record, indent=2))
  return record
