"""The files of a finished run: their modes, their provenance, their names.

  * every file and folder of a run is made as the umask says (0o644 / 0o755 under 022;
    0o600 / 0o700 under 077), through the store's one writer;
  * summary.json carries the versions, the source commit, the time and the devices, and
    report.md states them; a redraw keeps the run's; no git is no failure;
  * results.npz names its components (a0, m0, ...) and every array's axes, and
    `report.load` reads them back (also from a results.npz written before the names).

One tiny job (a random 2-layer model on 8 random prompts) runs in this process, shared by
the tests. Runtime: about 15 s on 2 busy cores (the job's compile, most of it).
"""

import datetime
import json
import os
import platform
import shutil
import subprocess
import sys

import jax
import numpy as np
import pytest

import hydra_jax
from hydra_jax import provenance
from hydra_jax import report
from hydra_jax import store as results_store
from hydra_jax.job import config as run_config
from hydra_jax.report import results as report_results
from hydra_jax.report import summary as report_summary

NUM_LAYERS, NUM_PROMPTS, NUM_SOURCES = 2, 8, 2
COMPONENTS = ["a0", "m0", "a1", "m1"]


def tiny_config():
  """A job of seconds: a random 2-layer model, 8 random prompts, 2 sources, no figures."""
  config = run_config.defaults()
  config.model_source, config.seed = "random", 0
  config.model = run_config.model_section(
      name="tiny_random", vocab_size=32, d_model=16, num_layers=NUM_LAYERS, num_heads=2,
      mlp_dim=32, activation="gelu", norm="rms", position="rotary", max_seq_len=16,
      dtype="float32")
  config.data.name, config.data.filter_correct = "random", False
  config.data.num_prompts, config.data.prompt_length = NUM_PROMPTS, 6
  config.sweep.num_sources, config.sweep.chunk_size = NUM_SOURCES, 4
  config.sweep.dose_prompts, config.sweep.keep_sources, config.sweep.check = 0, 2, False
  config.report.figures, config.report.bootstrap = False, 20
  return config


class umask:
  """with umask(0o077): the process's umask inside the block, the old one restored after."""

  def __init__(self, mask):
    self.mask = mask

  def __enter__(self):
    self.old = os.umask(self.mask)

  def __exit__(self, *exc):
    os.umask(self.old)


def modes(root):
  """{relative path: permission bits} of every file and folder under root (root itself too)."""
  found = {".": os.stat(root).st_mode & 0o777}
  for folder, dirs, files in os.walk(root):
    for name in dirs + files:
      path = os.path.join(folder, name)
      found[os.path.relpath(path, root)] = os.stat(path).st_mode & 0o777
  return found


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
  """The workdir of one finished tiny job, run under umask 022."""
  from hydra_jax.job import run as job
  path = str(tmp_path_factory.mktemp("tiny") / "run")
  with umask(0o022):
    job.run(tiny_config(), path)
  return path


# File modes -------------------------------------------------------------------------------


def test_a_run_under_umask_022_makes_files_0644_and_folders_0755(workdir):
  found = modes(workdir)
  for name in ("run_config.json", "chunks/chunk_00000.npz", "chunks/chunk_00001.npz",
               "results.npz", "summary.json", "report.md"):
    assert found[name] == 0o644, (name, oct(found[name]))
  assert {oct(mode) for name, mode in found.items() if os.path.isdir(
      os.path.join(workdir, name))} == {"0o755"}
  assert {oct(mode) for name, mode in found.items() if os.path.isfile(
      os.path.join(workdir, name))} == {"0o644"}


def test_store_and_report_writes_under_umask_077_are_private(tmp_path):
  from hydra_jax.report import figures
  import matplotlib.pyplot as plt
  root = tmp_path / "private"
  with umask(0o077):
    store = results_store.ResultStore(root)
    store.claim({"sweep.num_sources": 2})
    store.save_chunk(0, {"x": np.arange(3)})
    results_store.atomic_write_text(root / "a" / "b" / "note.txt", "hello")
    figures.save(plt.figure(figsize=(1, 1)), root / "figures" / "one.png")
  found = modes(root)
  assert found.pop(".") == 0o700     # the workdir itself, made by the store
  assert set(found) == {"run_config.json", "chunks", "chunks/chunk_00000.npz", "a", "a/b",
                        "a/b/note.txt", "figures", "figures/one.png"}   # no temporary left
  for name, mode in found.items():
    assert mode == (0o700 if os.path.isdir(root / name) else 0o600), (name, oct(mode))
  with umask(0o022):
    results_store.atomic_write_text(root / "run_config.json", "{}")   # an overwrite, too
  assert os.stat(root / "run_config.json").st_mode & 0o777 == 0o644


# Provenance -------------------------------------------------------------------------------


def test_summary_carries_the_provenance_and_report_md_states_it(workdir):
  found = json.loads(open(os.path.join(workdir, "summary.json")).read())["provenance"]
  assert found["hydra_jax"] == hydra_jax.__version__
  assert found["jax"] == jax.__version__ and found["numpy"] == np.__version__
  assert found["jaxlib"] and found["dm-haiku"]
  assert found["python"] == platform.python_version()
  assert (found["platform"], found["device_count"], found["process_count"]) == (
      jax.devices()[0].platform, jax.device_count(), 1)
  written = datetime.datetime.fromisoformat(found["utc"])
  assert written.utcoffset() == datetime.timedelta(0)
  assert abs(datetime.datetime.now(datetime.timezone.utc) - written).total_seconds() < 600
  top = os.path.dirname(os.path.dirname(hydra_jax.__file__))
  head = subprocess.run(["git", "-C", top, "rev-parse", "HEAD"], capture_output=True,
                        text=True).stdout.strip()
  assert found["git_commit"] == (head or None) and isinstance(found["git_dirty"], bool)
  markdown = open(os.path.join(workdir, "report.md")).read()
  assert (f"- **Provenance**: hydra_jax {hydra_jax.__version__}, git {head[:12]}") in markdown
  assert f"jax {jax.__version__}, " in markdown


