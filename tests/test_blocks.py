"""The block API: one layer as plain functions, with no Haiku transform, equals the model."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import hydra_jax as hj
from hydra_jax.model import blocks
from tests.conftest import TINY_VARIANTS, random_tokens, tiny_config


@pytest.mark.parametrize("variant", sorted(TINY_VARIANTS))
def test_layers_run_one_by_one_reproduce_the_forward_pass(variant):
  cfg = tiny_config(**TINY_VARIANTS[variant])
  params = hj.init_params(cfg, seed=4)
  tokens = random_tokens(cfg, batch=2, length=5)
  out = hj.forward(params, cfg, tokens)
  positions = np.broadcast_to(np.arange(5), (2, 5))
  k_pos, mask = blocks.causal_context(positions, None)
  x = out.embed                                                       # [B, T, D]
  for layer in range(cfg.num_layers):
    x, (a, m, z, k, v) = blocks.block(blocks.layer_params(params, layer), cfg, x, positions, None,
                                      k_pos, mask)
    np.testing.assert_allclose(a, out.attn_out[:, layer], atol=1e-5, err_msg=f"a^{layer}")
    np.testing.assert_allclose(m, out.mlp_out[:, layer], atol=1e-5, err_msg=f"m^{layer}")
    np.testing.assert_allclose(k, out.keys[:, layer], atol=1e-5, err_msg=f"k^{layer}")
  np.testing.assert_allclose(x, out.resid_final, atol=1e-5)
  np.testing.assert_allclose(blocks.norm_sigma(cfg, x), out.final_scale, rtol=1e-6)


def test_one_position_against_a_cache_equals_the_full_pass():
  cfg = tiny_config(**TINY_VARIANTS["chinchilla"])
  params = hj.init_params(cfg, seed=5)
  tokens = random_tokens(cfg, batch=2, length=6)
  out = hj.forward(params, cfg, tokens)
  last = np.array([5, 3])                                              # the decoded positions
  rows = np.arange(2)
  positions = last[:, None]                                            # [B, 1]
  k_pos, mask = blocks.causal_context(positions, 6)
  x = out.embed[rows, last][:, None]                                   # [B, 1, D]
  for layer in range(cfg.num_layers):
    cache = (out.keys[:, layer], out.values[:, layer])                 # the clean run's, all 6
    x, (a, m, *_) = blocks.block(blocks.layer_params(params, layer), cfg, x, positions, cache,
                                 k_pos, mask)
    np.testing.assert_allclose(a[:, 0], out.attn_out[rows, layer, last], atol=1e-5)
    np.testing.assert_allclose(m[:, 0], out.mlp_out[rows, layer, last], atol=1e-5)


def test_the_centred_logit_direction_reads_the_centred_logit():
  cfg = tiny_config(norm="layer", position="learned", norm_scale_offset=1.0)
  params = hj.init_params(cfg, seed=6)
  out = hj.forward(params, cfg, random_tokens(cfg, batch=2, length=4))
  token = np.array([3, 17])
  direction, bias = hj.model.transformer.logit_direction(params, cfg, token)
  resid, sigma = out.resid_final[:, -1], out.final_scale[:, -1]        # [B, D], [B]
  read = (np.asarray(resid) / np.asarray(sigma)[:, None] * np.asarray(direction)).sum(-1) + bias
  np.testing.assert_allclose(read, hj.centre(out.logits[:, -1])[np.arange(2), token], atol=1e-5)


def test_gelu_value_and_slope_are_jax_exact_gelu():
  x = jnp.linspace(-8.0, 8.0, 4001)
  exact = lambda y: jax.nn.gelu(y, approximate=False)
  np.testing.assert_array_equal(blocks.gelu(x), exact(x))
  slope = jax.vmap(jax.grad(blocks.gelu))(x)
  np.testing.assert_allclose(slope, jax.vmap(jax.grad(exact))(x), atol=5e-7)
  assert float(slope[0]) == pytest.approx(0.0, abs=1e-12) and float(slope[-1]) == 1.0
