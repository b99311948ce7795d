"""launch/colab.ipynb runs top to bottom offline against this checkout.

The install cell is skipped (HYDRA_JAX_OFFLINE, and the package is importable through
PYTHONPATH); HYDRA_JAX_QUICK shrinks the sweep. Runtime: about 40 s (kernel start,
a small sweep of the embedded model with its compile, the figures).
"""

import os
import pathlib
import sys

import nbformat
from nbclient import NotebookClient

PROJECT_ROOT = pathlib.Path(__file__).resolve().parents[1]
NOTEBOOK = PROJECT_ROOT / "launch" / "colab.ipynb"


def _text(cell) -> str:
  return "".join(output.get("text", "") for output in cell.outputs if output.output_type == "stream")


def test_colab_notebook_runs_offline(tmp_path, monkeypatch):
  monkeypatch.setenv("HYDRA_JAX_OFFLINE", "1")
  monkeypatch.setenv("HYDRA_JAX_QUICK", "1")
  monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
      [str(PROJECT_ROOT)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]))
  # The kernel spec runs `python`: make it this interpreter (the one with jax installed).
  monkeypatch.setenv("PATH", os.pathsep.join([os.path.dirname(sys.executable), os.environ["PATH"]]))
  notebook = nbformat.read(NOTEBOOK, as_version=4)
  NotebookClient(notebook, timeout=600, kernel_name="python3",
                 resources={"metadata": {"path": str(tmp_path)}}).execute()
  code = [cell for cell in notebook.cells if cell.cell_type == "code"]
  assert f"hydra_jax from {PROJECT_ROOT / 'hydra_jax'}" in _text(code[0])
  assert "fraction_restored_middle_attention" in _text(code[1])
  assert (tmp_path / "hydra_tiny" / "report.md").exists()
  intervention = _text(code[2])
  assert "zeroing attention layer 2: logit" in intervention and "layer 3: attn DE" in intervention
  images = [output for output in code[3].outputs if "image/png" in output.get("data", {})]
  assert len(images) == 5
  for cell in code:
    assert not [output for output in cell.outputs if output.output_type == "error"]
