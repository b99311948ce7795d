"""The tokenizer interface every format implements: text <-> token ids (`Tokenizer`), and the
argument checks its implementations share. `hydra_jax.data.tokenizers` (tokenizer.json,
SentencePiece .model) and `hydra_jax.data.gguf_tokenizer` (a GGUF file's metadata) build on it.
"""

from __future__ import annotations

import abc
from typing import Iterable, Optional


class Tokenizer(abc.ABC):
  """Text <-> ids. vocab_size counts every id the tokenizer can produce."""

  vocab_size: int
  bos_id: Optional[int]
  eos_id: Optional[int]

  @abc.abstractmethod
  def encode(self, text: str) -> list[int]:
    """Token ids of `text`, with BOS first iff the model expects it."""

  @abc.abstractmethod
  def decode(self, ids: Iterable[int]) -> str:
    """Text of `ids` (special tokens kept, as transformers' decode does by default)."""


def _check_text(text) -> str:
  if not isinstance(text, str):
    raise ValueError(f"text must be a str, got {type(text).__name__}")
  return text


def _ids(ids) -> list[int]:
  return [int(i) for i in (ids.tolist() if hasattr(ids, "tolist") else ids)]
