"""The plan of a sweep, computed without allocating the model: size, memory, FLOPs, devices.

`make_plan` counts parameters with `jax.eval_shape` (shapes only, nothing allocated)
and estimates, for the chosen mesh of `data` x `model` devices:

  bytes per device   the weights split over the model axis, plus one chunk's working set
                     split over the data axis (`working_set`: the clean key/value cache,
                     the clean run's or the ablation lanes' activations, and the layer
                     weights the layer-skipping path gathers), checked within 25% of
                     XLA's memory analysis and the peak RSS by benchmarks/memory.py
  FLOPs              of the whole sweep: a clean forward of every prompt, plus 2L x K
                     ablated runs per prompt (a one-token decode against the clean cache
                     on the incremental path, a whole forward on the full path), at
                     2 FLOPs per multiply-add
  devices needed     a lower bound: devices of this machine's memory that together hold
                     the weights and one chunk's working set

A run whose bytes per device exceed the usable memory of a device stops before
allocating anything, printing the plan (`check_fits`). Memory per device is the
accelerator's `bytes_limit`, or on CPU the host's available memory shared by its
devices. All figures are estimates for planning.

Shapes (the package glossary, hydra_jax/__init__.py): N prompts, T prompt length,
K sources, C = 2L components, L layers, D d_model, H heads, G kv heads, E head size,
F MLP width, V vocabulary.
"""

from __future__ import annotations

import dataclasses
import math
import os
from typing import Optional

import jax
import numpy as np

from hydra_jax.model import blocks, transformer as model_lib
from hydra_jax.model.config import ModelConfig

USABLE_FRACTION = 0.85  # of a device's memory, leaving room for XLA's buffers
GIB = 1024 ** 3


@dataclasses.dataclass(frozen=True)
class Plan:
  """What a sweep needs. Bytes are per device under the mesh unless named total."""
  model_name: str
  num_params: int
  param_bytes_total: int
  num_prompts: int
  prompt_length: int
  num_sources: int
  num_components: int
  ablated_forwards: int
  flops_total: float
  mesh_shape: tuple[int, int]          # (data, model)
  param_bytes_per_device: int
  work_bytes_per_device: int
  memory_per_device: Optional[int]     # None: unknown
  devices_available: int
  devices_needed: int

  @property
  def bytes_per_device(self) -> int:
    return self.param_bytes_per_device + self.work_bytes_per_device

  @property
  def fits(self) -> bool:
    return (self.memory_per_device is None
            or self.bytes_per_device <= USABLE_FRACTION * self.memory_per_device)

  def describe(self) -> str:
    memory = "unknown" if self.memory_per_device is None else f"{self.memory_per_device / GIB:.1f} GiB"
    data, model = self.mesh_shape
    return "\n".join([
        f"plan for {self.model_name}:",
        f"  parameters          {self.num_params:,} ({_short(self.num_params)}), "
        f"{_bytes(self.param_bytes_total)}",
        f"  sweep               {self.num_prompts:,} prompts of <= {self.prompt_length} tokens x "
        f"{self.num_components} components x {self.num_sources} sources = "
        f"{self.ablated_forwards:,} ablated forwards",
        f"  FLOPs (whole sweep) {self.flops_total:.3e}",
        f"  mesh                data={data} x model={model} ({data * model} devices; "
        f"{self.devices_available} available)",
        f"  bytes per device    {_bytes(self.bytes_per_device)} (weights "
        f"{_bytes(self.param_bytes_per_device)} + working set {_bytes(self.work_bytes_per_device)}); "
        f"memory per device {memory}",
        f"  devices needed      >= {self.devices_needed} of this memory",
        f"  fits                {'yes' if self.fits else 'NO'}",
    ])


def _short(count: float) -> str:
  for scale, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "K")):
    if count >= scale:
      return f"{count / scale:.2f}{suffix}"
  return str(count)


def _bytes(count: float) -> str:
  return f"{count / GIB:.2f} GiB" if count >= GIB / 10 else f"{count / 2 ** 20:.1f} MiB"


def param_shapes(config: ModelConfig):
  """The parameter tree as ShapeDtypeStructs (nothing allocated)."""
  return jax.eval_shape(lambda: model_lib.init_params(config, 0))


def forward_flops(config: ModelConfig, query_positions: int, key_positions: int) -> float:
  """FLOPs of running `query_positions` positions attending to `key_positions` keys."""
  D, L, H, G, E, F = (config.d_model, config.num_layers, config.num_heads, config.kv_heads,
                      config.head_size, config.mlp_width)
  attention_weights = D * E * (2 * H + 2 * G)                               # q, o, k, v
  mlp_weights = D * F * (3 if config.gated_mlp else 2)
  relative = D * H * E if config.position == "relative" else 0              # W_R on offsets
  per_position = 2 * L * (attention_weights + mlp_weights + relative)
  scores = 2 * 2 * L * H * E * key_positions                                 # q.k and p.v
  unembed = 2 * D * config.vocab_size
  return float(query_positions * (per_position + scores + unembed))


