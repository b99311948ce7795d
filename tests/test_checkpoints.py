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
from hydra_jax.model.config import ModelConfig
from tests.conftest import numpy_params as init_params

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


def test_wrong_shape_names_tensor_and_both_shapes_native(tmp_path):
  tensors = _saved(tmp_path)
  tensors["layers/mlp/w_in"] = np.zeros((2, 8, 13), np.float32)
  save_file(tensors, tmp_path / native.PARAMS_FILE)
  with pytest.raises(ValueError, match=r"'layers/mlp/w_in'.*\(2, 8, 13\).*\(2, 8, 12\)"):
    checkpoints.load(tmp_path)


def _truncate(path, keep):
  path.write_bytes(path.read_bytes()[:keep])


def test_truncated_or_corrupt_files_are_named_native(tmp_path):
  _saved(tmp_path)
  params_file = tmp_path / native.PARAMS_FILE
  for keep in (20, 3, params_file.stat().st_size - 10):   # in the header length, header, data
    _saved(tmp_path)
    _truncate(params_file, keep)
    with pytest.raises(checkpoints.CheckpointError,
                       match=rf"^{params_file}: not a readable safetensors file \(truncated"):
      checkpoints.load(tmp_path)
  (tmp_path / native.CONFIG_FILE).write_text('{"d_model": 8,')
  with pytest.raises(checkpoints.CheckpointError, match=rf"^{tmp_path / 'config.json'}: not valid"):
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


# Hugging Face checkpoints: file layouts, dtypes, and the errors of a bad checkpoint --------

import subprocess
import sys
import textwrap

import torch
from safetensors import safe_open

from hydra_jax.checkpoints import hf
from tests import hf_fixtures


def _flat_numpy(params):
  return {k: np.asarray(v) for k, v in checkpoints.layout.flatten(params).items()}


@pytest.fixture(scope="module")
def llama_dir(tmp_path_factory):
  directory = tmp_path_factory.mktemp("llama")
  hf_fixtures.build("llama", directory)
  return directory


def test_sharded_checkpoint_loads_like_single_file(llama_dir, tmp_path):
  model = hf_fixtures.build("llama", tmp_path, max_shard_size="40KB")
  shards = sorted(p.name for p in tmp_path.glob("model-*.safetensors"))
  assert len(shards) > 2 and (tmp_path / hf.INDEX_FILE).is_file()
  assert not (tmp_path / hf.SINGLE_FILE).exists()
  config, params = checkpoints.load_hf(tmp_path)
  single_config, single = checkpoints.load_hf(llama_dir)
  assert config == single_config
  sharded, reference = _flat_numpy(params), _flat_numpy(single)
  for name in reference:
    np.testing.assert_array_equal(sharded[name], reference[name], err_msg=name)
  # and the values are the model's: q of layer 1, head 3 is rows 72..95 of q_proj, transposed
  q_proj = model.model.layers[1].self_attn.q_proj.weight.detach().numpy()
  np.testing.assert_array_equal(sharded["layers/attention/q"][1, :, 3, :], q_proj[72:96].T)


def test_bfloat16_checkpoint_loads_exactly(tmp_path):
  model = hf_fixtures.build("gpt2", tmp_path, dtype=torch.bfloat16)
  with safe_open(tmp_path / hf.SINGLE_FILE, "np") as f:
    assert f.get_slice("transformer.wte.weight").get_dtype() == "BF16"
  config, params = checkpoints.load_hf(tmp_path)
  assert config.dtype == "bfloat16"
  wte = model.transformer.wte.weight.detach().float().numpy()
  embeddings = np.asarray(params["embed"]["embeddings"])
  assert embeddings.dtype == jax.numpy.bfloat16
  np.testing.assert_array_equal(embeddings.astype(np.float32), wte)
  config32, params32 = checkpoints.load_hf(tmp_path, dtype="float32")
  assert config32.dtype == "float32" and params32["embed"]["embeddings"].dtype == np.float32
  c_fc = model.transformer.h[1].mlp.c_fc.weight.detach().float().numpy()     # Conv1D [in, out]
  np.testing.assert_array_equal(np.asarray(params32["layers/mlp"]["w_in"][1]), c_fc)


