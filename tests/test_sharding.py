"""A sweep sharded over host devices equals the single-device sweep, and the parameter
layout rules. One subprocess with 8 host devices runs every mesh case:

  * whole batches on a data-8 and a data-4 x model-2 mesh;
  * batches that do not fill the data axis (regression test of a bug that read resample
    sources from padding rows when a batch's scored prompts did not fill a multiple of
    the data axis and some sources lay outside the batch: they read copies of prompt 0):
    `hydra_sweep` on a data-4 and a data-2 x model-2 mesh with batch sizes that do and do
    not divide the data axis, source-only prompts outside each batch, for resample, mean
    and zero ablation. The main job's chunks are the same engine calls; tests/test_multihost.py
    runs the job in chunks of 6 on a data-4 x model-2 mesh (and in a pod) against one device.
"""

import json
import sys
import textwrap

import numpy as np
import pytest

from hydra_jax.sweep import sharding
from tests.conftest import PROJECT_ROOT, run_on_devices, with_devices

# 5 scored prompts in batches of 2 (the last one padded): each mesh, each kind on one of them.
BATCH_CASES = {"resample": [("data4", 2), ("data2_model2", 2)],
               "mean": [("data4", 2)], "zero": [("data2_model2", 2)]}
SCRIPT = f"BATCH_CASES = {BATCH_CASES!r}\n" + textwrap.dedent("""
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

    # Batches that do not fill the data axis, sources outside the batch.
    small = {"data4": jax.make_mesh((4,), ("data",), axis_types=(auto,), devices=jax.devices()[:4]),
             "data2_model2": jax.make_mesh((2, 2), ("data", "model"), axis_types=(auto, auto),
                                           devices=jax.devices()[:4])}
    worst = lambda a, b: max(float(np.abs(np.asarray(a.arrays()[f], np.float64) - b.arrays()[f]).max())
                             for f in a.arrays())
    cfg = tiny_config(num_heads=4, num_kv_heads=2)
    params = hj.init_params(cfg, seed=2)
    tokens = random_tokens(cfg, batch=7, length=6, seed=1)
    lengths = np.array([6, 3, 5, 2, 6, 4, 5])
    sources = hj.draw_sources(7, 3, seed=0)[:5]      # 5 scored prompts; 5 and 6 are sources only
    for kind, cases in BATCH_CASES.items():
      args = dict(kind=kind, num_scored=5, check=True)
      given = sources if kind == "resample" else None
      single = hj.hydra_sweep(params, cfg, tokens, lengths, given, **args)
      for mesh_name, batch_size in cases:
        sharded = hj.hydra_sweep(params, cfg, tokens, lengths, given, mesh=small[mesh_name],
                                 batch_size=batch_size, **args)
        report[f"batches/{kind}/{mesh_name}/batch{batch_size}"] = worst(sharded, single)
    print("REPORT", json.dumps(report))
""")


@pytest.fixture(scope="module")
def report():
  env = with_devices(8, JAX_PLATFORMS="cpu", PYTHONPATH=str(PROJECT_ROOT))
  done = run_on_devices([sys.executable, "-c", SCRIPT], cwd=PROJECT_ROOT, env=env, timeout=600)
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


@pytest.mark.parametrize("case", [f"{kind}/{mesh}/batch{size}" for kind, cases in BATCH_CASES.items()
                                  for mesh, size in cases])
def test_batches_that_do_not_fill_the_data_axis_equal_one_device(report, case):
  assert report[f"batches/{case}"] < 1e-5


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
