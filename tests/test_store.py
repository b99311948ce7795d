"""The workdir store behind one path type (etils epath): local folders and buckets alike.

  * local: a write that fails half-way leaves the previous file whole and no temporary
    file; pathlib and str workdirs are the same store;
  * a bucket: "gs://" served by fsspec's in-memory filesystem (no network, no gcsfs), so
    every file of a run - config, chunks, results.npz, summary.json, figures, report.md -
    is shown to go through the abstraction: nothing reaches the local disk, a second store
    on the same URL resumes from the chunks there and refuses another config.

Runtime: about 10 s (drawing the report's figures once).
"""

import importlib
import json
import os

import numpy as np
import pytest
from fsspec.implementations.memory import MemoryFileSystem

from hydra_jax import store as results_store
from hydra_jax.report import summary as report
from tests.test_report import INFO, PNG_MAGIC, sweep_arrays

FSSPEC_REGISTRY = importlib.import_module("fsspec.registry")._registry   # protocol -> class
CONFIG = {"sweep.num_sources": 2, "data.name": "embedded", "mesh.data": -1}


@pytest.fixture
def bucket(monkeypatch, tmp_path):
  """gs:// served from memory for this test; the working directory an empty folder."""
  for protocol in ("gs", "gcs"):
    monkeypatch.setitem(FSSPEC_REGISTRY, protocol, MemoryFileSystem)
  monkeypatch.setattr(MemoryFileSystem, "store", {})
  monkeypatch.setattr(MemoryFileSystem, "pseudo_dirs", [""])
  monkeypatch.chdir(tmp_path)
  return MemoryFileSystem.store


def test_a_failed_overwrite_keeps_the_old_file(tmp_path):
  path = tmp_path / "results.npz"
  results_store.atomic_save_npz(path, {"x": np.arange(3)})

  class Unsavable:
    def __array__(self, *args, **kwargs):
      raise RuntimeError("interrupted")

  with pytest.raises(RuntimeError, match="interrupted"):
    results_store.atomic_save_npz(path, {"x": np.zeros(5), "bad": Unsavable()})
  np.testing.assert_array_equal(results_store.load_npz(path)["x"], [0, 1, 2])
  assert os.listdir(tmp_path) == ["results.npz"]


def test_pathlib_and_str_workdirs_are_one_store(tmp_path):
  results_store.ResultStore(tmp_path).save_chunk(2, {"x": np.ones(2)})
  store = results_store.ResultStore(str(tmp_path))
  assert store.finished_chunks() == [2] and store.workdir == str(tmp_path)
  assert os.path.exists(os.fspath(store.chunk_path(2)))


def test_a_bucket_workdir_holds_every_file_of_a_run(bucket, tmp_path):
  workdir = "gs://bucket/runs/tiny"
  store = results_store.ResultStore(workdir)
  store.claim(CONFIG)
  arrays = sweep_arrays(num_prompts=6)
  store.save_chunk(1, {name: value[3:] for name, value in arrays.items()})
  store.save_chunk(0, {name: value[:3] for name, value in arrays.items()})

  again = results_store.ResultStore(workdir)   # the same command after a preemption
  again.claim(dict(CONFIG, **{"mesh.data": 8}))   # a new mesh is no new config
  assert again.finished_chunks() == [0, 1]
  merged = again.load_all(again.finished_chunks())
  for name, value in arrays.items():
    np.testing.assert_array_equal(merged[name], value, err_msg=name)
  with pytest.raises(ValueError, match=r"differing keys: sweep.num_sources \(2 there, 3 now\)"):
    again.claim(dict(CONFIG, **{"sweep.num_sources": 3}))

  report.write(workdir, merged, INFO)
  files = {key[len(workdir) + 1:]: data for key, data in bucket.items()}
  names = {"run_config.json", "chunks/chunk_00000.npz", "chunks/chunk_00001.npz", "results.npz",
           "summary.json", "report.md"} | {f"figures/{name}.png" for name in (
               "intact_vs_ablated", "de_vs_te", "downstream_response", "compensation_fits",
               "slopes_by_layer", "compensation_parts", "localisation", "response_heatmap",
               "late_mlp_erasure")}
  assert set(files) == names
  assert files["figures/de_vs_te.png"].getvalue()[:8] == PNG_MAGIC
  assert json.loads(files["summary.json"].getvalue())["num_prompts"] == 6
  assert os.listdir(tmp_path) == []            # nothing went to the local disk
  assert report.redraw(workdir)["num_prompts"] == 6
