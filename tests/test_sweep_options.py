"""hydra_sweep's options: zero and mean ablation, batching with source-only prompts, the
ablated run's own sigma for responses (~40 s: about six sweep programs)."""

import functools

import numpy as np
import pytest

import hydra_jax as hj
from hydra_jax.sweep import effects
from hydra_jax.sweep import engine as sweep
from hydra_jax.model import interventions as iv
from tests.conftest import random_tokens, tiny_config

LENGTHS = np.array([4, 6, 3, 5, 6, 2])


@functools.lru_cache(maxsize=None)
def setup():
  cfg = tiny_config(position="rotary")
  return cfg, hj.init_params(cfg, seed=11), random_tokens(cfg, batch=6, length=6, seed=5)


def final_position(prompt, T=6):
  return np.eye(T)[LENGTHS[prompt] - 1]


def forward_cell(intervention, prompt):
  """Centred logit of the scored token, sigma and component DEs of one prompt under `intervention`."""
  cfg, params, tokens = setup()
  out = hj.forward(params, cfg, tokens[prompt:prompt + 1], intervention)
  last = LENGTHS[prompt] - 1
  components = effects.interleave_components(out.attn_out[0, :, last], out.mlp_out[0, :, last])
  return out, hj.centre(out.logits[0, last]), components, out.final_scale[0, last]


def test_zero_ablation_matches_a_zeroed_forward():
  cfg, params, tokens = setup()
  result = sweep.hydra_sweep(params, cfg, tokens, LENGTHS, kind="zero", path="full")
  assert result.total_effect.shape == (6, 1, cfg.num_components)
  prompt, layer = 3, 2                                                 # attention of layer 2
  zeroed = iv.zero("attn_out", num_layers=cfg.num_layers, seq_len=6, layers=layer,
                   positions=final_position(prompt))
  _, logits, _, _ = forward_cell(zeroed, prompt)
  _, clean_logits, _, _ = forward_cell(None, prompt)
  token = int(result.token[prompt])
  np.testing.assert_allclose(result.total_effect[prompt, 0, 2 * layer], logits[token] - clean_logits[token],
                             atol=1e-5)


def test_mean_ablation_uses_the_mean_over_prompts_or_a_given_mean():
  cfg, params, tokens = setup()
  batch_mean = sweep.hydra_sweep(params, cfg, tokens, LENGTHS, kind="mean")
  clean = hj.forward(params, cfg, tokens)
  rows, last = np.arange(6), LENGTHS - 1
  components = effects.interleave_components(clean.attn_out[rows, :, last], clean.mlp_out[rows, :, last])
  given = sweep.hydra_sweep(params, cfg, tokens, LENGTHS, kind="mean",
                            mean_activations=np.asarray(components).mean(0))
  for field in given.arrays():
    np.testing.assert_allclose(getattr(batch_mean, field), getattr(given, field), atol=1e-5, err_msg=field)
  shifted = sweep.hydra_sweep(params, cfg, tokens, LENGTHS, kind="mean",
                              mean_activations=np.asarray(components).mean(0) + 1.0)
  assert not np.allclose(shifted.total_effect, given.total_effect, atol=1e-3)


def test_batches_and_source_only_prompts_give_the_single_program_results():
  cfg, params, tokens = setup()
  sources = sweep.draw_sources(6, 3, seed=2)
  whole = sweep.hydra_sweep(params, cfg, tokens, LENGTHS, sources)
  batched = sweep.hydra_sweep(params, cfg, tokens, LENGTHS, sources, batch_size=4, source_chunk=2,
                              lane_chunk=2)
  scored = sweep.hydra_sweep(params, cfg, tokens, LENGTHS, sources[:4], num_scored=4)
  for field in whole.arrays():
    np.testing.assert_allclose(getattr(batched, field), getattr(whole, field), atol=1e-5, err_msg=field)
    np.testing.assert_allclose(getattr(scored, field), getattr(whole, field)[:4], atol=1e-5, err_msg=field)


def test_responses_with_the_ablated_runs_own_sigma():
  cfg, params, tokens = setup()
  sources = np.array([[2], [0], [1], [0], [1], [3]], np.int32)
  result = sweep.hydra_sweep(params, cfg, tokens, LENGTHS, sources, response_scale="ablated", path="full")
  prompt, component, source = 4, 1, 1                                 # MLP of layer 0
  clean, clean_logits, clean_components, clean_sigma = forward_cell(None, prompt)
  value = hj.forward(params, cfg, tokens).mlp_out[source, :, LENGTHS[source] - 1][:, None]  # [L, 1, D]
  ablation = iv.patch("mlp_out", value, num_layers=cfg.num_layers, seq_len=6, layers=0,
                      positions=final_position(prompt))
  _, _, components, sigma = forward_cell(ablation, prompt)
  direction, _ = effects.logit_direction(params, cfg, result.token[prompt:prompt + 1])
  expected = (effects.direct_effect(components, sigma, direction)
              - effects.direct_effect(clean_components, clean_sigma, direction))
  assert abs(float(sigma - clean_sigma)) > 1e-4                       # the scale did move
  np.testing.assert_allclose(result.response[prompt, component], expected, atol=1e-5)
  upstream = np.asarray(result.response[prompt, component, :component])
  assert np.all(upstream != 0.0)           # with the run's own sigma, upstream DEs rescale too