def test_a_redraw_keeps_the_run_provenance(workdir, tmp_path):
  copy = shutil.copytree(workdir, tmp_path / "copy")
  before = json.loads((copy / "summary.json").read_text())["provenance"]
  after = report_summary.redraw(str(copy))["provenance"]
  assert after == before


def test_no_git_and_no_checkout_give_none_and_no_failure(monkeypatch, tmp_path):
  monkeypatch.setenv("PATH", str(tmp_path))          # no git on the PATH
  assert provenance.git_state() == (None, None)
  found = provenance.collect()
  assert found["git_commit"] is None and found["git_dirty"] is None
  assert found["hydra_jax"] == hydra_jax.__version__
  monkeypatch.undo()
  monkeypatch.setattr(provenance, "PACKAGE_DIR", str(tmp_path / "site-packages" / "hydra_jax"))
  assert provenance.git_state() == (None, None)      # a folder in no checkout
  assert provenance.line(None) == []


# results.npz names and the loader ---------------------------------------------------------


def test_results_npz_names_components_and_axes_for_numpy_alone(workdir):
  with np.load(os.path.join(workdir, "results.npz")) as data:
    assert data["components"].tolist() == COMPONENTS
    assert data["axes/response"].tolist() == ["prompt", "ablated", "responding"]
    assert data["axes/response_by_source"].tolist() == [
        "first_prompt", "source", "ablated", "responding"]
    assert data["axes/lost_de_by_source"].tolist() == ["prompt", "source", "ablated"]
    arrays = [name for name in data.files if name != "components" and "/" not in name]
    assert sorted(f"axes/{name}" for name in arrays) == sorted(
        name for name in data.files if name.startswith("axes/"))
    for name in arrays:
      assert len(data[f"axes/{name}"]) == data[name].ndim, name


def test_load_gives_named_arrays(workdir):
  results = report.load(workdir)
  assert results.components == COMPONENTS
  assert "components" not in results and not any("/" in name for name in results)
  response = results["response"]
  assert response.shape == (NUM_PROMPTS, 4, 4)
  np.testing.assert_array_equal(results.sel("response", ablated="a1", responding="m1"),
                                response[:, 2, 3])
  np.testing.assert_array_equal(results.sel("total_effect", source=1, ablated="m0"),
                                results["total_effect"][:, 1, 1])
  assert results.axes["direct_effect"] == ("prompt", "component")
  assert results.summary["num_prompts"] == NUM_PROMPTS
  with pytest.raises(ValueError, match="no component 'a7'"):
    results.sel("response", ablated="a7")
  with pytest.raises(ValueError, match="has the axes prompt, ablated, responding, not layer"):
    results.sel("response", layer=0)
  with pytest.raises(KeyError, match="no array 'nope'"):
    results["nope"]


def test_load_names_a_results_npz_written_before_the_names(workdir, tmp_path):
  plain = {name: value for name, value in report.load(workdir).items()}
  results_store.atomic_save_npz(tmp_path / "results.npz", plain)
  old = report.load(tmp_path)
  assert old.components == COMPONENTS and old.summary is None
  assert old.axes == report.load(workdir).axes


def test_to_pandas_is_a_long_table_with_component_names(workdir):
  pytest.importorskip("pandas")
  results = report.load(workdir)
  table = results.to_pandas(["response", "direct_change"])
  assert len(table) == NUM_PROMPTS * 16 + NUM_PROMPTS * 4
  row = table[(table.array == "response") & (table.prompt == 5) & (table.ablated == "a1")
              & (table.responding == "m1")]
  assert row.value.tolist() == [results["response"][5, 2, 3]]
  changes = table[table.array == "direct_change"]
  assert changes.responding.isna().all() and set(changes.ablated) == set(COMPONENTS)


def test_to_xarray_has_component_coordinates(workdir):
  pytest.importorskip("xarray")
  dataset = report.load(workdir).to_xarray()
  assert dataset["response"].sel(ablated="a1", responding="m1").shape == (NUM_PROMPTS,)
  assert dataset["prompt_text"].dims == ("prompt",)


def test_missing_optional_libraries_and_workdirs_are_one_line_errors(workdir, monkeypatch,
                                                                      tmp_path):
  results = report.load(workdir)
  for module, method in (("xarray", results.to_xarray), ("pandas", results.to_pandas)):
    monkeypatch.setitem(sys.modules, module, None)      # as if not installed
    with pytest.raises(ImportError, match=rf"^Results.to_{method.__name__[3:]}\(\) needs "
                                          rf"{module}: pip install {module}$"):
      method()
  with pytest.raises(ValueError, match="results.npz does not exist: run python -m hydra_jax"):
    report.load(tmp_path)
  assert report_results.component_names(6)[-2:] == ["a2", "m2"]
