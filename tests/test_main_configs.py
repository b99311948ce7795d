"""The main job's refusals and its other configs, as a user runs them: `python -m
hydra_jax.main` in a subprocess (tests/test_main.py runs the embedded default; the two
files run on both pytest-xdist workers at once).

  * bad configs and bad config files stop with one message and no traceback;
  * configs/hf.py runs on known facts with a checkpoint directory;
  * configs/chinchilla7b.py prints its plan in seconds, and refuses to run on a
    machine too small for it.

Runtime: about a minute and a half of CPU time (measured: 94 s on a loaded 2-core
machine, configs/hf.py skipped): 13 quick failing runs started in two parallel batches,
each paying the start-up of a job (importing JAX), and one small sweep of the embedded model.
"""

import json
import os
import pathlib
import re
import subprocess
import time

import numpy as np
import pytest

from hydra_jax import checkpoints
from hydra_jax.model import transformer as model_lib
from hydra_jax.model.config import ModelConfig
from hydra_jax.train import embedded
from tests.test_main import PROJECT_ROOT, error_lines, main_command, run_main

SHARED_DATA = pathlib.Path(PROJECT_ROOT).parent / "shared" / "data"
EMBEDDED_DIR = pathlib.Path(PROJECT_ROOT) / "hydra_jax" / "assets" / "tiny"


