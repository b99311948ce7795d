"""Where the job's model comes from: one `ModelSource` per value of config.model_source.

    SOURCES[name]          the registry: name -> ModelSource, the one table of model sources
    source_of(config)      the ModelSource config.model_source names (a one-line error if none)

A ModelSource is data, five functions of the job config:

    check(config)             ValueError naming the first of its fields that cannot work
                              (no file is read but to see that it exists)
    describe(config)          the model in words, for messages ("checkpoint /path")
    model_config(config)      its ModelConfig from config files alone: no weight is read,
                              so the job is planned before it loads anything
    load(config, mesh)        (ModelConfig, params), params placed on `mesh` where the
                              loader can (None: the default device)
    tokenizer(config)         its own tokenizer, None when it has none (a random model);
                              a ValueError or OSError when its files hold none

  embedded    the tiny model shipped in the package (`hydra_jax.train.embedded`)
  hf          a Hugging Face directory (config.json + *.safetensors, tokenizer beside them)
  gguf        a GGUF file, or a model name of `hydra_jax.fetch.MODELS` fetched into the
              user's cache (resolved once per process); its tokenizer is in its metadata
  checkpoint  hydra_jax's own directory format (`hydra_jax.checkpoints.native`)
  random      a random initialisation of config.model, seeded by config.seed

Loaders given config.model.dtype read the weights in it (hf, gguf); the others' weights
are cast by the caller (`job.loading`), which also matches the model against config.model.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from pathlib import Path
from typing import Any, Callable, Optional

import jax
import ml_collections

from hydra_jax import checkpoints
from hydra_jax import fetch
from hydra_jax.data import tokenizers
from hydra_jax.job import model_section
from hydra_jax.model import partitioning
from hydra_jax.model import transformer as model_lib
from hydra_jax.model.config import ModelConfig
from hydra_jax.train import embedded

Config = ml_collections.ConfigDict


@dataclasses.dataclass(frozen=True)
class ModelSource:
  """One value of config.model_source and what the job asks of it (the module docstring)."""
  name: str
  check: Callable[[Config], None]
  describe: Callable[[Config], str]
  model_config: Callable[[Config], ModelConfig]
  load: Callable[[Config, Any], tuple[ModelConfig, Any]]
  tokenizer: Callable[[Config], Optional[tokenizers.Tokenizer]]


def random_params(model_config: ModelConfig, seed: int, mesh=None):
  """Random weights, created already sharded over the mesh's "model" axis when it has one."""
  init = lambda: model_lib.init_params(model_config, seed)
  if mesh is None or mesh.shape.get("model", 1) == 1:
    return jax.jit(init)()
  shapes = jax.eval_shape(init)
  return jax.jit(init, out_shardings=partitioning.param_shardings(shapes, mesh))()


# Checks ---------------------------------------------------------------------------------------


def _no_check(config: Config) -> None:
  del config


def _check_directory(config: Config) -> None:
  """config.checkpoint names an existing directory (hf, checkpoint)."""
  model_section.require(bool(config.checkpoint), "checkpoint", config.checkpoint,
                        f'model_source="{config.model_source}" needs --config.checkpoint=DIR')
  model_section.require(os.path.isdir(config.checkpoint), "checkpoint", config.checkpoint,
                        "no such directory")


def _check_gguf(config: Config) -> None:
  """config.checkpoint is a model name of hydra_jax.fetch.MODELS or an existing .gguf file."""
  value, names = config.checkpoint, ", ".join(fetch.MODELS)
  model_section.require(bool(value), "checkpoint", value, 'model_source="gguf" needs '
                        f"--config.checkpoint=FILE.gguf or a model name ({names})")
  if value in fetch.MODELS:
    return
  model_section.require(os.path.isfile(value), "checkpoint", value,
                        f"no such file, nor a model name of hydra_jax.fetch ({names})")
  model_section.require(value.endswith(".gguf"), "checkpoint", value,
                        'not a .gguf file (model_source="gguf" reads GGUF files)')


# The sources' functions -----------------------------------------------------------------------


def _checkpoint_words(config: Config) -> str:
  return f"checkpoint {config.checkpoint}"


def _directory_tokenizer(config: Config) -> tokenizers.Tokenizer:
  return tokenizers.load(config.checkpoint)


@functools.lru_cache(maxsize=None)
def _resolved(name_or_path: str) -> Path:
  """The GGUF file of a config.checkpoint value, fetched into the cache at most once."""
  return fetch.resolve(name_or_path)


def _gguf_file(config: Config) -> Path:
  return _resolved(config.checkpoint)


def _check_random(config: Config) -> None:
  """config.model describes a whole model (every required ModelConfig field is set)."""
  model_section.model_config_from(config)


def _embedded_weights(config: Config, mesh) -> tuple[ModelConfig, Any]:
  bundle = embedded.load()
  return bundle.config, bundle.params


def _random_model(config: Config, mesh) -> tuple[ModelConfig, Any]:
  model_config = model_section.model_config_from(config)
  return model_config, random_params(model_config, config.seed, mesh)


_SOURCES = (
    ModelSource(
        "embedded", check=_no_check,
        describe=lambda config: "the embedded model",
        model_config=lambda config: checkpoints.load_config(embedded.ASSET_DIR),
        load=_embedded_weights,
        tokenizer=lambda config: embedded.tokenizer()),
    ModelSource(
        "hf", check=_check_directory, describe=_checkpoint_words,
        model_config=lambda config: checkpoints.load_hf_config(config.checkpoint,
                                                               dtype=config.model.dtype),
        load=lambda config, mesh: checkpoints.load_hf(config.checkpoint,
                                                      dtype=config.model.dtype, mesh=mesh),
        tokenizer=_directory_tokenizer),
    ModelSource(
        "gguf", check=_check_gguf, describe=_checkpoint_words,
        model_config=lambda config: checkpoints.load_gguf_config(_gguf_file(config),
                                                                 dtype=config.model.dtype),
        load=lambda config, mesh: checkpoints.load_gguf(_gguf_file(config),
                                                        dtype=config.model.dtype, mesh=mesh),
        tokenizer=lambda config: tokenizers.load(_gguf_file(config))),
    ModelSource(
        "checkpoint", check=_check_directory, describe=_checkpoint_words,
        model_config=lambda config: checkpoints.load_config(config.checkpoint),
        load=lambda config, mesh: checkpoints.load(config.checkpoint),
        tokenizer=_directory_tokenizer),
    ModelSource(
        "random", check=_check_random,
        describe=lambda config: "the random model",
        model_config=model_section.model_config_from, load=_random_model,
        tokenizer=lambda config: None),
)
SOURCES: dict[str, ModelSource] = {source.name: source for source in _SOURCES}


def source_of(config: Config) -> ModelSource:
  """The ModelSource of config.model_source; a one-line ValueError for an unknown name."""
  model_section.require(config.model_source in SOURCES, "model_source", config.model_source,
                        f"must be one of {tuple(SOURCES)}")
  return SOURCES[config.model_source]
