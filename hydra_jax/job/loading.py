"""The main job's inputs, asked of the source registries: the model (with its tokenizer)
and the kept prompts.

    model_config_of(config)                   -> the model's ModelConfig, from config files alone
    describe(config)                          -> the model's source in words, for messages
    load_model(config, mesh)                  -> Model: ModelConfig, params, tokenizer, description
    load_prompts(config, model)               -> Prompts: the kept prompts [N, T] in order, and
                                                 the counts of those dropped and why

The model comes from the ModelSource that config.model_source names
(`job.model_sources`: embedded, hf, gguf, checkpoint, random), cast to config.model.dtype;
the prompts from the PromptSource that config.data.name names (`job.prompt_sources`:
embedded, known_facts, counterfact, facts_file, random). This module has no branch of its
own on either name. The tokenizer is config.tokenizer, else the model source's own, else
that of the model the prompt set is written for (the embedded facts: the embedded model's).

Shapes: N kept prompts, V vocabulary.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Optional

import jax
import jax.numpy as jnp
import ml_collections

from hydra_jax.data import tokenizers
from hydra_jax.job import model_sources
from hydra_jax.job import prompt_sources
from hydra_jax.job.prompt_sources import Prompts, read_facts_file  # noqa: F401 (re-exported)
from hydra_jax.model import transformer as model_lib
from hydra_jax.model.config import ModelConfig

@dataclasses.dataclass(frozen=True)
class Model:
  config: ModelConfig
  params: Any
  tokenizer: Optional[Any]          # encode(text) -> ids, decode(ids) -> text, vocab_size
  description: dict[str, Any]


DESCRIBED_FIELDS = ("num_layers", "d_model", "num_heads", "kv_heads", "mlp_width", "vocab_size",
                    "position", "norm", "activation", "gated_mlp", "parallel_block", "dtype",
                    "dropout_rate")


def _cast(config: ModelConfig, params, dtype: Optional[str]):
  """The config and params in `dtype` (unchanged when it is unset or already theirs)."""
  if not dtype or dtype == config.dtype:
    return config, params
  config = dataclasses.replace(config, dtype=dtype)
  return config, jax.tree_util.tree_map(lambda p: jnp.asarray(p, dtype), params)


def describe(config: ml_collections.ConfigDict) -> str:
  """The model's source in words, for messages."""
  return model_sources.source_of(config).describe(config)


def model_config_of(config: ml_collections.ConfigDict) -> ModelConfig:
  """The ModelConfig `load_model` will return (cast to config.model.dtype), read from
  config files alone: no weight is read, so a job is planned before it loads anything."""
  loaded = model_sources.source_of(config).model_config(config)
  return _cast(loaded, None, config.model.dtype)[0]


def tokenizer_for(config: ml_collections.ConfigDict) -> Optional[tokenizers.Tokenizer]:
  """config.tokenizer, else the model source's, else that of the model source the prompt
  set is written for; None when there is none (fine for random token prompts)."""
  if config.tokenizer:
    return tokenizers.load(config.tokenizer)
  source, prompts = model_sources.source_of(config), prompt_sources.source_of(config)
  try:
    tokenizer = source.tokenizer(config)
  except (ValueError, OSError) as error:
    if not prompts.needs_tokenizer:
      return None
    raise ValueError(f"{source.describe(config)} holds no tokenizer ({error}): pass "
                     "--config.tokenizer=PATH (or use data.name='random')") from None
  if tokenizer is None and prompts.tokenizer_from:
    tokenizer = model_sources.SOURCES[prompts.tokenizer_from].tokenizer(config)
  return tokenizer


def load_model(config: ml_collections.ConfigDict, mesh=None) -> Model:
  """The model named by config.model_source, in config.model.dtype, with its tokenizer.

  Whether it matches config.model is checked (once, by the job) on `model_config_of`,
  which reads the same files before any weight is loaded."""
  model_config, params = model_sources.source_of(config).load(config, mesh)
  model_config, params = _cast(model_config, params, config.model.dtype)
  tokenizer = tokenizer_for(config)
  if tokenizer is not None and tokenizer.vocab_size > model_config.vocab_size:
    raise ValueError(f"the tokenizer has {tokenizer.vocab_size} tokens, the model only "
                     f"{model_config.vocab_size}: they do not belong together")
  description = dict(name=model_config.name, source=config.model_source,
                     checkpoint=config.checkpoint or None,
                     num_params=model_lib.count_params(params),
                     **{field: getattr(model_config, field) for field in DESCRIBED_FIELDS})
  return Model(model_config, params, tokenizer, description)


def load_prompts(config: ml_collections.ConfigDict, model: Model) -> Prompts:
  """The prompts the sweep runs on, in order of length (ties in dataset order)."""
  return prompt_sources.source_of(config).prompts(config, model)
