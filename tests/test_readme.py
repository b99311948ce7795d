"""The README's commands are the ones CI runs, and its parameter count is the measured one."""

import re
import subprocess
import sys

import jax
import pytest

import hydra_jax as hj
from tests.conftest import PROJECT_ROOT, job_config


def _bash_blocks(text):
  return re.findall(r"```bash\n(.*?)\n```", text, flags=re.S)


def test_ci_runs_the_readme_test_command():
  readme = (PROJECT_ROOT / "README.md").read_text()
  test_command = next(b for b in _bash_blocks(readme) if "pytest" in b)
  ci_lines = (PROJECT_ROOT / ".ci" / "run").read_text().splitlines()
  assert test_command in ci_lines


def test_readme_states_the_chinchilla_parameter_count():
  """README quotes the count the code gives (its value is tested in test_model.py)."""
  from hydra_jax.job import config as run_config
  config = run_config.model_config_from(job_config("chinchilla7b"))
  count = hj.count_params(jax.eval_shape(lambda: hj.init_params(config)))
  assert f"{count:,} parameters" in (PROJECT_ROOT / "README.md").read_text()


@pytest.mark.parametrize("module, flag", [("hydra_jax.main", "--workdir"),
                                          ("hydra_jax.train", "--build_embedded"),
                                          ("hydra_jax.report", "--workdir")])
def test_readme_commands_answer_help(module, flag):
  done = subprocess.run([sys.executable, "-m", module, "--help"], cwd=PROJECT_ROOT,
                        capture_output=True, text=True, timeout=120)
  assert "Traceback" not in done.stderr, done.stderr     # absl exits 1 after printing help
  assert flag in done.stdout and f"python -m {module}" in done.stdout


def _python_blocks(text):
  return re.findall(r"```python\n(.*?)\n```", text, flags=re.S)


def test_the_python_example_runs_as_written(capsys):
  """The README's "Using it from Python" block, verbatim: the sweep's shapes and the
  within-prompt estimate it prints, and the hand-made ablation's logits."""
  readme = (PROJECT_ROOT / "README.md").read_text()
  example = next(block for block in _python_blocks(readme) if "hj.hydra_sweep" in block)
  namespace = {}
  exec(compile(example, "README.md (Using it from Python)", "exec"), namespace)
  printed = capsys.readouterr().out.splitlines()
  assert printed[0] == "(8, 4)" and printed[-1] == "(8, 12, 512)"
  restored = namespace["estimators"].within_slope(namespace["result"].lost_de_by_source,
                                                 namespace["compensation"])
  assert restored.shape == (4,) and restored[-1] == 0.0     # the last MLP has nothing downstream
  assert namespace["ablated"].logits.shape == (8, 12, 512)
