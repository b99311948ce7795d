"""The main job: model -> prompts -> sources -> sweep in resumable chunks -> report.

    run(config, workdir) -> summary dict

Steps (each is a function below, readable on its own):

  0. check      the config (`job.config.check`, once), the devices (jax.distributed on a
                pod) and the mesh's shape (`mesh_shape`, the one place it is computed)
  1. plan       the model's ModelConfig from its config files alone, matched against
                config.model (once), and the sweep's size, bytes per device and FLOPs
                (`job.plan`); a dry run stops here, and so does a run too large for this
                machine or one whose prompts cannot fit the model's context. Then the mesh is made, once, and handed down
  2. inputs     the model and the kept prompts (`job.loading`, which asks the registries
                of model and prompt sources: `job.model_sources`, `job.prompt_sources`)
  3. sources    K resample sources per prompt, drawn from the whole kept set (seeded);
                for mean ablation, the mean components over the whole kept set
  4. chunks     prompts [i * chunk_size, (i + 1) * chunk_size) form chunk i. A chunk's
                batch is its prompts followed by the source prompts they need; the
                sweep scores only the chunk's own rows. Finished chunks are saved
                atomically and skipped when the job runs again (`hydra_jax.store`).
                Then the dose-response sweep of a few prompts (`job.dose`, dose.npz)
  5. report     every chunk's arrays with the prompts' ids, texts and scored tokens,
                summary.json, figures and report.md (`hydra_jax.report`)

Multi-host (TPU pods): every host runs the same job over one global mesh; only process 0
writes files, and it decides which chunks are finished.

Shapes: N kept prompts, n prompts of a chunk, K sources, C = 2L components.
"""

from __future__ import annotations

import dataclasses
import os
import time
from typing import Any, Optional

import jax
import ml_collections
import numpy as np

from hydra_jax.job import chunks
from hydra_jax.job import dose as dose_sweep
from hydra_jax.job import heads
from hydra_jax.job import loading as inputs
from hydra_jax.job import output
from hydra_jax.job.output import say   # the job's output lines (absl logging)
from hydra_jax.job import plan as plan_lib
from hydra_jax.job import prompt_sources
from hydra_jax.report import summary as report
from hydra_jax import store as results_store
from hydra_jax.job import config as run_config
from hydra_jax.sweep import engine as sweep
from hydra_jax.sweep.options import SweepOptions


# 1. Devices and plan --------------------------------------------------------------------------


_JOINED = []   # set when this process joined others (jax.distributed): see `joined`


def start_devices(config: ml_collections.ConfigDict) -> None:
  """Join the other processes before any device use: a process of `hydra_jax.launch_local`
  joins its local pod; a host of a multi-host TPU slice (or one told
  JAX_COORDINATOR_ADDRESS) initialises jax.distributed (config.distributed)."""
  from hydra_jax import launch_local
  if launch_local.launched():
    if config.distributed == "off":
      raise ValueError("config.distributed='off', but hydra_jax.launch_local started this job as "
                       "one of several processes: use 'auto' or 'on'")
    launch_local.join()
    _JOINED.append(True)
    return
  hosts = os.environ.get("TPU_WORKER_HOSTNAMES", "")
  multi_host = "," in hosts or bool(os.environ.get("JAX_COORDINATOR_ADDRESS"))
  if config.distributed == "on" or (config.distributed == "auto" and multi_host):
    jax.distributed.initialize()
    _JOINED.append(True)


def joined() -> bool:
  """Whether this process joined others: then an error must stop it at once (`main`)."""
  return bool(_JOINED)


