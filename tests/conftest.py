"""Shared fixtures: tiny model configs of every architecture option, and the shared data folder.

One XLA compilation cache serves the whole test run: the pytest-xdist workers and every
subprocess a test starts (main jobs, multi-process pods) write their compiled programs
to one folder and read back the ones another process already compiled. Each run starts
with an empty folder (a fresh machine's cost, as in CI), removed when the run ends.

The tests compile many small programs and run each a few times, so XLA's CPU backend
compiles them without LLVM optimisation (--xla_backend_optimization_level=0) and with its
elemental emitters instead of the fusion emitters (--xla_cpu_use_fusion_emitters=false),
both inherited by subprocesses: the same HLO programs, float32 arithmetic within the
tolerances the tests derive from rounding, and a fraction of the compile time (a tiny
model's sweep program: 1.37 s -> 0.30 s of CPU per compile with both flags against the first
alone; tests/test_model.py 107 s -> 46 s of CPU). Speed is measured in benchmarks/, at XLA's
defaults. `with_devices(n)` gives a subprocess n host devices.

XLA's CPU runtime can deadlock a program on several host devices of one process: each
device runs independent collectives in the order its operands become ready, so two
devices of a group can wait in different collectives (seen in CI and here: 1 of 3 runs
of the 4 x 2 mesh job with two other jobs beside it; 6 devices waiting in a collective
permute, devices 4 and 5 in an all-to-all and an all-gather). XLA then aborts the
process after COLLECTIVE_TIMEOUT_SECONDS; `deadlocked_in_xla` recognises that, and a
test reruns the job once (the rerun resumes from its finished chunks).
"""

import os
import pathlib
import shutil
import signal
import subprocess
import tempfile

