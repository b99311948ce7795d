"""The consistency checks of docs/method.md, raised on real data.

  upstream   components the ablation cannot reach change by exactly zero
  linear     with the final sigma frozen at its clean value, TE = direct change + CE

`measures.reduce` computes each check's absolute error per prompt and ablated component
[B, C] and each prompt's scale (its largest |DE|) [B]; `raise_if_inconsistent` compares
them with a relative tolerance and names the worst prompt and component.
"""

from __future__ import annotations

import numpy as np

NAMES = {"upstream": "responses of components the ablation cannot reach are zero",
         "linear": "with the final sigma frozen, TE = direct change + compensation"}


class ConsistencyError(RuntimeError):
  """A consistency check of docs/method.md failed on real data."""


def raise_if_inconsistent(checks, rtol: float, upstream: bool) -> None:
  """Raise ConsistencyError for the first check off by more than rtol of a prompt's largest |DE|
  (upstream=False: that check was not computed by the path and is skipped)."""
  scale = np.maximum(np.asarray(checks["scale"]), 1e-30)[:, None]      # [B, 1]
  for name in (["upstream"] if upstream else []) + ["linear"]:
    absolute = np.asarray(checks[name])                                # [B, C]
    relative = absolute / scale
    worst = np.unravel_index(np.argmax(relative), relative.shape)
    if relative[worst] > rtol:
      raise ConsistencyError(
          f"consistency check '{name}' failed ({NAMES[name]}): off by {float(absolute[worst]):.3g} "
          f"= {float(relative[worst]):.3g} of the prompt's largest |DE| (tolerance {rtol:g}) "
          f"at prompt {worst[0]}, ablated component {worst[1]} (layer {worst[1] // 2}, "
          f"{'attention' if worst[1] % 2 == 0 else 'MLP'})")
