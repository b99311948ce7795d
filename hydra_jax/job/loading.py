"""The main job's inputs: the model (with its tokenizer) and the kept prompts.

    model_config_of(config)                   -> the model's ModelConfig, from config files alone
    load_model(config, mesh)                  -> Model: ModelConfig, params, tokenizer, description
    load_prompts(config, model)               -> Prompts: the kept prompts, in sweep order, and
                                                 the counts of those dropped and why

Model sources (config.model_source): the embedded tiny model, a Hugging Face directory,
a hydra_jax checkpoint, or a random initialisation of config.model. Prompt sets
(config.data.name): the embedded model's facts, known facts or CounterFact (TFDS,
read from data.manual_dir offline), the records of a JSON facts file (data.facts_file),
or random token prompts (for models without a tokenizer, e.g. a randomly initialised
Chinchilla 7B). Prompts are tokenized, bucketed by length, and kept when the model's
top prediction is the label's first token.

Shapes: N kept prompts, T padded length, V vocabulary.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, Optional

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from hydra_jax.job import config as run_config
from hydra_jax.model import predict
from hydra_jax.model import transformer as model_lib
from hydra_jax.model.config import ModelConfig

FILTER_BATCH = 64        # prompts per forward pass when checking answers
LENGTH_MULTIPLE = 8      # pad lengths to multiples of this while checking answers: few shapes


@dataclasses.dataclass(frozen=True)
class Model:
  config: ModelConfig
  params: Any
  tokenizer: Optional[Any]          # encode(text) -> ids, decode(ids) -> text, vocab_size
  description: dict[str, Any]


@dataclasses.dataclass(frozen=True)
class Prompts:
  """The kept prompts (N of them) in sweep order, each as its own token list."""
  ids: np.ndarray                   # [N] record ids
  texts: tuple[str, ...]
  labels: tuple[str, ...]
  tokens: tuple[tuple[int, ...], ...]
  counts: dict[str, Any]            # dataset, total, kept, dropped {reason: count}
  relations: tuple[str, ...] = ()   # each prompt's relation, where the prompt set has them
  subjects: tuple[tuple[int, int], ...] = ()   # each prompt's subject tokens [start, end), or (0, 0)

  def __len__(self) -> int:
    return len(self.tokens)


# The model ------------------------------------------------------------------------------------


def _cast(config: ModelConfig, params, dtype: Optional[str]):
  """The config and params in `dtype` (unchanged when it is unset or already theirs)."""
  if not dtype or dtype == config.dtype:
    return config, params
  config = dataclasses.replace(config, dtype=dtype)
  return config, jax.tree_util.tree_map(lambda p: jnp.asarray(p, dtype), params)


def random_params(model_config: ModelConfig, seed: int, mesh=None):
  """Random weights, created already sharded over the mesh's "model" axis when it has one."""
  init = lambda: model_lib.init_params(model_config, seed)
  if mesh is None or mesh.shape.get("model", 1) == 1:
    return jax.jit(init)()
  from hydra_jax.model import partitioning  # the weights' layout on a mesh
  shapes = jax.eval_shape(init)
  return jax.jit(init, out_shardings=partitioning.param_shardings(shapes, mesh))()


def _tokenizer_for(config: ml_collections.ConfigDict):
  """config.tokenizer, else the checkpoint's, else the embedded model's for its facts."""
  if config.tokenizer:
    from hydra_jax.data import tokenizers
    return tokenizers.load(config.tokenizer)
  if config.model_source in ("hf", "checkpoint"):
    from hydra_jax.data import tokenizers
    try:
      return tokenizers.load(config.checkpoint)
    except (ValueError, FileNotFoundError, OSError):
      if config.data.name != "random":
        raise ValueError(f"config.checkpoint={config.checkpoint!r} holds no tokenizer: pass "
                         "--config.tokenizer=PATH (or use data.name='random')") from None
      return None
  if config.data.name == "embedded":
    from hydra_jax.train import embedded
    return embedded.load().tokenizer
  return None


def source_name(config: ml_collections.ConfigDict) -> str:
  """The model's source in words, for messages."""
  if config.model_source in ("hf", "checkpoint"):
    return f"checkpoint {config.checkpoint}"
  return {"embedded": "the embedded model", "random": "the random model"}[config.model_source]


def model_config_of(config: ml_collections.ConfigDict) -> ModelConfig:
  """The ModelConfig `load_model` will return (cast to config.model.dtype), read from
  config files alone: no weight is read, so a job is planned before it loads anything."""
  from hydra_jax import checkpoints
  source = config.model_source
  if source == "random":
    return run_config.model_config_from(config)
  if source == "hf":
    return checkpoints.load_hf_config(config.checkpoint, dtype=config.model.dtype)
  if source == "embedded":
    from hydra_jax.train import embedded
    loaded = checkpoints.load_config(embedded.ASSET_DIR)
  else:
    loaded = checkpoints.load_config(config.checkpoint)
  return _cast(loaded, None, config.model.dtype)[0]


