"""hydra_sweep's result: the identities between its fields, the norm remainder, the checks,
input validation, draw_sources and the per-layer regression (~25 s: two sweep programs)."""

import functools

import jax.numpy as jnp
import numpy as np
import pytest

import hydra_jax as hj
from hydra_jax.sweep import effects
from hydra_jax.sweep import checks as checks_lib
from hydra_jax.sweep import engine as sweep
from tests.conftest import TINY_VARIANTS, random_tokens, tiny_config

LENGTHS = np.array([5, 6, 2, 4, 6])


@functools.lru_cache(maxsize=None)
def setup():
  cfg = tiny_config(**TINY_VARIANTS["gpt2"])                          # LayerNorm, learned positions
  params = hj.init_params(cfg, seed=7)
  params["final_norm"] = dict(params["final_norm"], bias=0.5 * jnp.cos(jnp.arange(cfg.d_model)))
  return cfg, params, random_tokens(cfg, batch=5, length=6, seed=3), sweep.draw_sources(5, 2, seed=4)


@functools.lru_cache(maxsize=None)
def result(freeze_final_scale=False):
  cfg, params, tokens, sources = setup()
  return sweep.hydra_sweep(params, cfg, tokens, LENGTHS, sources, freeze_final_scale=freeze_final_scale)


def test_field_shapes():
  cfg, _, _, sources = setup()
  r, (B, K), C = result(), sources.shape, cfg.num_components
  expected = dict(token=(B,), clean_logit=(B,), direct_effect=(B, C), embed_direct_effect=(B,),
                  total_effect=(B, K, C), total_effect_mean=(B, C), direct_change=(B, C),
                  response=(B, C, C), compensation_attn=(B, C), compensation_mlp=(B, C),
                  norm_remainder=(B, C))
  assert {name: getattr(r, name).shape for name in expected} == expected
  assert r.token.dtype == jnp.int32


def test_scored_token_and_clean_logit_come_from_the_clean_run():
  cfg, params, tokens, _ = setup()
  r, rows = result(), np.arange(5)
  logits = hj.forward(params, cfg, tokens).logits[rows, LENGTHS - 1]   # [B, V]
  np.testing.assert_array_equal(r.token, np.argmax(np.asarray(logits), -1))
  np.testing.assert_allclose(r.clean_logit, hj.centre(logits)[rows, r.token], atol=1e-5)


def test_embedding_and_components_add_up_to_the_clean_logit():
  r = result()
  np.testing.assert_allclose(r.embed_direct_effect + r.direct_effect.sum(-1), r.clean_logit, atol=1e-5)


def test_compensation_is_the_downstream_response_split_by_kind():
  cfg = setup()[0]
  r = result()
  downstream, attention = effects.downstream_mask(cfg), effects.is_attention(cfg.num_components)
  response = np.asarray(r.response)
  np.testing.assert_allclose(r.compensation_attn, (response * (downstream & attention)).sum(-1), atol=1e-6)
  np.testing.assert_allclose(r.compensation_mlp, (response * (downstream & ~attention)).sum(-1), atol=1e-6)
  np.testing.assert_allclose(r.direct_change, np.diagonal(response, axis1=1, axis2=2))
  np.testing.assert_allclose(r.total_effect_mean, np.asarray(r.total_effect).mean(1), atol=1e-6)


def test_norm_remainder_is_what_the_final_sigma_carries():
  free, frozen = result(), result(freeze_final_scale=True)
  np.testing.assert_allclose(free.norm_remainder, free.total_effect_mean - free.direct_change
                             - free.compensation_attn - free.compensation_mlp, atol=1e-6)
  scale = float(np.abs(np.asarray(free.direct_effect)).max())
  assert np.abs(np.asarray(free.norm_remainder)).max() > 1e-3 * scale  # the sigma change matters
  np.testing.assert_allclose(frozen.norm_remainder, 0.0, atol=1e-5 * scale)
  np.testing.assert_allclose(frozen.response, free.response)           # components do not see sigma