# Set by the first process of the run; xdist workers and subprocesses inherit it.
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR",
                      os.path.join(tempfile.gettempdir(), f"hydra_jax_tests_xla_{os.getpid()}"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")
FAST_COMPILE = ("--xla_backend_optimization_level=0", "--xla_cpu_use_fusion_emitters=false")
for _flag in FAST_COMPILE:
  if _flag not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {_flag}".strip()

import numpy as np   # noqa: E402  (jax reads the cache settings when it is imported)
import pytest   # noqa: E402

import hydra_jax as hj   # noqa: E402

PROJECT_ROOT = pathlib.Path(__file__).resolve().parents[1]
SHARED_DATA = PROJECT_ROOT.parent / "shared" / "data"


COLLECTIVE_TIMEOUT_SECONDS = 90   # a healthy collective among one process's devices waits ms
COLLECTIVE_TIMEOUT = (f"--xla_cpu_collective_call_terminate_timeout_seconds={COLLECTIVE_TIMEOUT_SECONDS}"
                      " --xla_cpu_collective_call_warn_stuck_timeout_seconds=20")


def with_devices(count: int, **extra) -> dict:
  """os.environ for a subprocess on `count` host CPU devices (the run's XLA flags kept)."""
  from hydra_jax import launch_local
  env = launch_local.with_device_count(os.environ, count)
  return dict(env, XLA_FLAGS=f"{env['XLA_FLAGS']} {COLLECTIVE_TIMEOUT}", **extra)


def deadlocked_in_xla(returncode: int, stderr: str) -> bool:
  """Whether a subprocess was aborted by XLA for a collective that never completed."""
  return returncode == -signal.SIGABRT and "may be stuck" in stderr


def run_on_devices(command: list[str], **kwargs) -> subprocess.CompletedProcess:
  """subprocess.run(command, capture_output=True, text=True, **kwargs) of a program on
  several host devices, run once more when XLA aborted it for a deadlocked collective."""
  done = subprocess.run(command, capture_output=True, text=True, **kwargs)
  if deadlocked_in_xla(done.returncode, done.stderr):
    done = subprocess.run(command, capture_output=True, text=True, **kwargs)
  return done


# One tiny config per architecture option (norm, position, MLP kind, block kind, GQA).
TINY_VARIANTS = {
    "chinchilla": dict(norm="rms", position="relative"),
    "llama_gqa": dict(norm="rms", position="rotary", activation="silu", gated_mlp=True,
                      num_kv_heads=2, tie_embeddings=False),
    "gpt2": dict(norm="layer", position="learned", activation="gelu_tanh", tie_embeddings=True,
                 qkv_bias=True, attn_out_bias=True, mlp_bias=True),
    "pythia": dict(norm="layer", position="rotary", rotary_fraction=0.5, parallel_block=True,
                   attn_out_bias=True, mlp_bias=True, qkv_bias=True),
    "gemma": dict(norm="rms", norm_scale_offset=1.0, position="rotary", activation="gelu_tanh",
                  gated_mlp=True, embed_scale=32 ** 0.5, num_kv_heads=1, head_dim=16,
                  tie_embeddings=True),
    "nopos_relu": dict(norm="rms", position="none", activation="relu"),
}


def job_config(name: str):
  """The job config of configs/<name>.py (its get_config())."""
  import importlib.util
  spec = importlib.util.spec_from_file_location(name, PROJECT_ROOT / "configs" / f"{name}.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config()


def numpy_params(config, seed=0):
  """Random parameters of config's layout, made with numpy (Haiku's eager initialisers are
  slow): for tests of checkpoints and loading, not of the model's numbers."""
  from hydra_jax.checkpoints import layout
  rng = np.random.default_rng(seed)
  return layout.unflatten({name: rng.normal(size=spec.shape).astype(layout.as_numpy_dtype(spec.dtype))
                           for name, spec in layout.expected_layout(config).items()})


def tiny_config(**overrides) -> hj.ModelConfig:
  base = dict(vocab_size=61, d_model=32, num_layers=3, num_heads=4, max_seq_len=16,
              init_scale=0.2)
  base.update(overrides)
  return hj.ModelConfig(**base)


def random_tokens(config, batch=3, length=7, seed=0) -> np.ndarray:
  return np.random.RandomState(seed).randint(0, config.vocab_size, (batch, length)).astype(np.int32)


@pytest.fixture(params=sorted(TINY_VARIANTS))
def variant(request):
  """(name, config, params) for each architecture option."""
  config = tiny_config(**TINY_VARIANTS[request.param])
  return request.param, config, hj.init_params(config, seed=1)


# pytest-xdist's --dist loadfile hands each worker a whole file at a time, by default the
# files with the most tests first, which puts the few long tests of subprocess jobs
# (seconds of start-up each) last: one worker then runs them alone while the other idles.
# Longest first instead (measured on 2 cores; every other file after these, as collected),
# so that the many short files fill the end of the run on both workers.
SLOW_FILES_FIRST = ("test_multihost.py", "test_heads.py", "test_main_configs.py", "test_main.py",
                    "test_study.py", "test_sharding.py", "test_sweep_options.py",
                    "test_layer_skip.py", "test_notebook.py", "test_checkpoints.py")


def pytest_configure(config):
  """The controller schedules files in the order of collection (SLOW_FILES_FIRST)."""
  if hasattr(config.option, "loadscopereorder"):
    config.option.loadscopereorder = False


def pytest_collection_modifyitems(items):
  """Files of SLOW_FILES_FIRST first, in that order (a file's tests keep their order)."""
  rank = {name: index for index, name in enumerate(SLOW_FILES_FIRST)}
  items.sort(key=lambda item: rank.get(item.path.name, len(rank)))


def pytest_sessionfinish(session):
  """The run's compilation cache goes with the run (only the controlling process removes it)."""
  if not hasattr(session.config, "workerinput"):   # not an xdist worker
    shutil.rmtree(os.environ["JAX_COMPILATION_CACHE_DIR"], ignore_errors=True)