def mesh_shape(config: ml_collections.ConfigDict) -> tuple[int, int]:
  """(data, model) axis sizes of config.mesh over this machine's devices; data=-1 takes
  what the model axis leaves (at least 1, so a dry run can plan a larger machine's mesh)."""
  model = config.mesh.model
  return (config.mesh.data if config.mesh.data != -1 else max(1, jax.device_count() // model),
          model)


def make_mesh(shape: tuple[int, int]) -> jax.sharding.Mesh:
  """The ("data", "model") mesh of `shape`; a ValueError when this machine lacks the devices."""
  (data, model), count = shape, jax.device_count()
  if data * model > count or count % model:
    raise ValueError(f"config.mesh (data={data}, model={model}) does not fit the "
                     f"{count} devices here")
  return jax.make_mesh((data, model), ("data", "model"),
                       axis_types=(jax.sharding.AxisType.Auto,) * 2,
                       devices=jax.devices()[:data * model])


def plan_for(config, model_config, shape: tuple[int, int]) -> plan_lib.Plan:
  """The plan of this config's sweep on a (data, model) mesh, from the prompt source's
  count and length (before any prompt is read or tokenized)."""
  num_prompts, prompt_length = prompt_sources.source_of(config).planned(config, model_config)
  return plan_lib.make_plan(model_config, num_prompts=num_prompts, prompt_length=prompt_length,
                            num_sources=ablations_per_prompt(config, model_config)
                            // model_config.num_components,
                            chunk_size=config.sweep.chunk_size, mesh_shape=shape,
                            path=config.sweep.path)


# 4. Chunks ------------------------------------------------------------------------------------


def ablations_per_prompt(config, model_config) -> int:
  """2L components x K sources or noise draws (one replacement per component for zero and mean)."""
  sources = config.sweep.num_sources if config.sweep.kind in ("resample", "noise") else 1
  return model_config.num_components * sources


def _finished(store, num_chunks) -> np.ndarray:
  """bool [num_chunks]: which chunks are on disk (process 0's view, shared with all hosts)."""
  done = np.zeros(num_chunks, bool)
  if jax.process_index() == 0:
    done[[i for i in store.finished_chunks() if i < num_chunks]] = True
  return chunks.process_zero_view(done)


def _preparer(config, model, prompts, sources, mesh):
  """prepare() -> the engine prepared for the kept prompts (once, on first use)."""
  layout, prepared = chunks.make_layout(len(prompts), config.sweep.chunk_size), []

  def prepare():
    if not prepared:
      prepared.append(chunks.prepare(model, prompts, sources, layout, sweep_options(config),
                                     mesh=mesh))
    return prepared[0]
  return prepare


def run_chunks(config, model, prompts, store, prepare) -> dict[str, Any]:
  """Sweep every unfinished chunk (`prepare()` gives the engine), saving each; returns the
  timing of this invocation."""
  layout = chunks.make_layout(len(prompts), config.sweep.chunk_size)
  done = _finished(store, layout.num_chunks)
  per_prompt = ablations_per_prompt(config, model.config)
  todo = [i for i in range(layout.num_chunks) if not done[i]]
  say(f"{layout.num_chunks} chunks of <= {layout.size} prompts; "
      f"{layout.num_chunks - len(todo)} already finished")
  prompts_done = sum(len(layout.chunk(i)) for i in range(layout.num_chunks) if done[i])
  start, computed = time.time(), 0
  progress = output.Progress(layout.num_chunks, len(prompts), prompts_done, per_prompt)
  for index in todo:
    arrays = chunks.sweep_chunk(prepare(), prompts, layout, index)
    if jax.process_index() == 0:
      store.save_chunk(index, arrays)
    computed += len(layout.chunk(index))
    say(progress.line(index, computed))   # the first chunk includes compiling: no ETA
  elapsed = time.time() - start
  steady = progress.steady_forwards_per_second()
  return dict(chunks_total=layout.num_chunks, chunks_resumed=layout.num_chunks - len(todo),
              sweep_seconds=elapsed, ablated_forwards_computed=computed * per_prompt,
              ablated_forwards_per_second=computed * per_prompt / elapsed if computed else None,
              ablated_forwards_per_second_after_compile=steady)


# 5. Results -----------------------------------------------------------------------------------


def gather_results(store, model, prompts, num_chunks) -> dict[str, np.ndarray]:
  """Every chunk's arrays in prompt order, with the prompts' texts, scored tokens and (where
  the prompt set marks them) subjects: the bootstrap's clusters (`report.statistics`)."""
  arrays = store.load_all(range(num_chunks))
  if not np.array_equal(arrays["prompt_id"], prompts.ids):
    raise ValueError(f"the chunks in {store.workdir} hold other prompts than this run keeps "
                     "(did the dataset or the model change?): use a fresh --workdir")
  decode = model.tokenizer.decode if model.tokenizer is not None else str
  arrays["prompt"] = np.array(prompts.texts)
  arrays["label"] = np.array(prompts.labels)
  if any(prompts.relations):
    arrays["relation"] = np.array(prompts.relations)
  arrays["token_text"] = np.array([decode([int(t)]) for t in arrays["token"]])
  if any(end > start for start, end in prompts.subjects):
    arrays["subject"] = np.array([decode(tokens[start:end].tolist()).strip() if end > start else ""
                                  for tokens, (start, end) in zip(prompts.tokens, prompts.subjects)])
  return arrays


def plan_first(config: ml_collections.ConfigDict, shape: tuple[int, int]) -> bool:
  """Match the model against config.model and print its plan, from config files alone
  (no weight is read); True when the job stops there (a dry run). Raises when the model
  does not match config.model or the sweep cannot fit this machine."""
  model_config = inputs.model_config_of(config)
  run_config.check_matches(config, model_config, inputs.describe(config))
  the_plan = plan_for(config, model_config, shape)
  if not config.dry_run:
    plan_lib.check_fits(the_plan)      # its error message holds the plan
  say(the_plan.describe())
  return config.dry_run


def draw_sources(config, prompts) -> Optional[np.ndarray]:
  """Resample sources [N, K] drawn from the whole kept set (seeded; uniformly, or among the
  prompts of the same relation); None for the other kinds."""
  if config.sweep.kind != "resample":
    return None
  groups = None
  if config.sweep.sources == "same_relation":
    if not any(prompts.relations):
      raise ValueError(f'config.sweep.sources="same_relation": the prompts of '
                       f'{config.data.name!r} have no relations')
    groups = np.unique(np.array(prompts.relations), return_inverse=True)[1]
  try:   # K against the kept prompts is checked where the sources are drawn, once
    return np.asarray(sweep.draw_sources(len(prompts), config.sweep.num_sources,
                                         config.sweep.seed, groups=groups))
  except ValueError as error:   # "num_sources=...": name it as the config's field
    raise ValueError(f"config.sweep.{error} (of the {len(prompts)} kept prompts)") from None


def sweep_options(config) -> SweepOptions:
  """The engine's options of config.sweep (`SweepOptions.from_config`; job/config.py for
  their meaning)."""
  return SweepOptions.from_config(config.sweep)


def run(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """The whole job; returns the summary written to workdir (None for a dry run).

  Bad input of any kind (config, checkpoint, prompts) is a ValueError naming it."""
  start = time.time()
  run_config.check(config)
  if not config.dry_run and not workdir:
    raise ValueError("--workdir=DIR is required: the folder that receives the results")
  start_devices(config)
  plural = lambda count, word, ending: f"{count} {word}{ending if count > 1 else ''}"
  say(f"{jax.default_backend()}: {plural(jax.device_count(), 'device', 's')} "
      f"({jax.devices()[0].device_kind}) in {plural(jax.process_count(), 'process', 'es')}")
  shape = mesh_shape(config)
  if config.sweep.protocol == "heads":   # self-repair per head: its own driver
    return heads.run(config, workdir, make_mesh(shape))
  if plan_first(config, shape):
    return None
  mesh = make_mesh(shape)
  say("mesh: " + " x ".join(f"{name}={size}" for name, size in mesh.shape.items()))
  store = results_store.ResultStore(workdir)
  flat_config = results_store.flatten(config.to_dict())
  if jax.process_index() == 0:
    store.check_claim(flat_config)         # a workdir of another config: refused before loading
  model = inputs.load_model(config, mesh)  # a bad checkpoint: refused before anything is written
  if jax.process_index() == 0:
    store.claim(flat_config)
  say(f"model: {model.description['name']} ({model.description['source']}), "
      f"{model.description['num_params']:,} parameters")
  prompts = inputs.load_prompts(config, model)
  counts = prompts.counts
  say(f"prompts: {counts['total']} in {counts['dataset']}, {counts['kept']} kept; dropped: "
      f"{counts['dropped'] or 'none'}")
  sources = draw_sources(config, prompts)
  prepare = _preparer(config, model, prompts, sources, mesh)
  timing = run_chunks(config, model, prompts, store, prepare)
  doses = dose_sweep.run(config, prepare, len(prompts), workdir, say)
  if jax.process_index() != 0:
    return None
  arrays = gather_results(store, model, prompts, timing["chunks_total"])
  timing.update(wall_seconds=time.time() - start,
                ablated_forwards=len(prompts) * ablations_per_prompt(config, model.config),
                mesh=" x ".join(f"{name}={size}" for name, size in mesh.shape.items()),
                devices=f"{jax.device_count()} x {jax.devices()[0].device_kind}")
  info = dict(config=config.to_dict(), model=model.description, prompts=counts, timing=timing,
              sweep_options=dataclasses.asdict(sweep_options(config)))
  return write_report(workdir, arrays, info, doses, start)


def write_report(workdir: str, arrays, info, doses, start: float, clock=time.time
                 ) -> dict[str, Any]:
  """Write the report (`report.summary.write`) and say so, with the whole job's time
  since `start`, the report included (summary.json's wall_seconds stops before it)."""
  summary = report.write(workdir, arrays, info, doses=doses)
  say(f"report written to {workdir}/report.md ({clock() - start:.1f} s)")
  return summary
