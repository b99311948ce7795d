"""launch/colab.ipynb: valid nbformat 4 with the three choices a Colab user meets, and it
runs top to bottom offline against this checkout (tpu_vm.sh: tests/test_tpu_vm.py).

  * the install source is a form field (#@param) defaulting to a local checkout path,
    installing a folder (editable) or a wheel, never an invented URL;
  * a cell upgrades JAX when the runtime's is older than the package's floor;
  * the workdir is a named Drive folder (/content/drive/MyDrive/hydra_jax_runs/RUN_NAME),
    with /content/hydra_jax_runs as the stated fallback.

The install cell is skipped (HYDRA_JAX_OFFLINE, and the package is importable through
PYTHONPATH); no Drive here, so the workdir is the fallback (HYDRA_JAX_LOCAL_RUNS: a
temporary folder); HYDRA_JAX_QUICK shrinks the sweep. Runtime: about 25 s (kernel start,
a small sweep of the embedded model with its compile, the figures).
"""

import json
import os
import pathlib
import re
import sys
import tomllib

import nbformat
from nbclient import NotebookClient

from hydra_jax.train import embedded

PROJECT_ROOT = pathlib.Path(__file__).resolve().parents[1]
NOTEBOOK = PROJECT_ROOT / "launch" / "colab.ipynb"


def _text(cell) -> str:
  return "".join(output.get("text", "") for output in cell.outputs if output.output_type == "stream")


def _code(notebook) -> list[str]:
  return ["".join(cell["source"]) for cell in notebook["cells"] if cell["cell_type"] == "code"]


def test_the_notebook_is_nbformat_4_with_the_three_choices():
  raw = json.loads(NOTEBOOK.read_text())                      # plain JSON, as Colab reads it
  assert raw["nbformat"] == 4
  nbformat.validate(nbformat.reads(NOTEBOOK.read_text(), as_version=4))
  install, upgrade, workdir = _code(raw)[:3]
  (field,) = re.findall(r'^HYDRA_JAX_SOURCE = "([^"]*)"  #@param \{type:"string"\}$', install, re.M)
  assert field == "/content/hydra_jax" and "://" not in install
  assert '"-e"' in install and "os.path.isdir(source)" in install     # a folder, or a wheel
  floor = [d for d in tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())["project"][
      "dependencies"] if d.startswith("jax>=")][0].split(">=")[1].split()[0]
  assert f'JAX_FLOOR = "{floor}"' in upgrade
  assert '"pip", "install", "-q", "-U"' in upgrade and 'f"{package}>={JAX_FLOOR}"' in upgrade
  assert 'RUN_NAME = "tiny"  #@param {type:"string"}' in workdir
  assert 'DRIVE_RUNS = "/content/drive/MyDrive/hydra_jax_runs"' in workdir
  assert '"/content/hydra_jax_runs"' in workdir and 'drive.mount("/content/drive")' in workdir
  text = "".join("".join(cell["source"]) for cell in raw["cells"] if cell["cell_type"] == "markdown")
  assert "/content/drive/MyDrive/hydra_jax_runs/RUN_NAME" in text
  assert "the workdir is `/content/hydra_jax_runs/RUN_NAME`" in text


def test_colab_notebook_runs_offline(tmp_path, monkeypatch):
  monkeypatch.setenv("HYDRA_JAX_OFFLINE", "1")
  monkeypatch.setenv("HYDRA_JAX_QUICK", "1")
  monkeypatch.setenv("HYDRA_JAX_LOCAL_RUNS", str(tmp_path / "runs"))
  monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
      [str(PROJECT_ROOT)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]))
  # The kernel spec runs `python`: make it this interpreter (the one with jax installed).
  monkeypatch.setenv("PATH", os.pathsep.join([os.path.dirname(sys.executable), os.environ["PATH"]]))
  notebook = nbformat.read(NOTEBOOK, as_version=4)
  NotebookClient(notebook, timeout=600, kernel_name="python3",
                 resources={"metadata": {"path": str(tmp_path)}}).execute()
  code = [cell for cell in notebook.cells if cell.cell_type == "code"]
  assert f"hydra_jax from {PROJECT_ROOT / 'hydra_jax'}" in _text(code[0])
  import jax
  assert _text(code[1]).strip() == f"jax {jax.__version__} (hydra_jax needs >= 0.5.3)"
  assert (f"Google Drive not mounted (ModuleNotFoundError): the results go to {tmp_path / 'runs'}"
          in _text(code[2]))
  assert f"workdir: {tmp_path / 'runs' / 'tiny'}" in _text(code[2])
  sweep = _text(code[3])
  assert "fraction_restored_middle_attention" in sweep
  assert "['a0', 'm0', 'a1', 'm1'] ('prompt', 'ablated', 'responding')" in sweep
  assert (tmp_path / "runs" / "tiny" / "report.md").exists()
  intervention = _text(code[4])
  layer = embedded.RECIPE.model.num_layers // 2                     # the notebook's choice
  assert f"zeroing attention layer {layer}: logit" in intervention
  assert f"layer {layer + 1}: attn DE" in intervention
  images = [output for output in code[5].outputs if "image/png" in output.get("data", {})]
  assert len(images) == 5
  for cell in code:
    assert not [output for output in cell.outputs if output.output_type == "error"]
