"""hydra_sweep's options: zero and mean ablation, batching with source-only prompts, the
ablated run's own sigma for responses, per-source responses, noise ablation (~60 s)."""

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


def test_per_source_responses_average_to_the_response():
  cfg, params, tokens = setup()
  sources = sweep.draw_sources(6, 3, seed=4)
  result = sweep.hydra_sweep(params, cfg, tokens, LENGTHS, sources, keep_sources=True)
  by_source = np.asarray(result.response_by_source)                    # [B, K, C, C]
  assert by_source.shape == (6, 3, cfg.num_components, cfg.num_components)
  np.testing.assert_allclose(by_source.mean(1), result.response, rtol=0, atol=1e-6)  # float32 sums
  assert np.abs(by_source - by_source.mean(1, keepdims=True)).max() > 1e-4   # sources differ


def test_noise_ablation_replaces_components_by_their_values_under_noisy_embeddings():
  cfg, params, tokens = setup()
  silent = sweep.hydra_sweep(params, cfg, tokens, LENGTHS, kind="noise", noise_scale=0.0, noise_draws=2)
  np.testing.assert_allclose(silent.total_effect, 0.0, atol=1e-6)     # no noise: the clean values
  nowhere = sweep.hydra_sweep(params, cfg, tokens, LENGTHS, kind="noise", noise_draws=2,
                              noise_positions=np.zeros(tokens.shape))
  np.testing.assert_allclose(nowhere.total_effect, 0.0, atol=1e-6)    # no position noised
  noisy = sweep.hydra_sweep(params, cfg, tokens, LENGTHS, kind="noise", noise_draws=2, check=True)
  assert noisy.total_effect.shape == (6, 2, cfg.num_components)
  assert np.abs(np.asarray(noisy.total_effect)).max() > 1e-2
  batched = sweep.hydra_sweep(params, cfg, tokens, LENGTHS, kind="noise", noise_draws=2, batch_size=4)
  np.testing.assert_allclose(batched.total_effect, noisy.total_effect, atol=1e-5)  # per-prompt noise
  # The replacement for prompt 1, draw 0, is its own final-position output under noisy embeddings:
  from hydra_jax.sweep import noise
  std = 3.0 * noise.embedding_std(params, cfg)
  real = (np.arange(6)[None] < LENGTHS[:, None]).astype(np.float32)
  values = noise.noised_components(params, cfg, tokens, LENGTHS, np.arange(6), real, std=std,
                                   draws=1, seed=0)                    # [B, 1, C, D]
  prompt, layer = 1, 1
  value = np.broadcast_to(np.asarray(values[prompt, 0, 2 * layer]), (cfg.num_layers, 1, cfg.d_model))
  patched = iv.patch("attn_out", value, num_layers=cfg.num_layers,
                     seq_len=6, layers=layer, positions=final_position(prompt))
  _, logits, _, _ = forward_cell(patched, prompt)
  _, clean_logits, _, _ = forward_cell(None, prompt)
  token = int(noisy.token[prompt])
  np.testing.assert_allclose(noisy.total_effect[prompt, 0, 2 * layer],
                             logits[token] - clean_logits[token], atol=1e-5)
