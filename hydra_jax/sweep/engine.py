"""The Hydra sweep: ablate every attention and MLP layer at each prompt's final position.

    result = hydra_sweep(params, config, tokens, lengths, draw_sources(B, 15, seed=0))

For each prompt b, source k and component c (2l = attention of layer l, 2l+1 its MLP)
the component's final-position output is replaced - by the same component of prompt
sources[b, k] ("resample"), by zero, or by its mean - and the run is reduced on device
to the measures of METHOD.md (see `hydra_jax.effects`). The whole sweep of a batch of
prompts is one compiled program; `path` picks how an ablated run is computed:

  "incremental"  only the final position is re-run, against the clean keys/values, and
                 (skip_unchanged_layers) only from the ablated layer up (`layer_skip`)
  "full"         every position is re-run with `model.forward` (the reference)

Both give the same numbers to float32 tolerance. `batch_size` (prompts per program),
`source_chunk` (sources vmapped at once) and `lane_chunk` (layer-skipping lanes at once)
bound memory. With a `mesh`, prompts are split over its "data" axis and weights over its
"model" axis (`hydra_jax.sharding`). `lower_sweep` gives the compiled program itself.

Consistency checks (METHOD.md), raised as ConsistencyError with `check=True`:
  upstream   components the ablation cannot reach change by exactly zero (the paths
             that recompute them: "full" and "incremental" without skipping)
  linear     with the final sigma frozen at its clean value, TE = direct change + CE
             (the components add up to the residual stream the logit is read from)

Shapes: N prompts, B prompts in a batch, T positions, K sources, C = 2L components, D d_model.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np

from hydra_jax.sweep import paths as ablated_runs
from hydra_jax.sweep import effects
from hydra_jax.sweep import layer_skip
from hydra_jax.sweep import sharding
from hydra_jax.sweep import validation as sweep_inputs
from hydra_jax.model.config import ModelConfig


class ConsistencyError(RuntimeError):
  """A consistency check of METHOD.md failed on real data."""


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class HydraResult:
  """Measures per prompt (B), source (K) and component (C = 2L; row = ablated, column = responding)."""
  token: jax.Array                # [B] int32 scored token (clean argmax at the final position)
  clean_logit: jax.Array          # [B] its clean centred logit
  direct_effect: jax.Array        # [B, C] clean DE of each component
  embed_direct_effect: jax.Array  # [B] DE of z^0 plus the LayerNorm bias term
  total_effect: jax.Array         # [B, K, C]
  total_effect_mean: jax.Array    # [B, C]
  direct_change: jax.Array        # [B, C] the ablated component's own DE change (diagonal of response)
  response: jax.Array             # [B, C, C] dDE, mean over sources
  compensation_attn: jax.Array    # [B, C] downstream attention response (the Hydra effect)
  compensation_mlp: jax.Array     # [B, C] downstream MLP response (reduced erasure)
  norm_remainder: jax.Array       # [B, C] TE - direct change - compensation


@dataclasses.dataclass(frozen=True)
class _Settings:
  """Static (compile-time) choices of one sweep program."""
  replacement: str                # "sources" (index this batch), "batch_mean", "zero" or "given"
  path: str
  skip_unchanged_layers: bool
  response_scale: str
  freeze_final_scale: bool
  source_chunk: Optional[int]
  lane_chunk: Optional[int]
  num_ablated: int                # the first rows of the batch are ablated; the rest are sources only


def draw_sources(num_prompts: int, num_sources: int, seed: int = 0) -> np.ndarray:
  """int32 [B, K]: for each prompt, K distinct other prompts drawn uniformly (never itself)."""
  if not 0 < num_sources < num_prompts:
    raise ValueError(f"num_sources={num_sources} must be in [1, num_prompts={num_prompts}): "
                     "each prompt draws distinct sources other than itself")
  keys = np.random.default_rng(seed).random((num_prompts, num_prompts))
  np.fill_diagonal(keys, np.inf)                                       # never pick itself
  return np.argsort(keys, axis=1)[:, :num_sources].astype(np.int32)


def regression(result: HydraResult, part: str = "total") -> effects.Regression:
  """Per component, across prompts: compensation (part "total", "attn" or "mlp") on the lost
  direct effect (-direct_change). Components 2l and 2l+1 are layer l's attention and MLP."""
  parts = {"total": lambda r: r.compensation_attn + r.compensation_mlp,
           "attn": lambda r: r.compensation_attn, "mlp": lambda r: r.compensation_mlp}
  if part not in parts:
    raise ValueError(f"part must be one of {sorted(parts)}, got {part!r}")
  return effects.regress(-result.direct_change, parts[part](result))


