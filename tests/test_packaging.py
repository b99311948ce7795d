"""pyproject.toml: what the package promises and what a wheel of it holds.

  * the `hydra-jax` console script is `python -m hydra_jax.main`'s entry function;
  * the floors: Python 3.11 as README.md and .ci/run say, jax 0.5.3 (jax.sharding.AxisType,
    which the job's mesh uses), the same floor the Colab notebook upgrades to;
  * the version is hydra_jax.__version__; LICENSE is Apache-2.0 and CITATION.cff cites the
    paper and this tool;
  * a wheel built offline holds the package, the embedded model's assets, LICENSE and the
    console script.

Runtime: about 10 s (building the wheel).
"""

import importlib.metadata
import json
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile

import jax
import pytest

import hydra_jax
from hydra_jax import main
from tests.conftest import PROJECT_ROOT

PYPROJECT = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())
PROJECT = PYPROJECT["project"]
JAX_FLOOR = "0.5.3"
ASSETS = ("config.json", "facts.json", "metadata.json", "params.safetensors", "tokenizer.model")


def floor(requirement_prefix: str) -> str:
  """The >= version of the dependency named `requirement_prefix` in pyproject.toml."""
  found = [d for d in PROJECT["dependencies"] if re.match(rf"{requirement_prefix}\s*>=", d)]
  assert len(found) == 1, found
  return found[0].split(">=")[1].split(";")[0].strip()


def test_the_console_script_is_the_main_entry_function():
  script = PROJECT["scripts"]["hydra-jax"]
  entry = importlib.metadata.EntryPoint("hydra-jax", script, "console_scripts")
  assert entry.load() is main.run
  assert (PROJECT_ROOT / "hydra_jax" / "main.py").read_text().rstrip().endswith("run()")


def test_the_floors_are_the_ones_stated_and_used():
  assert PROJECT["requires-python"] == ">=3.11"
  readme = (PROJECT_ROOT / "README.md").read_text()
  assert "Python 3.11" in readme and "python3.11" in (PROJECT_ROOT / ".ci" / "run").read_text()
  assert floor("jax") == JAX_FLOOR
  assert hasattr(jax.sharding, "AxisType")             # what needs the floor
  assert "jax.sharding.AxisType" in (PROJECT_ROOT / "hydra_jax" / "job" / "runtime.py").read_text()
  notebook = json.loads((PROJECT_ROOT / "launch" / "colab.ipynb").read_text())
  code = "\n".join("".join(cell["source"]) for cell in notebook["cells"])
  assert f'JAX_FLOOR = "{JAX_FLOOR}"' in code


def test_version_license_and_citation():
  assert PYPROJECT["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "hydra_jax.__version__"}
  assert re.fullmatch(r"\d+\.\d+\.\d+", hydra_jax.__version__)
  assert PROJECT["license"] == "Apache-2.0" and PROJECT["license-files"] == ["LICENSE"]
  license_text = (PROJECT_ROOT / "LICENSE").read_text()
  assert "Apache License" in license_text and "Version 2.0, January 2004" in license_text
  assert "END OF TERMS AND CONDITIONS" in license_text
  citation = (PROJECT_ROOT / "CITATION.cff").read_text()
  assert "cff-version: 1.2.0" in citation and "title: hydra_jax" in citation
  assert f'version: "{hydra_jax.__version__}"' in citation
  paper = citation.split("preferred-citation:")[1]
  assert "The Hydra Effect: Emergent Self-repair in Language Model Computations" in paper
  assert "2307.15771" in paper and "year: 2023" in paper
  for family in ("McGrath", "Rahtz", "Kramár", "Mikulik", "Legg"):
    assert f"family-names: {family}" in paper


def test_an_offline_wheel_holds_the_package_assets_license_and_script(tmp_path):
  setuptools = pytest.importorskip("setuptools")
  if int(setuptools.__version__.split(".")[0]) < 77:
    pytest.skip(f"setuptools {setuptools.__version__} < 77 (pip install -e '.[test]' brings it)")
  source = tmp_path / "source"     # a copy: no build/ left in the checkout, none stale used
  shutil.copytree(PROJECT_ROOT, source, ignore=shutil.ignore_patterns(
      ".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache"))
  done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                         "--no-index", "-q", "-w", str(tmp_path), str(source)],
                        capture_output=True, text=True, timeout=300)
  assert done.returncode == 0, done.stderr
  (wheel,) = tmp_path.glob(f"hydra_jax-{hydra_jax.__version__}-py3-none-any.whl")
  with zipfile.ZipFile(wheel) as archive:
    names = set(archive.namelist())
    info = f"hydra_jax-{hydra_jax.__version__}.dist-info"
    entry_points = archive.read(f"{info}/entry_points.txt").decode()
    metadata = archive.read(f"{info}/METADATA").decode()
  assert {f"hydra_jax/assets/tiny/{name}" for name in ASSETS} <= names
  assert {"hydra_jax/main.py", "hydra_jax/report/results.py", "hydra_jax/provenance.py",
          f"{info}/licenses/LICENSE"} <= names
  assert not any(name.startswith(("tests/", "configs/", "benchmarks/")) for name in names)
  assert "hydra-jax = hydra_jax.main:run" in entry_points
  assert "Requires-Python: >=3.11" in metadata and f"Requires-Dist: jax>={JAX_FLOOR}" in metadata
