"""benchmarks/real_model.py's PyTorch loops give the compiled sweep's numbers on tiny models.

The final-token loops of benchmarks/real_torch.py ((e'), (f); (e) is (f) one component at a
time) and the hook loop of benchmarks/sweep_methods.py ((d)) against
`hydra_sweep(path="incremental")` on the same weights: a tiny Gemma 3 (tests/hf_fixtures.py:
post-norms, qk-norm, sliding window 4 shorter than the 12-token prompts, two rotary bases)
and a tiny bias-free Llama, right-padded prompts, 2 sources. A Llama with biases is refused
in one line. Runtime: about 40 s on 2 shared CPU cores.
"""

import argparse
import sys

import numpy as np
import pytest

from hydra_jax.checkpoints import load_hf
from hydra_jax.sweep import engine
from tests import hf_fixtures
from tests.conftest import PROJECT_ROOT

sys.path.insert(0, str(PROJECT_ROOT / "benchmarks"))
import real_torch  # noqa: E402
import sweep_methods  # noqa: E402

FIELDS = ("token", "clean_logit", "total_effect", "response")


def _model(arch, directory, monkeypatch, bias=False):
  """The tiny `arch` model of tests/hf_fixtures.py (a Llama with or without its biases)."""
  if arch == "llama":
    make = hf_fixtures.CONFIGS["llama"]
    def config():
      hf = make()
      hf.attention_bias = hf.mlp_bias = bias
      return hf
    monkeypatch.setitem(hf_fixtures.CONFIGS, "llama", config)
  return hf_fixtures.build(arch, directory, seed=1)


@pytest.mark.parametrize("arch", ["gemma3", "llama"])
def test_torch_loops_equal_the_incremental_sweep(arch, tmp_path, monkeypatch):
  model = _model(arch, tmp_path, monkeypatch)
  config, params = load_hf(tmp_path)
  lengths = np.array([12, 9, 11, 10], np.int32)
  tokens = np.random.default_rng(0).integers(1, hf_fixtures.VOCAB, (4, 12)).astype(np.int32)
  tokens[np.arange(12)[None] >= lengths[:, None]] = 0                   # right padding
  sources = engine.draw_sources(4, 2, seed=0)
  result = engine.hydra_sweep(params, config, tokens, lengths, sources)
  want = {name: np.asarray(getattr(result, name)) for name in FIELDS}
  assert np.abs(want["total_effect"]).max() > 0.5                      # the ablations matter
  args = argparse.Namespace(source_block=None, hook_components=None)
  runs = {"(f)": real_torch.torch_cached(True, True), "(e')": real_torch.torch_cached(False, False),
          "(d)": sweep_methods.torch_hooks}
  for name, run in runs.items():
    got, _ = run(model, tokens, lengths, sources, args)
    np.testing.assert_array_equal(got["token"], want["token"], err_msg=name)
    for field in FIELDS[1:]:
      np.testing.assert_allclose(got[field], want[field], atol=1e-5, rtol=0, err_msg=f"{name} {field}")


def test_projection_biases_are_refused(tmp_path, monkeypatch):
  model = _model("llama", tmp_path, monkeypatch, bias=True)
  with pytest.raises(SystemExit, match="this model has biases"):
    real_torch.layer_weights(model)
