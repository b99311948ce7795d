"""The measures of METHOD.md as pure functions: direction trick, masks, split, regression (~10 s)."""

import jax.numpy as jnp
import numpy as np
import pytest

import hydra_jax as hj
from hydra_jax.sweep import effects
from tests.conftest import random_tokens, tiny_config


@pytest.mark.parametrize("overrides", [
    dict(norm="rms"),
    dict(norm="layer", tie_embeddings=True),
    dict(norm="rms", norm_scale_offset=1.0, tie_embeddings=True),
])
def test_direction_gives_the_centred_logit_of_every_component(overrides):
  cfg = tiny_config(position="rotary", **overrides)
  params = hj.init_params(cfg, seed=2)
  if cfg.norm == "layer":   # a non-zero final bias, so its logit term is exercised
    params["final_norm"] = dict(params["final_norm"], bias=0.3 * jnp.ones(cfg.d_model))
  out = hj.forward(params, cfg, random_tokens(cfg, batch=2, length=5))
  sigma = out.final_scale[:, -1]                                       # [B]
  token = effects.scored_token(out.logits[:, -1])                      # [B]
  direction, bias_logit = effects.logit_direction(params, cfg, token)  # [B, D], [B]
  rows = np.arange(2)
  for component in (out.embed[:, -1], out.attn_out[:, 1, -1], out.mlp_out[:, 2, -1]):
    full = hj.centre(hj.unembed(params, cfg, component, sigma))[rows, token]  # via [B, V]
    np.testing.assert_allclose(effects.direct_effect(component, sigma, direction), full,
                               rtol=1e-5, atol=1e-5)
  bias = hj.centre(hj.final_bias_logits(params, cfg))[token]
  np.testing.assert_allclose(bias_logit, bias, rtol=1e-5, atol=1e-6)
  clean = effects.direct_effect(out.resid_final[:, -1], sigma, direction) + bias_logit
  np.testing.assert_allclose(clean, hj.centre(out.logits[:, -1])[rows, token], rtol=1e-5, atol=1e-5)
  assert np.all(np.asarray(token) == np.argmax(np.asarray(out.logits[:, -1]), -1))


def test_interleave_puts_attention_at_even_and_mlp_at_odd_indices():
  attn = np.arange(6.0).reshape(1, 3, 2)                               # [B, L, D]
  mlp = -np.arange(6.0).reshape(1, 3, 2)
  both = np.asarray(effects.interleave_components(attn, mlp))          # [B, 2L, D]
  np.testing.assert_array_equal(both[0, 0::2], attn[0])
  np.testing.assert_array_equal(both[0, 1::2], mlp[0])


def test_downstream_follows_the_block_kind():
  sequential = effects.downstream_mask(tiny_config(num_layers=2))
  parallel = effects.downstream_mask(tiny_config(num_layers=2, parallel_block=True))
  # rows: ablated a0 m0 a1 m1; columns: responding a0 m0 a1 m1
  np.testing.assert_array_equal(sequential, [[0, 1, 1, 1], [0, 0, 1, 1], [0, 0, 0, 1], [0, 0, 0, 0]])
  np.testing.assert_array_equal(parallel, [[0, 0, 1, 1], [0, 0, 1, 1], [0, 0, 0, 0], [0, 0, 0, 0]])
  unaffected = effects.unaffected_mask(tiny_config(num_layers=2, parallel_block=True))
  np.testing.assert_array_equal(unaffected, [[0, 1, 0, 0], [1, 0, 0, 0], [1, 1, 0, 1], [1, 1, 1, 0]])


def test_compensation_splits_downstream_response_into_attention_and_mlp():
  cfg = tiny_config(num_layers=2)
  response = np.arange(16.0).reshape(1, 4, 4)                          # [B, C, C]
  attn, mlp = effects.compensation(jnp.asarray(response), cfg)
  # ablating a0: downstream a1 (col 2) | m0, m1 (cols 1, 3); ablating m0: a1 | m1; ...
  np.testing.assert_array_equal(attn[0], [2.0, 6.0, 0.0, 0.0])
  np.testing.assert_array_equal(mlp[0], [1.0 + 3.0, 7.0, 11.0, 0.0])
  np.testing.assert_array_equal(effects.direct_change(jnp.asarray(response))[0], [0.0, 5.0, 10.0, 15.0])
  remainder = effects.norm_remainder(jnp.full((1, 4), 20.0), effects.direct_change(response), attn, mlp)
  np.testing.assert_array_equal(remainder[0], [20.0 - 0 - 6, 20.0 - 5 - 13, 20.0 - 10 - 11, 20.0 - 15])


