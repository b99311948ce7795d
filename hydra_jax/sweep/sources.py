"""Resample sources: for each prompt, the K other prompts whose components replace its own.

Shapes: N prompts, K sources.
"""

from __future__ import annotations

from typing import Optional

import numpy as np


def draw_sources(num_prompts: int, num_sources: int, seed: int = 0,
                 groups: Optional[np.ndarray] = None) -> np.ndarray:
  """int32 [N, K]: for each prompt, K distinct other prompts drawn uniformly (never itself).

  groups [N] (e.g. relation ids): draw only among prompts of the same group.
  """
  if not 0 < num_sources < num_prompts:
    raise ValueError(f"num_sources={num_sources} must be in [1, num_prompts={num_prompts}): "
                     "each prompt draws distinct sources other than itself")
  keys = np.random.default_rng(seed).random((num_prompts, num_prompts))
  np.fill_diagonal(keys, np.inf)                                       # never pick itself
  if groups is not None:
    groups = np.asarray(groups)
    sizes = np.unique(groups, return_counts=True)[1]
    if sizes.min() <= num_sources:
      raise ValueError(f"num_sources={num_sources}: the smallest group has only {sizes.min()} "
                       "prompts; same-group sources need more than K per group")
    keys[groups[:, None] != groups[None, :]] = np.inf                  # other groups last
  return np.argsort(keys, axis=1)[:, :num_sources].astype(np.int32)
