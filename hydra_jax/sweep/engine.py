"""The Hydra sweep: ablate every attention and MLP layer at each prompt's final position.

    result = hydra_sweep(params, config, tokens, lengths, draw_sources(N, 15, seed=0))

For each prompt b, source k and component c (2l = attention of layer l, 2l+1 its MLP)
the component's final-position output is replaced - by the same component of prompt
sources[b, k] ("resample"), by zero, or by its mean over the prompts - and the run is
reduced on device to the measures of docs/method.md (see `hydra_jax.sweep.effects`). A dose
w in [0, 1] (`run_rows(..., dose=w)`, a runtime input: one program for every dose)
replaces it by (1 - w) x clean + w x replacement instead; w = 1 (the default) is the
replacement itself, bit for bit.

Two compiled programs per (config, options, mesh):

  the clean pass   every prompt's clean run at its final position (`clean_pass`: the
                   scored token [N] and components [N, C, D]), once per prompt set: the
                   resample table, and the mean (or the caller's, e.g. the job's filter)
  a batch          B scored prompts (`batching.pad_rows`): their clean run, the ablated
                   runs along one `PATHS` entry, reduced to `HydraResult`

`prepare` builds both for a prompt set and `run_rows` sweeps any rows of it (the main job
calls it once per chunk); `hydra_sweep` runs every batch and concatenates. `path` picks
how an ablated run is computed (all agree to float32 tolerance):

  "incremental"  only the final position is re-run, against the clean keys/values, and
                 (skip_unchanged_layers) only from the ablated layer up (`layer_skip`)
  "full"         every position is re-run with `forward` (the reference)

With a `mesh`, prompts are split over its "data" axis and weights over its "model" axis
(`hydra_jax.sweep.sharding`). `lower_sweep` gives the compiled batch program itself.

Consistency checks (docs/method.md), raised as ConsistencyError with `check=True`:
  upstream   components the ablation cannot reach change by exactly zero (the paths
             that recompute them: "full" and "incremental" without skipping)
  linear     with the final sigma frozen at its clean value, TE = direct change + CE

Shapes: N prompts, B prompts in a batch, T positions, K sources, C = 2L components, D d_model.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Optional

import jax
import jax.numpy as jnp
import numpy as np

from hydra_jax.model.config import ModelConfig
from hydra_jax.sweep import batching, checks as checks_lib, effects, measures, noise, paths, sharding
from hydra_jax.sweep import validation
from hydra_jax.sweep.options import Settings, SweepOptions, settings_of, skips
from hydra_jax.sweep.checks import ConsistencyError  # noqa: F401  (re-exported)
from hydra_jax.sweep.layer_skip import skip_runs
from hydra_jax.sweep.measures import HydraResult
from hydra_jax.sweep.sources import draw_sources  # noqa: F401  (re-exported)

PATHS: dict[str, paths.AblationPath] = {
    "full": paths.full_runs, "incremental": paths.incremental_runs, "layer_skip": skip_runs}


def regression(result: HydraResult, part: str = "total") -> effects.Fit:
  """Per component, across prompts: compensation (part "total", "attn" or "mlp") on the lost
  direct effect (-direct_change). Components 2l and 2l+1 are layer l's attention and MLP."""
  parts = {"total": lambda r: r.compensation_attn + r.compensation_mlp,
           "attn": lambda r: r.compensation_attn, "mlp": lambda r: r.compensation_mlp}
  if part not in parts:
    raise ValueError(f"part must be one of {sorted(parts)}, got {part!r}")
  return effects.regress(-result.direct_change, parts[part](result))


# The compiled programs -------------------------------------------------------------------------