def _weights(config: ml_collections.ConfigDict, mesh):
  """(ModelConfig, params, tokenizer or None) of config.model_source, as stored."""
  from hydra_jax import checkpoints
  source = config.model_source
  if source == "embedded":
    from hydra_jax.train import embedded
    bundle = embedded.load()
    return bundle.config, bundle.params, bundle.tokenizer
  if source == "hf":
    return (*checkpoints.load_hf(config.checkpoint, dtype=config.model.dtype, mesh=mesh), None)
  if source == "checkpoint":
    return (*checkpoints.load(config.checkpoint), None)
  model_config = run_config.model_config_from(config)
  return model_config, random_params(model_config, config.seed, mesh), None


def load_model(config: ml_collections.ConfigDict, mesh=None) -> Model:
  """The model named by config.model_source, in config.model.dtype, with its tokenizer.

  Whether it matches config.model is checked (once, by the job) on `model_config_of`,
  which reads the same files before any weight is loaded."""
  model_config, params, tokenizer = _weights(config, mesh)
  model_config, params = _cast(model_config, params, config.model.dtype)
  if tokenizer is None or config.tokenizer:
    tokenizer = _tokenizer_for(config)
  if tokenizer is not None and tokenizer.vocab_size > model_config.vocab_size:
    raise ValueError(f"the tokenizer has {tokenizer.vocab_size} tokens, the model only "
                     f"{model_config.vocab_size}: they do not belong together")
  description = dict(name=model_config.name, source=config.model_source,
                     checkpoint=config.checkpoint or None,
                     num_params=model_lib.count_params(params), **{
                         k: getattr(model_config, k) for k in (
                             "num_layers", "d_model", "num_heads", "kv_heads", "mlp_width",
                             "vocab_size", "position", "norm", "activation", "gated_mlp",
                             "parallel_block", "dtype", "dropout_rate")})
  return Model(model_config, params, tokenizer, description)


# The prompts ----------------------------------------------------------------------------------


def read_facts_file(path: str) -> list[dict[str, Any]]:
  """The prompt records of a facts file (data.name="facts_file"): a JSON list of dicts."""
  try:
    records = json.loads(Path(path).read_text())
  except json.JSONDecodeError as error:
    raise ValueError(f"data.facts_file={path!r} is not valid JSON: {error}") from None
  if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
    raise ValueError(f"data.facts_file={path!r} must hold a JSON list of prompt records")
  return records


def _records(config: ml_collections.ConfigDict) -> list[dict[str, Any]]:
  name = config.data.name
  if name == "embedded":
    from hydra_jax.train import embedded
    return list(embedded.load().records)
  if name == "facts_file":
    return read_facts_file(config.data.facts_file)
  from hydra_jax.data import loading
  return loading.load_records(name, config.data.data_dir or None, config.data.manual_dir or None)


def _random_prompts(config: ml_collections.ConfigDict, model: Model) -> Prompts:
  data = config.data
  rng = np.random.RandomState(config.seed)
  tokens = rng.randint(0, model.config.vocab_size, (data.num_prompts, data.prompt_length))
  rows = tuple(tuple(int(t) for t in row) for row in tokens)
  return Prompts(ids=np.arange(data.num_prompts), texts=("",) * data.num_prompts,
                 labels=("",) * data.num_prompts, tokens=rows,
                 counts=dict(dataset="random tokens", total=data.num_prompts,
                             kept=data.num_prompts, dropped={}))


def load_prompts(config: ml_collections.ConfigDict, model: Model) -> Prompts:
  """The prompts the sweep runs on, in order of length (ties in dataset order)."""
  from hydra_jax.data import batching, filtering
  data = config.data
  if data.name == "random":
    return _random_prompts(config, model)
  if model.tokenizer is None:
    raise ValueError(f"data.name={data.name!r} needs a tokenizer: set --config.tokenizer=PATH")
  records = _records(config)
  if data.max_prompts:
    records = records[:data.max_prompts]
  made = batching.make_batches(records, model.tokenizer, batch_size=FILTER_BATCH,
                               max_len=model.config.max_seq_len, label_prefix=data.label_prefix,
                               length_multiple=LENGTH_MULTIPLE)
  predict_fn = predict.predictor(model.params, model.config) if data.filter_correct else None
  kept, report = filtering.filter_correct(made, predict_fn, keep_all=not data.filter_correct)
  rows = [row for batch in kept for row in batch.rows()]
  dropped = {"longer than the context": report.too_long, "answered wrongly": report.wrong_answer}
  relation_of = {int(r["id"]): str(r.get("relation", r.get("relation_id", ""))) for r in records}
  subject_of = {int(r["id"]): str(r.get("subject", "")) for r in records}
  return Prompts(ids=np.array([r.id for r in rows], np.int64), texts=tuple(r.prompt for r in rows),
                 labels=tuple(r.label for r in rows), tokens=tuple(r.tokens for r in rows),
                 relations=tuple(relation_of[r.id] for r in rows),
                 subjects=tuple(batching.subject_span(model.tokenizer, r.prompt, subject_of[r.id])
                                for r in rows),
                 counts=dict(dataset=data.name, total=report.total, kept=report.kept,
                             correct=report.correct,
                             dropped={k: v for k, v in dropped.items() if v}))
