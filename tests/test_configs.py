"""The job configs: every shipped config loads and checks, bad fields get named, the
model section matches the model it describes, and the dry-run plan. Runtime: about 5 s.
"""

import dataclasses

import pytest

from hydra_jax.job import plan as plan_lib
from hydra_jax.job import config as run_config
from hydra_jax.model import transformer as model_lib
from hydra_jax.model.config import ModelConfig
from tests.conftest import job_config as load_config


def test_every_config_has_every_field():
  for name in ("tiny", "hf", "gguf", "smollm2", "gemma3_270m", "chinchilla7b"):
    config = load_config(name)
    assert set(config.keys()) == set(run_config.defaults().keys()), name
    for section in ("data", "sweep", "mesh", "report"):
      assert set(config[section].keys()) == set(run_config.defaults()[section].keys()), name
    assert set(config.model.keys()) == {f.name for f in dataclasses.fields(ModelConfig)}


def test_tiny_and_chinchilla_check_and_describe_their_models():
  tiny = load_config("tiny")
  run_config.check(tiny)
  assert (tiny.model_source, tiny.data.name, tiny.data.max_prompts) == ("embedded", "embedded", 0)
  assert (tiny.sweep.kind, tiny.sweep.num_sources) == ("resample", 15)
  chinchilla = load_config("chinchilla7b")
  run_config.check(chinchilla)
  model = run_config.model_config_from(chinchilla)
  assert (model.num_layers, model.d_model, model.position, model.norm) == (32, 4096, "relative", "rms")


def test_hf_needs_a_checkpoint(tmp_path):
  config = load_config("hf")
  assert config.data.name == "known_facts" and all(v is None for v in config.model.values())
  with pytest.raises(ValueError, match=r'config.checkpoint=\'\': model_source="hf" needs'):
    run_config.check(config)
  config.checkpoint = str(tmp_path / "missing")
  with pytest.raises(ValueError, match="config.checkpoint=.*missing': no such directory"):
    run_config.check(config)
  config.checkpoint = str(tmp_path)
  run_config.check(config)


def test_gguf_and_smollm2_read_gguf_files(tmp_path):
  config = load_config("gguf")
  assert (config.model_source, config.checkpoint, config.data.name) == ("gguf", "", "known_facts")
  assert all(v is None for v in config.model.values())
  with pytest.raises(ValueError, match=r'config.checkpoint=\'\': model_source="gguf" needs'):
    run_config.check(config)
  (tmp_path / "model.gguf").write_bytes(b"GGUF")
  config.checkpoint = str(tmp_path / "model.gguf")
  run_config.check(config)
  smollm2 = load_config("smollm2")
  run_config.check(smollm2)                # a model name: checked, not fetched
  assert (smollm2.model_source, smollm2.checkpoint) == ("gguf", "smollm2")
  assert (smollm2.data.name, smollm2.data.manual_dir, smollm2.data.label_prefix,
          smollm2.data.filter_correct) == ("known_facts", "", " ", True)
  assert (smollm2.sweep.kind, smollm2.sweep.num_sources, smollm2.sweep.protocol) == (
      "resample", 15, "layers")
  smollm2.data.manual_dir = str(tmp_path)
  run_config.check(smollm2)


@pytest.mark.parametrize("field, value, message", [
    ("sweep.kind", "gaussian", r"config.sweep.kind='gaussian': must be one of"),
    ("sweep.sources", "nearby", r"config.sweep.sources='nearby': must be one of"),
    ("sweep.response_scale", "own", r"config.sweep.response_scale='own': must be one of"),
    ("sweep.num_sources", 0, r"config.sweep.num_sources=0: must be >= 1"),
    ("sweep.path", "fast", r"config.sweep.path='fast'"),
    ("data.name", "wiki", r"config.data.name='wiki'"),
    ("mesh.model", 0, r"config.mesh.model=0"),
    ("model_source", "torch", r"config.model_source='torch'"),
    ("report.ablated_kind", "head", r"config.report.ablated_kind='head'"),
    ("data.manual_dir", "/nonexistent/dir", r"config.data.manual_dir='/nonexistent/dir': no such"),
])
def test_bad_fields_are_named(field, value, message):
  config = load_config("tiny")
  if field == "data.manual_dir":
    config.data.name = "known_facts"
  section, _, key = field.rpartition(".")
  (config[section] if section else config)[key] = value
  with pytest.raises(ValueError, match=message):
    run_config.check(config)


def test_unknown_keys_and_incomplete_random_models():
  config = load_config("tiny")
  with config.unlocked():
    config.sweep.num_source = 3
  with pytest.raises(ValueError, match=r"unknown config key\(s\) \['config.sweep.num_source'\]"):
    run_config.check(config)
  config = run_config.defaults()
  config.model_source = "random"
  with pytest.raises(ValueError, match="config.model is incomplete"):
    run_config.check(config)
  with pytest.raises(ValueError, match=r"unknown ModelConfig field\(s\) \['layers'\]"):
    run_config.model_section(layers=3)


def test_check_matches_names_the_differing_fields():
  config = load_config("tiny")
  loaded = dataclasses.replace(run_config.model_config_from(config), num_layers=6, d_model=64,
                               dtype="bfloat16")
  with pytest.raises(ValueError, match=r"checkpoint x does not match config.model: d_model=96 "
                                       r"\(the model has 64\), num_layers=8 \(the model has 6\)"):
    run_config.check_matches(config, loaded, "checkpoint x")
  # A model leaving mlp_dim None (4 x d_model = 384) matches config.model.mlp_dim=384.
  run_config.check_matches(config, dataclasses.replace(loaded, num_layers=8, d_model=96,
                                                       mlp_dim=None), "same sizes")
  run_config.check_matches(load_config("hf"), loaded, "anything matches an open section")


def test_chinchilla_plan_without_allocating():
  config = load_config("chinchilla7b")
  model = run_config.model_config_from(config)
  plan = plan_lib.make_plan(model, num_prompts=1209, prompt_length=16, num_sources=15,
                            chunk_size=32, mesh_shape=(4, 8), memory_per_device=32 * 2 ** 30,
                            devices_available=32)
  assert plan.num_params == model_lib.count_params(plan_lib.param_shapes(model))
  assert plan.param_bytes_total == 2 * plan.num_params                         # bfloat16
  assert plan.param_bytes_per_device == -(-plan.param_bytes_total // 8)
  assert plan.ablated_forwards == 1209 * 64 * 15
  # A decode step costs about 2 FLOPs per weight: the sweep is ~ 2 x params x forwards.
  assert plan.flops_total == pytest.approx(2 * plan.num_params * plan.ablated_forwards, rel=0.3)
  assert plan.fits and f"{plan.num_params:,}" in plan.describe()
  small = dataclasses.replace(plan, memory_per_device=8 * 2 ** 30, mesh_shape=(1, 1),
                              param_bytes_per_device=plan.param_bytes_total)
  with pytest.raises(ValueError, match="too small for the sweep"):
    plan_lib.check_fits(small)


def test_forward_flops_by_hand():
  config = ModelConfig(vocab_size=10, d_model=4, num_layers=1, num_heads=2, mlp_dim=8,
                       position="none")
  # per position: 2 x (q, k, v, o: 4 x 4 x 4 = 64 weights + MLP 2 x 4 x 8 = 64) = 256,
  # scores 2 x 2 x heads 2 x head size 2 x 3 keys = 48, unembedding 2 x 4 x 10 = 80.
  assert plan_lib.forward_flops(config, 1, 3) == 256 + 48 + 80
  assert plan_lib.forward_flops(config, 2, 3) == 2 * (256 + 48 + 80)