def _rewrite(directory, edit):
  """Apply `edit` to the tensors of directory's model.safetensors and write them back."""
  path = directory / hf.SINGLE_FILE
  tensors = dict(load_file(path))
  edit(tensors)
  path.unlink()
  save_file(tensors, path)


@pytest.fixture
def gpt2_dir(tmp_path):
  hf_fixtures.build("gpt2", tmp_path)
  return tmp_path


def test_missing_tensor_is_named(gpt2_dir):
  _rewrite(gpt2_dir, lambda t: t.pop("transformer.h.1.mlp.c_fc.bias"))
  with pytest.raises(checkpoints.CheckpointError, match=r"missing.*'transformer.h.1.mlp.c_fc.bias'"):
    checkpoints.load_hf(gpt2_dir)


def test_unexpected_tensor_is_named_but_known_buffers_are_not(gpt2_dir):
  def edit(tensors):
    tensors["transformer.h.0.attn.bias"] = np.tril(np.ones((1, 1, 4, 4), bool))  # old mask buffer
    tensors["transformer.h.0.attn.q_attn.weight"] = np.zeros((64, 64), np.float32)
  _rewrite(gpt2_dir, edit)
  with pytest.raises(checkpoints.CheckpointError,
                     match=r"unexpected tensor\(s\) \['transformer.h.0.attn.q_attn.weight'\]$"):
    checkpoints.load_hf(gpt2_dir)


def test_wrong_shape_names_tensor_and_both_shapes_hf(gpt2_dir):
  _rewrite(gpt2_dir, lambda t: t.update({"transformer.h.0.attn.c_attn.weight":
                                         np.zeros((64, 190), np.float32)}))
  with pytest.raises(checkpoints.CheckpointError,
                     match=r"'transformer.h.0.attn.c_attn.weight' has shape \(64, 190\).*\(64, 192\)"):
    checkpoints.load_hf(gpt2_dir)


def test_config_disagreeing_with_tensors_is_caught(gpt2_dir):
  config = json.loads((gpt2_dir / "config.json").read_text())
  (gpt2_dir / "config.json").write_text(json.dumps(config | {"n_inner": 128}))
  with pytest.raises(checkpoints.CheckpointError, match=r"'transformer.h.0.mlp.c_fc.weight'.*\(64, 256\).*\(64, 128\)"):
    checkpoints.load_hf(gpt2_dir)


def test_unsupported_architecture_and_features(gpt2_dir):
  config = json.loads((gpt2_dir / "config.json").read_text())
  (gpt2_dir / "config.json").write_text(json.dumps(config | {"architectures": ["BertModel"]}))
  with pytest.raises(checkpoints.CheckpointError, match=r"unsupported architecture \['BertModel'\].*GPT2LMHeadModel"):
    checkpoints.load_hf(gpt2_dir)
  (gpt2_dir / "config.json").write_text(json.dumps(config | {"scale_attn_by_inverse_layer_idx": True}))
  with pytest.raises(checkpoints.CheckpointError, match="scale_attn_by_inverse_layer_idx"):
    checkpoints.load_hf(gpt2_dir)


def test_missing_files_are_named_hf(gpt2_dir):
  (gpt2_dir / hf.SINGLE_FILE).unlink()
  with pytest.raises(checkpoints.CheckpointError, match="model.safetensors"):
    checkpoints.load_hf(gpt2_dir)
  (gpt2_dir / "config.json").unlink()
  with pytest.raises(checkpoints.CheckpointError, match="config.json"):
    checkpoints.load_hf(gpt2_dir)