# One batch of prompts: a single compiled program -----------------------------------------------


def _replacement_values(settings: _Settings, clean, sources, given, real):
  """What replaces each component of the ablated rows: [B, K, C, D] (K = 1 for zero and mean)."""
  components = clean.components                                        # [N, C, D] (all rows)
  if settings.replacement == "sources":
    return components[sources]                                         # [B, K, C, D]
  if settings.replacement == "batch_mean":                             # padded prompts weigh 0
    given = jnp.einsum("b,bcd->cd", real / real.sum(), components)
  elif settings.replacement == "zero":
    given = jnp.zeros(components.shape[1:], components.dtype)
  if given.ndim == 2:                                                  # one value for all: [C, D]
    given = jnp.broadcast_to(given, (settings.num_ablated, 1) + given.shape)
  return given


def _measures(config: ModelConfig, settings: _Settings, clean, ablated, baseline):
  """Reduce the ablated runs' Changes [B, K, C, ...] against their Baseline to the measures."""
  ratio = clean.sigma[:, None, None] / ablated.sigma                   # [B, K, C] clean / own sigma
  base_ratio = clean.sigma / baseline.sigma                            # [B]
  logit = (baseline.resid_de[:, None, None] + ablated.resid_change) * ratio  # centred, own sigma
  total = effects.total_effect(logit, (baseline.resid_de * base_ratio)[:, None, None])  # [B, K, C]
  frozen_response = ablated.de_change.mean(1)                          # [B, C, C] (clean sigma)
  response = frozen_response
  if settings.response_scale == "ablated":  # DE_ablated(c2) with the run's own sigma
    own = (baseline.direct_effect[:, None, None] + ablated.de_change) * ratio[..., None]
    response = effects.response(own, (baseline.direct_effect * base_ratio[:, None])[:, None]).mean(1)
  change = effects.direct_change(response)
  attn, mlp = effects.compensation(response, config)
  measures = dict(
      token=clean.token, clean_logit=clean.resid_de + clean.bias_logit,
      direct_effect=clean.direct_effect, embed_direct_effect=clean.embed_de + clean.bias_logit,
      total_effect=total, total_effect_mean=total.mean(1), direct_change=change, response=response,
      compensation_attn=attn, compensation_mlp=mlp,
      norm_remainder=effects.norm_remainder(total.mean(1), change, attn, mlp))
  # The checks hold with the clean sigma throughout: upstream exactly, linear to rounding.
  frozen_attn, frozen_mlp = effects.compensation(frozen_response, config)
  unaffected = jnp.asarray(effects.unaffected_mask(config))
  checks = dict(
      upstream=jnp.where(unaffected, jnp.abs(frozen_response), 0.0).max(-1),  # [B, C]
      linear=jnp.abs(effects.norm_remainder(ablated.resid_change.mean(1),
                                            effects.direct_change(frozen_response),
                                            frozen_attn, frozen_mlp)),  # [B, C]
      scale=jnp.maximum(jnp.abs(clean.direct_effect).max(-1), jnp.abs(clean.resid_de)))  # [B]
  return measures, checks


def _sweep_batch(params, tokens, lengths, real, sources, given, *, config, settings):
  """tokens [N, T], lengths, real [N] (0 for padding); the first num_ablated rows are ablated."""
  clean = ablated_runs.clean_run(params, config, tokens, lengths)
  values = _replacement_values(settings, clean, sources, given, real)
  clean = jax.tree_util.tree_map(lambda x: x[:settings.num_ablated], clean)
  tokens = tokens[:settings.num_ablated]
  runs = RUNS[settings.path, settings.path == "incremental" and settings.skip_unchanged_layers]
  chunks = {name: getattr(settings, name) for name in ("source_chunk", "lane_chunk")
            if name in inspect.signature(runs).parameters}
  ablated, baseline = runs(params, config, tokens, clean, values,
                           freeze_final_scale=settings.freeze_final_scale, **chunks)
  return _measures(config, settings, clean, ablated, baseline)