def test_response_and_total_effect_subtract_the_clean_run():
  clean_de = jnp.array([[1.0, 2.0]])                                    # [B, C]
  ablated_de = jnp.array([[[1.5, 2.0], [1.0, 0.5]]])                    # [B, C, C]
  np.testing.assert_array_equal(effects.response(ablated_de, clean_de), [[[0.5, 0.0], [0.0, -1.5]]])
  np.testing.assert_array_equal(effects.total_effect(jnp.array([3.0, 1.0]), 2.0), [1.0, -1.0])


def test_regression_recovers_a_known_line():
  rng = np.random.RandomState(0)
  x = rng.randn(500, 3)
  y = np.stack([0.7 * x[:, 0] + 0.2, -1.5 * x[:, 1] - 0.4 + 0.1 * rng.randn(500), rng.randn(500)], 1)
  fit = effects.regress(x, y)
  np.testing.assert_allclose(fit.slope[:2], [0.7, -1.5], atol=0.02)
  np.testing.assert_allclose(fit.intercept[:2], [0.2, -0.4], atol=0.02)
  assert abs(float(fit.r2[0]) - 1.0) < 1e-5 and 0.98 < float(fit.r2[1]) < 1.0
  assert float(fit.r2[2]) < 0.05                                       # unrelated column


def test_regression_is_undefined_where_x_or_y_does_not_vary():
  fit = effects.regress(np.ones((10, 1)), np.arange(10.0)[:, None])
  assert np.isnan(fit.slope[0]) and np.isnan(fit.r2[0])
  fit = effects.regress(np.arange(10.0)[:, None], np.ones((10, 1)))
  assert float(fit.slope[0]) == 0.0 and float(fit.intercept[0]) == 1.0 and np.isnan(fit.r2[0])


def test_per_source_arrays_and_the_dose_of_the_sweep():
  """Per source [N, K, C] under both sigma readings: their means over sources are the sweep's
  means (each reading's); at dose w the lost DE (clean sigma) is w times the full one, dose 1
  is the replacement itself bit for bit, dose 0 changes nothing."""
  from hydra_jax.sweep import measures
  cfg = tiny_config(num_layers=2)
  params = hj.init_params(cfg, seed=0)
  tokens, lengths = random_tokens(cfg, batch=5, length=6), np.array([6, 5, 6, 4, 6], np.int32)
  sources = hj.draw_sources(5, 3, seed=1)
  full = hj.hydra_sweep(params, cfg, tokens, lengths, sources)
  own = hj.hydra_sweep(params, cfg, tokens, lengths, sources, response_scale="ablated")
  for result, sigma in ((full, "clean"), (own, "ablated")):
    field = lambda part: np.asarray(getattr(full, measures.by_source_name(part, sigma)))
    assert field("lost_de").shape == (5, 3, 4)
    np.testing.assert_allclose(field("lost_de").mean(1), -result.direct_change, atol=1e-6)
    for part in ("compensation_attn", "compensation_mlp", "norm_remainder"):
      np.testing.assert_allclose(field(part).mean(1), getattr(result, part), atol=1e-6)
  half = hj.hydra_sweep(params, cfg, tokens, lengths, sources, dose=0.5)
  np.testing.assert_allclose(half.lost_de_by_source, 0.5 * full.lost_de_by_source, atol=1e-6)
  again = hj.hydra_sweep(params, cfg, tokens, lengths, sources, dose=1.0)
  np.testing.assert_array_equal(again.total_effect, full.total_effect)
  none = hj.hydra_sweep(params, cfg, tokens, lengths, sources, dose=0.0)
  np.testing.assert_allclose(none.total_effect, 0.0, atol=1e-6)
  with pytest.raises(ValueError, match=r"dose must be in \[0, 1\]"):
    hj.hydra_sweep(params, cfg, tokens, lengths, sources, dose=1.5)
