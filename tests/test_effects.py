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
