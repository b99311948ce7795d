"""The heads job: self-repair per attention head at every position of text (Rushing & Nanda).

    python -m hydra_jax.main --config=configs/tiny.py --config.sweep.protocol=heads --workdir=DIR

    run(config, workdir) -> summary dict

Steps:
  1. text       config.heads.text_file (plain text, one passage per line), or by default
                the embedded world's training text (`hydra_jax.train.synthetic`)
  2. sequences  every line tokenized with the model's tokenizer (its BOS included), the
                lines' tokens concatenated and cut into windows of heads.seq_len tokens;
                heads.num_sequences windows drawn without replacement (seeded)
  3. batches    heads.batch_size sequences per compiled sweep (`hydra_jax.sweep.heads`),
                each sequence resampled from heads.num_sources other sequences of its
                batch (seeded per batch); each batch is a chunk saved in the workdir and
                skipped when the job runs again
  4. report     summary.json, figures and report.md (`hydra_jax.report.heads`)

Shapes: N sequences, n of a batch, T = heads.seq_len positions, K sources.
"""

from __future__ import annotations

import time
from typing import Any

import jax
import ml_collections
import numpy as np

from hydra_jax import provenance
from hydra_jax import store as results_store
from hydra_jax.job import loading as inputs
from hydra_jax.job.output import say
from hydra_jax.report import heads as report
from hydra_jax.sweep import heads as heads_sweep

EMBEDDED_TEXT_LINES = 4000     # lines of the embedded world's corpus to draw windows from


def text_lines(config: ml_collections.ConfigDict) -> tuple[list[str], str]:
  """(non-empty lines of text, where they come from)."""
  path = config.heads.text_file
  if path:
    with open(path, encoding="utf-8") as f:
      return [line.strip() for line in f if line.strip()], path
  from hydra_jax.train import embedded, synthetic
  recipe = embedded.RECIPE
  world = synthetic.make_world(recipe.num_entities, recipe.world_seed)
  return (synthetic.corpus_lines(world, EMBEDDED_TEXT_LINES, recipe.corpus_seed),
          "the embedded world's training text")


def sequences(tokenizer, lines: list[str], seq_len: int, count: int, seed: int) -> np.ndarray:
  """[count, seq_len] int32 windows of the lines' concatenated tokens (seeded draw)."""
  if tokenizer is None:
    raise ValueError("the heads protocol reads text: the model needs a tokenizer "
                     "(set --config.tokenizer)")
  stream = np.concatenate([np.asarray(tokenizer.encode(line), np.int32) for line in lines])
  windows = len(stream) // seq_len
  if windows < count:
    raise ValueError(f"the text holds {windows} windows of {seq_len} tokens, "
                     f"config.heads.num_sequences={count} asks for more")
  picks = np.sort(np.random.default_rng(seed).choice(windows, count, replace=False))
  return stream[:windows * seq_len].reshape(windows, seq_len)[picks]


def _sweep_batches(config, model, tokens, store, mesh) -> dict[str, Any]:
  """Sweep every unfinished batch of sequences, saving each; returns timing."""
  heads = config.heads
  num_batches = len(tokens) // heads.batch_size
  done = set(store.finished_chunks())
  start, first = time.time(), None
  for index in range(num_batches):
    if index in done:
      continue
    rows = tokens[index * heads.batch_size:(index + 1) * heads.batch_size]      # [n, T]
    sources = heads_sweep.draw_sources(len(rows), heads.num_sources, heads.seed + index)
    result = heads_sweep.sweep(model.params, model.config, rows, sources, mesh=mesh,
                               cells_per_step=heads.cells_per_step,
                               freeze_final_norm=heads.freeze_final_norm)
    arrays = {name: np.asarray(value) for name, value in vars(result).items()}
    arrays.update(tokens=rows, sources=sources)
    if jax.process_index() == 0:
      store.save_chunk(index, arrays)
    first = first or time.time()
    say(f"batch {index + 1}/{num_batches}: {len(rows)} sequences x "
        f"{model.config.num_layers * model.config.num_heads} heads x {heads.num_sources} sources")
  return dict(batches=num_batches, batches_resumed=len(done & set(range(num_batches))),
              sweep_seconds=time.time() - start,
              seconds_after_first_batch=(time.time() - first) if first else None)


def run(config: ml_collections.ConfigDict, workdir: str, mesh) -> dict[str, Any]:
  """The whole heads job on `mesh` (config checked by job.run); returns the summary."""
  start = time.time()
  store = results_store.ResultStore(workdir)
  if jax.process_index() == 0:
    store.claim(results_store.flatten(config.to_dict()))
  model = inputs.load_model(config, mesh)
  heads = config.heads
  if heads.seq_len > model.config.max_seq_len:
    raise ValueError(f"config.heads.seq_len={heads.seq_len} exceeds the model's context of "
                     f"{model.config.max_seq_len}")
  lines, origin = text_lines(config)
  tokens = sequences(model.tokenizer, lines, heads.seq_len, heads.num_sequences, heads.seed)
  say(f"model: {model.description['name']}; {len(tokens)} sequences of {heads.seq_len} tokens "
      f"from {origin}")
  timing = _sweep_batches(config, model, tokens, store, mesh)
  if jax.process_index() != 0:
    return None
  arrays = store.load_all(range(timing["batches"]))
  timing.update(wall_seconds=time.time() - start, devices=f"{jax.device_count()} x "
                f"{jax.devices()[0].device_kind}")
  info = dict(config=config.to_dict(), model=model.description, text=origin, timing=timing,
              post_norms=model.config.post_norms, provenance=provenance.collect())
  summary = report.write(workdir, arrays, info, top_k=heads.top_k)
  say(f"report written to {workdir}/report.md ({time.time() - start:.1f} s)")
  return summary
