"""Tokenized prompts in right-padded, length-bucketed batches, and right-padding itself.

Shapes (B = prompts in a batch, T = padded length of that batch):

    tokens        int32 [B, T]   prompt tokens, right-padded with `pad_id`
    lengths       int32 [B]      real tokens per row; the prompt's final position is lengths - 1
    ids           int64 [B]      record ids (known_id / case_id)
    label_tokens  int32 [B]      first token of each label, the token a correct model predicts
    prompts, labels              tuple[str] of length B

Bucketing: prompts are sorted by token count (ties keep record order; with
`sort_by_length=False` they stay in record order) and cut into chunks of `batch_size`;
each chunk is right-padded to its longest prompt rounded up to a multiple of
`length_multiple` (fewer distinct shapes, fewer jit recompiles), capped at `max_len` but
never below that longest prompt. Only the last chunk may have fewer than `batch_size`
rows; no rows are added to fill it.

Tokenizer: anything with `.encode(text) -> list[int]` (adding BOS itself when the model
wants one) and `.vocab_size`. The label token is the first token of
`encode(label_prefix + label)` once the tokens the tokenizer adds to every text (those of
`encode("")`, e.g. BOS) are stripped. `label_prefix=" "` suits byte-level BPE (GPT-2,
Pythia: " baseball" is one token "Ġbaseball", "baseball" is not). SentencePiece
(Llama, Gemma, Chinchilla) already marks a word start with its dummy prefix, so use
`label_prefix=""` there: "baseball" encodes as "▁baseball".

Prompts longer than `max_len` tokens (the model's context) are dropped and counted
(`on_too_long="drop"`) or raise (`on_too_long="error"`).
"""

from __future__ import annotations

import dataclasses
import itertools
from typing import Any, Iterator, Mapping, Optional, Protocol, Sequence

import numpy as np

ON_TOO_LONG = ("drop", "error")


class Tokenizer(Protocol):
  vocab_size: int

  def encode(self, text: str) -> list[int]:
    ...


@dataclasses.dataclass(frozen=True)
class TokenizedPrompt:
  """One prompt before batching: its record id, texts, tokens and label token."""
  id: int
  prompt: str
  label: str
  tokens: tuple[int, ...]
  label_token: int


@dataclasses.dataclass(frozen=True)
class PromptBatch:
  """B right-padded prompts: tokens [B, T], lengths [B], ids [B], label_tokens [B] and texts."""
  tokens: np.ndarray
  lengths: np.ndarray
  ids: np.ndarray
  prompts: tuple[str, ...]
  labels: tuple[str, ...]
  label_tokens: np.ndarray
  pad_id: int = 0

  def __post_init__(self):
    batch = self.tokens.shape[0]
    sizes = {len(self.lengths), len(self.ids), len(self.prompts), len(self.labels),
             len(self.label_tokens)}
    if self.tokens.ndim != 2 or sizes != {batch}:
      raise ValueError(f"inconsistent PromptBatch: tokens {self.tokens.shape}, lengths "
                       f"{len(self.lengths)}, ids {len(self.ids)}, prompts {len(self.prompts)}, "
                       f"labels {len(self.labels)}, label_tokens {len(self.label_tokens)}")

  @property
  def batch_size(self) -> int:
    return self.tokens.shape[0]

  @property
  def padded_length(self) -> int:
    return self.tokens.shape[1]

  def select(self, keep: np.ndarray) -> "PromptBatch":
    """The rows where boolean `keep` [B] is true, with the same padded length T."""
    keep = np.asarray(keep, dtype=bool)
    index = np.flatnonzero(keep)
    return PromptBatch(
        tokens=self.tokens[index], lengths=self.lengths[index], ids=self.ids[index],
        prompts=tuple(self.prompts[i] for i in index),
        labels=tuple(self.labels[i] for i in index),
        label_tokens=self.label_tokens[index], pad_id=self.pad_id)


