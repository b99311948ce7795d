"""Gemma 3 as data: against transformers' Gemma3ForCausalLM, from safetensors and from GGUF.

The Hugging Face model (tests/hf_fixtures.py, "gemma3") has 3 layers, sliding / global /
sliding with a window of 4 keys, rotary bases 100 and 5000, query_pre_attn_scalar 48 (not
the head size 32), qk-norm and the post-sublayer norms; prompts of 12 tokens, longer than
the window. Its logits and every layer's attention and MLP outputs (hooks on the post-norms:
what each sublayer adds to the residual stream, our attn_out / mlp_out) agree to 1e-4;
zero-ablating an attention output at the final position changes the scored token's
centred logit as zeroing the hooked post-norm output there does; the incremental sweep
(decoding the final position against the clean cache, windowed layers included), with and
without layer skipping, gives the full re-run's numbers to float32 rounding.

GGUF (tests/gguf_fixtures.py, "gemma3": 6 layers so that llama.cpp's fixed pattern makes
the last global, width and head size 256): written in F32 and Q4_K and loaded with
`load_gguf`, against transformers reading the same file; the F32 file is also the original
model. Unsupported configurations are refused in one line.

Runtime: about 60 s on 2 shared CPU cores.
"""

import json

import gguf
import numpy as np
import pytest

from hydra_jax.checkpoints import CheckpointError, load_gguf, load_hf
from hydra_jax.model.config import ModelConfig
from hydra_jax.model.transformer import forward
from tests import gguf_fixtures, hf_fixtures

TOL = 1e-4
EPS32 = float(np.finfo(np.float32).eps)
LENGTHS = np.array([12, 9])


@pytest.fixture(scope="module")
def gemma3(tmp_path_factory):
  directory = tmp_path_factory.mktemp("gemma3")
  reference = hf_fixtures.build("gemma3", directory, seed=1)
  config, params = load_hf(directory)
  tokens = np.random.default_rng(0).integers(0, hf_fixtures.VOCAB, (2, 12)).astype(np.int32)
  return directory, reference, config, params, tokens


def test_config_table(gemma3):
  _, _, config, _, _ = gemma3
  assert config.layer_windows == (4, 0, 4) and config.layer_rope_bases == (100.0, 5000.0, 100.0)
  assert config.qk_norm and config.post_norms and config.norm_scale_offset == 1.0
  assert config.query_scale == 48 ** -0.5 and config.head_size == 32 and config.kv_heads == 2
  assert config.embed_scale == 8.0 and config.tie_embeddings and config.activation == "gelu_tanh"


def test_logits_and_layer_outputs_match(gemma3):
  _, reference, config, params, tokens = gemma3
  logits, attn, mlp = hf_fixtures.capture(reference, "gemma3", tokens)
  assert logits.std() > 0.5 and attn.std() > 0.05 and mlp.std() > 0.05   # not a trivial match
  ours = forward(params, config, tokens)
  for got, want in zip((ours.logits, ours.attn_out, ours.mlp_out), (logits, attn, mlp)):
    np.testing.assert_allclose(np.asarray(got), want, atol=TOL, rtol=0)
  unwindowed = ModelConfig.from_dict(config.to_dict() | dict(layer_windows=()))
  assert np.abs(np.asarray(forward(params, unwindowed, tokens).logits) - logits).max() > 0.01


def test_zero_ablation_total_effect_matches_hooked_reference(gemma3):
  from hydra_jax.sweep import engine as sweep
  _, reference, config, params, tokens = gemma3
  centred = lambda logits: logits - logits.mean(-1, keepdims=True)
  expected = np.zeros((len(LENGTHS), config.num_layers))
  for b, length in enumerate(LENGTHS):
    prompt = tokens[b:b + 1, :length]
    clean = centred(hf_fixtures.capture(reference, "gemma3", prompt)[0][0, -1])
    for layer in range(config.num_layers):
      ablated = hf_fixtures.capture(reference, "gemma3", prompt, zero_attn=(layer, length - 1))[0]
      expected[b, layer] = centred(ablated[0, -1])[clean.argmax()] - clean[clean.argmax()]
  result = sweep.hydra_sweep(params, config, tokens, LENGTHS, None, kind="zero")
  assert np.abs(expected).max() > 0.1                                  # the ablation matters
  np.testing.assert_allclose(np.asarray(result.total_effect_mean)[:, 0::2], expected, atol=TOL,
                             rtol=0)