# (path, skip unchanged layers) -> how the ablated runs are computed
RUNS = {("full", False): ablated_runs.full_runs, ("incremental", False): ablated_runs.incremental_runs,
        ("incremental", True): layer_skip.skip_runs}


@functools.lru_cache(maxsize=None)
def compiled_batch(config: ModelConfig, settings: _Settings, mesh=None):
  """The jitted program of one batch (cached per config, settings and mesh)."""
  fn = functools.partial(_sweep_batch, config=config, settings=settings)
  if mesh is None:
    return jax.jit(fn)
  return jax.jit(fn, out_shardings=sharding.data_sharding(mesh))


@functools.lru_cache(maxsize=None)
def _compiled_clean(config: ModelConfig, mesh=None):
  fn = lambda params, tokens, lengths: ablated_runs.clean_run(params, config, tokens, lengths).components
  return jax.jit(fn) if mesh is None else jax.jit(fn, out_shardings=sharding.data_sharding(mesh))


# The driver: validate, batch, place on the mesh, check -------------------------------------------


def hydra_sweep(params, config: ModelConfig, tokens, lengths, sources=None, *, kind: str = "resample",
                path: str = "incremental", mesh=None, check: bool = False, num_scored: Optional[int] = None,
                mean_activations=None, response_scale: str = "clean", freeze_final_scale: bool = False,
                skip_unchanged_layers: bool = True, batch_size: Optional[int] = None,
                source_chunk: Optional[int] = None, lane_chunk: Optional[int] = None,
                check_rtol: float = 1e-4) -> HydraResult:
  """Ablate every component of every prompt at its final position; see the module docstring.

  tokens int32 [N, T] right-padded, lengths int32 [N] (real tokens per prompt). The first
  num_scored prompts (default all) are ablated and scored; the others serve only as sources
  and in the mean. sources int32 [num_scored, K] (kind "resample": prompt b's replacements
  come from prompts sources[b], indices into all N; None for "zero" and "mean").
  mean_activations [C, D] overrides the prompts' mean for "mean". response_scale: the final
  sigma the responses' DE use in the ablated run ("clean", or the run's own: "ablated");
  freeze_final_scale holds the ablated runs' final sigma at the clean value (norm_remainder
  is then zero). Memory: batch_size scored prompts per program, source_chunk sources
  vmapped at once, lane_chunk lanes at a time when skipping layers (each lane copies one
  layer's weights per step; see layer_skip). check_rtol: tolerance of the checks, relative
  to each prompt's largest |DE|.
  """
  program, params, batches = _prepare(
      params, config, tokens, lengths, sources, kind=kind, path=path, mesh=mesh, num_scored=num_scored,
      mean_activations=mean_activations, response_scale=response_scale,
      freeze_final_scale=freeze_final_scale, skip_unchanged_layers=skip_unchanged_layers,
      batch_size=batch_size, source_chunk=source_chunk, lane_chunk=lane_chunk)
  outputs = []
  for arguments, keep in batches:
    measures, checks = program(params, *arguments)
    outputs.append(jax.tree_util.tree_map(lambda x: x[:keep], (measures, checks)))
  measures, checks = jax.tree_util.tree_map(lambda *xs: jnp.concatenate(xs) if len(xs) > 1 else xs[0],
                                            *outputs)
  if check:
    _raise_if_inconsistent(checks, check_rtol, upstream=(path == "full" or not skip_unchanged_layers))
  return HydraResult(**measures)


def lower_sweep(params, config: ModelConfig, tokens, lengths, sources=None, **options) -> jax.stages.Lowered:
  """The program of hydra_sweep's first batch, lowered (same arguments; params may be
  ShapeDtypeStructs): `.compile()` it to time compilation, read `.cost_analysis()` or
  `.memory_analysis()`, or inspect the HLO."""
  program, params, batches = _prepare(params, config, tokens, lengths, sources, **options)
  arguments, _ = next(iter(batches))
  return program.lower(params, *arguments)


