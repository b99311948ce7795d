"""hydra_jax's own checkpoints (save/load) round-trip exactly and reject bad files.

Runtime: about 5 s (tiny models, shapes from jax.eval_shape, nothing compiled).
"""

import json

import jax
import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from hydra_jax import checkpoints
from hydra_jax.checkpoints import native
from hydra_jax.config import ModelConfig


def init_params(config, seed=0):
  """Random parameters of the right layout without Haiku's (slow, eager) initialisers."""
  rng = np.random.default_rng(seed)
  flat = {name: rng.normal(size=spec.shape).astype(checkpoints.layout.as_numpy_dtype(spec.dtype))
          for name, spec in checkpoints.layout.expected_layout(config).items()}
  return checkpoints.layout.unflatten(flat)

CONFIGS = {
    "float32": ModelConfig(vocab_size=11, d_model=8, num_layers=2, num_heads=2, mlp_dim=12,
                           norm="layer", position="learned", max_seq_len=6, qkv_bias=True,
                           mlp_bias=True, attn_out_bias=True),
    "bfloat16": ModelConfig(vocab_size=11, d_model=8, num_layers=2, num_heads=2, num_kv_heads=1,
                            gated_mlp=True, activation="silu", position="rotary",
                            tie_embeddings=True, dtype="bfloat16"),
    "relative": ModelConfig(vocab_size=11, d_model=8, num_layers=3, num_heads=2),
}


def _leaves(params):
  return sorted(checkpoints.layout.flatten(params).items())


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_round_trip_is_exact(tmp_path, name):
  config = CONFIGS[name]
  params = init_params(config, seed=3)
  checkpoints.save(tmp_path / "ckpt", config, params)
  loaded_config, loaded = checkpoints.load(tmp_path / "ckpt")
  assert loaded_config == config
  original, restored = _leaves(params), _leaves(loaded)
  assert [k for k, _ in original] == [k for k, _ in restored]
  for (key, a), (_, b) in zip(original, restored):
    a = np.asarray(a)
    assert b.dtype == a.dtype == jax.numpy.dtype(config.dtype), key
    assert b.shape == a.shape, key
    assert a.tobytes() == b.tobytes(), key   # bit for bit, bfloat16 included


def test_file_holds_flat_names(tmp_path):
  config = CONFIGS["float32"]
  checkpoints.save(tmp_path, config, init_params(config))
  tensors = load_file(tmp_path / native.PARAMS_FILE)
  assert tensors["layers/attention/q"].shape == (2, 8, 2, 4)
  assert tensors["embed/positions"].shape == (6, 8)
  assert json.loads((tmp_path / native.CONFIG_FILE).read_text())["d_model"] == 8


def _saved(tmp_path):
  config = CONFIGS["float32"]
  checkpoints.save(tmp_path, config, init_params(config))
  return load_file(tmp_path / native.PARAMS_FILE)


def test_missing_files_are_named(tmp_path):
  _saved(tmp_path)
  (tmp_path / native.PARAMS_FILE).unlink()
  with pytest.raises(ValueError, match="params.safetensors"):
    checkpoints.load(tmp_path)
  with pytest.raises(ValueError, match="config.json"):
    checkpoints.load(tmp_path / "nowhere")


def test_wrong_shape_names_tensor_and_both_shapes(tmp_path):
  tensors = _saved(tmp_path)
  tensors["layers/mlp/w_in"] = np.zeros((2, 8, 13), np.float32)
  save_file(tensors, tmp_path / native.PARAMS_FILE)
  with pytest.raises(ValueError, match=r"'layers/mlp/w_in'.*\(2, 8, 13\).*\(2, 8, 12\)"):
    checkpoints.load(tmp_path)


def test_missing_and_extra_tensors_are_named(tmp_path):
  tensors = _saved(tmp_path)
  del tensors["final_norm/bias"]
  tensors["layers/mlp/w_gate"] = np.zeros((2, 8, 12), np.float32)
  save_file(tensors, tmp_path / native.PARAMS_FILE)
  with pytest.raises(ValueError, match=r"missing.*final_norm/bias.*unexpected.*layers/mlp/w_gate"):
    checkpoints.load(tmp_path)


def test_config_mismatch_is_caught(tmp_path):
  _saved(tmp_path)
  other = CONFIGS["float32"].to_dict() | {"num_layers": 3}
  (tmp_path / native.CONFIG_FILE).write_text(json.dumps(other))
  with pytest.raises(ValueError, match=r"'layers/[a-z_]+/[a-z_]+'.*\(2, 8, 2, 4\).*\(3, 8, 2, 4\)"):
    checkpoints.load(tmp_path)


def test_wrong_dtype_is_caught(tmp_path):
  tensors = _saved(tmp_path)
  tensors["embed/embeddings"] = tensors["embed/embeddings"].astype(np.float16)
  save_file(tensors, tmp_path / native.PARAMS_FILE)
  with pytest.raises(ValueError, match=r"'embed/embeddings'.*float16"):
    checkpoints.load(tmp_path)


def test_save_rejects_params_of_another_config(tmp_path):
  params = init_params(CONFIGS["float32"])
  with pytest.raises(ValueError, match="layers/attention/q"):
    checkpoints.save(tmp_path, CONFIGS["relative"], params)
