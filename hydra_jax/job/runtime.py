"""The job's runtime, shared by every protocol: devices, mesh, output lines, and the
multi-host rules for finished chunks and results.

    start_devices(config); joined()      join the other processes (a pod), before any device use
    mesh_shape(config) -> (data, model)  the one place the mesh's shape is computed
    make_mesh(shape) -> Mesh             the ("data", "model") mesh, once per job
    say_devices(); mesh_line(mesh)       the job's lines on devices and mesh
    writes()                             whether this process writes files (process 0)
    finished(store, num_chunks)          bool [num_chunks]: process 0's list, broadcast
    process_zero_view(found)             process 0's value of a host array, on every process
    to_host(array)                       a (multi-host) result array as numpy on this host
    gather_chunks(store, computed, n)    the arrays of chunks 0..n-1 in order: those computed
                                         by this process from memory, only the resumed ones
                                         read from the store
    Swept                                what a protocol's sweep hands to its report

Multi-host (TPU pods): every process runs the same programs over one global mesh, so all
of them must decide alike which chunks to run (process 0 decides, `finished`); only
process 0 writes files and gathers the results.

Shapes: n_i prompts (or sequences) of chunk i; arrays concatenate along their first axis.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Mapping, Optional

import jax
import ml_collections
import numpy as np
from jax.experimental import multihost_utils

from hydra_jax import launch_local
from hydra_jax import store as results_store
from hydra_jax.job.output import say

_JOINED = []   # set when this process joined others (jax.distributed): see `joined`


@dataclasses.dataclass
class Swept:
  """A protocol's sweep, ready for its report: arrays [N, ...] in prompt (or sequence)
  order (None on processes other than 0), the run's description (config, model,
  timing, ...) and the dose sweep's arrays (None without one)."""
  arrays: Optional[dict[str, np.ndarray]]
  info: dict[str, Any]
  doses: Optional[dict[str, np.ndarray]] = None


def start_devices(config: ml_collections.ConfigDict) -> None:
  """Join the other processes before any device use: a process of `hydra_jax.launch_local`
  joins its local pod; a host of a multi-host TPU slice (or one told
  JAX_COORDINATOR_ADDRESS) initialises jax.distributed (config.distributed)."""
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


def say_devices() -> None:
  """The job's line on this machine's devices and processes."""
  plural = lambda count, word, ending: f"{count} {word}{ending if count > 1 else ''}"
  say(f"{jax.default_backend()}: {plural(jax.device_count(), 'device', 's')} "
      f"({jax.devices()[0].device_kind}) in {plural(jax.process_count(), 'process', 'es')}")


def devices_line() -> str:
  """The devices in a few words, for summary.json's timing."""
  return f"{jax.device_count()} x {jax.devices()[0].device_kind}"


def mesh_line(mesh: jax.sharding.Mesh) -> str:
  return " x ".join(f"{name}={size}" for name, size in mesh.shape.items())


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


def writes() -> bool:
  """Whether this process writes the workdir's files and gathers the results (process 0)."""
  return jax.process_index() == 0


def process_zero_view(found: np.ndarray) -> np.ndarray:
  """Process 0's value of the host array `found`, shared with every process (so that all
  of them decide alike, and run the same programs)."""
  if jax.process_count() > 1:
    return np.asarray(multihost_utils.broadcast_one_to_all(found))
  return found


def to_host(array) -> np.ndarray:
  """A (possibly multi-host) result array as one numpy array on this host; every process
  calls it (on a pod it is a collective)."""
  if isinstance(array, jax.Array) and not array.is_fully_addressable:
    if array.sharding.is_fully_replicated:      # every process holds it whole: no collective
      return np.asarray(array.addressable_data(0))
    return np.asarray(multihost_utils.process_allgather(array, tiled=True))
  return np.asarray(jax.device_get(array))


def finished(store: results_store.ResultStore, num_chunks: int) -> np.ndarray:
  """bool [num_chunks]: which chunks are on disk (process 0's view, shared with all hosts)."""
  done = np.zeros(num_chunks, bool)
  if writes():
    done[[i for i in store.finished_chunks() if i < num_chunks]] = True
  return process_zero_view(done)


def gather_chunks(store: results_store.ResultStore,
                  computed: Mapping[int, Mapping[str, np.ndarray]],
                  num_chunks: int) -> dict[str, np.ndarray]:
  """The arrays of chunks 0..num_chunks-1 concatenated along their first axis: a chunk this
  process computed (`computed`, by index) from memory, any other (resumed) from the store."""
  return results_store.concatenate([computed[i] if i in computed else store.load_chunk(i)
                                    for i in range(num_chunks)])
