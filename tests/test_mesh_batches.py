"""Batches on a mesh give the one-device numbers, whatever the batch size and the data axis.

Regression test of a bug that read resample sources from padding rows: when a batch's
scored prompts did not fill a multiple of the mesh's data axis and some sources were
prompts outside the batch, those sources read copies of prompt 0. One subprocess with 8
host devices (XLA_FLAGS) runs `hydra_sweep` and the main job on a data-4 and a
data-2 x model-2 mesh, with batch / chunk sizes that do and do not divide the data axis,
sources outside each batch, for resample, mean and zero ablation (the main job: resample
on the data-4 mesh, in chunks of 6 that do not divide it; it runs the same engine calls,
and tests/test_multihost.py runs it on a data x model mesh and in a pod); every result is
compared with the same sweep on one device. About 60 s on 2 CPU cores.
"""

import json
import os
import subprocess
import sys
import textwrap

import pytest

from tests.conftest import PROJECT_ROOT

SCRIPT = textwrap.dedent("""
    import json, sys, jax, numpy as np
    import hydra_jax as hj
    from hydra_jax.job import run as job
    from tests.conftest import random_tokens, tiny_config
    sys.path.insert(0, "configs")
    import tiny

    assert jax.device_count() == 8, jax.devices()
    auto = jax.sharding.AxisType.Auto
    meshes = {"data4": jax.make_mesh((4,), ("data",), axis_types=(auto,), devices=jax.devices()[:4]),
              "data2_model2": jax.make_mesh((2, 2), ("data", "model"), axis_types=(auto, auto),
                                            devices=jax.devices()[:4])}
    report = {}

    def worst(a, b):
      a, b = a.arrays(), b.arrays()
      return max(float(np.abs(np.asarray(a[f], np.float64) - np.asarray(b[f])).max()) for f in a)

    cfg = tiny_config(num_heads=4, num_kv_heads=2)
    params = hj.init_params(cfg, seed=2)
    tokens = random_tokens(cfg, batch=7, length=6, seed=1)
    lengths = np.array([6, 3, 5, 2, 6, 4, 5])
    sources = hj.draw_sources(7, 3, seed=0)[:5]      # 5 scored prompts; 5 and 6 are sources only
    cases = {"resample": [("data4", 2), ("data4", 4), ("data2_model2", 2)],
             "mean": [("data4", 2), ("data2_model2", 2)], "zero": [("data4", 2)]}
    for kind, kind_cases in cases.items():
      args = dict(kind=kind, num_scored=5, check=True)
      given = sources if kind == "resample" else None
      single = hj.hydra_sweep(params, cfg, tokens, lengths, given, **args)
      for mesh_name, batch_size in kind_cases:
        sharded = hj.hydra_sweep(params, cfg, tokens, lengths, given, mesh=meshes[mesh_name],
                                 batch_size=batch_size, **args)
        report[f"sweep/{kind}/{mesh_name}/batch{batch_size}"] = worst(sharded, single)

    def run_job(workdir, kind, chunk_size, data, model):
      config = tiny.get_config()
      config.data.max_prompts = 20
      config.sweep.update(kind=kind, num_sources=3, chunk_size=chunk_size)
      config.report.figures = False
      config.mesh.update(data=data, model=model)
      job.run(config, workdir)
      return dict(np.load(workdir + "/results.npz"))

    for kind, cases in (("resample", [(6, 4, 1)]),):   # other meshes: tests/test_multihost.py
      reference = run_job(f"{sys.argv[1]}/{kind}_one", kind, 6, 1, 1)
      for chunk_size, data, model in cases:
        name = f"job/{kind}/data{data}_model{model}/chunk{chunk_size}"
        arrays = run_job(f"{sys.argv[1]}/{name.replace('/', '_')}", kind, chunk_size, data, model)
        report[name] = max(float(np.abs(arrays[f] - reference[f]).max()) if arrays[f].dtype.kind == "f"
                           else float(not np.array_equal(arrays[f], reference[f])) for f in reference)
    print("REPORT", json.dumps(report))
""")


@pytest.fixture(scope="module")
def report(tmp_path_factory):
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8", JAX_PLATFORMS="cpu",
             PYTHONPATH=str(PROJECT_ROOT))
  workdir = str(tmp_path_factory.mktemp("jobs"))
  done = subprocess.run([sys.executable, "-c", SCRIPT, workdir], cwd=PROJECT_ROOT, env=env,
                        capture_output=True, text=True, timeout=900)
  assert done.returncode == 0, done.stderr[-4000:]
  line = [l for l in done.stdout.splitlines() if l.startswith("REPORT ")][-1]
  return json.loads(line[len("REPORT "):])


@pytest.mark.parametrize("case", ["resample/data4/batch2", "resample/data4/batch4",
                                  "resample/data2_model2/batch2", "mean/data4/batch2",
                                  "mean/data2_model2/batch2", "zero/data4/batch2"])
def test_hydra_sweep_batches_on_a_mesh_equal_one_device(report, case):
  assert report[f"sweep/{case}"] < 1e-5


@pytest.mark.parametrize("case", ["resample/data4_model1/chunk6"])
def test_main_job_chunks_on_a_mesh_equal_one_device(report, case):
  assert report[f"job/{case}"] < 1e-4
