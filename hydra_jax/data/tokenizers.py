"""Tokenizers: text <-> token ids, one small interface over the two formats checkpoints ship.

    tokenizer = tokenizers.load(path)        # a checkpoint directory, tokenizer.json or .model
    ids = tokenizer.encode("Honus Wagner professionally plays the sport of")   # list[int]
    tokenizer.decode(ids), tokenizer.vocab_size, tokenizer.bos_id, tokenizer.eos_id

`encode` adds the beginning-of-sequence token iff the model expects it, so prompts get
exactly the ids the model was trained on (and that `transformers.AutoTokenizer` of the
same directory produces):

  HFTokenizer             tokenizer.json, run by the `tokenizers` package. BOS/EOS policy as
                          transformers 5 applies it: tokenizer.json's own post-processor decides
                          (e.g. Llama's template "<s> $A", GPT-2's none); add_bos_token /
                          add_eos_token in tokenizer_config.json are ignored when a
                          tokenizer.json exists (transformers drops them). The constructor's
                          add_bos / add_eos override it.
  SentencePieceTokenizer  a SentencePiece .model file (the `sentencepiece` package), with an
                          explicit add_bos (the embedded model and Chinchilla-style models
                          are trained with BOS first).

`load` picks by what the path holds: tokenizer.json first, then tokenizer.model. A
SentencePiece model inside a Hugging Face directory (one with tokenizer_config.json)
follows that file's add_bos_token (absent: no BOS, as transformers does); a bare .model
file, or one in a directory of hydra_jax's own, gets BOS. SentencePiece itself encodes
such a model (it is what the model was trained with); transformers' conversion of it
agrees except on text that starts with a space, where it drops the dummy prefix.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterable, Optional

import sentencepiece
import tokenizers as hf_tokenizers

from hydra_jax.data import gguf_tokenizer
from hydra_jax.data.tokenizer_base import Tokenizer, _check_text, _ids  # noqa: F401  (Tokenizer re-exported)

TOKENIZER_JSON = "tokenizer.json"
SENTENCEPIECE_MODEL = "tokenizer.model"
TOKENIZER_CONFIG = "tokenizer_config.json"
SPECIAL_TOKENS_MAP = "special_tokens_map.json"


def _read_json(path: Path) -> dict[str, Any]:
  return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def _token_text(token) -> Optional[str]:
  """A special token as tokenizer_config.json writes it: a string or {"content": ...}."""
  return token.get("content") if isinstance(token, dict) else token


class HFTokenizer(Tokenizer):
  """A tokenizer.json (Hugging Face `tokenizers`), with transformers' BOS/EOS policy.

  add_bos / add_eos: None keeps tokenizer.json's post-processor; True/False replaces it
  by "[BOS] $A [EOS]" with exactly those tokens. bos_token / eos_token: their text, when
  tokenizer_config.json / special_tokens_map.json beside the file do not name them.
  """

  def __init__(self, tokenizer_file: str | os.PathLike, *, add_bos: Optional[bool] = None,
               add_eos: Optional[bool] = None, bos_token: Optional[str] = None,
               eos_token: Optional[str] = None):
    path = Path(tokenizer_file)
    if not path.is_file():
      raise ValueError(f"tokenizer_file {str(path)!r} does not exist")
    self._backend = hf_tokenizers.Tokenizer.from_file(str(path))
    settings = _read_json(path.parent / SPECIAL_TOKENS_MAP) | _read_json(path.parent / TOKENIZER_CONFIG)
    bos_token = bos_token or _token_text(settings.get("bos_token"))
    eos_token = eos_token or _token_text(settings.get("eos_token"))
    self.bos_id = None if bos_token is None else self._backend.token_to_id(bos_token)
    self.eos_id = None if eos_token is None else self._backend.token_to_id(eos_token)
    self.vocab_size = self._backend.get_vocab_size(with_added_tokens=True)

    if add_bos is not None or add_eos is not None:
      self._backend.post_processor = self._template(
          (bos_token, self.bos_id) if add_bos and self.bos_id is not None else None,
          (eos_token, self.eos_id) if add_eos and self.eos_id is not None else None)

  @staticmethod
  def _template(bos, eos):
    """The post-processor "[BOS] $A [EOS]" (each (text, id) or None), as transformers builds it."""
    around = lambda segment: " ".join(
        ([f"{bos[0]}:{segment}"] if bos else []) + [f"${'AB'[segment]}:{segment}"]
        + ([f"{eos[0]}:{segment}"] if eos else []))
    return hf_tokenizers.processors.TemplateProcessing(single=around(0), pair=f"{around(0)} {around(1)}",
                                         special_tokens=[t for t in (bos, eos) if t])

  def encode(self, text: str) -> list[int]:
    return self._backend.encode(_check_text(text)).ids

  def decode(self, ids: Iterable[int]) -> str:
    return self._backend.decode(_ids(ids), skip_special_tokens=False)


class SentencePieceTokenizer(Tokenizer):
  """A SentencePiece model file; BOS (and EOS) added as the arguments say."""

  def __init__(self, model_file: str | os.PathLike, add_bos: bool = True, add_eos: bool = False):
    if not Path(model_file).is_file():
      raise ValueError(f"model_file {str(model_file)!r} does not exist")
    self._processor = sentencepiece.SentencePieceProcessor(model_file=str(model_file))
    self.bos_id = self._processor.bos_id() if self._processor.bos_id() >= 0 else None
    self.eos_id = self._processor.eos_id() if self._processor.eos_id() >= 0 else None
    if add_bos and self.bos_id is None:
      raise ValueError(f"add_bos=True but {model_file} defines no BOS piece")
    if add_eos and self.eos_id is None:
      raise ValueError(f"add_eos=True but {model_file} defines no EOS piece")
    self.add_bos, self.add_eos = bool(add_bos), bool(add_eos)
    self.vocab_size = self._processor.get_piece_size()

  def encode(self, text: str) -> list[int]:
    return self._processor.encode(_check_text(text), add_bos=self.add_bos, add_eos=self.add_eos)

  def decode(self, ids: Iterable[int]) -> str:
    return self._processor.decode(_ids(ids))


def load(path: str | os.PathLike) -> Tokenizer:
  """The tokenizer at `path`: a directory (tokenizer.json, else tokenizer.model), a
  tokenizer.json file, a SentencePiece .model file, or a GGUF file (gguf_tokenizer)."""
  path = Path(path)
  if path.is_file():
    if path.suffix == ".model":
      return SentencePieceTokenizer(path, add_bos=True)
    if path.suffix == ".json":
      return HFTokenizer(path)
    if path.suffix == ".gguf":
      return gguf_tokenizer.from_gguf(path)
    raise ValueError(f"path {str(path)!r}: expected a tokenizer.json, a SentencePiece .model "
                     "or a .gguf file")
  if (path / TOKENIZER_JSON).is_file():
    return HFTokenizer(path / TOKENIZER_JSON)
  if (path / SENTENCEPIECE_MODEL).is_file():
    config = path / TOKENIZER_CONFIG
    add_bos = bool(_read_json(config).get("add_bos_token", False)) if config.is_file() else True
    add_eos = bool(_read_json(config).get("add_eos_token", False))
    return SentencePieceTokenizer(path / SENTENCEPIECE_MODEL, add_bos=add_bos, add_eos=add_eos)
  raise ValueError(f"path {str(path)!r} holds neither {TOKENIZER_JSON} nor {SENTENCEPIECE_MODEL}")