def _sweep_batch(params, tokens, lengths, table, sources, dose, *, config, settings):
  """tokens [B, T], lengths [B]; table [N, C, D] with sources [B, K] (resample), (noise std,
  noised positions [N, T]) with sources = the rows' prompt indices [B] (noise), or one
  value [C, D]; dose: a float32 scalar in [0, 1]."""
  clean = paths.clean_run(params, config, tokens, lengths)
  if settings.kind == "resample":
    values = table[sources]                                            # [B, K, C, D]
  elif settings.kind == "noise":
    std, positions = table
    values = noise.noised_components(params, config, tokens, lengths, sources, positions[sources],
                                     std=std, draws=settings.noise_draws, seed=settings.noise_seed)
  else:
    values = jnp.broadcast_to(table, (tokens.shape[0], 1) + table.shape)  # [B, 1, C, D]
  clean_values = clean.components[:, None].astype(values.dtype)        # [B, 1, C, D]
  values = ((1 - dose) * clean_values + dose * values).astype(values.dtype)  # exact at dose 1
  setup = paths.Setup(params, config, tokens, clean, settings.freeze_final_scale,
                      settings.source_chunk, settings.lane_chunk)
  ablated, baseline = PATHS[settings.path](setup, values)
  return measures.reduce(config, settings.response_scale, clean, ablated, baseline,
                         settings.keep_sources)


@functools.lru_cache(maxsize=None)
def compiled_batch(config: ModelConfig, settings: Settings, mesh=None):
  """The jitted program of one batch (cached per config, settings and mesh). Its results stay
  split by prompt over the data axis; with several processes they are gathered inside the
  program instead (replicated: every process reads them without a collective of its own)."""
  fn = functools.partial(_sweep_batch, config=config, settings=settings)
  if mesh is None:
    return jax.jit(fn)
  return jax.jit(fn, out_shardings=sharding.data_sharding(mesh) if jax.process_count() == 1
                 else sharding.replicated(mesh))


@functools.lru_cache(maxsize=None)
def _compiled_clean(config: ModelConfig, mesh=None):
  def scored(params, tokens, lengths):
    clean = paths.clean_run(params, config, tokens, lengths)
    return clean.token, clean.components
  return jax.jit(scored) if mesh is None else jax.jit(scored,
                                                      out_shardings=sharding.data_sharding(mesh))


def clean_pass(params, config: ModelConfig, tokens, lengths, batch: int,
               mesh=None) -> tuple[jax.Array, jax.Array]:
  """Every prompt's clean run at its final position, `batch` prompts per call, by the very
  code of the sweep (`paths.clean_run`): (scored token [N], components [N, C, D])."""
  clean, parts = _compiled_clean(config, mesh), []
  for rows in batching.batches(tokens.shape[0], batch):
    padded, _ = batching.pad_rows(rows, batch, sharding.data_size(mesh))
    parts.append(clean(params, *sharding.place_batch((tokens[padded], lengths[padded]), mesh)))
  return tuple(jnp.concatenate(part)[:tokens.shape[0]] for part in zip(*parts))


# Preparing a prompt set, and sweeping rows of it -----------------------------------------------


@dataclasses.dataclass(frozen=True)
class Prepared:
  """A prompt set ready to sweep: the program, placed params and what replaces components."""
  program: Any
  params: Any
  tokens: np.ndarray              # [N, T]
  lengths: np.ndarray             # [N]
  table: Any                      # [>= N, C, D] clean components (resample), (std, [N, T]) (noise), or [C, D]
  sources: Optional[np.ndarray]   # [n, K] into the N prompts, or None
  num_scored: int                 # n: the first n prompts are ablated and scored
  batch: int                      # scored rows per program call (a multiple of the data axis)
  mesh: Any
  options: SweepOptions

  @property
  def upstream_checked(self) -> bool:
    """Whether the path recomputes upstream components (their check applies)."""
    return not skips(self.options)

  def run_rows(self, rows: np.ndarray, dose: float = 1.0):
    return run_rows(self, rows, dose)


