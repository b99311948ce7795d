"""The main job: model -> prompts -> sources -> sweep in resumable chunks -> report.

    run(config, workdir) -> summary dict

Steps (each is a function below, readable on its own):

  1. plan       the model's size, bytes per device and FLOPs (`hydra_jax.plan`) from its
                config alone; a dry run stops here, and so does a run too large for
                this machine (and a checkpoint that does not match config.model)
  2. inputs     the model and the kept prompts (`hydra_jax.inputs`)
  3. sources    K resample sources per prompt, drawn from the whole kept set (seeded);
                for mean ablation, the mean components over the whole kept set
  4. chunks     prompts [i * chunk_size, (i + 1) * chunk_size) form chunk i. A chunk's
                batch is its prompts followed by the source prompts they need; the
                sweep scores only the chunk's own rows. Finished chunks are saved
                atomically and skipped when the job runs again (`hydra_jax.results_store`)
  5. report     every chunk's arrays with the prompts' ids, texts and scored tokens,
                summary.json, figures and report.md (`hydra_jax.report`)

Multi-host (TPU pods): every host runs the same job over one global mesh; only process 0
writes files, and it decides which chunks are finished.

Shapes: N kept prompts, n prompts of a chunk, K sources, C = 2L components.
"""

from __future__ import annotations

import time
from typing import Any

import jax
import ml_collections
import numpy as np

from hydra_jax.job import chunks
from hydra_jax.job import loading as inputs
from hydra_jax.job import plan as plan_lib
from hydra_jax.report import summary as report
from hydra_jax import store as results_store
from hydra_jax.job import config as run_config
from hydra_jax.sweep import engine as sweep

NOMINAL_PROMPTS = {"known_facts": 1209, "counterfact": 21919}   # for plans made before loading
NOMINAL_PROMPT_LENGTH = 32


def say(message: str) -> None:
  if jax.process_index() == 0:
    print(message, flush=True)


# 1. Devices and plan --------------------------------------------------------------------------


def make_mesh(config: ml_collections.ConfigDict) -> jax.sharding.Mesh:
  """A ("data", "model") mesh over every device; data=-1 takes what model leaves."""
  count = jax.device_count()
  model = config.mesh.model
  data = config.mesh.data if config.mesh.data != -1 else count // model
  if data < 1 or data * model > count or count % model:
    raise ValueError(f"config.mesh (data={config.mesh.data}, model={model}) does not fit the "
                     f"{count} devices here")
  return jax.make_mesh((data, model), ("data", "model"),
                       axis_types=(jax.sharding.AxisType.Auto,) * 2,
                       devices=jax.devices()[:data * model])


