"""Keeping the prompts a model completes correctly (the paper's protocol, docs/method.md).

    filter_correct(batches, predict_fn) -> (kept batches, FilterReport)

`predict_fn(tokens int32 [B, T], lengths int32 [B]) -> int32 [B]` is the model's argmax
token at each prompt's final position (`lengths - 1`); it is passed in, so this module
knows nothing about models. A prompt is kept iff its prediction equals its label token
(`PromptBatch.label_tokens`, the label's first token). With `keep_all=True` nothing is
dropped for a wrong answer (the report still counts correct answers when a predict_fn
is given; `predict_fn=None` skips prediction).

The report counts every record that went into batching: total = kept + too_long +
wrong_answer. Nothing kept is a ValueError that gives those counts.

Kept rows stay in their batches (same padded length T, fewer rows; emptied batches
vanish); the report's kept_rows says which they were (e.g. to keep what predict_fn
computed for them alongside).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Iterable, Optional, Union

import numpy as np

from hydra_jax.data import batching

PredictFn = Callable[[np.ndarray, np.ndarray], Any]  # tokens [B, T], lengths [B] -> argmax [B]


@dataclasses.dataclass(frozen=True)
class FilterReport:
  """Counts (and ids) of the prompts kept and dropped, by reason."""
  total: int
  kept: int
  too_long: int
  wrong_answer: int
  correct: Optional[int]  # None when no predictions were made
  max_len: Optional[int] = None
  too_long_ids: tuple[int, ...] = ()
  wrong_answer_ids: tuple[int, ...] = ()
  kept_rows: tuple[int, ...] = ()   # the kept rows, indices into the batches' rows end to end

  @property
  def dropped(self) -> int:
    return self.too_long + self.wrong_answer

  def summary(self) -> str:
    limit = f" (> max_len={self.max_len} tokens)" if self.max_len is not None else ""
    return (f"{self.total} prompts: {self.kept} kept, {self.too_long} too long{limit}, "
            f"{self.wrong_answer} answered wrongly")


def filter_correct(batches: Union[batching.Batching, Iterable[batching.PromptBatch]],
                   predict_fn: Optional[PredictFn], *,
                   keep_all: bool = False) -> tuple[list[batching.PromptBatch], FilterReport]:
  """Drops prompts whose predicted token is not their label token; returns batches and counts.

  `batches` is what `make_batches` returned (its too-long drops enter the report) or any
  iterable of PromptBatch. Raises ValueError when nothing is left.
  """
  if predict_fn is None and not keep_all:
    raise ValueError("filter_correct needs a predict_fn unless keep_all=True")
  too_long_ids, max_len = (), None
  if isinstance(batches, batching.Batching):
    too_long_ids, max_len = batches.too_long_ids, batches.max_len
  batches = list(batches)

  kept_batches, wrong_ids, correct, kept_rows, offset = [], [], 0, [], 0
  for batch in batches:
    is_correct = None if predict_fn is None else answers_correctly(batch, predict_fn)
    if is_correct is not None:
      correct += int(is_correct.sum())
      wrong_ids.extend(int(i) for i in batch.ids[~is_correct])
    keep = np.ones(batch.batch_size, bool) if keep_all else is_correct
    if keep.any():
      kept_batches.append(batch if keep.all() else batch.select(keep))
    kept_rows.extend(int(row) for row in offset + np.flatnonzero(keep))
    offset += batch.batch_size

  kept = sum(batch.batch_size for batch in kept_batches)
  dropped_wrong = () if keep_all else tuple(wrong_ids)
  report = FilterReport(
      total=kept + len(too_long_ids) + len(dropped_wrong), kept=kept,
      too_long=len(too_long_ids), wrong_answer=len(dropped_wrong),
      correct=None if predict_fn is None else correct, max_len=max_len,
      too_long_ids=tuple(too_long_ids), wrong_answer_ids=dropped_wrong,
      kept_rows=tuple(kept_rows))
  if kept == 0:
    raise ValueError(f"no prompts left after filtering: {report.summary()}")
  return kept_batches, report


def answers_correctly(batch: batching.PromptBatch, predict_fn: PredictFn) -> np.ndarray:
  """bool [B]: whether `predict_fn`'s token at each final position is the label token."""
  predicted = np.asarray(predict_fn(batch.tokens, batch.lengths))  # [B]
  if predicted.shape != (batch.batch_size,) or predicted.dtype.kind not in "iu":
    raise ValueError(f"predict_fn must return integer token ids of shape ({batch.batch_size},), "
                     f"got {predicted.dtype} {predicted.shape}")
  return predicted == batch.label_tokens