def test_regression_of_compensation_on_the_lost_direct_effect():
  rng = np.random.RandomState(1)
  lost = rng.randn(200, 4)                                             # [prompts, C]
  noise = 0.05 * rng.randn(200, 4)
  zeros = np.zeros((200, 4))
  fake = sweep.HydraResult(**{name: zeros for name in vars(result())} | dict(
      direct_change=-lost, compensation_attn=0.5 * lost + noise, compensation_mlp=0.2 * lost + 0.1))
  # The fit itself is tested in test_effects.py; here: which x and y each part regresses.
  for part, compensation in (("total", 0.7 * lost + noise + 0.1), ("attn", 0.5 * lost + noise),
                             ("mlp", 0.2 * lost + 0.1)):
    fit, expected = sweep.regression(fake, part=part), effects.regress(lost, compensation)
    for name in ("slope", "intercept", "r2"):
      np.testing.assert_allclose(getattr(fit, name), getattr(expected, name), atol=1e-6)
  with pytest.raises(ValueError, match="part must be one of"):
    sweep.regression(fake, part="heads")


def test_draw_sources_never_picks_the_prompt_itself():
  sources = sweep.draw_sources(20, 19, seed=3)
  assert sources.shape == (20, 19) and sources.dtype == np.int32
  for prompt, row in enumerate(sources):
    assert prompt not in row and len(set(row)) == 19                  # all the others, once
  np.testing.assert_array_equal(sweep.draw_sources(20, 5, seed=3), sweep.draw_sources(20, 5, seed=3))
  for bad in (0, 20, 21):
    with pytest.raises(ValueError, match="num_sources"):
      sweep.draw_sources(20, bad, seed=0)


@pytest.mark.parametrize("change, message", [
    (dict(sources=np.array([[1, 5]] * 5)), r"sources must index the 5 prompts"),
    (dict(sources=np.array([[1, -1]] * 5)), r"sources must index"),
    (dict(sources=np.zeros((5, 0), int)), r"sources must be integers of shape \(5, K\) with K >= 1"),
    (dict(sources=np.zeros((4, 2), int)), r"sources must be integers of shape \(5, K\)"),
    (dict(sources=None), r'sources \[N, K\] are needed for kind="resample"'),
    (dict(kind="zero"), r'sources are only used by kind="resample"'),
    (dict(lengths=np.array([5, 6, 0, 4, 6])), r"lengths must be in \[1, 6\]"),
    (dict(lengths=np.array([5, 7, 2, 4, 6])), r"lengths must be in \[1, 6\]"),
    (dict(lengths=np.array([5, 6, 2])), r"lengths must be integers of shape \(5,\)"),
    (dict(tokens=np.full((5, 6), 61)), r"token ids must be in \[0, 61\)"),
    (dict(tokens=np.zeros((5, 17), int)), r"exceed the model's context of 16"),
    (dict(kind="gaussian", sources=None), r"kind='gaussian': must be one of"),
    (dict(path="hooks"), r"path='hooks': must be one of"),
    (dict(num_scored=6), r"num_scored must be an integer in \[1, 5\]"),
    (dict(batch_size=0), r"batch_size=0: must be a positive integer"),
    (dict(kind="mean", sources=None, mean_activations=np.zeros((6, 5))), r"mean_activations must have shape \(6, 32\)"),
    (dict(mesh="data"), r"mesh must be a jax.sharding.Mesh"),
])
def test_bad_input_raises_before_compiling(change, message, monkeypatch):
  cfg, params, tokens, sources = setup()
  monkeypatch.setattr(sweep, "compiled_batch", lambda *a: pytest.fail("compiled before validating"))
  args = dict(tokens=tokens, lengths=LENGTHS, sources=sources) | change
  with pytest.raises(ValueError, match=message):
    sweep.hydra_sweep(params, cfg, args.pop("tokens"), args.pop("lengths"), args.pop("sources"), **args)


def test_failed_checks_name_the_check_the_component_and_the_size():
  checks = dict(upstream=np.zeros((2, 4)), linear=np.zeros((2, 4)), scale=np.array([2.0, 4.0]))
  checks_lib.raise_if_inconsistent(checks, rtol=1e-4, upstream=True)     # all clean: no error
  checks["upstream"][1, 2] = 0.04
  with pytest.raises(sweep.ConsistencyError, match=r"'upstream' failed .* off by 0.04 = 0.01 .* "
                     r"at prompt 1, ablated component 2 \(layer 1, attention\)"):
    checks_lib.raise_if_inconsistent(checks, rtol=1e-4, upstream=True)
  checks_lib.raise_if_inconsistent(checks, rtol=1e-4, upstream=False)    # skipped when not computed
  checks["linear"][0, 3] = 1.0
  with pytest.raises(sweep.ConsistencyError, match=r"'linear' failed .* component 3 \(layer 1, MLP\)"):
    checks_lib.raise_if_inconsistent(checks, rtol=1e-4, upstream=False)
