"""The layer-skipping schedule: every ablated layer runs exactly its layers once, and the sweep
it drives equals the full re-run (~30 s: two sweep programs for each of two architectures)."""

import functools
import re

import numpy as np
import pytest

import hydra_jax as hj
from hydra_jax import layer_skip, sweep
from tests.conftest import TINY_VARIANTS, random_tokens, tiny_config


@pytest.mark.parametrize("num_layers", range(1, 10))
def test_each_ablated_layer_runs_its_layers_in_order_within_one_lane(num_layers):
  plan = layer_skip.lane_plan(num_layers)
  L, (S, P) = num_layers, plan.layer.shape
  assert S == L and P == L // 2 + 1                                   # about half the lanes of L
  seen = np.zeros((L, L), int)                                         # [ablated layer, layer run]
  for lane in range(P):
    ablated = None
    for step in range(S):
      if plan.start[step, lane]:
        ablated = plan.layer[step, lane]
      elif ablated is None or plan.layer[step, lane] != plan.layer[step - 1, lane] + 1:
        ablated = None                                                 # idle: not a continuation
        continue
      assert plan.lane_of[ablated] == lane and plan.step_of[ablated, plan.layer[step, lane]] == step
      seen[ablated, plan.layer[step, lane]] += 1
  np.testing.assert_array_equal(seen, np.triu(np.ones((L, L), int)))  # layers l..L-1, once each


@functools.lru_cache(maxsize=None)
def sweeps(variant):
  cfg = tiny_config(**TINY_VARIANTS[variant])
  params = hj.init_params(cfg, seed=5)
  tokens = random_tokens(cfg, batch=4, length=6, seed=2)
  lengths, sources = np.array([3, 6, 5, 4]), sweep.draw_sources(4, 3, seed=1)
  run = lambda **kw: sweep.hydra_sweep(params, cfg, tokens, lengths, sources, check=True, **kw)
  return cfg, run(path="incremental", skip_unchanged_layers=True), run(path="full")


@pytest.mark.parametrize("variant", ["llama_gqa", "pythia"])   # gated GQA; parallel block
def test_skipping_unchanged_layers_gives_the_full_results(variant):
  _, skipped, full = sweeps(variant)
  scale = float(np.abs(np.asarray(full.direct_effect)).max())
  for field in vars(full):
    np.testing.assert_allclose(getattr(skipped, field), getattr(full, field),
                               atol=2e-6 * scale, rtol=0, err_msg=field)


def test_no_ablation_materialises_logits_over_the_vocabulary():
  """Only the clean run's final logits [B, V] (for the argmax) and W_U may have a V axis."""
  cfg = tiny_config(vocab_size=997)
  params = hj.init_params(cfg, seed=0)
  tokens, lengths = random_tokens(cfg, batch=4, length=6), np.array([6, 4, 2, 5], np.int32)
  for path, skip in [("incremental", True), ("full", False)]:
    settings = sweep._Settings(replacement="sources", path=path, skip_unchanged_layers=skip,
                               response_scale="clean", freeze_final_scale=False, source_chunk=None,
                               num_ablated=4)
    compiled = sweep.compiled_batch(cfg, settings).lower(
        params, tokens, lengths, np.ones(4, np.float32), sweep.draw_sources(4, 2), None).compile()
    shapes = [tuple(int(d) for d in dims.split(",") if d)
              for dims in re.findall(r"[a-z]+[0-9]*\[([0-9,]*)\]", compiled.as_text())]
    with_vocab = [s for s in shapes if 997 in s]
    assert (4, 997) in with_vocab                                      # the clean argmax is there
    assert max(int(np.prod(s)) for s in with_vocab) <= 997 * cfg.d_model, (path, set(with_vocab))