def plan_for(config, model_config) -> plan_lib.Plan:
  """The plan of this config's sweep, from the prompt set's size (before reading it)."""
  data = config.data
  if data.name == "random":
    num_prompts, prompt_length = data.num_prompts, data.prompt_length
  else:
    if data.name == "embedded":
      from hydra_jax.train import embedded
      available = len(embedded.load().records)
    else:
      available = NOMINAL_PROMPTS[data.name]
    num_prompts = min(data.max_prompts or available, available)
    prompt_length = NOMINAL_PROMPT_LENGTH
  model = config.mesh.model
  data_axis = config.mesh.data if config.mesh.data != -1 else max(1, jax.device_count() // model)
  return plan_lib.make_plan(model_config, num_prompts=num_prompts, prompt_length=prompt_length,
                            num_sources=ablations_per_prompt(config, model_config)
                            // model_config.num_components,
                            chunk_size=config.sweep.chunk_size, mesh_shape=(data_axis, model),
                            path=config.sweep.path)


# 4. Chunks ------------------------------------------------------------------------------------


def ablations_per_prompt(config, model_config) -> int:
  """2L components x K sources (one replacement per component for zero and mean)."""
  sources = config.sweep.num_sources if config.sweep.kind == "resample" else 1
  return model_config.num_components * sources


def _finished(store, num_chunks) -> np.ndarray:
  """bool [num_chunks]: which chunks are on disk (process 0's view, shared with all hosts)."""
  done = np.zeros(num_chunks, bool)
  if jax.process_index() == 0:
    done[[i for i in store.finished_chunks() if i < num_chunks]] = True
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils
    done = np.asarray(multihost_utils.broadcast_one_to_all(done))
  return done


def run_chunks(config, model, prompts, sources, store, mesh, mean=None) -> dict[str, Any]:
  """Sweep every unfinished chunk, saving each; returns the timing of this invocation."""
  layout = chunks.make_layout(prompts, sources, config.sweep.chunk_size, model.config.max_seq_len)
  done = _finished(store, layout.num_chunks)
  per_prompt = ablations_per_prompt(config, model.config)
  todo = [i for i in range(layout.num_chunks) if not done[i]]
  say(f"{layout.num_chunks} chunks of <= {layout.size} prompts ({layout.rows} rows of "
      f"{layout.length} tokens per sweep batch); {layout.num_chunks - len(todo)} already finished")
  prompts_done = sum(len(layout.chunk(i)) for i in range(layout.num_chunks) if done[i])
  remaining = len(prompts) - prompts_done
  start, computed, first = time.time(), 0, None   # first: (prompts, time) after the compile
  for index in todo:
    arrays = chunks.sweep_chunk(model, prompts, layout, index, sources, kind=config.sweep.kind,
                                path=config.sweep.path, mesh=mesh, check=config.sweep.check,
                                mean=mean)
    if jax.process_index() == 0:
      store.save_chunk(index, arrays)
    computed += len(layout.chunk(index))
    now = time.time()
    # The first chunk pays the compile; the rate (and the time left) counts the later ones.
    rate = (computed * per_prompt / (now - start) if first is None
            else (computed - first[0]) * per_prompt / max(now - first[1], 1e-9))
    first = first or (computed, now)
    say(f"chunk {index + 1}/{layout.num_chunks}: {prompts_done + computed}/{len(prompts)} prompts "
        f"done, {rate:,.0f} ablated forwards/s, {(remaining - computed) * per_prompt / rate:,.0f} s left")
  elapsed = time.time() - start
  steady = (computed - first[0]) * per_prompt / (time.time() - first[1]) if (
      first and computed > first[0]) else None
  return dict(chunks_total=layout.num_chunks, chunks_resumed=layout.num_chunks - len(todo),
              sweep_seconds=elapsed, ablated_forwards_computed=computed * per_prompt,
              ablated_forwards_per_second=computed * per_prompt / elapsed if computed else None,
              ablated_forwards_per_second_after_compile=steady)


# 5. Results -----------------------------------------------------------------------------------


def gather_results(store, model, prompts, num_chunks) -> dict[str, np.ndarray]:
  """Every chunk's arrays in prompt order, with the prompts' texts and scored tokens."""
  arrays = store.load_all(range(num_chunks))
  if not np.array_equal(arrays["prompt_id"], prompts.ids):
    raise ValueError(f"the chunks in {store.workdir} hold other prompts than this run keeps "
                     "(did the dataset or the model change?): use a fresh --workdir")
  decode = model.tokenizer.decode if model.tokenizer is not None else str
  arrays["prompt"] = np.array(prompts.texts)
  arrays["label"] = np.array(prompts.labels)
  arrays["token_text"] = np.array([decode([int(t)]) for t in arrays["token"]])
  return arrays


def plan_first(config: ml_collections.ConfigDict) -> bool:
  """Print the plan; True when the job stops there (a dry run). Raises when it cannot fit.

  Random models and checkpoints are planned from their config alone, before any weight is
  read; the embedded model is small, so a dry run of it just loads it.
  """
  model_config = inputs.peek_model_config(config)
  if model_config is None:
    if config.dry_run:
      say(plan_for(config, inputs.load_model(config, make_mesh(config)).config).describe())
    return config.dry_run
  run_config.check_matches(config, model_config,
                           f"the model of {config.checkpoint or 'config.model'}")
  the_plan = plan_for(config, model_config)
  if not config.dry_run:
    plan_lib.check_fits(the_plan)      # its error message holds the plan
  say(the_plan.describe())
  return config.dry_run


def replacements(config, model, prompts):
  """(sources [N, K] for resample, mean components [C, D] for mean ablation), None otherwise."""
  if config.sweep.kind == "resample":
    if config.sweep.num_sources >= len(prompts):
      raise ValueError(f"config.sweep.num_sources={config.sweep.num_sources}: only {len(prompts)} "
                       "prompts were kept, and each draws that many other prompts as sources")
    return np.asarray(sweep.draw_sources(len(prompts), config.sweep.num_sources,
                                         config.sweep.seed)), None
  if config.sweep.kind == "mean":
    layout = chunks.make_layout(prompts, None, config.sweep.chunk_size, model.config.max_seq_len)
    return None, chunks.mean_components(model, prompts, layout)
  return None, None


def run(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """The whole job; returns the summary written to workdir (None for a dry run)."""
  start = time.time()
  run_config.check(config)
  plural = lambda count, word, ending: f"{count} {word}{ending if count > 1 else ''}"
  say(f"{jax.default_backend()}: {plural(jax.device_count(), 'device', 's')} "
      f"({jax.devices()[0].device_kind}) in {plural(jax.process_count(), 'process', 'es')}")
  if plan_first(config):
    return None
  mesh = make_mesh(config)
  say("mesh: " + " x ".join(f"{name}={size}" for name, size in mesh.shape.items()))
  store = results_store.ResultStore(workdir)
  if jax.process_index() == 0:
    store.claim(results_store.flatten(config.to_dict()))
  model = inputs.load_model(config, mesh)
  say(f"model: {model.description['name']} ({model.description['source']}), "
      f"{model.description['num_params']:,} parameters")
  prompts = inputs.load_prompts(config, model)
  counts = prompts.counts
  say(f"prompts: {counts['total']} in {counts['dataset']}, {counts['kept']} kept; dropped: "
      f"{counts['dropped'] or 'none'}")
  sources, mean = replacements(config, model, prompts)
  timing = run_chunks(config, model, prompts, sources, store, mesh, mean)
  if jax.process_index() != 0:
    return None
  arrays = gather_results(store, model, prompts, timing["chunks_total"])
  timing.update(wall_seconds=time.time() - start,
                ablated_forwards=len(prompts) * ablations_per_prompt(config, model.config),
                mesh=" x ".join(f"{name}={size}" for name, size in mesh.shape.items()),
                devices=f"{jax.device_count()} x {jax.devices()[0].device_kind}")
  info = dict(config=config.to_dict(), model=model.description, prompts=counts, timing=timing)
  summary = report.write(workdir, arrays, info)
  say(f"report written to {workdir}/report.md ({timing['wall_seconds']:.1f} s)")
  return summary
