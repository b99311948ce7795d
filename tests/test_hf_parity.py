"""load_hf against the reference: tiny random transformers models of all six architectures.

For each architecture: the ModelConfig mapping (the table's facts), logits of prompts of
different lengths (right-padded in one batch; each compared with the reference run on
the prompt alone) and every layer's attention and MLP outputs (reference captured with
forward hooks) agree to 1e-4. For Llama and GPT-2, zero-ablating one attention layer's
output at the final position changes the scored token's centred logit exactly as
zeroing the reference module's output there with a hook does.

Runtime: about 60 s on 2 shared CPU cores (one forward compile per architecture, plus
the sweep for the ablation tests).
"""

import numpy as np
import pytest

from hydra_jax.checkpoints import load_hf
from hydra_jax.model.transformer import forward
from tests import hf_fixtures

TOL = 1e-4
LENGTHS = np.array([12, 7, 3])

# Facts each architecture's table must produce for the fixture configs.
EXPECTED_FIELDS = {
    "llama": dict(num_kv_heads=2, head_dim=24, rope_base=500.0, gated_mlp=True, activation="silu",
                  qkv_bias=True, attn_out_bias=True, tie_embeddings=False, norm="rms"),
    "mistral": dict(num_kv_heads=1, max_seq_len=16, qkv_bias=False, gated_mlp=True),
    "qwen2": dict(qkv_bias=True, attn_out_bias=False, tie_embeddings=True, max_seq_len=64),
    "gemma": dict(embed_scale=8.0, norm_scale_offset=1.0, activation="gelu_tanh", head_dim=16,
                  tie_embeddings=True, gated_mlp=True),
    "gpt2": dict(position="learned", norm="layer", activation="gelu_tanh", max_seq_len=32,
                 tie_embeddings=True, qkv_bias=True, mlp_bias=True, query_scale=None),
    "gpt_neox": dict(parallel_block=True, rotary_fraction=0.5, rope_base=1000.0, norm="layer",
                     activation="gelu", tie_embeddings=False, qkv_bias=True, mlp_bias=True),
}


def _prompts(seed=0):
  tokens = np.random.default_rng(seed).integers(0, hf_fixtures.VOCAB, (len(LENGTHS), LENGTHS.max()))
  padded = np.where(np.arange(LENGTHS.max()) < LENGTHS[:, None], tokens, 0)
  return padded.astype(np.int32)


@pytest.fixture(scope="module", params=sorted(hf_fixtures.CONFIGS))
def loaded(request, tmp_path_factory):
  arch = request.param
  directory = tmp_path_factory.mktemp(arch)
  reference = hf_fixtures.build(arch, directory, seed=1)
  config, params = load_hf(directory)
  return arch, reference, config, params


def test_config_table(loaded):
  arch, _, config, _ = loaded
  assert config.num_layers == hf_fixtures.LAYERS and config.d_model == hf_fixtures.D_MODEL
  assert config.vocab_size == hf_fixtures.VOCAB and config.dtype == "float32"
  for field, value in EXPECTED_FIELDS[arch].items():
    assert getattr(config, field) == value, field


def test_logits_and_layer_outputs_match(loaded):
  arch, reference, config, params = loaded
  tokens = _prompts()
  ours = forward(params, config, tokens)
  for b, length in enumerate(LENGTHS):
    logits, attn, mlp = hf_fixtures.capture(reference, arch, tokens[b:b + 1, :length])
    assert logits.std() > 0.5 and attn.std() > 0.05 and mlp.std() > 0.05   # not a trivial match
    np.testing.assert_allclose(np.asarray(ours.logits)[b, :length], logits[0], atol=TOL, rtol=0)
    np.testing.assert_allclose(np.asarray(ours.attn_out)[b, :, :length], attn[0], atol=TOL, rtol=0)
    np.testing.assert_allclose(np.asarray(ours.mlp_out)[b, :, :length], mlp[0], atol=TOL, rtol=0)


def _reference_total_effects(reference, arch, tokens, lengths, num_layers):
  """[B, L]: change of the clean argmax's centred logit when attention layer l is zeroed."""
  centred = lambda logits: logits - logits.mean(-1, keepdims=True)
  effects = np.zeros((len(lengths), num_layers))
  for b, length in enumerate(lengths):
    prompt = tokens[b:b + 1, :length]
    clean = centred(hf_fixtures.capture(reference, arch, prompt)[0][0, -1])
    token = clean.argmax()
    for layer in range(num_layers):
      ablated = hf_fixtures.capture(reference, arch, prompt, zero_attn=(layer, length - 1))[0]
      effects[b, layer] = centred(ablated[0, -1])[token] - clean[token]
  return effects


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_zero_ablation_total_effect_matches_hooked_reference(arch, tmp_path):
  from hydra_jax.sweep import engine as sweep
  reference = hf_fixtures.build(arch, tmp_path, seed=2)
  config, params = load_hf(tmp_path)
  tokens = _prompts(seed=3)
  expected = _reference_total_effects(reference, arch, tokens, LENGTHS, config.num_layers)
  result = sweep.hydra_sweep(params, config, tokens, LENGTHS, None, kind="zero")
  total = np.asarray(result.total_effect_mean)                         # [B, 2L]
  assert np.abs(expected).max() > 0.1                                  # the ablation matters
  np.testing.assert_allclose(total[:, 0::2], expected, atol=TOL, rtol=0)
