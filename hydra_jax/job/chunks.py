"""Cutting the kept prompts into chunks, and sweeping one chunk.

Chunk i holds the kept prompts [i * size, (i + 1) * size). Resample sources are drawn
from the whole kept set, so a chunk's sweep batch is

    [ the chunk's prompts | the other prompts its sources name | padding ]
      scored (num_scored)   clean run only: source activations

and the sweep scores only the first rows (`hydra_sweep(..., num_scored=...)`).

Every chunk gets the same shapes - `size` scored rows (the last chunk is padded with
copies of its first prompt, dropped afterwards), the same number of batch rows and the
same padded length T - so the whole sweep compiles once, and a chunk's numbers never
depend on which other chunks ran in the same process: an interrupted and resumed run
gives exactly the arrays of an uninterrupted one.

Shapes: N kept prompts, n prompts of a chunk (<= size), K sources, C = 2L components,
D d_model, R rows of a sweep batch, T padded length.
"""

from __future__ import annotations

import dataclasses
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np

from hydra_jax.sweep import paths as ablated_runs
from hydra_jax.sweep import engine as sweep

ROW_MULTIPLE = 8         # batch rows are padded to a multiple of this
SWEEP_FIELDS = tuple(f.name for f in dataclasses.fields(sweep.HydraResult))


@dataclasses.dataclass(frozen=True)
class Layout:
  """The shapes shared by every chunk of a sweep."""
  num_prompts: int       # N
  size: int              # scored rows per chunk
  rows: int              # R: rows of every sweep batch
  length: int            # T

  @property
  def num_chunks(self) -> int:
    return -(-self.num_prompts // self.size)

  def chunk(self, index: int) -> np.ndarray:
    """The kept-prompt indices [n] of chunk `index`."""
    return np.arange(index * self.size, min((index + 1) * self.size, self.num_prompts))


def _scored(rows: np.ndarray, size: int) -> np.ndarray:
  """rows [n] padded to [size] with copies of the first."""
  return np.concatenate([rows, np.full(size - len(rows), rows[0], rows.dtype)])


def _needed(rows: np.ndarray, sources: Optional[np.ndarray], size: int) -> np.ndarray:
  """The chunk's scored rows, then the source rows they need that are not among them."""
  scored = _scored(rows, size)
  if sources is None:
    return scored
  needed = np.unique(sources[scored])
  return np.concatenate([scored, needed[~np.isin(needed, scored)]])


def make_layout(prompts, sources: Optional[np.ndarray], chunk_size: int, max_len: int) -> Layout:
  """Shapes that fit every chunk: the most rows any chunk needs, the longest prompt."""
  size = min(chunk_size, len(prompts))
  probe = Layout(len(prompts), size, 0, 0)
  most = max(len(_needed(probe.chunk(i), sources, size)) for i in range(probe.num_chunks))
  longest = max(len(t) for t in prompts.tokens)
  length = max(longest, min(max_len, -(-longest // ROW_MULTIPLE) * ROW_MULTIPLE))
  return Layout(len(prompts), size, -(-most // ROW_MULTIPLE) * ROW_MULTIPLE, length)


def batch_rows(layout: Layout, rows: np.ndarray, sources: Optional[np.ndarray]):
  """(batch rows [R] into the kept prompts, local sources [size, K] into the batch or None)."""
  needed = _needed(rows, sources, layout.size)
  batch = np.concatenate([needed, np.full(layout.rows - len(needed), rows[0], needed.dtype)])
  if sources is None:
    return batch, None
  position = np.zeros(layout.num_prompts, np.int32)
  position[needed] = np.arange(len(needed))   # a duplicated prompt: any of its identical rows
  return batch, position[sources[_scored(rows, layout.size)]]


def pad_tokens(prompts, rows: np.ndarray, length: int):
  """tokens int32 [len(rows), length] right-padded with 0, lengths int32 [len(rows)]."""
  tokens = np.zeros((len(rows), length), np.int32)
  lengths = np.array([len(prompts.tokens[r]) for r in rows], np.int32)
  for i, r in enumerate(rows):
    tokens[i, :lengths[i]] = prompts.tokens[r]
  return tokens, lengths


def to_host(array) -> np.ndarray:
  """A (possibly multi-host) result array as one numpy array on this host."""
  if isinstance(array, jax.Array) and not array.is_fully_addressable:
    from jax.experimental import multihost_utils
    return np.asarray(multihost_utils.process_allgather(array, tiled=True))
  return np.asarray(jax.device_get(array))


def sweep_chunk(model, prompts, layout: Layout, index: int, sources, *, kind: str, path: str,
                mesh=None, check: bool = False, mean=None) -> dict[str, np.ndarray]:
  """Sweep chunk `index`; its arrays (the HydraResult fields and the prompts' ids), each [n]."""
  rows = layout.chunk(index)
  batch, local_sources = batch_rows(layout, rows, sources)
  tokens, lengths = pad_tokens(prompts, batch, layout.length)
  result = sweep.hydra_sweep(model.params, model.config, tokens, lengths, local_sources,
                             kind=kind, path=path, mesh=mesh, check=check,
                             num_scored=layout.size, mean_activations=mean)
  arrays = {name: to_host(getattr(result, name))[:len(rows)] for name in SWEEP_FIELDS}
  arrays["prompt_id"] = prompts.ids[rows]
  if sources is not None:
    arrays["sources"] = sources[rows].astype(np.int64)
  return arrays


def mean_components(model, prompts, layout: Layout) -> np.ndarray:
  """[C, D] the clean final-position components averaged over every kept prompt (kind "mean")."""
  @jax.jit
  def components_sum(params, tokens, lengths, weight):
    clean = ablated_runs.clean_run(params, model.config, tokens, lengths)
    return jnp.einsum("b,bcd->cd", weight, clean.components.astype(jnp.float32))

  total = np.zeros((model.config.num_components, model.config.d_model), np.float64)
  for index in range(layout.num_chunks):
    rows = layout.chunk(index)
    tokens, lengths = pad_tokens(prompts, _scored(rows, layout.size), layout.length)
    weight = (np.arange(layout.size) < len(rows)).astype(np.float32)   # padding weighs 0
    total += np.asarray(components_sum(model.params, tokens, lengths, weight), np.float64)
  return (total / layout.num_prompts).astype(np.float32)