def _prepare(params, config, tokens, lengths, sources, *, kind="resample", path="incremental", mesh=None,
             num_scored=None, mean_activations=None, response_scale="clean", freeze_final_scale=False,
             skip_unchanged_layers=True, batch_size=None, source_chunk=None, lane_chunk=None):
  """Validate, then (compiled program, placed params, iterable of (program arguments, rows kept))."""
  tokens, lengths, sources, n = sweep_inputs.validate(
      config, tokens, lengths, sources, kind=kind, path=path, num_scored=num_scored,
      mean_activations=mean_activations, response_scale=response_scale, batch_size=batch_size,
      source_chunk=source_chunk, lane_chunk=lane_chunk, mesh=mesh)
  N, multiple = tokens.shape[0], sharding.data_size(mesh)
  round_up = lambda x: -(-x // multiple) * multiple                    # to the mesh's data axis
  batch = round_up(min(batch_size or n, n))
  params = sharding.place_params(params, mesh)
  if kind == "zero":
    replacement, given = "zero", None
  elif mean_activations is not None:
    replacement, given = "given", jnp.asarray(mean_activations, jnp.float32)
  elif batch >= n:     # one program: its clean run covers every prompt, sources gathered inside
    replacement, given = ("sources" if kind == "resample" else "batch_mean"), None
  else:                # several programs: a clean pass collects every prompt's components first
    components = _all_components(params, config, tokens, lengths, round_up(batch), mesh)  # [N, C, D]
    replacement = "given"
    given = components.mean(0) if kind == "mean" else (lambda rows: components[sources[rows]])
  single = replacement in ("sources", "batch_mean")
  settings = _Settings(replacement=replacement, path=path, skip_unchanged_layers=skip_unchanged_layers,
                       response_scale=response_scale, freeze_final_scale=freeze_final_scale,
                       source_chunk=source_chunk, lane_chunk=lane_chunk, num_ablated=batch)

  def batches():
    for start in range(0, n, batch):
      rows = np.arange(start, start + batch)                           # ablated rows, padded
      real = rows < n
      rows = np.where(real, rows, 0)
      extra = np.arange(n, N) if single else np.arange(0)              # source-only prompts
      pad = round_up(len(rows) + len(extra)) - len(rows) - len(extra)
      clean_rows = np.concatenate([rows, extra, np.zeros(pad, int)])   # the clean run's rows
      real = np.concatenate([real, np.ones(len(extra), bool), np.zeros(pad, bool)])
      batch_given = given(rows) if callable(given) else given
      arrays = sharding.place_batch((tokens[clean_rows], lengths[clean_rows], real.astype(np.float32),
                                     None if sources is None else sources[rows]), mesh)
      if batch_given is not None and batch_given.ndim == 4:
        batch_given = sharding.place_batch(batch_given, mesh)
      yield (*arrays, batch_given), min(batch, n - start)
  return compiled_batch(config, settings, mesh), params, batches()


def _all_components(params, config, tokens, lengths, batch, mesh) -> jax.Array:
  """Clean final-position components of every prompt, [N, C, D], in batches."""
  clean = _compiled_clean(config, mesh)
  N, parts = tokens.shape[0], []
  for start in range(0, N, batch):
    rows = np.minimum(np.arange(start, start + batch), N - 1)
    parts.append(clean(params, *sharding.place_batch((tokens[rows], lengths[rows]), mesh)))
  return jnp.concatenate(parts)[:N]


def _raise_if_inconsistent(checks, rtol: float, upstream: bool) -> None:
  scale = np.maximum(np.asarray(checks["scale"]), 1e-30)[:, None]      # [B, 1]
  names = {"upstream": "responses of components the ablation cannot reach are zero",
           "linear": "with the final sigma frozen, TE = direct change + compensation"}
  for name in (["upstream"] if upstream else []) + ["linear"]:
    absolute = np.asarray(checks[name])                                # [B, C]
    relative = absolute / scale
    worst = np.unravel_index(np.argmax(relative), relative.shape)
    if relative[worst] > rtol:
      raise ConsistencyError(
          f"consistency check '{name}' failed ({names[name]}): off by {float(absolute[worst]):.3g} "
          f"= {float(relative[worst]):.3g} of the prompt's largest |DE| (tolerance {rtol:g}) "
          f"at prompt {worst[0]}, ablated component {worst[1]} (layer {worst[1] // 2}, "
          f"{'attention' if worst[1] % 2 == 0 else 'MLP'})")