def test_truncated_or_corrupt_files_are_named_hf(gpt2_dir):
  weights = gpt2_dir / hf.SINGLE_FILE
  _truncate(weights, 20)                                      # "invalid header length"
  with pytest.raises(checkpoints.CheckpointError,
                     match=rf"^{weights}: not a readable safetensors file .*invalid header length"):
    checkpoints.load_hf(gpt2_dir)
  (gpt2_dir / hf.INDEX_FILE).write_text("[1, 2]")
  with pytest.raises(checkpoints.CheckpointError, match=rf"^{gpt2_dir / hf.INDEX_FILE}: holds a "):
    checkpoints.load_hf(gpt2_dir)


@pytest.mark.parametrize("dtype", [jax.numpy.bfloat16, np.float32, jax.numpy.float32, "bfloat16",
                                   np.dtype("float16")])
def test_load_hf_takes_dtypes_as_jax_users_pass_them(gpt2_dir, dtype):
  config, params = checkpoints.load_hf(gpt2_dir, dtype=dtype)
  name = jax.numpy.dtype(dtype).name
  assert config.dtype == name
  assert {leaf.dtype.name for leaf in jax.tree_util.tree_leaves(params)} == {name}


def test_unsupported_rope_scaling_and_bad_arguments(llama_dir, tmp_path):
  config = json.loads((llama_dir / "config.json").read_text())
  (tmp_path / "config.json").write_text(json.dumps(config | {"rope_parameters": {
      "rope_type": "llama3", "rope_theta": 500.0, "factor": 8.0}}))
  (tmp_path / hf.SINGLE_FILE).symlink_to(llama_dir / hf.SINGLE_FILE)
  with pytest.raises(checkpoints.CheckpointError, match="llama3"):
    checkpoints.load_hf(tmp_path)
  for dtype in ("int8", np.int32, "nope"):
    with pytest.raises(ValueError, match=r"dtype=.* must be one of \('float32', 'bfloat16'"):
      checkpoints.load_hf(llama_dir, dtype=dtype)
  with pytest.raises(ValueError, match="mesh"):
    checkpoints.load_hf(llama_dir, mesh="model")


_MESH_SCRIPT = textwrap.dedent("""
    import os, sys
    os.environ["XLA_FLAGS"] = os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
    import jax, numpy as np
    from hydra_jax.checkpoints import layout, load_hf
    from hydra_jax.model.transformer import forward
    mesh = jax.make_mesh((2, 4), ("data", "model"), axis_types=(jax.sharding.AxisType.Auto,) * 2)
    tokens = np.random.default_rng(0).integers(0, 100, (4, 9))
    for directory in sys.argv[1:]:
      config, host = load_hf(directory)
      _, sharded = load_hf(directory, mesh=mesh)
      host, sharded = layout.flatten(host), layout.flatten(sharded)
      for name, array in sharded.items():
        assert array.sharding.mesh == mesh, name
        np.testing.assert_array_equal(np.asarray(array), np.asarray(host[name]), err_msg=name)
      specs = {name: tuple(array.sharding.spec) for name, array in sharded.items()}
      assert specs["layers/attention/q"][2] == "model", specs
      assert specs["layers/mlp/w_in"][2] == "model" and specs["layers/mlp/w_out"][1] == "model", specs
      assert all(s is None for s in specs["layers/attn_norm/scale"]), specs
      shard = sharded["layers/attention/q"].addressable_shards[0].data.shape
      assert shard[2] == config.num_heads // 4, shard
      logits = forward(layout.unflatten(sharded), config, tokens).logits
      reference = forward(layout.unflatten(host), config, tokens).logits
      np.testing.assert_allclose(np.asarray(logits), np.asarray(reference), atol=1e-5)
      print("ok", config.name)
""")


def test_mesh_load_equals_host_load(llama_dir, tmp_path):
  neox = tmp_path / "neox"
  hf_fixtures.build("gpt_neox", neox)
  result = subprocess.run([sys.executable, "-c", _MESH_SCRIPT, str(llama_dir), str(neox)],
                          capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]
  assert result.stdout.split() == ["ok", "llama", "ok", "gpt_neox"]
