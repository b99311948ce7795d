"""ModelConfig validation: invalid combinations name the field."""

import json

import pytest

import hydra_jax as hj
from tests.conftest import tiny_config


@pytest.mark.parametrize("overrides, field", [
    (dict(norm="batch"), "norm"),
    (dict(position="alibi"), "position"),
    (dict(activation="tanh"), "activation"),
    (dict(num_kv_heads=3), "num_kv_heads"),
    (dict(num_heads=5), "num_heads"),
    (dict(d_model=0), "d_model"),
    (dict(dropout_rate=1.0), "dropout_rate"),
    (dict(position="rotary", rotary_fraction=0.0), "rotary_fraction"),
    (dict(position="rotary", head_dim=6, rotary_fraction=0.5), "rotary_fraction"),
    (dict(dtype="int8"), "dtype"),
    (dict(mlp_dim=-4), "mlp_dim"),
])
def test_invalid_configs_name_the_field(overrides, field):
  with pytest.raises(ValueError, match=rf"ModelConfig\.{field}="):
    tiny_config(**overrides)


def test_derived_sizes_and_json_round_trip():
  cfg = tiny_config(num_kv_heads=2, head_dim=16, position="rotary", rotary_fraction=0.25)
  assert (cfg.kv_heads, cfg.head_size, cfg.mlp_width, cfg.rotary_dim) == (2, 16, 128, 4)
  assert cfg.attention_scale == 0.25 and cfg.num_components == 6
  assert hj.ModelConfig.from_dict(json.loads(cfg.to_json())) == cfg
  with pytest.raises(ValueError, match=r"unknown ModelConfig field\(s\) \['layers'\]"):
    hj.ModelConfig.from_dict({**cfg.to_dict(), "layers": 3})
