"""The intervention pytree: identity, locality, resample, vmap sweeps, composition, save/load."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import hydra_jax as hj
from hydra_jax.model import interventions as iv
from tests.conftest import random_tokens, tiny_config

CFG = tiny_config(position="relative")
PARAMS = hj.init_params(CFG, seed=7)
TOKENS = random_tokens(CFG, batch=3, length=6, seed=1)
LENGTHS = np.array([6, 6, 6])
WHERE = dict(num_layers=CFG.num_layers, seq_len=6)


def test_none_and_all_zero_weights_give_identical_logits():
  clean = hj.forward(PARAMS, CFG, TOKENS)
  noop = iv.compose(iv.zero("attn_out", strength=0.0, lengths=LENGTHS, **WHERE),
                    iv.resample("mlp_out", clean.mlp_out[::-1], LENGTHS, lengths=LENGTHS,
                                strength=0.0, **WHERE))
  np.testing.assert_array_equal(hj.forward(PARAMS, CFG, TOKENS, noop).logits, clean.logits)


@pytest.mark.parametrize("layer", [0, 1, 2])
def test_final_position_ablation_leaves_earlier_positions_and_lower_layers_untouched(layer):
  clean = hj.forward(PARAMS, CFG, TOKENS)
  out = hj.forward(PARAMS, CFG, TOKENS, iv.zero("attn_out", layers=layer, lengths=LENGTHS, **WHERE))
  for field in ("attn_out", "mlp_out", "head_out"):
    a, b = np.asarray(getattr(clean, field)), np.asarray(getattr(out, field))
    np.testing.assert_array_equal(a[:, :, :-1], b[:, :, :-1])        # every earlier position
    np.testing.assert_array_equal(a[:, :layer], b[:, :layer])        # every layer below
  np.testing.assert_array_equal(out.logits[:, :-1], clean.logits[:, :-1])
  assert np.all(np.asarray(out.attn_out[:, layer, -1]) == 0)
  if layer < CFG.num_layers - 1:
    assert not np.allclose(out.attn_out[:, layer + 1, -1], clean.attn_out[:, layer + 1, -1])


def test_resampling_a_prompts_own_activations_is_a_no_op():
  lengths = np.array([6, 4, 5])
  clean = hj.forward(PARAMS, CFG, TOKENS)
  for site in ("attn_out", "mlp_out"):
    own = iv.resample(site, getattr(clean, site), lengths, lengths=lengths, **WHERE)
    np.testing.assert_allclose(hj.forward(PARAMS, CFG, TOKENS, own).logits, clean.logits, atol=1e-5)
  other = iv.resample("attn_out", clean.attn_out[::-1], lengths[::-1], lengths=lengths, **WHERE)
  out = hj.forward(PARAMS, CFG, TOKENS, other)
  rows = np.arange(3)
  # prompt 0 (length 6) takes prompt 2's final-position (index 4) attention output at layer 0..2
  np.testing.assert_allclose(out.attn_out[0, 0, 5], clean.attn_out[2, 0, 4], atol=1e-6)
  assert not np.allclose(out.logits[rows, lengths - 1], clean.logits[rows, lengths - 1])


def test_vmap_over_single_layer_interventions_equals_a_loop():
  clean = hj.forward(PARAMS, CFG, TOKENS)
  sources = np.array([2, 0, 1])
  singles = [iv.resample(site, getattr(clean, site)[sources], LENGTHS[sources], layers=l,
                         lengths=LENGTHS, **WHERE)
             for l in range(CFG.num_layers) for site in ("attn_out", "mlp_out")]
  looped = np.stack([hj.forward(PARAMS, CFG, TOKENS, s).logits for s in singles])
  # One pytree: weights stacked along a sweep axis, values shared (not copied).
  weights = lambda site: jnp.stack([
      s.sites()[site].weight if site in s.sites() else jnp.zeros_like(singles[0].attn_out.weight)
      for s in singles])
  stacked = hj.Intervention(
      attn_out=hj.Site(weights("attn_out"), singles[0].attn_out.value),
      mlp_out=hj.Site(weights("mlp_out"), singles[1].mlp_out.value))
  assert stacked.attn_out.value.shape == (3, CFG.num_layers, 1, CFG.d_model)
  run = jax.vmap(lambda i: hj.forward(PARAMS, CFG, TOKENS, i).logits, in_axes=(stacked.weight_axes(),))
  np.testing.assert_allclose(run(stacked), looped, atol=1e-5)


def test_compose_equals_applying_one_after_the_other():
  rng = np.random.RandomState(0)
  x = rng.randn(3, 6, 32).astype(np.float32)
  first = hj.Site(jnp.asarray(rng.rand(3, 6).astype(np.float32)), jnp.asarray(rng.randn(3, 6, 32), jnp.float32))
  second = hj.Site(jnp.asarray((rng.rand(3, 6) > 0.5).astype(np.float32)), jnp.asarray(rng.randn(3, 6, 32), jnp.float32))
  apply = lambda x, s: x + np.asarray(s.weight)[..., None] * (np.asarray(s.value) - x)
  both = iv.compose(hj.Intervention(mlp_out=first), hj.Intervention(mlp_out=second)).mlp_out
  np.testing.assert_allclose(apply(x, both), apply(apply(x, first), second), atol=1e-5)


def test_composed_model_interventions_match_nested_zeroing():
  a = iv.zero("attn_out", layers=0, lengths=LENGTHS, **WHERE)
  b = iv.zero("attn_out", layers=2, lengths=LENGTHS, **WHERE)
  both = iv.zero("attn_out", layers=[0, 2], lengths=LENGTHS, **WHERE)
  np.testing.assert_array_equal(hj.forward(PARAMS, CFG, TOKENS, iv.compose(a, b)).logits,
                                hj.forward(PARAMS, CFG, TOKENS, both).logits)


def test_head_site_zeroing_every_head_equals_zeroing_attn_out():
  heads = iv.zero("head_out", layers=1, positions="all", **WHERE)
  whole = iv.zero("attn_out", layers=1, positions="all", **WHERE)
  np.testing.assert_allclose(hj.forward(PARAMS, CFG, TOKENS, heads).logits,
                             hj.forward(PARAMS, CFG, TOKENS, whole).logits, atol=1e-6)
  one_head = hj.Intervention(head_out=hj.Site(
      jnp.zeros((CFG.num_layers, 6, CFG.num_heads)).at[1, :, 2].set(1.0), jnp.zeros(())))
  out = hj.forward(PARAMS, CFG, TOKENS, one_head)
  assert np.all(np.asarray(out.head_out[:, 1, :, 2]) == 0)
  assert np.all(np.asarray(out.head_out[:, 1, :, :2]) != 0)


def test_residual_site_replaces_the_stream_entering_a_layer():
  clean = hj.forward(PARAMS, CFG, TOKENS)
  resid_1 = clean.embed + clean.attn_out[:, 0] + clean.mlp_out[:, 0]            # z^1 [B, T, D]
  patched = iv.patch("resid_pre", jnp.stack([resid_1] * CFG.num_layers, 1), layers=1,
                     positions="all", **WHERE)
  np.testing.assert_allclose(hj.forward(PARAMS, CFG, TOKENS, patched).logits, clean.logits, atol=1e-5)
  zeroed = hj.forward(PARAMS, CFG, TOKENS, iv.zero("resid_pre", layers=0, positions="all", **WHERE))
  assert np.allclose(zeroed.attn_out[0, 0], zeroed.attn_out[1, 0], atol=1e-6)  # input no longer seen


def test_mean_and_noise_constructors():
  clean = hj.forward(PARAMS, CFG, TOKENS)
  mean_acts = clean.mlp_out[:, :, -1].mean(0)                                    # [L, D]
  out = hj.forward(PARAMS, CFG, TOKENS, iv.mean("mlp_out", mean_acts, lengths=LENGTHS, **WHERE))
  np.testing.assert_allclose(out.mlp_out[:, :, -1], np.broadcast_to(mean_acts, (3,) + mean_acts.shape),
                             atol=1e-6)
  key = jax.random.PRNGKey(0)
  noisy = iv.noise("attn_out", clean.attn_out, key, 0.5, lengths=LENGTHS, **WHERE)
  delta = np.asarray(noisy.attn_out.value - clean.attn_out)
  assert 0.4 < delta.std() < 0.6
  silent = iv.noise("attn_out", clean.attn_out, key, 0.0, lengths=LENGTHS, **WHERE)
  np.testing.assert_allclose(hj.forward(PARAMS, CFG, TOKENS, silent).logits, clean.logits, atol=1e-5)


def test_save_and_load_round_trip(tmp_path):
  clean = hj.forward(PARAMS, CFG, TOKENS)
  original = iv.compose(
      iv.resample("attn_out", clean.attn_out[::-1], LENGTHS, layers=[0, 2], lengths=LENGTHS, **WHERE),
      iv.zero("head_out", layers=1, positions="all", **WHERE)).with_final_scale(clean.final_scale)
  iv.save(str(tmp_path / "ablation"), original)
  loaded = iv.load(str(tmp_path / "ablation"))
  assert jax.tree_util.tree_structure(loaded) == jax.tree_util.tree_structure(original)
  for a, b in zip(jax.tree_util.tree_leaves(original), jax.tree_util.tree_leaves(loaded)):
    np.testing.assert_array_equal(a, b)
  np.testing.assert_array_equal(hj.forward(PARAMS, CFG, TOKENS, loaded).logits,
                                hj.forward(PARAMS, CFG, TOKENS, original).logits)


def test_bad_where_arguments():
  with pytest.raises(ValueError, match="layer 3 is outside 0..2"):
    iv.zero("attn_out", layers=3, lengths=LENGTHS, **WHERE)
  with pytest.raises(ValueError, match="needs `lengths`"):
    iv.zero("attn_out", **WHERE)
  with pytest.raises(ValueError, match="unknown site 'attn'"):
    iv.zero("attn", lengths=LENGTHS, **WHERE)
  with pytest.raises(ValueError, match="position mask has 5 positions, tokens have 6"):
    iv.zero("attn_out", positions=np.ones(5), **WHERE)
