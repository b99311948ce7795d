"""The heads protocol: self-repair per attention head at every position of text (Rushing & Nanda).

    python -m hydra_jax.main --config=configs/tiny.py --config.sweep.protocol=heads --workdir=DIR

    plan(config, model_config, shape)   -> HeadsPlan (the sweep's size; nothing is read)
    sweep(config, model, store, mesh)   -> runtime.Swept
    report(config, workdir, swept)      -> summary dict

The job's one path (`job.run`: check, plan, claim, load, model check) runs it; its steps:
  1. text       config.heads.text_file (plain text, one passage per line), or by default
                the embedded world's training text (`hydra_jax.train.synthetic`)
  2. sequences  every line tokenized with the model's tokenizer (its BOS included), the
                lines' tokens concatenated and cut into windows of heads.seq_len tokens;
                heads.num_sequences windows drawn without replacement (seeded)
  3. batches    heads.batch_size sequences per compiled sweep (`hydra_jax.sweep.heads`),
                each sequence resampled from heads.num_sources other sequences of its
                batch (seeded per batch); each batch is a chunk saved in the workdir and
                skipped when the job runs again (process 0 decides which are finished;
                the results come through the gather to host, `job.runtime`)
  4. report     summary.json, figures and report.md (`hydra_jax.report.heads`)

Shapes: N sequences, n of a batch, T = heads.seq_len positions, K sources, L layers, H heads.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import ml_collections
import numpy as np

from hydra_jax import provenance
from hydra_jax.job import runtime
from hydra_jax.job.output import say
from hydra_jax.report import heads as heads_report
from hydra_jax.sweep import heads as heads_sweep
from hydra_jax.train import embedded, synthetic

EMBEDDED_TEXT_LINES = 4000     # lines of the embedded world's corpus to draw windows from


@dataclasses.dataclass(frozen=True)
class HeadsPlan:
  """What the heads sweep does: N sequences of T tokens in batches of n, each of the L x H
  heads ablated with K sources at every position."""
  model_name: str
  num_sequences: int
  seq_len: int
  batch_size: int
  num_heads: int          # L x H
  num_sources: int
  mesh_shape: tuple[int, int]

  def describe(self) -> str:
    data, model = self.mesh_shape
    return "\n".join([
        f"plan for {self.model_name} (heads):",
        f"  sweep               {self.num_sequences:,} sequences of {self.seq_len} tokens in "
        f"{self.num_sequences // self.batch_size} batches of {self.batch_size} x "
        f"{self.num_heads} heads x {self.num_sources} sources = "
        f"{self.num_sequences * self.num_heads * self.num_sources:,} ablated forwards",
        f"  mesh                data={data} x model={model} ({data * model} devices)"])


def plan(config: ml_collections.ConfigDict, model_config, shape: tuple[int, int]) -> HeadsPlan:
  """The heads sweep's plan from config.heads and the model's config alone; a ValueError
  when the sequences are longer than the model's context."""
  heads = config.heads
  if heads.seq_len > model_config.max_seq_len:
    raise ValueError(f"config.heads.seq_len={heads.seq_len} exceeds the model's context of "
                     f"{model_config.max_seq_len}")
  return HeadsPlan(model_config.name, heads.num_sequences, heads.seq_len, heads.batch_size,
                   model_config.num_layers * model_config.num_heads, heads.num_sources,
                   tuple(shape))


def text_lines(config: ml_collections.ConfigDict) -> tuple[list[str], str]:
  """(non-empty lines of text, where they come from)."""
  path = config.heads.text_file
  if path:
    with open(path, encoding="utf-8") as f:
      return [line.strip() for line in f if line.strip()], path
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


def _sweep_batches(config, model, tokens, store, mesh, computed: dict) -> dict[str, Any]:
  """Sweep every unfinished batch of sequences, saving each and keeping its arrays in
  `computed` (by index; process 0 only); returns timing."""
  heads = config.heads
  num_batches = len(tokens) // heads.batch_size
  done = runtime.finished(store, num_batches)
  start, first = time.time(), None
  for index in map(int, np.flatnonzero(~done)):
    rows = tokens[index * heads.batch_size:(index + 1) * heads.batch_size]      # [n, T]
    sources = heads_sweep.draw_sources(len(rows), heads.num_sources, heads.seed + index)
    result = heads_sweep.sweep(model.params, model.config, rows, sources, mesh=mesh,
                               cells_per_step=heads.cells_per_step,
                               freeze_final_norm=heads.freeze_final_norm)
    arrays = {name: runtime.to_host(value) for name, value in vars(result).items()}
    arrays.update(tokens=rows, sources=sources)
    if runtime.writes():
      store.save_chunk(index, arrays)
      computed[index] = arrays
    first = first or time.time()
    say(f"batch {index + 1}/{num_batches}: {len(rows)} sequences x "
        f"{model.config.num_layers * model.config.num_heads} heads x {heads.num_sources} sources")
  return dict(batches=num_batches, batches_resumed=int(done.sum()),
              sweep_seconds=time.time() - start,
              seconds_after_first_batch=(time.time() - first) if first else None)


def sweep(config: ml_collections.ConfigDict, model, store, mesh) -> runtime.Swept:
  """The text's sequences swept into `store` batch by batch; the arrays on process 0."""
  lines, origin = text_lines(config)
  heads = config.heads
  tokens = sequences(model.tokenizer, lines, heads.seq_len, heads.num_sequences, heads.seed)
  say(f"model: {model.description['name']}; {len(tokens)} sequences of {heads.seq_len} tokens "
      f"from {origin}")
  computed = {}
  timing = _sweep_batches(config, model, tokens, store, mesh, computed)
  arrays = (runtime.gather_chunks(store, computed, timing["batches"])
            if runtime.writes() else None)
  info = dict(config=config.to_dict(), model=model.description, text=origin, timing=timing,
              post_norms=model.config.post_norms, provenance=provenance.collect())
  return runtime.Swept(arrays, info)


def report(config: ml_collections.ConfigDict, workdir: str, swept: runtime.Swept) -> dict[str, Any]:
  """summary.json, figures and report.md of the heads sweep (`report.heads.write`)."""
  return heads_report.write(workdir, swept.arrays, swept.info, top_k=config.heads.top_k)
