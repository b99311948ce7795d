"""The rows of a sweep batch on a mesh: scored prompts, then padding.

A batch program runs a fixed number of scored rows, a multiple of the mesh's "data" axis
(each device holds the same number of prompts). Resample sources never enter a batch:
their components come from one clean pass over every prompt (`engine.clean_pass`),
and `sources` index the prompts themselves. So the only layout rule is this one:

    rows  [ the scored prompts | padding: copies of the first scored prompt ]
    real  [ True ...           | False ...                                 ]

Padding rows are computed like any other and dropped afterwards (their results are never
read), so a batch's numbers do not depend on how it was padded.

Shapes: n scored prompts of a batch, B rows of the batch (B >= n, a multiple of the data axis).
"""

from __future__ import annotations

from typing import Iterator

import numpy as np


def round_up(count: int, multiple: int) -> int:
  """The smallest multiple of `multiple` that is >= count (and >= multiple)."""
  return max(-(-count // multiple), 1) * multiple


def pad_rows(rows: np.ndarray, size: int, multiple: int = 1) -> tuple[np.ndarray, np.ndarray]:
  """(rows [B] padded with copies of rows[0], real bool [B]); B = round_up(max(size, n), multiple)."""
  rows = np.asarray(rows)
  if rows.ndim != 1 or len(rows) == 0:
    raise ValueError(f"a batch needs at least one scored prompt, got rows of shape {rows.shape}")
  total = round_up(max(size, len(rows)), multiple)
  padded = np.concatenate([rows, np.full(total - len(rows), rows[0], rows.dtype)])
  return padded, np.arange(total) < len(rows)


def batches(count: int, size: int) -> Iterator[np.ndarray]:
  """Prompt indices [<= size] of consecutive batches covering 0..count-1."""
  for start in range(0, count, size):
    yield np.arange(start, min(start + size, count))