def test_incremental_sweeps_equal_the_full_re_run(gemma3):
  """Decoding against the clean cache honours each layer's window (prompts of 12 and 9
  tokens, window 4). Bound as tests/test_layer_skip.rounding_bound: (2L + 1) float32 ulps
  of the largest logit in play."""
  from hydra_jax.sweep import engine as sweep
  _, _, config, params, tokens = gemma3
  sources = sweep.draw_sources(2, 1, seed=1)
  run = lambda **kw: sweep.hydra_sweep(params, config, tokens, LENGTHS, sources, check=True, **kw)
  full = run(path="full")
  bound = EPS32 * (2 * config.num_layers + 1) * (
      float(np.abs(np.asarray(full.clean_logit)).max())
      + float(np.abs(np.asarray(full.total_effect)).max()))
  for skip in (False, True):
    incremental = run(path="incremental", skip_unchanged_layers=skip)
    for field in full.arrays():
      np.testing.assert_allclose(getattr(incremental, field), getattr(full, field), atol=bound,
                                 rtol=0, err_msg=f"{field} (skip_unchanged_layers={skip})")


# GGUF -----------------------------------------------------------------------------------------

Q = gguf.GGMLQuantizationType


@pytest.mark.parametrize("qtype", [Q.F32, Q.Q4_K], ids=lambda q: q.name)
def test_gguf_matches_transformers_reading_the_same_file(tmp_path, qtype):
  original = gguf_fixtures.build("gemma3", seed=1)
  path = tmp_path / f"gemma3_{qtype.name}.gguf"
  gguf_fixtures.write(original, path, "gemma3", qtype)
  reference = gguf_fixtures.reference(tmp_path, path.name)
  tokens = np.random.default_rng(2).integers(0, gguf_fixtures.VOCAB, (1, 11)).astype(np.int32)
  expected = hf_fixtures.capture(reference, "gemma3", tokens)         # logits, attn_out, mlp_out
  assert expected[0].std() > 0.5 and expected[2].std() > 0.05
  config, params = load_gguf(path)
  assert config.layer_windows == (4,) * 5 + (0,) and config.query_scale == 256 ** -0.5
  assert config.layer_rope_bases == (10000.0,) * 5 + (300000.0,)
  ours = forward(params, config, tokens)
  for got, want in zip((ours.logits, ours.attn_out, ours.mlp_out), expected):
    bound = max(TOL, 256 * EPS32 * float(np.abs(want).max()))       # as tests/test_gguf.py
    np.testing.assert_allclose(np.asarray(got), want, atol=bound, rtol=0)
  if qtype == Q.F32:                 # the file holds the original model (norms: w + 1 - 1)
    np.testing.assert_allclose(hf_fixtures.capture(original, "gemma3", tokens)[0], expected[0],
                               atol=TOL, rtol=0)


# Refused ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("change,needle", [
    (dict(final_logit_softcapping=30.0), "final logit softcapping"),
    (dict(attn_logit_softcapping=50.0), "attention logit softcapping"),
    (dict(use_bidirectional_attention=True), "bidirectional attention"),
    (dict(rope_parameters={"full_attention": {"rope_type": "linear", "factor": 8.0},
                           "sliding_attention": {"rope_type": "default"}}), "rope_type ['linear']"),
    (dict(rope_scaling={"rope_type": "linear", "factor": 8.0}), "rope_type ['linear']"),
    (dict(layer_types=["chunked_attention"] * 3), "layer_types ['chunked_attention']"),
], ids=["final-softcap", "attn-softcap", "bidirectional", "rope-scaling", "old-rope-scaling",
        "layer-type"])
def test_unsupported_configs_are_refused_in_one_line(gemma3, tmp_path, change, needle):
  directory = gemma3[0]
  hf = json.loads((directory / "config.json").read_text()) | change
  (tmp_path / "config.json").write_text(json.dumps(hf))
  (tmp_path / "model.safetensors").write_bytes((directory / "model.safetensors").read_bytes())
  with pytest.raises(CheckpointError) as error:
    load_hf(tmp_path)
  assert "\n" not in str(error.value) and needle in str(error.value) and "not supported" in str(
      error.value)


def test_older_config_files_give_the_same_config(gemma3, tmp_path):
  """transformers 4 wrote rope_theta / rope_local_base_freq and the pattern as an int."""
  directory, _, config, _, _ = gemma3
  hf = json.loads((directory / "config.json").read_text())
  for key in ("rope_parameters", "layer_types"):
    hf.pop(key)
  hf.update(rope_theta=5000.0, rope_local_base_freq=100.0, sliding_window_pattern=2,
            num_hidden_layers=3)
  (tmp_path / "config.json").write_text(json.dumps(hf))
  from hydra_jax.checkpoints import load_hf_config
  assert load_hf_config(tmp_path) == config


@pytest.mark.parametrize("change,message", [
    (dict(layer_windows=(4, 0)), "must have num_layers=3 entries"),
    (dict(layer_windows=(4, -1, 4)), "must be >= 0"),
    (dict(layer_windows=(4, 0.5, 4)), "must hold whole numbers"),
    (dict(layer_rope_bases=(1.0, 0.0, 1.0)), "must be positive"),
    (dict(layer_rope_bases=(1.0, 2.0, 3.0), position="learned"), "needs position='rotary'"),
])
def test_per_layer_fields_are_checked(change, message):
  base = dict(vocab_size=10, d_model=8, num_layers=3, num_heads=2, position="rotary")
  with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
    ModelConfig(**(base | change))
