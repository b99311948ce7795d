"""The layer-skipping schedule: every ablated layer runs exactly its layers once, and the sweep
it drives equals the full re-run (~30 s: two sweep programs for each of two architectures)."""

import functools
import re

import numpy as np
import pytest

import hydra_jax as hj
from hydra_jax.model import blocks
from hydra_jax.sweep import layer_skip
from hydra_jax.sweep import engine as sweep
from tests.conftest import TINY_VARIANTS, random_tokens, tiny_config


@pytest.mark.parametrize("num_layers", range(1, 10))
def test_lanes_run_each_ablation_over_exactly_the_layers_it_changes(num_layers):
  plan, L = layer_skip.lane_plan(num_layers), num_layers
  used = np.zeros((L, L), int)                                         # [step, lane]
  for component in range(2 * L):
    layer, site = divmod(component, 2)
    first = layer if site == 0 else layer + 1                          # an MLP ablation starts above
    spots = [plan.where(component, r) for r in range(L)]
    assert all(spot is None for spot in spots[:first])
    runs = spots[first:]
    for r, (step, lane) in zip(range(first, L), runs):
      assert plan.layer[step, lane] == r and lane == runs[0][1] and step == runs[0][0] + r - first
      used[step, lane] += 1
    if runs:        # attention runs start at step 0; an MLP run where the plan injects it
      step, lane = runs[0]
      assert (step == 0 and not plan.mlp_start[step, lane]) if site == 0 else plan.mlp_start[step, lane]
  np.testing.assert_array_equal(used, np.ones((L, L), int))            # L x L steps, none idle
  assert plan.mlp_start.sum() == L - 1 and not plan.mlp_start[0].any()


def test_final_norm_sigma_matches_the_model():
  cfg = tiny_config(norm="layer", position="learned")
  params = hj.init_params(cfg, seed=1)
  out = hj.forward(params, cfg, random_tokens(cfg, batch=2, length=4))
  np.testing.assert_allclose(blocks.norm_sigma(cfg, out.resid_final), out.final_scale, rtol=1e-6)


@functools.lru_cache(maxsize=None)
def sweeps(variant):
  cfg = tiny_config(**TINY_VARIANTS[variant])
  params = hj.init_params(cfg, seed=5)
  tokens = random_tokens(cfg, batch=4, length=6, seed=2)
  lengths, sources = np.array([3, 6, 5, 4]), sweep.draw_sources(4, 3, seed=1)
  run = lambda **kw: sweep.hydra_sweep(params, cfg, tokens, lengths, sources, check=True, **kw)
  return cfg, run(path="incremental", skip_unchanged_layers=True), run(path="full")


def rounding_bound(config, result) -> float:
  """The float32 rounding two correct programs may differ by in any measure of `result`.

  Every measure is a sum or difference of parts of the clean and the ablated final logits
  (TE = ablated - clean logit; the responses and compensations are DE changes, parts of
  the same logits; the norm remainder is TE minus those), so its terms are at most the
  largest logit in play: |clean logit| + |TE| bounds every ablated logit. Each logit is
  the sum of the residual's 2L + 1 components (embedding, 2L outputs), each rounded on
  its own (a reduction over D or F, in an order XLA picks per program: the layer-skipping
  decode and the full re-run round differently). So the bound is (2L + 1) ulps of that
  magnitude: eps32 x (2L + 1) x (|clean logit| + |TE|). Measured: the two paths differ by
  2.5-3.6 x eps32 x that magnitude (llama_gqa, TE), within the bound's 2L + 1 = 7.
  """
  magnitude = (float(np.abs(np.asarray(result.clean_logit)).max())
               + float(np.abs(np.asarray(result.total_effect)).max()))
  return float(np.finfo(np.float32).eps) * (2 * config.num_layers + 1) * magnitude


@pytest.mark.parametrize("variant", ["llama_gqa", "pythia"])   # gated GQA; parallel block
def test_skipping_unchanged_layers_gives_the_full_results(variant):
  config, skipped, full = sweeps(variant)
  bound = rounding_bound(config, full)
  for field in full.arrays():
    np.testing.assert_allclose(getattr(skipped, field), getattr(full, field),
                               atol=bound, rtol=0, err_msg=field)


def test_no_ablation_materialises_logits_over_the_vocabulary():
  """Only the clean run's final logits [B, V] (for the argmax) and W_U may have a V axis."""
  cfg = tiny_config(vocab_size=997)
  params = hj.init_params(cfg, seed=0)
  tokens, lengths = random_tokens(cfg, batch=4, length=6), np.array([6, 4, 2, 5], np.int32)
  for path, skip in [("incremental", True), ("full", False)]:
    compiled = sweep.lower_sweep(params, cfg, tokens, lengths, sweep.draw_sources(4, 2), path=path,
                                 skip_unchanged_layers=skip).compile()
    shapes = [tuple(int(d) for d in dims.split(",") if d)
              for dims in re.findall(r"[a-z]+[0-9]*\[([0-9,]*)\]", compiled.as_text())]
    with_vocab = [s for s in shapes if 997 in s]
    assert (4, 997) in with_vocab                                      # the clean argmax is there
    assert max(int(np.prod(s)) for s in with_vocab) <= 997 * cfg.d_model, (path, set(with_vocab))
