"""SweepOptions: checked when made, built from config.sweep once, serialised and back."""

import dataclasses
import json

import pytest

from hydra_jax.job import config as run_config
from hydra_jax.sweep import engine
from hydra_jax.sweep.options import SweepOptions, settings_of


@pytest.mark.parametrize("field, value, message", [
    ("kind", "gaussian", "kind='gaussian': must be one of ('resample', 'zero', 'mean', 'noise')"),
    ("path", "fast", "path='fast': must be one of ('incremental', 'full')"),
    ("response_scale", "own", "response_scale='own': must be one of ('clean', 'ablated')"),
    ("batch_size", 0, "batch_size=0: must be a positive integer or None"),
    ("source_chunk", 1.5, "source_chunk=1.5: must be a positive integer or None"),
    ("keep_sources", -1, "keep_sources=-1: must be an integer >= 0 (0: none)"),
    ("noise_draws", 0, "noise_draws=0: must be >= 1"),
    ("noise_scale", -1.0, "noise_scale=-1.0: must be a number >= 0"),
    ("check", "yes", "check='yes': must be True or False"),
])
def test_a_bad_field_is_one_line_naming_it(field, value, message):
  with pytest.raises(ValueError) as error:
    SweepOptions(**{field: value})
  assert str(error.value) == message


def test_the_job_builds_them_from_config_sweep_naming_its_fields():
  config = run_config.defaults()
  options = SweepOptions.from_config(config.sweep)
  assert (options.kind, options.noise_draws, options.noise_seed, options.batch_size,
          options.check, options.keep_sources) == ("resample", 15, 0, 64, True, 8)
  assert SweepOptions.from_config({}) == SweepOptions()      # a saved run's missing fields
  config.sweep.num_sources = 0
  with pytest.raises(ValueError, match=r"^config.sweep.num_sources=0: must be >= 1$"):
    run_config.check(config)
  config.sweep.num_sources, config.sweep.chunk_size = 3, 0
  with pytest.raises(ValueError, match=r"^config.sweep.chunk_size=0: must be a positive"):
    run_config.check(config)


def test_they_round_trip_through_json_and_key_the_program():
  options = SweepOptions(kind="noise", noise_draws=4, check=True, batch_size=8)
  assert SweepOptions(**json.loads(json.dumps(dataclasses.asdict(options)))) == options
  # Zero and mean share one program; what only the driver reads does not change it.
  assert settings_of(SweepOptions(kind="zero")) == settings_of(SweepOptions(kind="mean", check=True,
                                                                            batch_size=3))
  assert settings_of(SweepOptions()).path == "layer_skip"
  assert settings_of(SweepOptions(skip_unchanged_layers=False)).path == "incremental"
  with pytest.raises(TypeError, match="kindd"):
    engine.hydra_sweep(None, None, None, None, kindd="zero")
