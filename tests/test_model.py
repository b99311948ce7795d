"""The transformer: shapes, causality, decode vs forward, the frozen-norm decomposition."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import hydra_jax as hj
from hydra_jax.model import interventions as iv
from tests.conftest import random_tokens, tiny_config


def test_output_shapes(variant):
  _, cfg, params = variant
  out = hj.forward(params, cfg, random_tokens(cfg, batch=2, length=5))
  L, D, H, E, G = cfg.num_layers, cfg.d_model, cfg.num_heads, cfg.head_size, cfg.kv_heads
  assert out.logits.shape == (2, 5, cfg.vocab_size) and out.logits.dtype == jnp.float32
  assert out.embed.shape == (2, 5, D)
  assert out.attn_out.shape == out.mlp_out.shape == (2, L, 5, D)
  assert out.head_out.shape == (2, L, 5, H, E)
  assert out.keys.shape == out.values.shape == (2, L, 5, G, E)
  assert out.final_scale.shape == (2, 5)


def test_causal_earlier_positions_ignore_later_tokens(variant):
  _, cfg, params = variant
  tokens = random_tokens(cfg, batch=2, length=6)
  changed = tokens.copy()
  changed[:, -1] = (changed[:, -1] + 1) % cfg.vocab_size
  a, b = hj.forward(params, cfg, tokens), hj.forward(params, cfg, changed)
  np.testing.assert_allclose(a.logits[:, :-1], b.logits[:, :-1], atol=1e-5)
  assert np.abs(np.asarray(a.logits[:, -1] - b.logits[:, -1])).max() > 1e-3


def test_decode_matches_forward_at_the_final_position(variant):
  _, cfg, params = variant
  tokens = random_tokens(cfg, batch=3, length=7)
  lengths = np.array([7, 4, 1])
  clean = hj.forward(params, cfg, tokens)
  rows = np.arange(3)
  decoded = jax.jit(hj.decode, static_argnames="config")(
      params, cfg, tokens[rows, lengths - 1][:, None], lengths - 1,
      hj.KVCache(clean.keys, clean.values))
  np.testing.assert_allclose(decoded.logits[:, 0], clean.logits[rows, lengths - 1], atol=1e-4)
  np.testing.assert_allclose(decoded.attn_out[:, :, 0], clean.attn_out[rows, :, lengths - 1], atol=1e-5)


def test_right_padding_does_not_change_real_positions(variant):
  _, cfg, params = variant
  tokens = random_tokens(cfg, batch=1, length=5)
  padded = np.concatenate([tokens, np.zeros((1, 3), np.int32)], axis=1)
  np.testing.assert_allclose(hj.forward(params, cfg, padded).logits[:, :5],
                             hj.forward(params, cfg, tokens).logits, atol=1e-5)


@pytest.mark.parametrize("norm", ["rms", "layer"])
def test_frozen_norm_components_sum_to_centred_logits(norm):
  cfg = tiny_config(norm=norm, position="rotary", tie_embeddings=(norm == "layer"))
  params = hj.init_params(cfg, seed=3)
  tokens = random_tokens(cfg, batch=2, length=6)
  clean = hj.forward(params, cfg, tokens)
  frozen = hj.forward(params, cfg, tokens, iv.freeze_final_scale(clean.final_scale))
  np.testing.assert_array_equal(frozen.logits, clean.logits)
  sigma = clean.final_scale                                           # [B, T]
  components = [clean.embed] + [x for l in range(cfg.num_layers)
                                for x in (clean.attn_out[:, l], clean.mlp_out[:, l])]
  total = sum(hj.unembed(params, cfg, c, sigma) for c in components)
  total = total + hj.final_bias_logits(params, cfg)
  scale = float(np.abs(hj.centre(clean.logits)).max())
  assert scale > 0.1
  np.testing.assert_allclose(hj.centre(total), hj.centre(clean.logits), atol=1e-5 * scale + 1e-6)


def test_gqa_equals_multi_head_with_repeated_kv_heads():
  gqa = tiny_config(position="rotary", num_kv_heads=2)
  mha = tiny_config(position="rotary")
  params = hj.init_params(gqa, seed=2)
  expanded = jax.tree_util.tree_map(lambda x: x, params)
  att = dict(expanded["layers/attention"])
  for name in ("k", "v"):   # [L, D, G, E] -> [L, D, H, E], each kv head serving H/G queries
    att[name] = jnp.repeat(att[name], gqa.num_heads // gqa.kv_heads, axis=2)
  expanded["layers/attention"] = att
  tokens = random_tokens(gqa)
  np.testing.assert_allclose(hj.forward(params, gqa, tokens).logits,
                             hj.forward(expanded, mha, tokens).logits, atol=1e-5)


@pytest.mark.parametrize("parallel", [False, True])
def test_parallel_block_mlp_does_not_read_its_own_attention(parallel):
  cfg = tiny_config(parallel_block=parallel)
  params = hj.init_params(cfg, seed=4)
  tokens = random_tokens(cfg, batch=2, length=5)
  clean = hj.forward(params, cfg, tokens)
  ablated = hj.forward(params, cfg, tokens, iv.zero("attn_out", num_layers=3, seq_len=5, layers=1,
                                                     positions="all"))
  same_layer_mlp_moves = not np.allclose(ablated.mlp_out[:, 1], clean.mlp_out[:, 1])
  assert same_layer_mlp_moves == (not parallel)
  assert not np.allclose(ablated.mlp_out[:, 2], clean.mlp_out[:, 2])


def test_gated_mlp_matches_a_numpy_reference():
  cfg = tiny_config(activation="silu", gated_mlp=True, num_layers=1)
  params = hj.init_params(cfg, seed=5)
  tokens = random_tokens(cfg, batch=1, length=4)
  out = hj.forward(params, cfg, tokens)
  mlp = {k: np.asarray(v[0], np.float64) for k, v in params["layers/mlp"].items()}
  h = np.asarray(out.embed + out.attn_out[:, 0], np.float64)
  h = h / np.sqrt((h ** 2).mean(-1, keepdims=True) + cfg.norm_eps) * np.asarray(
      params["layers/mlp_norm"]["scale"][0])
  gate = h @ mlp["w_gate"]
  expected = ((gate / (1 + np.exp(-gate))) * (h @ mlp["w_in"])) @ mlp["w_out"]
  np.testing.assert_allclose(out.mlp_out[:, 0], expected, atol=1e-4)


def test_dropout_only_with_rng():
  cfg = tiny_config(dropout_rate=0.3)
  params = hj.init_params(cfg)
  tokens = random_tokens(cfg)
  a, b = hj.forward(params, cfg, tokens), hj.forward(params, cfg, tokens)
  np.testing.assert_array_equal(a.logits, b.logits)
  train = hj.forward(params, cfg, tokens, rng=jax.random.PRNGKey(0))
  assert not np.allclose(train.logits, a.logits)


def test_bad_tokens_raise_before_compiling():
  cfg = tiny_config()
  params = hj.init_params(cfg)
  with pytest.raises(ValueError, match="exceed the model's context of 16"):
    hj.forward(params, cfg, np.zeros((1, 17), np.int32))
  with pytest.raises(ValueError, match=r"token ids must be in \[0, 61\)"):
    hj.forward(params, cfg, np.full((1, 3), 61, np.int32))
  with pytest.raises(ValueError, match="tokens must be"):
    hj.forward(params, cfg, np.zeros((3,), np.int32))


def test_chinchilla7b_parameter_count_without_allocating():
  """The one test of the 7B count: every tensor of configs/chinchilla7b.py's model counted
  by hand from the architecture (README and the dry run quote this number)."""
  from hydra_jax.job import config as run_config
  from tests.conftest import job_config
  cfg = run_config.model_config_from(job_config("chinchilla7b"))
  shapes = jax.eval_shape(lambda: hj.init_params(cfg))
  assert all(isinstance(x, jax.ShapeDtypeStruct) for x in jax.tree_util.tree_leaves(shapes))
  V, D, L, H, E, F = 32000, 4096, 32, 32, 128, 16384
  per_layer = (4 * D * H * E          # q, k, v, o
               + D * H * E + 2 * H * E  # relative positions: W_R, u, v
               + 2 * D * F              # MLP in, out
               + 2 * D)                 # attention and MLP norm scales
  by_hand = 2 * V * D + L * per_layer + D   # embedding, unembedding, layers, final norm
  assert hj.count_params(shapes) == by_hand == 7_241_994_240