@dataclasses.dataclass(frozen=True)
class Batching:
  """The batches made from `total` records, and the ids of those dropped as too long."""
  batches: tuple[PromptBatch, ...]
  total: int
  too_long_ids: tuple[int, ...]
  max_len: int

  def __iter__(self) -> Iterator[PromptBatch]:
    return iter(self.batches)

  def __len__(self) -> int:
    return len(self.batches)

  @property
  def num_prompts(self) -> int:
    return sum(batch.batch_size for batch in self.batches)


def make_batches(records: Sequence[Mapping[str, Any]], tokenizer: Tokenizer, *,
                 batch_size: int, max_len: int, on_too_long: str = "drop",
                 label_prefix: str = " ", pad_id: int = 0, length_multiple: int = 1,
                 sort_by_length: bool = True) -> Batching:
  """Tokenizes records (each with `id`, `prompt`, `label`) into length-bucketed batches.

  Raises ValueError for an empty record list, a malformed record, a prompt or label that
  encodes to no tokens, a token outside [0, vocab_size), `on_too_long="error"` meeting a
  prompt longer than `max_len`, or when every prompt is too long.
  """
  if on_too_long not in ON_TOO_LONG:
    raise ValueError(f"on_too_long must be one of {ON_TOO_LONG}, got {on_too_long!r}")
  if max_len < 1:
    raise ValueError(f"max_len must be positive, got {max_len}")
  check_token_ids([pad_id], tokenizer.vocab_size, "pad_id")
  if not records:
    raise ValueError("no records to batch")
  prompts = tokenize_records(records, tokenizer, label_prefix=label_prefix)
  fitting = [p for p in prompts if len(p.tokens) <= max_len]
  too_long = [p for p in prompts if len(p.tokens) > max_len]
  if too_long and on_too_long == "error":
    worst = max(too_long, key=lambda p: len(p.tokens))
    raise ValueError(f"{len(too_long)} of {len(prompts)} prompts are longer than max_len="
                     f"{max_len} tokens (e.g. id {worst.id}: {len(worst.tokens)} tokens)")
  if not fitting:
    raise ValueError(f"all {len(prompts)} prompts are longer than max_len={max_len} tokens")
  batches = bucket(fitting, batch_size=batch_size, pad_id=pad_id,
                   length_multiple=length_multiple, max_len=max_len,
                   sort_by_length=sort_by_length)
  return Batching(batches=tuple(batches), total=len(prompts),
                  too_long_ids=tuple(p.id for p in too_long), max_len=max_len)


def tokenize_records(records: Sequence[Mapping[str, Any]], tokenizer: Tokenizer, *,
                     label_prefix: str = " ") -> list[TokenizedPrompt]:
  """Each record's prompt tokens and label token (see the module docstring)."""
  added = list(tokenizer.encode(""))  # tokens the tokenizer adds to any text, e.g. [BOS]
  prompts = []
  for index, record in enumerate(records):
    where = _describe(index, record)
    if not isinstance(record, Mapping):
      raise ValueError(f"{where} is a {type(record).__name__}, expected a mapping")
    for field in ("id", "prompt", "label"):
      if field not in record:
        raise ValueError(f"{where}: missing field '{field}'")
    tokens = [int(t) for t in tokenizer.encode(record["prompt"])]
    if len(tokens) <= len(added) and tokens == added[:len(tokens)]:
      raise ValueError(f"{where}: prompt {record['prompt']!r} encodes to no tokens of its own")
    check_token_ids(tokens, tokenizer.vocab_size, f"{where}: prompt")
    prompts.append(TokenizedPrompt(
        id=int(record["id"]), prompt=record["prompt"], label=record["label"],
        tokens=tuple(tokens),
        label_token=first_label_token(tokenizer, record["label"], label_prefix=label_prefix,
                                      added=added, where=where)))
  return prompts


def subject_span(tokenizer: Tokenizer, prompt: str, subject: str) -> tuple[int, int]:
  """(start, end): the positions of `subject`'s tokens in tokenizer.encode(prompt), from the
  lengths of the encoded prefixes up to its first occurrence and up to its end (the same
  added tokens, e.g. BOS, count in all three); (0, 0) when the prompt does not contain it."""
  where = prompt.find(subject) if subject else -1
  if where < 0:
    return 0, 0
  length = lambda text: len(tokenizer.encode(text))
  total = length(prompt)
  start = min(length(prompt[:where]), total) if where else len(tokenizer.encode(""))
  return start, min(max(length(prompt[:where + len(subject)]), start + 1), total)


