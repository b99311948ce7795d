"""Full and incremental ablated runs agree, match a hand-made intervention, and leave upstream
components exactly unchanged (~35 s: two sweep programs for each of three architectures)."""

import functools

import numpy as np
import pytest

import hydra_jax as hj
from hydra_jax.sweep import effects
from hydra_jax.sweep import engine as sweep
from hydra_jax.model import interventions as iv
from tests.conftest import TINY_VARIANTS, random_tokens, tiny_config

# Relative, learned and (partial) rotary positions; the last is a parallel block with LayerNorm.
VARIANTS = ["chinchilla", "gpt2", "pythia"]
LENGTHS = np.array([6, 4, 2, 5])
SOURCES = np.array([[1, 2], [0, 3], [3, 1], [2, 0]], np.int32)


@functools.lru_cache(maxsize=None)
def setup(variant):
  cfg = tiny_config(**TINY_VARIANTS[variant])
  return cfg, hj.init_params(cfg, seed=3), random_tokens(cfg, batch=4, length=6, seed=1)


@functools.lru_cache(maxsize=None)
def run(variant, path):
  cfg, params, tokens = setup(variant)
  return sweep.hydra_sweep(params, cfg, tokens, LENGTHS, SOURCES, path=path,
                           skip_unchanged_layers=False, check=True)


@pytest.mark.parametrize("variant", VARIANTS)
def test_incremental_equals_full(variant):
  full, incremental = run(variant, "full"), run(variant, "incremental")
  scale = float(np.abs(np.asarray(full.direct_effect)).max())
  assert scale > 0.1
  for field in full.arrays():
    np.testing.assert_allclose(getattr(incremental, field), getattr(full, field),
                               atol=2e-6 * scale, rtol=0, err_msg=field)
  assert np.abs(np.asarray(full.total_effect)).max() > 1e-2 * scale    # the ablations do something


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("path", ["full", "incremental"])
def test_components_the_ablation_cannot_reach_change_by_exactly_zero(variant, path):
  result = run(variant, path)
  cfg = setup(variant)[0]
  response = np.asarray(result.response)                               # [B, C, C]
  assert np.all(response[:, effects.unaffected_mask(cfg)] == 0.0)
  assert np.abs(response[:, effects.downstream_mask(cfg)]).max() > 1e-4


@pytest.mark.parametrize("path", ["full", "incremental"])
def test_a_hand_made_intervention_gives_the_same_total_effect_and_response(path):
  cfg, params, tokens = setup("chinchilla")
  result = run("chinchilla", path)
  prompt, component, layer = 1, 3, 1                                   # the MLP of layer 1
  last = LENGTHS[prompt] - 1
  clean = hj.forward(params, cfg, tokens)
  token = int(result.token[prompt])
  sigma = clean.final_scale[prompt, last]
  direction, _ = effects.logit_direction(params, cfg, np.array([token]))
  clean_logit = hj.centre(clean.logits[prompt, last])[token]
  clean_components = effects.interleave_components(clean.attn_out[prompt, :, last], clean.mlp_out[prompt, :, last])
  responses = []
  for k, source in enumerate(SOURCES[prompt]):
    value = clean.mlp_out[source, :, LENGTHS[source] - 1][:, None]     # [L, 1, D]
    ablation = iv.patch("mlp_out", value, num_layers=cfg.num_layers, seq_len=tokens.shape[1],
                        layers=layer, positions=np.eye(tokens.shape[1])[last])
    out = hj.forward(params, cfg, tokens[prompt:prompt + 1], ablation)
    np.testing.assert_allclose(result.total_effect[prompt, k, component],
                               hj.centre(out.logits[0, last])[token] - clean_logit, atol=1e-5)
    components = effects.interleave_components(out.attn_out[0, :, last], out.mlp_out[0, :, last])
    responses.append(effects.direct_effect(components - clean_components, sigma, direction[0]))
  np.testing.assert_allclose(result.response[prompt, component], np.mean(responses, 0), atol=1e-5)
  np.testing.assert_allclose(result.response[prompt, component, component],
                             result.direct_change[prompt, component])
