"""The layer protocol (the paper's sweep): its plan, its sweep in resumable chunks, its report.

    plan(config, model_config, shape)   -> plan_lib.Plan (a ValueError when it cannot fit)
    sweep(config, model, store, mesh)   -> runtime.Swept
    report(config, workdir, swept)      -> summary dict

The sweep's steps:

  inputs     the kept prompts (`job.loading`, from the prompt source's registry)
  sources    K resample sources per prompt, drawn from the whole kept set (seeded);
             for mean ablation, the mean components over the whole kept set
  chunks     prompts [i * chunk_size, (i + 1) * chunk_size) form chunk i. A chunk's
             batch is its prompts, padded to a multiple of the data axis; sources never
             enter a batch (their components come from the table). Finished chunks are saved
             atomically and skipped when the job runs again (`hydra_jax.store`).
             Then the dose-response sweep of a few prompts (`job.dose`, dose.npz)
  results    every chunk's arrays (those computed here from memory, the resumed ones
             from the store) with the prompts' ids, texts and scored tokens
  report     summary.json, figures and report.md (`hydra_jax.report`)

Shapes: N kept prompts, n prompts of a chunk, K sources, C = 2L components.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any, Optional

import numpy as np

from hydra_jax.job import chunks
from hydra_jax.job import dose as dose_sweep
from hydra_jax.job import loading as inputs
from hydra_jax.job import output
from hydra_jax.job import plan as plan_lib
from hydra_jax.job import prompt_sources
from hydra_jax.job import runtime
from hydra_jax.job.output import say   # the job's output lines (absl logging)
from hydra_jax.report import summary as report_summary
from hydra_jax.sweep import engine as sweep_engine
from hydra_jax.sweep.options import SweepOptions


def plan_for(config, model_config, shape: tuple[int, int]) -> plan_lib.Plan:
  """The plan of this config's sweep on a (data, model) mesh, from the prompt source's
  count and length (before any prompt is read or tokenized)."""
  num_prompts, prompt_length = prompt_sources.source_of(config).planned(config, model_config)
  return plan_lib.make_plan(model_config, num_prompts=num_prompts, prompt_length=prompt_length,
                            num_sources=ablations_per_prompt(config, model_config)
                            // model_config.num_components,
                            chunk_size=config.sweep.chunk_size, mesh_shape=shape,
                            path=config.sweep.path)


def plan(config, model_config, shape: tuple[int, int]) -> plan_lib.Plan:
  """`plan_for`; a ValueError holding the plan when a run (not a dry run) cannot fit here."""
  the_plan = plan_for(config, model_config, shape)
  if not config.dry_run:
    plan_lib.check_fits(the_plan)
  return the_plan


def ablations_per_prompt(config, model_config) -> int:
  """2L components x K sources or noise draws (one replacement per component for zero and mean)."""
  sources = config.sweep.num_sources if config.sweep.kind in ("resample", "noise") else 1
  return model_config.num_components * sources


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
    return np.asarray(sweep_engine.draw_sources(len(prompts), config.sweep.num_sources,
                                                config.sweep.seed, groups=groups))
  except ValueError as error:   # "num_sources=...": name it as the config's field
    raise ValueError(f"config.sweep.{error} (of the {len(prompts)} kept prompts)") from None


def sweep_options(config) -> SweepOptions:
  """The engine's options of config.sweep (`SweepOptions.from_config`; job/config.py for
  their meaning)."""
  return SweepOptions.from_config(config.sweep)


def _preparer(config, model, prompts, sources, mesh):
  """prepare() -> the engine prepared for the kept prompts (once, on first use)."""
  layout, prepared = chunks.make_layout(len(prompts), config.sweep.chunk_size), []

  def prepare():
    if not prepared:
      prepared.append(chunks.prepare(model, prompts, sources, layout, sweep_options(config),
                                     mesh=mesh))
    return prepared[0]
  return prepare


def run_chunks(config, model, prompts, store, prepare, computed: dict) -> dict[str, Any]:
  """Sweep every unfinished chunk (`prepare()` gives the engine), saving each and keeping
  its arrays in `computed` (by index; process 0 only); returns the timing of this invocation."""
  layout = chunks.make_layout(len(prompts), config.sweep.chunk_size)
  done = runtime.finished(store, layout.num_chunks)
  per_prompt = ablations_per_prompt(config, model.config)
  todo = [i for i in range(layout.num_chunks) if not done[i]]
  say(f"{layout.num_chunks} chunks of <= {layout.size} prompts; "
      f"{layout.num_chunks - len(todo)} already finished")
  prompts_done = sum(len(layout.chunk(i)) for i in range(layout.num_chunks) if done[i])
  start, count = time.time(), 0
  progress = output.Progress(layout.num_chunks, len(prompts), prompts_done, per_prompt)
  for index in todo:
    arrays = chunks.sweep_chunk(prepare(), prompts, layout, index)
    if runtime.writes():
      store.save_chunk(index, arrays)
      computed[index] = arrays
    count += len(layout.chunk(index))
    say(progress.line(index, count))   # the first chunk includes compiling: no ETA
  elapsed = time.time() - start
  steady = progress.steady_forwards_per_second()
  return dict(chunks_total=layout.num_chunks, chunks_resumed=layout.num_chunks - len(todo),
              sweep_seconds=elapsed, ablated_forwards_computed=count * per_prompt,
              ablated_forwards_per_second=count * per_prompt / elapsed if count else None,
              ablated_forwards_per_second_after_compile=steady)


def gather_results(store, model, prompts, num_chunks, computed=None) -> dict[str, np.ndarray]:
  """Every chunk's arrays in prompt order (those in `computed` from memory, the others
  read from the store), with the prompts' texts, scored tokens and (where the prompt set
  marks them) subjects: the bootstrap's clusters (`report.statistics`)."""
  arrays = runtime.gather_chunks(store, computed or {}, num_chunks)
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


def sweep(config, model, store, mesh) -> runtime.Swept:
  """The kept prompts' sweep into `store` and the dose sweep; the arrays on process 0."""
  prompts = inputs.load_prompts(config, model)
  counts = prompts.counts
  say(f"prompts: {counts['total']} in {counts['dataset']}, {counts['kept']} kept; dropped: "
      f"{counts['dropped'] or 'none'}")
  prepare = _preparer(config, model, prompts, draw_sources(config, prompts), mesh)
  computed = {}
  timing = run_chunks(config, model, prompts, store, prepare, computed)
  doses = dose_sweep.run(config, prepare, len(prompts), store.workdir, say)
  timing.update(ablated_forwards=len(prompts) * ablations_per_prompt(config, model.config),
                mesh=runtime.mesh_line(mesh))
  arrays = (gather_results(store, model, prompts, timing["chunks_total"], computed)
            if runtime.writes() else None)
  info = dict(config=config.to_dict(), model=model.description, prompts=counts, timing=timing,
              sweep_options=dataclasses.asdict(sweep_options(config)))
  return runtime.Swept(arrays, info, doses)


def report(config, workdir: str, swept: runtime.Swept) -> dict[str, Any]:
  """summary.json, figures and report.md of the sweep (`report.summary.write`)."""
  del config   # the report reads its options from the info's config
  return report_summary.write(workdir, swept.arrays, swept.info, doses=swept.doses)