def first_label_token(tokenizer: Tokenizer, label: str, *, label_prefix: str = " ",
                      added: Optional[list[int]] = None, where: str = "label") -> int:
  """The first token of `label_prefix + label`, skipping what the tokenizer adds (e.g. BOS)."""
  added = list(tokenizer.encode("")) if added is None else added
  tokens = [int(t) for t in tokenizer.encode(label_prefix + label)]
  if tokens[:len(added)] == added:
    tokens = tokens[len(added):]
  if not tokens:
    raise ValueError(f"{where}: label {label!r} encodes to no tokens")
  check_token_ids(tokens[:1], tokenizer.vocab_size, f"{where}: label")
  return tokens[0]


def bucket(prompts: Sequence[TokenizedPrompt], *, batch_size: int, pad_id: int = 0,
           length_multiple: int = 1, max_len: Optional[int] = None,
           sort_by_length: bool = True) -> list[PromptBatch]:
  """Sorts prompts by length (stable) and pads each chunk of `batch_size` into a PromptBatch."""
  if batch_size < 1 or length_multiple < 1:
    raise ValueError(f"batch_size and length_multiple must be positive, got {batch_size} "
                     f"and {length_multiple}")
  ordered = sorted(prompts, key=lambda p: len(p.tokens)) if sort_by_length else list(prompts)
  return [pad_batch(ordered[start:start + batch_size], pad_id=pad_id,
                    length_multiple=length_multiple, max_len=max_len)
          for start in range(0, len(ordered), batch_size)]


def right_pad(rows: Sequence[Sequence[int]], length: int,
              pad_id: int = 0) -> tuple[np.ndarray, np.ndarray]:
  """(tokens int32 [B, T=length], lengths int32 [B]): token rows, each followed by pad_id.

  The one home of right-padding: batches of prompts, the main job's kept prompts [N, T],
  training batches and the embedded model's evaluation all pad with it. A row longer
  than `length` is a ValueError.
  """
  lengths = np.array([len(row) for row in rows], np.int32)                   # [B]
  if len(rows) and lengths.max() > length:
    raise ValueError(f"a token row of {lengths.max()} tokens does not fit length={length}")
  tokens = np.full((len(rows), length), pad_id, np.int32)                    # [B, T]
  real = np.arange(length)[None, :] < lengths[:, None]                       # [B, T]
  tokens[real] = np.fromiter(itertools.chain.from_iterable(rows), np.int32, int(lengths.sum()))
  return tokens, lengths


def pad_batch(prompts: Sequence[TokenizedPrompt], *, pad_id: int = 0, length_multiple: int = 1,
              max_len: Optional[int] = None) -> PromptBatch:
  """Right-pads prompts to their longest length rounded up to `length_multiple` (<= max_len)."""
  longest = max(len(p.tokens) for p in prompts)
  padded_length = -(-longest // length_multiple) * length_multiple
  if max_len is not None:
    padded_length = max(longest, min(padded_length, max_len))
  tokens, lengths = right_pad([p.tokens for p in prompts], padded_length, pad_id)  # [B, T], [B]
  return PromptBatch(
      tokens=tokens, lengths=lengths,
      ids=np.array([p.id for p in prompts], dtype=np.int64),  # [B]
      prompts=tuple(p.prompt for p in prompts),
      labels=tuple(p.label for p in prompts),
      label_tokens=np.array([p.label_token for p in prompts], dtype=np.int32),  # [B]
      pad_id=pad_id)


def check_token_ids(tokens: Sequence[int], vocab_size: int, what: str) -> None:
  bad = [t for t in tokens if not 0 <= t < vocab_size]
  if bad:
    raise ValueError(f"{what}: token ids {bad[:5]} outside [0, vocab_size={vocab_size})")


def _describe(index: int, record: Mapping[str, Any]) -> str:
  if isinstance(record, Mapping) and "id" in record:
    return f"record #{index} (id={record['id']!r})"
  return f"record #{index}"