def prepare(params, config: ModelConfig, tokens, lengths, sources=None,
            options: SweepOptions = SweepOptions(), *, mesh=None, num_scored: Optional[int] = None,
            mean_activations=None, noise_positions=None, components=None,
            table=None) -> Prepared:
  """Validate, compile and compute the replacement table once; see `hydra_sweep` for the
  arguments. `components` [N, C, D]: the prompts' clean final-position components where
  they are already computed (the job's filter ran the clean pass): the resample table, or
  the mean's, with no clean pass here. `table` (internal) passes the table itself (e.g.
  ShapeDtypeStructs for lowering)."""
  tokens, lengths, sources, n = validation.validate(
      config, tokens, lengths, sources, kind=options.kind, num_scored=num_scored,
      mean_activations=mean_activations, mesh=mesh)
  for name, value, shape in (("noise_positions", noise_positions, tokens.shape),
                             ("components", components, tokens.shape[:1] + (
                                 config.num_components, config.d_model))):
    if value is not None and np.shape(value) != shape:
      raise ValueError(f"{name} must have shape {shape}, got {np.shape(value)}")
  batch = batching.round_up(min(options.batch_size or n, n), sharding.data_size(mesh))
  params = sharding.place_params(params, mesh)
  if table is None and options.kind == "noise":
    if noise_positions is None:                                        # every real token
      noise_positions = np.arange(tokens.shape[1])[None, :] < lengths[:, None]
    table = (jnp.float32(options.noise_scale * noise.embedding_std(params, config)),
             jnp.asarray(noise_positions, jnp.float32))               # (std, [N, T])
  elif table is None:
    table = _table(params, config, tokens, lengths, options.kind, mean_activations,
                   components, batch, mesh)
  return Prepared(compiled_batch(config, settings_of(options), mesh), params, tokens, lengths,
                  table, sources, n, batch, mesh, options)


def _table(params, config, tokens, lengths, kind, mean_activations, components, batch, mesh):
  """What replaces the components: the clean table [N, C, D] (resample), or [C, D]."""
  if kind == "zero":
    return jnp.zeros((config.num_components, config.d_model), jnp.float32)
  if mean_activations is not None:
    return jnp.asarray(mean_activations, jnp.float32)
  if components is None:
    components = clean_pass(params, config, tokens, lengths, batch, mesh)[1]  # [N, C, D]
  elif mesh is None:
    components = jnp.asarray(components)
  elif kind == "resample":             # the caller's, on the host: split like the clean pass's
    components = _split_over_data(components, mesh)
  else:                                # only for their mean: on every device for a moment
    components = jax.device_put(components, sharding.replicated(mesh))
  return components if kind == "resample" else components.astype(jnp.float32).mean(0)


def _split_over_data(rows: np.ndarray, mesh) -> jax.Array:
  """Host rows [N, ...] on the mesh, split over "data": padded with zero rows to a multiple of
  the data axis ([>= N, ...]; no source indexes a padding row)."""
  count = batching.round_up(len(rows), sharding.data_size(mesh))
  padding = np.zeros((count - len(rows),) + rows.shape[1:], rows.dtype)
  return jax.device_put(np.concatenate([rows, padding]), sharding.data_sharding(mesh))


def run_rows(prepared: Prepared, rows: np.ndarray, dose: float = 1.0):
  """(measures, checks) of the scored prompts `rows` [n <= batch] (indices into the N prompts),
  each component replaced at `dose` (module docstring): dicts of arrays with a leading axis
  of B >= n rows, the first n of them `rows` (the rest padding). Not cut here: on a
  multi-host mesh a slice of a global array is a collective every process must join, so
  callers cut after gathering (`job.runtime.to_host`)."""
  if not 0.0 <= dose <= 1.0:
    raise ValueError(f"dose must be in [0, 1] (0: the clean value, 1: the replacement), got {dose!r}")
  arrays = _batch_arrays(prepared, np.asarray(rows))
  return prepared.program(prepared.params, *arrays[:2], prepared.table, arrays[2],
                          _placed_dose(dose, prepared.mesh))


def _placed_dose(dose: float, mesh):
  """The dose as a float32 scalar, replicated over the mesh (every process passes the same)."""
  value = np.float32(dose)
  return value if mesh is None else jax.device_put(value, sharding.replicated(mesh))


