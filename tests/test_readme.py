"""The README's commands are the ones CI runs, and its parameter count is the measured one."""

import re

import jax

import hydra_jax as hj
from tests.conftest import PROJECT_ROOT


def _bash_blocks(text):
  return re.findall(r"```bash\n(.*?)\n```", text, flags=re.S)


def test_ci_runs_the_readme_test_command():
  readme = (PROJECT_ROOT / "README.md").read_text()
  test_command = next(b for b in _bash_blocks(readme) if "pytest" in b)
  ci_lines = (PROJECT_ROOT / ".ci" / "run").read_text().splitlines()
  assert test_command in ci_lines


def test_readme_states_the_chinchilla_parameter_count():
  from hydra_jax.job import config as run_config
  import importlib.util
  spec = importlib.util.spec_from_file_location("c7b", PROJECT_ROOT / "configs" / "chinchilla7b.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  config = run_config.model_config_from(module.get_config())
  count = hj.count_params(jax.eval_shape(lambda: hj.init_params(config)))
  assert f"{count:,} parameters" in (PROJECT_ROOT / "README.md").read_text()
