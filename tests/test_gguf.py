"""load_gguf against transformers reading the same GGUF file, and GGUF files that must be refused.

Each case writes a tiny random Llama-family model to GGUF with the `gguf` package's
writer (tests/gguf_fixtures.py: llama.cpp's names, row permutation and ggml order) in
one ggml type, then loads it twice: with `load_gguf`, and with transformers'
`from_pretrained(dir, gguf_file=...)`, the reference. Logits and every layer's attention
and MLP outputs agree to 1e-4 (or to 256 float32 ulps of the largest compared value,
when that is larger: two layers of sums over up to 256 features). The variants cover
llama (GQA, untied, F32 and F16), mistral as llama.cpp converts it (Q4_0), a
SmolLM2-shaped tied model (Q4_1), qwen2 (q/k/v biases, no permutation; Q8_0) and the
K-quants Q4_K and Q6_K on a width-256 llama.

Bad files: each is refused with one CheckpointError line naming the file and the problem.

Runtime: about 30 s on 2 CPU cores.
"""

import gguf
import numpy as np
import pytest

from hydra_jax.checkpoints import CheckpointError, load_gguf, load_gguf_config
from hydra_jax.model.transformer import forward
from tests import gguf_fixtures, hf_fixtures

Q = gguf.GGMLQuantizationType
TOL = 1e-4
CASES = [("llama", Q.F32), ("llama", Q.F16), ("mistral", Q.Q4_0), ("smollm2", Q.Q4_1),
         ("qwen2", Q.Q8_0), ("kquant", Q.Q4_K), ("kquant", Q.Q6_K)]


def _tolerance(reference: np.ndarray) -> float:
  return max(TOL, 256 * np.finfo(np.float32).eps * float(np.abs(reference).max()))


def _written(tmp_path, variant, qtype, **kwargs):
  model = gguf_fixtures.build(variant, seed=1)
  path = tmp_path / f"{variant}_{qtype.name}.gguf"
  gguf_fixtures.write(model, path, variant, qtype, **kwargs)
  return model, path


@pytest.mark.parametrize("variant,qtype", CASES, ids=[f"{v}-{q.name}" for v, q in CASES])
def test_logits_and_layer_outputs_match_transformers_reading_the_same_file(tmp_path, variant, qtype):
  original, path = _written(tmp_path, variant, qtype)
  reference = gguf_fixtures.reference(tmp_path, path.name)
  arch = "qwen2" if variant == "qwen2" else "llama"          # hf_fixtures' module paths
  tokens = np.random.default_rng(2).integers(0, gguf_fixtures.VOCAB, (1, 11)).astype(np.int32)
  expected = hf_fixtures.capture(reference, arch, tokens)    # logits, attn_out, mlp_out
  assert expected[0].std() > 0.5 and expected[2].std() > 0.05   # not a trivial match
  config, params = load_gguf(path)
  ours = forward(params, config, tokens)
  for got, want in zip((ours.logits, ours.attn_out, ours.mlp_out), expected):
    np.testing.assert_allclose(np.asarray(got), want, atol=_tolerance(want), rtol=0)
  if qtype == Q.F32:                    # the file holds the original model exactly
    np.testing.assert_allclose(hf_fixtures.capture(original, arch, tokens)[0], expected[0],
                               atol=TOL, rtol=0)


def test_config_comes_from_the_metadata(tmp_path):
  original, path = _written(tmp_path, "smollm2", Q.F32)
  config = load_gguf_config(path)
  assert config == load_gguf(path)[0]
  assert (config.num_layers, config.d_model, config.num_heads, config.kv_heads) == (2, 64, 4, 2)
  assert (config.mlp_width, config.vocab_size, config.rope_base) == (160, 100, 100000.0)
  assert config.tie_embeddings and config.gated_mlp and config.norm == "rms"
  assert config.dtype == "float32" and load_gguf_config(path, dtype="bfloat16").dtype == "bfloat16"
  _, qwen = _written(tmp_path, "qwen2", Q.F32)
  assert load_gguf_config(qwen).qkv_bias and not load_gguf_config(qwen).tie_embeddings


# Bad files -------------------------------------------------------------------------------------


def _refused(path, *needles):
  with pytest.raises(CheckpointError) as error:
    load_gguf(path)
  message = str(error.value)
  assert "\n" not in message and str(path) in message
  for needle in needles:
    assert needle in message, message
  return message


def test_a_truncated_file(tmp_path):
  _, path = _written(tmp_path, "llama", Q.F32)
  data = path.read_bytes()
  path.write_bytes(data[:len(data) - 1000])
  _refused(path, "truncated or corrupt GGUF file", f"{len(data) - 1000:,} bytes")


def test_a_file_that_is_not_gguf(tmp_path):
  path = tmp_path / "model.gguf"
  path.write_bytes(b"PK\x03\x04" + bytes(100))
  _refused(path, "not a GGUF file")
  path.write_bytes(b"GG")
  _refused(path, "not a GGUF file")


def test_an_unsupported_gguf_version(tmp_path):
  _, path = _written(tmp_path, "llama", Q.F32)
  data = bytearray(path.read_bytes())
  data[4:8] = (99).to_bytes(4, "little")
  path.write_bytes(bytes(data))
  _refused(path, "GGUF version 99 is not supported", "2, 3")


def test_an_unknown_architecture_lists_the_supported_ones(tmp_path):
  path = tmp_path / "bloom.gguf"
  writer = gguf.GGUFWriter(str(path), "bloom")
  writer.add_tensor("token_embd.weight", np.zeros((4, 8), np.float32))
  for step in (writer.write_header_to_file, writer.write_kv_data_to_file,
               writer.write_tensors_to_file, writer.close):
    step()
  _refused(path, "unsupported GGUF architecture 'bloom'", "llama", "qwen2")


def test_an_unknown_ggml_type(tmp_path):
  _, path = _written(tmp_path, "llama", Q.F32)
  reader = gguf.GGUFReader(str(path), "r+")
  reader.tensors[0].field.parts[4][0] = 250                 # the tensor info's ggml type
  reader.data.flush()
  del reader
  _refused(path, "unknown ggml type", "Q4_K")


def test_a_tensor_whose_shape_does_not_fit_the_metadata(tmp_path):
  _, path = _written(tmp_path, "llama", Q.F32,
                     edit=lambda name, v: v[:, :64] if name == "blk.1.ffn_down.weight" else v)
  _refused(path, "blk.1.ffn_down.weight", "(64, 64)", "(64, 96)")


def test_weights_that_dequantize_to_nan(tmp_path):
  def poison(name, values):
    return np.where(np.arange(values.size).reshape(values.shape) == 3, np.nan, values) if (
        name == "blk.0.ffn_up.weight") else values
  _, path = _written(tmp_path, "llama", Q.Q8_0, edit=poison)
  _refused(path, "blk.0.ffn_up.weight", "NaN or inf")