def _batch_arrays(prepared: Prepared, rows: np.ndarray):
  """(tokens [B, T], lengths [B], sources [B, K] or the rows' prompt indices [B]) placed on the mesh."""
  padded, _ = batching.pad_rows(rows, prepared.batch, sharding.data_size(prepared.mesh))
  sources = padded.astype(np.int32) if prepared.sources is None else prepared.sources[padded]
  return sharding.place_batch((prepared.tokens[padded], prepared.lengths[padded], sources),
                              prepared.mesh)


def hydra_sweep(params, config: ModelConfig, tokens, lengths, sources=None, *, mesh=None,
                dose: float = 1.0, num_scored: Optional[int] = None, mean_activations=None,
                noise_positions=None, **options) -> HydraResult:
  """Ablate every component of every prompt at its final position; see the module docstring.

  Args:
    params, config: the model.
    tokens: int32 [N, T], right-padded; lengths: int32 [N], real tokens per prompt.
    sources: int32 [n, K], for kind "resample": prompt b's replacements come from prompts
      sources[b] (indices into all N; see `draw_sources`). None for "zero" and "mean".
    mesh: a jax.sharding.Mesh with a "data" (and optionally "model") axis, or None.
    dose: w in [0, 1]: each component is replaced by (1 - w) x clean + w x its replacement.
    num_scored: the first n prompts are ablated; the others serve only as sources and in
      the mean. mean_activations [C, D]: the mean of kind "mean" (default: over all N).
      noise_positions [N, T]: where kind "noise" noises the embeddings (default: every
      real token; the job passes the subject's).
    **options: the fields of `SweepOptions` (`hydra_jax.sweep.options`, their defaults and
      meaning): kind ("resample", "zero", "mean", "noise"), path ("incremental" or "full",
      the same numbers), check / check_rtol (raise ConsistencyError when a check of
      docs/method.md fails), response_scale, freeze_final_scale, skip_unchanged_layers,
      keep_sources, noise_scale / noise_draws / noise_seed, and the memory bounds
      batch_size, source_chunk, lane_chunk.

  Returns:
    HydraResult with a leading axis of n prompts.
  """
  prepared = prepare(params, config, tokens, lengths, sources, SweepOptions(**options), mesh=mesh,
                     num_scored=num_scored, mean_activations=mean_activations,
                     noise_positions=noise_positions)
  parts = [jax.tree_util.tree_map(lambda x, n=len(rows): x[:n], run_rows(prepared, rows, dose))
           for rows in batching.batches(prepared.num_scored, prepared.batch)]
  measured, checks = jax.tree_util.tree_map(
      lambda *xs: jnp.concatenate(xs) if len(xs) > 1 else xs[0], *parts)
  if prepared.options.check:
    checks_lib.raise_if_inconsistent(checks, prepared.options.check_rtol,
                                     upstream=prepared.upstream_checked)
  return HydraResult(**measured)


def lower_sweep(params, config: ModelConfig, tokens, lengths, sources=None, *, mesh=None,
                num_scored: Optional[int] = None, **options) -> jax.stages.Lowered:
  """The program of hydra_sweep's first batch, lowered (same arguments; params may be
  ShapeDtypeStructs): `.compile()` it to time compilation, read `.cost_analysis()` or
  `.memory_analysis()`, or inspect the HLO. Nothing is computed."""
  sweep_options = SweepOptions(**options)
  table = {"resample": jax.ShapeDtypeStruct((np.shape(tokens)[0], config.num_components, config.d_model),
                                            jnp.dtype(config.dtype)),
           "noise": (jax.ShapeDtypeStruct((), jnp.float32),
                     jax.ShapeDtypeStruct(np.shape(tokens), jnp.float32))}.get(
               sweep_options.kind,
               jax.ShapeDtypeStruct((config.num_components, config.d_model), jnp.float32))
  prepared = prepare(params, config, tokens, lengths, sources, sweep_options, mesh=mesh,
                     num_scored=num_scored, table=table)
  arrays = _batch_arrays(prepared, np.arange(min(prepared.batch, len(prepared.tokens))))
  return prepared.program.lower(prepared.params, *arrays[:2], table, arrays[2],
                                _placed_dose(1.0, prepared.mesh))
