"""A sweep sharded over 8 host devices equals the single-device sweep (a subprocess with
XLA_FLAGS=--xla_force_host_platform_device_count=8; ~30 s), and the parameter layout rules.
Batches that do not fill the data axis: tests/test_mesh_batches.py."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from hydra_jax.sweep import sharding
from tests.conftest import PROJECT_ROOT

SCRIPT = textwrap.dedent("""
    import json, jax, numpy as np
    import hydra_jax as hj
    from hydra_jax.sweep import sharding
    from hydra_jax.sweep import engine as sweep
    from jax.sharding import PartitionSpec
    from tests.conftest import random_tokens, tiny_config

    assert jax.device_count() == 8, jax.devices()
    cfg = tiny_config(num_heads=4, num_kv_heads=2, position="rotary", gated_mlp=True, activation="silu")
    params = hj.init_params(cfg, seed=2)
    tokens = random_tokens(cfg, batch=8, length=6, seed=1)
    lengths = np.array([6, 3, 5, 2, 6, 4, 1, 5])
    sources = sweep.draw_sources(8, 3, seed=0)
    auto = jax.sharding.AxisType.Auto
    meshes = {"data8": jax.make_mesh((8,), ("data",), axis_types=(auto,)),
              "data4_model2": jax.make_mesh((4, 2), ("data", "model"), axis_types=(auto, auto))}
    report = {}
    single = sweep.hydra_sweep(params, cfg, tokens, lengths, sources, check=True)
    for name, mesh in meshes.items():
      sharded = sweep.hydra_sweep(params, cfg, tokens, lengths, sources, mesh=mesh, check=True)
      report[name] = {field: float(np.abs(np.asarray(getattr(sharded, field), np.float64)
                                          - np.asarray(getattr(single, field))).max())
                      for field in single.arrays()}
      report[name + "_devices"] = len(sharded.response.sharding.device_set)
      report[name + "_spec"] = list(sharded.response.sharding.spec)
    specs = sharding.param_shardings(params, meshes["data4_model2"])
    report["specs"] = {f"{module}/{name}": list(s.spec) for module, values in specs.items()
                       for name, s in values.items()}
    print("REPORT", json.dumps(report))
""")


@pytest.fixture(scope="module")
def report():
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8", JAX_PLATFORMS="cpu",
             PYTHONPATH=str(PROJECT_ROOT))
  done = subprocess.run([sys.executable, "-c", SCRIPT], cwd=PROJECT_ROOT, env=env, capture_output=True,
                        text=True, timeout=600)
  assert done.returncode == 0, done.stderr[-4000:]
  line = [l for l in done.stdout.splitlines() if l.startswith("REPORT ")][-1]
  return json.loads(line[len("REPORT "):])


@pytest.mark.parametrize("mesh", ["data8", "data4_model2"])
def test_sharded_sweep_equals_the_single_device_sweep(report, mesh):
  assert report[mesh]["token"] == 0.0
  for field, difference in report[mesh].items():
    assert difference < 1e-5, (mesh, field, difference)
  assert report[mesh + "_devices"] == 8
  assert report[mesh + "_spec"][0] == "data"                           # results stay split by prompt


def test_weights_split_over_the_model_axis_where_it_divides(report):
  specs = report["specs"]
  assert specs["layers/attention/q"] == [None, None, "model", None]    # heads
  assert specs["layers/attention/k"] == [None, None, "model", None]    # 2 kv heads
  assert specs["layers/attention/o"] == [None, "model", None, None]
  assert specs["layers/mlp/w_out"] == [None, "model", None]            # MLP width
  assert specs["embed/embeddings"] == [None, "model"]                  # d_model
  assert specs["unembed/w"] == []                                      # vocabulary 61: odd, replicated
  assert specs["layers/attn_norm/scale"] == []


def test_meshes_the_sweep_cannot_use_are_refused():
  import jax
  devices = np.array(jax.devices()[:1])
  with pytest.raises(ValueError, match='needs a "data" axis'):
    sharding.validate_mesh(jax.sharding.Mesh(devices, ("batch",)))
  with pytest.raises(ValueError, match="Explicit"):
    sharding.validate_mesh(jax.make_mesh((1,), ("data",)))
  sharding.validate_mesh(jax.make_mesh((1,), ("data",), axis_types=(jax.sharding.AxisType.Auto,)))
