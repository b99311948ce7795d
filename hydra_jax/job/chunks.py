"""Cutting the kept prompts into chunks, and sweeping one chunk.

Chunk i holds the kept prompts [i * size, (i + 1) * size). The engine is prepared once for
the whole kept set (`prepare`: the prompts as the prompt set padded them, [N, T]; the
resample table or the mean from the filter's clean pass, or from one of its own), then
every chunk runs the same compiled batch program with `size` scored rows (the last chunk
padded, `sweep.batching`), so the sweep compiles once and a chunk's numbers never depend
on which other chunks ran in the same process: an interrupted and resumed run gives
exactly the arrays of an uninterrupted one.

Shapes: N kept prompts, n prompts of a chunk (<= size), K sources, T padded length.
"""

from __future__ import annotations

import dataclasses
from typing import Optional

import numpy as np

from hydra_jax.job.runtime import to_host
from hydra_jax.sweep import checks, engine
from hydra_jax.sweep.options import SweepOptions


@dataclasses.dataclass(frozen=True)
class Layout:
  """How the kept prompts are cut into chunks."""
  num_prompts: int       # N
  size: int              # scored prompts per chunk

  @property
  def num_chunks(self) -> int:
    return -(-self.num_prompts // self.size)

  def chunk(self, index: int) -> np.ndarray:
    """The kept-prompt indices [n] of chunk `index`."""
    return np.arange(index * self.size, min((index + 1) * self.size, self.num_prompts))


def make_layout(num_prompts: int, chunk_size: int) -> Layout:
  return Layout(num_prompts, min(chunk_size, num_prompts))


def prepare(model, prompts, sources: Optional[np.ndarray], layout: Layout,
            options: SweepOptions, *, mesh=None) -> engine.Prepared:
  """The engine prepared for every kept prompt (as the prompt set padded them), `layout.size`
  scored rows per program call; the table from the filter's clean components where it ran.
  Noise ablation noises the subject's tokens where the prompt set marks the subject."""
  positions = (noise_positions(prompts.subjects, prompts.lengths, prompts.tokens.shape[1])
               if options.kind == "noise" else None)
  return engine.prepare(model.params, model.config, prompts.tokens, prompts.lengths, sources,
                        dataclasses.replace(options, batch_size=layout.size), mesh=mesh,
                        noise_positions=positions, components=prompts.components)


def noise_positions(subjects, lengths: np.ndarray, length: int) -> np.ndarray:
  """float32 [N, T]: 1 on each prompt's subject tokens, or on all its tokens without one."""
  positions = np.arange(length)[None, :]                               # [1, T]
  spans = np.array([span if span[1] > span[0] else (0, n) for span, n in
                    zip(subjects or [(0, 0)] * len(lengths), lengths)])  # [N, 2]
  return ((positions >= spans[:, :1]) & (positions < spans[:, 1:])).astype(np.float32)


def sweep_chunk(prepared: engine.Prepared, prompts, layout: Layout, index: int
                ) -> dict[str, np.ndarray]:
  """Sweep chunk `index`; its arrays (the HydraResult fields, the prompts' ids and sources), each
  [n], and response_by_source [n', K, C, C] for its rows among the first keep_sources prompts
  (checked when the options say so)."""
  rows, options = layout.chunk(index), prepared.options
  measured, checked = prepared.run_rows(rows)                          # [B >= n] rows each
  if options.check:
    checks.raise_if_inconsistent({name: to_host(value)[:len(rows)] for name, value in checked.items()},
                                 options.check_rtol, upstream=prepared.upstream_checked)
  arrays = {name: to_host(value)[:len(rows)] for name, value in measured.items() if value is not None}
  if "response_by_source" in arrays:
    kept = max(0, options.keep_sources - rows[0])                      # rows among the first M
    arrays["response_by_source"] = arrays["response_by_source"][:kept]
  arrays["prompt_id"] = prompts.ids[rows]
  if prepared.sources is not None:
    arrays["sources"] = prepared.sources[rows].astype(np.int64)
  return arrays
