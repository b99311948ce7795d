"""Where the job's prompts come from: one `PromptSource` per value of config.data.name.

    SOURCES[name]          the registry: name -> PromptSource, the one table of prompt sources
    source_of(config)      the PromptSource config.data.name names (a one-line error if none)
    Prompts                the kept prompts (N of them) in sweep order

A PromptSource is data:

    check(config)             ValueError naming the first of its fields that cannot work
    planned(config, model_config)  (prompts, tokens per prompt) for the plan, before any
                              prompt is tokenized: the actual count where it is cheap to
                              read (a JSON file), the published one otherwise (a TFDS set
                              not yet prepared); a ValueError when the prompts cannot fit
                              the model's context at all
    prompts(config, model)    the Prompts the sweep runs on; `model` is a `job.loading.Model`
    needs_tokenizer           whether `prompts` encodes text (everything but random tokens)
    tokenizer_from            the model source whose tokenizer the prompts are written for,
                              used when neither config.tokenizer nor the model has one

  embedded     the embedded model's facts (assets/tiny/facts.json, read without its weights)
  known_facts  ROME's known facts (TFDS; known_1000.json read from data.manual_dir offline)
  counterfact  CounterFact (TFDS; counterfact.json from data.manual_dir offline)
  facts_file   the records of a JSON list (data.facts_file: id, prompt, label, ...)
  random       data.num_prompts random token rows of data.prompt_length tokens, for models
               without a tokenizer (e.g. a randomly initialised Chinchilla 7B)

Text prompts are tokenized, sorted by length, dropped (and counted) when longer than the
model's context, padded once into [N, T], and kept when the model's top prediction is the
label's first token (data.filter_correct). That prediction is the sweep's own clean pass
(`SweepScorer`): the kept answer is the token the sweep scores, and the kept prompts'
final-position components become the sweep's table (no second clean pass).

Shapes: N kept prompts, T padded length, C = 2L components, D d_model.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
from pathlib import Path
from typing import Any, Callable, Optional

import ml_collections
import numpy as np

from hydra_jax.data import batching
from hydra_jax.data import counterfact
from hydra_jax.data import filtering
from hydra_jax.data import known_facts
from hydra_jax.data import loading as data_loading
from hydra_jax.job import runtime
from hydra_jax.job.model_section import require
from hydra_jax.model.config import ModelConfig
from hydra_jax.sweep import engine
from hydra_jax.train import embedded

Config = ml_collections.ConfigDict
FILTER_BATCH = 64          # prompts per forward pass when checking answers
LENGTH_MULTIPLE = 8        # the prompts' padded length T: the longest, rounded up to a multiple
                           # of this (within the context), so that few shapes compile
NOMINAL_PROMPT_LENGTH = 32   # tokens per text prompt in plans made before tokenizing


@dataclasses.dataclass(frozen=True)
class Prompts:
  """The kept prompts (N of them) in sweep order, padded once into tokens [N, T]."""
  ids: np.ndarray                   # [N] record ids
  texts: tuple[str, ...]
  labels: tuple[str, ...]
  tokens: np.ndarray                # [N, T] int32, right-padded with 0 (T: `LENGTH_MULTIPLE`)
  lengths: np.ndarray               # [N] int32 real tokens of each prompt
  counts: dict[str, Any]            # dataset, total, kept, dropped {reason: count}
  relations: tuple[str, ...] = ()   # each prompt's relation, where the prompt set has them
  subjects: tuple[tuple[int, int], ...] = ()   # each prompt's subject tokens [start, end), or (0, 0)
  components: Optional[np.ndarray] = None      # [N, C, D] the filter's clean final-position
                                               # components (the sweep's table), or None

  def __len__(self) -> int:
    return len(self.tokens)


@dataclasses.dataclass(frozen=True)
class PromptSource:
  """One value of config.data.name and what the job asks of it (the module docstring)."""
  name: str
  check: Callable[[Config], None]
  planned: Callable[[Config, ModelConfig], tuple[int, int]]
  prompts: Callable[[Config, Any], Prompts]
  needs_tokenizer: bool = True
  tokenizer_from: Optional[str] = None


def read_facts_file(path: str) -> list[dict[str, Any]]:
  """The prompt records of a facts file (data.name="facts_file"): a non-empty JSON list of dicts."""
  try:
    records = json.loads(Path(path).read_text())
  except json.JSONDecodeError as error:
    raise ValueError(f"data.facts_file={path!r} is not valid JSON: {error}") from None
  if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
    raise ValueError(f"data.facts_file={path!r} must hold a JSON list of prompt records")
  if not records:
    raise ValueError(f"data.facts_file={path!r} holds no prompt records")
  return records


# Text prompts ---------------------------------------------------------------------------------


def _text_plan(count: Callable[[Config], int], config: Config,
               model_config: ModelConfig) -> tuple[int, int]:
  """(prompts, tokens) of a text prompt set of `count(config)` records, before tokenizing."""
  available = count(config)
  return (min(config.data.max_prompts or available, available),
          min(NOMINAL_PROMPT_LENGTH, model_config.max_seq_len))


class SweepScorer:
  """The filter's predict_fn: the sweep's own clean pass (`engine.clean_pass`), so that the
  kept answer is the token the sweep scores. It keeps the prompts' clean final-position
  components [B, C, D] (`components`, on the host) for the sweep's table."""

  def __init__(self, model):
    self.model, self.components = model, None

  def __call__(self, tokens: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    token, components = engine.clean_pass(self.model.params, self.model.config, tokens, lengths,
                                          FILTER_BATCH)
    self.components = runtime.to_host(components)
    return runtime.to_host(token)


def _text_prompts(records_of: Callable[[Config], list], config: Config, model) -> Prompts:
  """The records' prompts the model keeps, in order of length (ties in dataset order), padded
  once: one batch of every prompt that fits the context, filtered by the sweep's clean pass."""
  data = config.data
  if model.tokenizer is None:
    raise ValueError(f"data.name={data.name!r} needs a tokenizer: set --config.tokenizer=PATH")
  records = records_of(config)
  if data.max_prompts:
    records = records[:data.max_prompts]
  made = batching.make_batches(records, model.tokenizer, batch_size=max(len(records), 1),
                               max_len=model.config.max_seq_len, label_prefix=data.label_prefix,
                               length_multiple=LENGTH_MULTIPLE)
  scorer = SweepScorer(model) if data.filter_correct else None
  (kept,), report = filtering.filter_correct(made, scorer, keep_all=not data.filter_correct)
  dropped = {"longer than the context": report.too_long, "answered wrongly": report.wrong_answer}
  relation_of = {int(r["id"]): str(r.get("relation", r.get("relation_id", ""))) for r in records}
  subject_of = {int(r["id"]): str(r.get("subject", "")) for r in records}
  ids = [int(i) for i in kept.ids]
  return Prompts(ids=kept.ids, texts=kept.prompts, labels=kept.labels, tokens=kept.tokens,
                 lengths=kept.lengths, relations=tuple(relation_of[i] for i in ids),
                 subjects=tuple(batching.subject_span(model.tokenizer, text, subject_of[i])
                                for i, text in zip(ids, kept.prompts)),
                 components=None if scorer is None else scorer.components[list(report.kept_rows)],
                 counts=dict(dataset=data.name, total=report.total, kept=report.kept,
                             correct=report.correct,
                             dropped={k: v for k, v in dropped.items() if v}))


def _text_source(name: str, records_of: Callable[[Config], list], *,
                 count: Optional[Callable[[Config], int]] = None,
                 check: Optional[Callable[[Config], None]] = None,
                 tokenizer_from: Optional[str] = None) -> PromptSource:
  """A prompt set of text records; `count` (default: the records' number) for the plan."""
  count = count or (lambda config: len(records_of(config)))
  return PromptSource(name, check=check or _no_check,
                      planned=functools.partial(_text_plan, count),
                      prompts=functools.partial(_text_prompts, records_of),
                      tokenizer_from=tokenizer_from)


def _no_check(config: Config) -> None:
  del config


def _check_manual_dir(config: Config) -> None:
  """A TFDS prompt set's data.manual_dir, when set, is a directory."""
  manual_dir = config.data.manual_dir
  require(not manual_dir or os.path.isdir(manual_dir), "data.manual_dir", manual_dir,
          "no such directory")


def _check_facts_file(config: Config) -> None:
  require(os.path.isfile(config.data.facts_file), "data.facts_file", config.data.facts_file,
          "no such file")


def _tfds_records(config: Config) -> list[dict[str, Any]]:
  data = config.data
  return data_loading.load_records(data.name, data.data_dir or None, data.manual_dir or None)


# Random token prompts -------------------------------------------------------------------------


def _check_random(config: Config) -> None:
  data = config.data
  require(data.num_prompts > 1, "data.num_prompts", data.num_prompts, "must be at least 2")
  require(data.prompt_length >= 1, "data.prompt_length", data.prompt_length, "must be >= 1")
  require(not data.filter_correct, "data.filter_correct", data.filter_correct,
          "random token prompts have no labels: set it to False")


def _random_plan(config: Config, model_config: ModelConfig) -> tuple[int, int]:
  data = config.data
  require(data.prompt_length <= model_config.max_seq_len, "data.prompt_length",
          data.prompt_length, f"random token prompts of {data.prompt_length} tokens are longer "
          f"than the model's context of {model_config.max_seq_len} tokens")
  return data.num_prompts, data.prompt_length


def _random_prompts(config: Config, model) -> Prompts:
  data = config.data
  rng = np.random.RandomState(config.seed)
  tokens = rng.randint(0, model.config.vocab_size, (data.num_prompts, data.prompt_length))
  return Prompts(ids=np.arange(data.num_prompts), texts=("",) * data.num_prompts,
                 labels=("",) * data.num_prompts, tokens=tokens.astype(np.int32),
                 lengths=np.full(data.num_prompts, data.prompt_length, np.int32),
                 counts=dict(dataset="random tokens", total=data.num_prompts,
                             kept=data.num_prompts, dropped={}))


_SOURCES = (
    _text_source("embedded", lambda config: read_facts_file(
        str(embedded.ASSET_DIR / embedded.FACTS_FILE)), tokenizer_from="embedded"),
    _text_source("known_facts", _tfds_records, check=_check_manual_dir,
                 count=lambda config: known_facts.NUM_RECORDS_UPSTREAM),
    _text_source("counterfact", _tfds_records, check=_check_manual_dir,
                 count=lambda config: counterfact.NUM_RECORDS_UPSTREAM),
    _text_source("facts_file", lambda config: read_facts_file(config.data.facts_file),
                 check=_check_facts_file),
    PromptSource("random", check=_check_random, planned=_random_plan, prompts=_random_prompts,
                 needs_tokenizer=False),
)
SOURCES: dict[str, PromptSource] = {source.name: source for source in _SOURCES}


def source_of(config: Config) -> PromptSource:
  """The PromptSource of config.data.name; a one-line ValueError for an unknown name."""
  require(config.data.name in SOURCES, "data.name", config.data.name,
          f"must be one of {tuple(SOURCES)}")
  return SOURCES[config.data.name]