def device_memory(device) -> Optional[int]:
  """Bytes one device can hold: its allocator's limit, or its share of the host's free RAM."""
  try:
    stats = device.memory_stats()
  except Exception:  # backends without memory statistics
    stats = None
  if stats and stats.get("bytes_limit"):
    return int(stats["bytes_limit"])
  if device.platform == "cpu":
    available = _host_available_bytes()
    if available is not None:
      return available // max(1, jax.local_device_count())
  return None


def _host_available_bytes() -> Optional[int]:
  try:
    with open("/proc/meminfo") as f:
      for line in f:
        if line.startswith("MemAvailable:"):
          return int(line.split()[1]) * 1024
  except OSError:
    pass
  try:
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
  except (ValueError, OSError):
    return None


def table_bytes(config: ModelConfig, num_prompts: int, data: int) -> int:
  """Bytes per device of the engine's clean table: every prompt's final-position components
  [N, C, D] (the resample values), split over the data axis."""
  itemsize = np.dtype(config.dtype).itemsize
  return math.ceil(num_prompts / data) * config.num_components * config.d_model * itemsize


def working_set(config: ModelConfig, shapes, T: int, K: int, chunk_size: int, rows: int,
                data: int, model: int, path: str) -> int:
  """Bytes per device a chunk's sweep program holds beyond the weights.

  Fitted term by term to XLA's memory analysis of the compiled sweep (benchmarks/memory.py):
  the clean key/value cache of the scored prompts and its per-lane gather (2 copies); the
  larger of the clean run's activations over all B rows and the ablation lanes in flight
  (L lanes x K sources per prompt), each about T (or 1) x (F + 4D) floats; and on the
  layer-skipping (incremental) path one copy of the layer stack's weights, which every
  scan step gathers per lane.
  """
  prompts, rows = math.ceil(min(chunk_size, rows) / data), math.ceil(rows / data)
  itemsize = np.dtype(config.dtype).itemsize
  kv_cache = 2 * config.num_layers * T * config.kv_heads * config.head_size * itemsize
  width = (config.mlp_width + 4 * config.d_model) * 4 / model                # floats, sharded
  activations = max(rows * T * width, prompts * config.num_layers * K * width)
  gathered = 0
  if path == "incremental":
    gathered = sum(math.prod(leaf.shape) * np.dtype(leaf.dtype).itemsize
                   for module in blocks.stacked_layers(shapes).values()
                   for leaf in module.values()) / model
  return int(prompts * 2 * kv_cache + activations + gathered)


def make_plan(config: ModelConfig, *, num_prompts: int, prompt_length: int, num_sources: int,
              chunk_size: int, mesh_shape: tuple[int, int], path: str = "incremental",
              memory_per_device: Optional[int] = None,
              devices_available: Optional[int] = None) -> Plan:
  """The plan of sweeping `num_prompts` prompts of up to `prompt_length` tokens."""
  tree = param_shapes(config)
  shapes = jax.tree_util.tree_leaves(tree)
  num_params = int(sum(math.prod(s.shape) for s in shapes))
  param_bytes = int(sum(math.prod(s.shape) * np.dtype(s.dtype).itemsize for s in shapes))
  C, T, K = config.num_components, prompt_length, num_sources
  ablations_per_prompt = C * K
  if path == "incremental":
    ablated = forward_flops(config, 1, T)
  else:
    ablated = forward_flops(config, T, T)
  flops = num_prompts * (forward_flops(config, T, T) + ablations_per_prompt * ablated)

  data, model = mesh_shape
  rows = min(chunk_size, num_prompts)   # B: a batch holds its scored prompts; sources read the table
  work = (working_set(config, tree, T, K, chunk_size, rows, data, model, path)
          + table_bytes(config, num_prompts, data))
  param_per_device = math.ceil(param_bytes / model)

  if memory_per_device is None:
    memory_per_device = device_memory(jax.devices()[0])
  if devices_available is None:
    devices_available = jax.device_count()
  if memory_per_device:
    # Perfect sharding of the weights and of one chunk's working set over n devices.
    unsharded_work = (working_set(config, tree, T, K, chunk_size, rows, 1, 1, path)
                      + table_bytes(config, num_prompts, 1))
    needed = max(1, math.ceil((param_bytes + unsharded_work) / (USABLE_FRACTION * memory_per_device)))
  else:
    needed = data * model
  return Plan(model_name=config.name, num_params=num_params, param_bytes_total=param_bytes,
              num_prompts=num_prompts, prompt_length=T, num_sources=K, num_components=C,
              ablated_forwards=num_prompts * ablations_per_prompt, flops_total=flops,
              mesh_shape=(data, model), param_bytes_per_device=param_per_device,
              work_bytes_per_device=work, memory_per_device=memory_per_device,
              devices_available=devices_available, devices_needed=needed)


def check_fits(plan: Plan) -> None:
  """Raise a ValueError holding the plan when it does not fit this machine's devices."""
  if not plan.fits:
    raise ValueError(
        f"this machine is too small for the sweep: it needs "
        f"{plan.bytes_per_device / GIB:.1f} GiB per device, a device here holds "
        f"{plan.memory_per_device / GIB:.1f} GiB (usable {USABLE_FRACTION:.0%}). Run it on at "
        f"least {plan.devices_needed} such devices (e.g. --config.mesh.model=N on a TPU slice), "
        f"or lower --config.sweep.chunk_size.\n{plan.describe()}")