def test_bad_configs_stop_with_one_message(tmp_path):
  other = ModelConfig(vocab_size=512, d_model=64, num_layers=2, num_heads=4, max_seq_len=64)
  checkpoints.save(tmp_path / "other", other, model_lib.init_params(other, 0))
  corrupt = tmp_path / "corrupt"          # the embedded model's config, its weights truncated
  corrupt.mkdir()
  (corrupt / "config.json").write_bytes((EMBEDDED_DIR / "config.json").read_bytes())
  (corrupt / "params.safetensors").write_bytes((EMBEDDED_DIR / "params.safetensors").read_bytes()[:20])
  cases = {
      "unknown key": (["--config.sweep.num_source=3"], "unknown config key --config.sweep.num_source"),
      "wrong type": (["--config.sweep.num_sources=many"], "--config.sweep.num_sources=many"),
      "bad value": (["--config.sweep.kind=gaussian"], "config.sweep.kind='gaussian': must be one of"),
      "missing checkpoint": (["--config.model_source=checkpoint",
                              f"--config.checkpoint={tmp_path / 'absent'}"], "no such directory"),
      "unknown gguf model": (["--config.model_source=gguf", "--config.checkpoint=llama9"],
                             "config.checkpoint='llama9': no such file, nor a model name of "
                             "hydra_jax.fetch (smollm2, gemma3-270m)"),
      "checkpoint mismatch": (["--config.model_source=checkpoint",
                               f"--config.checkpoint={tmp_path / 'other'}"],
                              "does not match config.model: d_model=96 (the model has 64), "
                              "mlp_dim=384 (the model has 256), num_layers=8 (the model has 2)"),
      "truncated weights": (["--config.model_source=checkpoint", f"--config.checkpoint={corrupt}"],
                            f"{corrupt / 'params.safetensors'}: not a readable safetensors file "
                            "(truncated or corrupt?)"),
      "no prompts left": (["--config.model_source=random", "--config.model.num_layers=1",
                           "--config.data.max_prompts=8"],
                          "no prompts left after filtering: 8 prompts: 0 kept"),
      "no workdir": ([], "--workdir=DIR is required"),
  }
  processes = {}
  for name, (args, _) in cases.items():
    workdir = [] if name == "no workdir" else [f"--workdir={tmp_path / name.replace(' ', '_')}"]
    processes[name] = subprocess.Popen(
        main_command("--config=configs/tiny.py", *args, *workdir), cwd=PROJECT_ROOT,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
  for name, (_, message) in cases.items():
    out, err = processes[name].communicate(timeout=300)
    assert processes[name].returncode == 1, (name, out, err)
    assert "Traceback" not in err, (name, err)
    lines = error_lines(err)
    assert len(lines) == 1 and lines[0].startswith("hydra_jax.main: error: "), (name, err)
    assert message in lines[0], (name, lines[0])


def test_bad_config_files_stop_with_one_line_naming_the_file(tmp_path):
  (tmp_path / "broken.py").write_text("def get_config(:\n")
  (tmp_path / "empty.py").write_text("x = 1\n")
  cases = {"configs/nope.py": "--config=configs/nope.py: no such file",
           str(tmp_path): f"--config={tmp_path}: is a directory",
           str(tmp_path / "broken.py"): f"--config={tmp_path / 'broken.py'} cannot be loaded: "
                                        "SyntaxError",
           str(tmp_path / "empty.py"): f"--config={tmp_path / 'empty.py'} defines no get_config()"}
  processes = {path: subprocess.Popen(main_command(f"--config={path}", f"--workdir={tmp_path / 'run'}"),
                                      cwd=PROJECT_ROOT, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True)
               for path in cases}                     # started together, like the bad configs
  for path, message in cases.items():
    _, err = processes[path].communicate(timeout=120)
    code = processes[path].returncode
    assert code == 1 and "Traceback" not in err, (path, err)
    (line,) = error_lines(err)
    assert line.startswith(f"hydra_jax.main: error: {message}"), (path, line)
  assert not (tmp_path / "run").exists()


def test_the_config_file_is_loaded_once_with_its_overrides_applied(tmp_path):
  """A config file that counts its loads (each execution of the file): one load, and the
  dry run's plan shows the override."""
  loads = tmp_path / "loads"
  (tmp_path / "counting.py").write_text(
      f"open({str(loads)!r}, 'a').write('load\\n')\n"
      "from configs import tiny\n"
      "def get_config():\n"
      "  return tiny.get_config()\n")
  code, _, err = run_main(f"--config={tmp_path / 'counting.py'}", "--config.dry_run=True",
                          "--config.data.max_prompts=48", "--config.sweep.num_sources=5")
  assert code == 0, err
  assert loads.read_text() == "load\n"
  assert re.search(r"48 prompts of .* x 5 sources = ", err), err


@pytest.mark.skipif(not (SHARED_DATA / "known_1000.json").exists(), reason="needs known_1000.json")
def test_hf_config_on_known_facts_with_a_checkpoint_directory(tmp_path):
  """configs/hf.py (known facts from manual_dir via TFDS, the tokenizer found beside the
  weights, config.model taken from the checkpoint) on the embedded model's directory."""
  code, out, err = run_main(
      "--config=configs/hf.py", "--config.model_source=checkpoint",
      f"--config.checkpoint={EMBEDDED_DIR}", f"--config.data.manual_dir={SHARED_DATA}",
      f"--config.data.data_dir={tmp_path / 'tfds'}", "--config.data.max_prompts=16",
      "--config.data.filter_correct=False", "--config.sweep.num_sources=2",
      "--config.sweep.chunk_size=8", f"--workdir={tmp_path / 'run'}")
  assert code == 0, err
  summary = json.load(open(tmp_path / "run" / "summary.json"))
  layers = embedded.RECIPE.model.num_layers                           # read from the checkpoint
  assert (summary["model"]["source"], summary["model"]["num_layers"]) == ("checkpoint", layers)
  assert summary["prompts"] == dict(dataset="known_facts", total=16, kept=16, correct=None,
                                    dropped={})
  results = np.load(tmp_path / "run" / "results.npz")
  assert "Vinson Massif is located in the continent of" in set(results["prompt"])   # record 0
  assert results["response"].shape == (16, 2 * layers, 2 * layers)


def test_chinchilla_dry_run_prints_the_plan_in_seconds():
  start = time.time()
  code, out, err = run_main("--config=configs/chinchilla7b.py", "--config.dry_run=True",
                            timeout=120)
  assert code == 0, err
  assert re.search(r"plan for chinchilla7b:\n  parameters +[\d,]+ \(", err), err
  for field in ("bytes per device", "FLOPs (whole sweep)", "devices needed", "mesh"):
    assert field in err
  assert time.time() - start < 60


def test_chinchilla_on_a_small_machine_stops_with_the_plan(tmp_path):
  code, out, err = run_main("--config=configs/chinchilla7b.py", f"--workdir={tmp_path}",
                            "--stderrthreshold=warning", timeout=120)
  assert code == 1
  assert "Traceback" not in err and "cpu: 1 device" not in err   # INFO silenced, not the error
  assert "this machine is too small for the sweep" in err and "plan for chinchilla7b" in err
  assert not os.listdir(tmp_path)     # nothing was written, nothing allocated
