"""The main job, one path for every protocol: check -> plan -> claim -> load -> model
check -> sweep -> report.

    run(config, workdir) -> summary dict (None for a dry run, and on processes other than 0)
    sweep_to_store(config, workdir) -> runtime.Swept (the arrays on process 0), or None
                                       for a dry run: the job without its report

Steps (each protocol, `PROTOCOLS[config.sweep.protocol]`, supplies plan, sweep and report):

  check   the config (`job.config.check`, once), the devices (jax.distributed on a pod)
          and the mesh's shape (`job.runtime`, the one place it is computed)
  plan    the model's ModelConfig from its config files alone, matched against
          config.model (once), and the protocol's plan: for the layer protocol the
          sweep's size, bytes per device and FLOPs (`job.plan`). A dry run prints it and
          stops; so does a run too large for this machine or one whose prompts cannot
          fit the model's context. Then the mesh is made, once, and handed down
  claim   the workdir's recorded config checked (a workdir of another config is refused
          before anything is loaded), then the model loaded (`job.loading`) and the
          config recorded
  sweep   the protocol's resumable sweep into the workdir's chunks (`job.layers`: the
          paper's sweep over components; `job.heads`: self-repair per head)
  report  the protocol's summary.json, figures and report.md

Multi-host (TPU pods): every host runs the same job over one global mesh; only process 0
writes files, decides which chunks are finished and gathers the results (`job.runtime`).
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any, Callable, Optional

import ml_collections

from hydra_jax import store as results_store
from hydra_jax.job import config as run_config
from hydra_jax.job import heads
from hydra_jax.job import layers
from hydra_jax.job import loading as inputs
from hydra_jax.job import runtime
from hydra_jax.job.output import say   # the job's output lines (absl logging)


@dataclasses.dataclass(frozen=True)
class Protocol:
  """A protocol's own steps; the job's path around them is the same for all."""
  plan: Callable      # (config, model_config, (data, model)) -> plan with .describe()
  sweep: Callable     # (config, model, store, mesh) -> runtime.Swept
  report: Callable    # (config, workdir, swept) -> summary dict


PROTOCOLS = {"layers": Protocol(layers.plan, layers.sweep, layers.report),
             "heads": Protocol(heads.plan, heads.sweep, heads.report)}
assert tuple(PROTOCOLS) == run_config.PROTOCOLS, "job.config.PROTOCOLS names this table's keys"


def plan_first(config: ml_collections.ConfigDict, shape: tuple[int, int]) -> bool:
  """Match the model against config.model and print the protocol's plan, from config
  files alone (no weight is read); True when the job stops there (a dry run). Raises when
  the model does not match config.model or the sweep cannot fit this machine."""
  model_config = inputs.model_config_of(config)
  run_config.check_matches(config, model_config, inputs.describe(config))
  say(PROTOCOLS[config.sweep.protocol].plan(config, model_config, shape).describe())
  return config.dry_run


def _claim_and_load(config: ml_collections.ConfigDict, store, mesh) -> inputs.Model:
  """The model, loaded between checking the workdir's claim and recording it (process 0
  writes), so that a bad checkpoint or another config's workdir leaves nothing written."""
  flat_config = results_store.flatten(config.to_dict())
  if runtime.writes():
    store.check_claim(flat_config)
  model = inputs.load_model(config, mesh)
  if runtime.writes():
    store.claim(flat_config)
  say(f"model: {model.description['name']} ({model.description['source']}), "
      f"{model.description['num_params']:,} parameters")
  return model


def sweep_to_store(config: ml_collections.ConfigDict, workdir: str) -> Optional[runtime.Swept]:
  """The job up to its report: the protocol's sweep into workdir's store; its arrays (on
  process 0; None elsewhere) and the run's description. None for a dry run.

  Bad input of any kind (config, checkpoint, prompts) is a ValueError naming it."""
  start = time.time()
  run_config.check(config)
  if not config.dry_run and not workdir:
    raise ValueError("--workdir=DIR is required: the folder that receives the results")
  runtime.start_devices(config)
  runtime.say_devices()
  shape = runtime.mesh_shape(config)
  if plan_first(config, shape):
    return None
  mesh = runtime.make_mesh(shape)
  say("mesh: " + runtime.mesh_line(mesh))
  store = results_store.ResultStore(workdir)
  model = _claim_and_load(config, store, mesh)
  swept = PROTOCOLS[config.sweep.protocol].sweep(config, model, store, mesh)
  swept.info["timing"].update(wall_seconds=time.time() - start, devices=runtime.devices_line())
  return swept


def run(config: ml_collections.ConfigDict, workdir: str) -> Optional[dict[str, Any]]:
  """The whole job; returns the summary written to workdir (None for a dry run, and on
  processes other than 0). Bad input of any kind is a ValueError naming it."""
  start = time.time()
  swept = sweep_to_store(config, workdir)
  if swept is None or not runtime.writes():
    return None
  return write_report(config, workdir, swept, start)


def write_report(config, workdir: str, swept: runtime.Swept, start: float,
                 clock=time.time) -> dict[str, Any]:
  """Write the protocol's report and say so, with the whole job's time since `start`, the
  report included (summary.json's wall_seconds stops before it)."""
  summary = PROTOCOLS[config.sweep.protocol].report(config, workdir, swept)
  say(f"report written to {workdir}/report.md ({clock() - start:.1f} s)")
  return summary
