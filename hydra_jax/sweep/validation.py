"""Checking a sweep's arguments with numpy, before anything is traced or compiled.

Every bad input raises a ValueError that names the argument: tokens beyond the context or
the vocabulary, lengths of 0 or beyond T, sources outside the prompts or K = 0, a mean of
the wrong shape, a mesh the sweep cannot use. The options themselves (kind, path, ...)
are checked where they are made (`sweep.options.SweepOptions`).

Shapes: N prompts, T positions, K sources, C = 2L components, D d_model.
"""

from __future__ import annotations

import numpy as np

from hydra_jax.model import transformer as model
from hydra_jax.sweep import sharding


def validate(config, tokens, lengths, sources, *, kind, num_scored, mean_activations, mesh):
  """Check the arrays of a sweep of `kind` with numpy before anything compiles; returns
  (tokens, lengths, sources) as numpy int32 arrays and n, the number of scored prompts."""
  model.check_tokens(config, tokens)
  tokens = np.asarray(tokens)
  N, T = tokens.shape
  if N == 0 or T == 0:
    raise ValueError(f"tokens must hold at least one prompt and position, got shape {tokens.shape}")
  lengths = np.asarray(lengths)
  if lengths.shape != (N,) or not np.issubdtype(lengths.dtype, np.integer):
    raise ValueError(f"lengths must be integers of shape ({N},), got {lengths.dtype} {lengths.shape}")
  if lengths.min() < 1 or lengths.max() > T:
    raise ValueError(f"lengths must be in [1, {T}] (tokens has {T} positions), got range "
                     f"[{lengths.min()}, {lengths.max()}]")
  if num_scored is not None and not (isinstance(num_scored, (int, np.integer)) and 1 <= num_scored <= N):
    raise ValueError(f"num_scored must be an integer in [1, {N}] (the number of prompts), got {num_scored!r}")
  n = N if num_scored is None else int(num_scored)
  if kind == "resample":
    if sources is None:
      raise ValueError('sources [N, K] are needed for kind="resample" (see draw_sources)')
    sources = np.asarray(sources)
    if sources.ndim != 2 or sources.shape[0] != n or sources.shape[1] == 0 or \
        not np.issubdtype(sources.dtype, np.integer):
      raise ValueError(f"sources must be integers of shape ({n}, K) with K >= 1, got "
                       f"{sources.dtype} {sources.shape}")
    if sources.min() < 0 or sources.max() >= N:
      raise ValueError(f"sources must index the {N} prompts (0..{N - 1}), got range "
                       f"[{sources.min()}, {sources.max()}]")
    sources = sources.astype(np.int32)
  elif sources is not None:
    raise ValueError(f'sources are only used by kind="resample", not kind={kind!r}')
  if mean_activations is not None:
    expected = (config.num_components, config.d_model)
    if kind != "mean" or np.shape(mean_activations) != expected:
      raise ValueError(f'mean_activations must have shape {expected} and goes with kind="mean"; '
                       f"got shape {np.shape(mean_activations)} with kind={kind!r}")
  sharding.validate_mesh(mesh)
  return tokens.astype(np.int32), lengths.astype(np.int32), sources, n
