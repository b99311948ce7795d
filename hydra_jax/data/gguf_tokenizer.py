"""A model's tokenizer rebuilt from a GGUF file's metadata, without torch or transformers.

    tokenizer = gguf_tokenizer.from_gguf("SmolLM2-135M-Instruct.Q4_1.gguf")   # or a GGUFFile
    tokenizer.encode("Honus Wagner professionally plays the sport of")         # list[int]
    tokenizer.decode(ids), tokenizer.vocab_size, tokenizer.bos_id, tokenizer.eos_id

A GGUF file (llama.cpp's format) carries no tokenizer.json; its metadata holds the tokenizer:

  tokenizer.ggml.model        "gpt2" (byte-level BPE) or "llama" (SentencePiece); others: ValueError
  tokenizer.ggml.tokens       [n] str: id -> token text (byte-level alphabet for "gpt2")
  tokenizer.ggml.token_type   [n] int: 1 normal, 2 unknown, 3 control, 4 user-defined,
                              5 unused, 6 byte (<0x..>): SentencePiece's own numbering
  tokenizer.ggml.scores       [n] float ("llama"): a merged piece's priority, higher first
  tokenizer.ggml.merges       [m] "left right" ("gpt2"): BPE merges, highest priority first
  tokenizer.ggml.pre          ("gpt2") names the split regexes, see PRE_TOKENIZERS
  tokenizer.ggml.{bos,eos,unknown}_token_id, add_bos_token, add_eos_token, add_space_prefix

"gpt2": a `tokenizers` BPE over the tokens and merges. Text is split by the regexes that
llama.cpp uses for that `pre` name, applied in turn, each keeping both its matches and the
text between them (tokenizers' Split "isolated"), then mapped to the byte-level alphabet.
PRE_TOKENIZERS holds every name whose llama.cpp pre-type is plain regex splits (llama.cpp's
GPT-2 is "gpt-2"); a missing or unknown name is a ValueError, where llama.cpp warns and
falls back to "default". add_space_prefix does not apply to BPE, as in llama.cpp.

"llama": a SentencePiece BPE ModelProto of the tokens, scores and types, run by the
`sentencepiece` package. llama.cpp's SPM tokenizer is that algorithm (merge the adjacent
pair whose concatenation is the best-scoring piece, byte fallback to <0x..>), so a file
converted from a BPE tokenizer.model (Llama 1/2, Mistral) encodes exactly as the original.
Normalization: identity, spaces escaped to U+2581, a dummy prefix iff add_space_prefix
(default true); GGUF records no other. (Gemma files: not tested.)

Control (3) and user-defined (4) tokens are matched whole in the text, as llama.cpp and
transformers do. For "llama" both become SentencePiece user-defined pieces, so the text
around them is encoded as SentencePiece encodes text around user-defined symbols: the
dummy prefix only at the start of the text (llama.cpp also puts one after each special
token; transformers puts none before a text-initial special token).

BOS/EOS: add_bos_token / add_eos_token when present; when absent, llama.cpp's defaults:
"llama" adds BOS (as transformers' GGUF loader does), "gpt2" only for the pre names that
llama.cpp marks so (the Llama 3 family, "tekken"; transformers: never); EOS never. The ids
come only from the *_token_id keys (not llama.cpp's fallbacks, 1/2 for "llama", 11 for
"gpt2"): adding a token the file does not name is an error. decode keeps special tokens,
as transformers' decode does, and does not clean up spaces.

Known differences from transformers' GGUF loader (5.x, which reads the same keys): it
knows few pre names and uses GPT-2's regex for the rest ("smollm": no digit split; no
difference on SmolLM2, whose vocabulary has no token spanning two digits), and it drops
the dummy prefix of "llama" text that starts with a space (" Paris" -> "▁Paris", where
SentencePiece and llama.cpp give "▁▁Paris").

Sources: llama.cpp src/llama-vocab.cpp (llama_vocab::impl::load: names, defaults;
llm_tokenizer_bpe: regexes; llm_tokenizer_spm), transformers integrations/gguf
(gguf_tokenizer_mapping.py), sentencepiece's sentencepiece_model.proto.

Every error is a one-line ValueError naming the file.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterable, NamedTuple, Optional

import sentencepiece
import tokenizers as hf_tokenizers

from hydra_jax.checkpoints.gguf_file import GGUFFile
from hydra_jax.data.tokenizer_base import Tokenizer, _check_text, _ids

NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6


class PreTokenizer(NamedTuple):
  """How llama.cpp pre-tokenizes for one `tokenizer.ggml.pre` name."""
  splits: tuple[str, ...]       # regexes applied in turn (matches and gaps both kept)
  add_bos: bool = False         # llama.cpp's add_bos when the file has no add_bos_token
  ignore_merges: bool = False   # a split that is itself a token is not merged (Llama 3)


_GPT2 = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)"
_CONTRACTIONS = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])"
_LLAMA3 = (_CONTRACTIONS + r"|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
           r"|\s*[\r\n]+|\s+(?!\S)|\s+")
_QWEN2 = _LLAMA3.replace(r"\p{N}{1,3}", r"\p{N}")
_PORO = r" ?[^(\s|.,!?…。，、।۔،)]+"
_CJK = "[\u4e00-\u9fa5\u0800-\u4e00\uac00-\ud7ff]+"
# Tekken's and GPT-4o's regexes as their tokenizer.json spells them (llama.cpp rewrites
# \p{Lu}... with lookaheads for std::regex; the `tokenizers` engine takes the original).
_UPPER, _LOWER = r"[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]", r"[\p{Ll}\p{Lm}\p{Lo}\p{M}]"
_TEKKEN = (rf"[^\r\n\p{{L}}\p{{N}}]?{_UPPER}*{_LOWER}+|[^\r\n\p{{L}}\p{{N}}]?{_UPPER}+{_LOWER}*"
           r"|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+")
_SUFFIX = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)?"
_GPT4O = (rf"[^\r\n\p{{L}}\p{{N}}]?{_UPPER}*{_LOWER}+{_SUFFIX}"
          rf"|[^\r\n\p{{L}}\p{{N}}]?{_UPPER}+{_LOWER}*{_SUFFIX}"
          r"|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+")
_DEEPSEEK3 = (r"\p{N}{1,3}", "[\u4e00-\u9fa5\u3040-\u309f\u30a0-\u30ff]+",
              r"[!\"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+|[^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+"
              r"| ?[\p{P}\p{S}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")

# tokenizer.ggml.pre -> its pre-tokenizer: llama.cpp's name -> pre-type table (llama_vocab::
# impl::load) and its regexes per pre-type (llm_tokenizer_bpe). Left out, so an error: custom
# splitters (kimi-k2, afmoe, superbpe, chameleon), deepseek-llm (a long literal letter class),
# glm4 (no BOS id), jina-v1-en / jina-v2-code / roberta-bpe (add SEP), bailingmoe, seed-coder.
PRE_TOKENIZERS: dict[str, PreTokenizer] = {
    "default": PreTokenizer((r"[\p{P}\$\+<=>\^~\|]+", _GPT2, r"\p{N}+", r"[0-9][0-9][0-9]")),
    **dict.fromkeys(("llama3", "llama-v3", "llama-bpe", "falcon3", "falcon-h1", "pixtral",
                     "midm-2.0", "lfm2"), PreTokenizer((_LLAMA3,), add_bos=True, ignore_merges=True)),
    **dict.fromkeys(("dbrx", "smaug-bpe"), PreTokenizer((_LLAMA3,))),
    "deepseek-coder": PreTokenizer((r"[\r\n]", r"\s?\p{L}+", r"\s?\p{P}+", _CJK, r"\p{N}")),
    **dict.fromkeys(("deepseek-v3", "hunyuan-dense"), PreTokenizer(_DEEPSEEK3)),
    "falcon": PreTokenizer((r"[\p{P}\$\+<=>\^~\|`]+", _GPT2, r"[0-9][0-9][0-9]")),
    **dict.fromkeys(("gpt-2", "phi-2", "jina-es", "jina-de", "gigachat", "jina-v2-es", "jina-v2-de",
                     "a.x-4.0", "mellum", "mpt", "olmo", "jais", "trillion", "granite-docling",
                     "exaone4"), PreTokenizer((_GPT2,))),
    **dict.fromkeys(("starcoder", "refact", "command-r", "smollm", "codeshell", "exaone",
                     "minerva-7b"), PreTokenizer((r"\p{N}", _GPT2))),
    **dict.fromkeys(("qwen2", "deepseek-r1-qwen", "kormo", "megrez", "stablelm2", "hunyuan",
                     "grok-2"), PreTokenizer((_QWEN2,))),
    **dict.fromkeys(("poro-chat", "bloom", "gpt3-finnish"), PreTokenizer((_PORO,))),
    "viking": PreTokenizer((_PORO, r"\p{N}")),
    "tekken": PreTokenizer((_TEKKEN,), add_bos=True, ignore_merges=True),
    **dict.fromkeys(("gpt-4o", "llama4", "minimax-m2"), PreTokenizer((_GPT4O,))),
}


class GGUFTokenizer(Tokenizer):
  """Ids of a GGUF file's tokenizer; `encode` adds BOS/EOS as add_bos / add_eos say."""

  def __init__(self, path: Path, model: str, vocab_size: int, bos: tuple[Optional[int], bool],
               eos: tuple[Optional[int], bool]):
    self.path, self.model, self.vocab_size = path, model, vocab_size
    (self.bos_id, self.add_bos), (self.eos_id, self.add_eos) = bos, eos

  def _encode(self, text: str) -> list[int]:
    raise NotImplementedError

  def encode(self, text: str) -> list[int]:
    ids = self._encode(_check_text(text))
    return [self.bos_id] * self.add_bos + ids + [self.eos_id] * self.add_eos


class ByteLevelBPETokenizer(GGUFTokenizer):
  """tokenizer.ggml.model "gpt2", run by the `tokenizers` package."""

  def __init__(self, backend: hf_tokenizers.Tokenizer, **fields):
    super().__init__(model="gpt2", **fields)
    self._backend = backend

  def _encode(self, text: str) -> list[int]:
    return self._backend.encode(text, add_special_tokens=False).ids

  def decode(self, ids: Iterable[int]) -> str:
    return self._backend.decode(_ids(ids), skip_special_tokens=False)


class SentencePieceGGUFTokenizer(GGUFTokenizer):
  """tokenizer.ggml.model "llama", run by the `sentencepiece` package."""

  def __init__(self, processor: sentencepiece.SentencePieceProcessor, **fields):
    super().__init__(model="llama", **fields)
    self._processor = processor

  def _encode(self, text: str) -> list[int]:
    return self._processor.encode(text)

  def decode(self, ids: Iterable[int]) -> str:
    return self._processor.decode(_ids(ids))


def _get(path: Path, metadata, key: str, default: Any = None, kind: type = object) -> Any:
  """metadata[key] (default when absent), checked to be a `kind`."""
  value = metadata.get(key, default)
  if value is not default and not isinstance(value, kind):
    raise ValueError(f"{path}: {key} is a {type(value).__name__}, expected {kind.__name__}")
  return value


def _tokens(path: Path, metadata) -> tuple[list[str], list[int]]:
  """The token texts (distinct, as llama.cpp requires) and their types (default normal)."""
  tokens = _get(path, metadata, "tokenizer.ggml.tokens", kind=list)
  if not tokens:
    raise ValueError(f"{path}: no tokenizer.ggml.tokens: the file holds no tokenizer")
  if len(set(tokens)) != len(tokens):
    raise ValueError(f"{path}: tokenizer.ggml.tokens has {len(tokens) - len(set(tokens))} duplicate(s)")
  types = _get(path, metadata, "tokenizer.ggml.token_type", [NORMAL] * len(tokens), list)
  if len(types) != len(tokens) or not set(types) <= {NORMAL, UNKNOWN, CONTROL, USER_DEFINED,
                                                      UNUSED, BYTE}:
    raise ValueError(f"{path}: tokenizer.ggml.token_type must hold {len(tokens)} types in 1..6, "
                     f"got {len(types)} with {sorted(set(types))}")
  return tokens, types


def _special(path: Path, metadata, name: str, add_default: bool, n: int) -> tuple[Optional[int], bool]:
  """(id, add) for "bos" / "eos": tokenizer.ggml.<name>_token_id and add_<name>_token."""
  token_id = _get(path, metadata, f"tokenizer.ggml.{name}_token_id", kind=int)
  add = _get(path, metadata, f"tokenizer.ggml.add_{name}_token", add_default, bool)
  if token_id is not None and not 0 <= token_id < n:
    raise ValueError(f"{path}: tokenizer.ggml.{name}_token_id {token_id} is not below the "
                     f"vocabulary size {n}")
  if add and token_id is None:
    raise ValueError(f"{path}: the tokenizer adds {name.upper()} but the file has no "
                     f"tokenizer.ggml.{name}_token_id")
  return token_id, add


def _pre_tokenizer(path: Path, metadata) -> PreTokenizer:
  name = _get(path, metadata, "tokenizer.ggml.pre", kind=str)
  if name not in PRE_TOKENIZERS:
    raise ValueError(f"{path}: tokenizer.ggml.pre {name!r} is not a known pre-tokenizer; "
                     f"supported: {', '.join(sorted(PRE_TOKENIZERS))}")
  return PRE_TOKENIZERS[name]


def _merge(merge: str) -> tuple[str, str]:
  """"left right" split at the first space after the first character, as llama.cpp does."""
  cut = merge.find(" ", 1)
  return (merge[:cut], merge[cut + 1:]) if cut > 0 else (merge, "")


def _byte_level_bpe(path: Path, metadata) -> ByteLevelBPETokenizer:
  pre = _pre_tokenizer(path, metadata)
  tokens, types = _tokens(path, metadata)
  merges = _get(path, metadata, "tokenizer.ggml.merges", kind=list)
  if merges is None:
    raise ValueError(f"{path}: a \"gpt2\" tokenizer needs tokenizer.ggml.merges; the file has none")
  models, pre_tokenizers = hf_tokenizers.models, hf_tokenizers.pre_tokenizers
  try:
    backend = hf_tokenizers.Tokenizer(models.BPE({t: i for i, t in enumerate(tokens)},
                                                 [_merge(m) for m in merges],
                                                 ignore_merges=pre.ignore_merges))
  except Exception as error:   # `tokenizers` raises a bare Exception for a bad merge
    raise ValueError(f"{path}: tokenizer.ggml.merges do not fit the tokens: {error}") from None
  backend.pre_tokenizer = pre_tokenizers.Sequence(
      [pre_tokenizers.Split(hf_tokenizers.Regex(split), behavior="isolated") for split in pre.splits]
      + [pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
  backend.decoder = hf_tokenizers.decoders.ByteLevel()
  whole = lambda kind, special: [hf_tokenizers.AddedToken(t, special=special, normalized=False)
                                 for t, k in zip(tokens, types) if k == kind]
  backend.add_special_tokens(whole(CONTROL, True))
  backend.add_tokens(whole(USER_DEFINED, False))
  return ByteLevelBPETokenizer(backend, path=path, vocab_size=len(tokens),
                               bos=_special(path, metadata, "bos", pre.add_bos, len(tokens)),
                               eos=_special(path, metadata, "eos", False, len(tokens)))


def _model_proto(path: Path, metadata, tokens: list[str], types: list[int]) -> bytes:
  """A SentencePiece BPE model of the pieces; control pieces become user-defined ones
  (matched whole in the text, kept by decode)."""
  try:
    from sentencepiece import sentencepiece_model_pb2 as model_pb2   # needs protobuf
  except ImportError as error:
    raise ValueError(f"{path}: a \"llama\" tokenizer needs protobuf ({error})") from None
  proto = model_pb2.ModelProto()
  proto.trainer_spec.model_type = model_pb2.TrainerSpec.BPE
  proto.trainer_spec.byte_fallback = BYTE in types
  normalizer = proto.normalizer_spec
  normalizer.name, normalizer.escape_whitespaces, normalizer.remove_extra_whitespaces = (
      "identity", True, False)
  normalizer.add_dummy_prefix = _get(path, metadata, "tokenizer.ggml.add_space_prefix", True, bool)
  scores = _get(path, metadata, "tokenizer.ggml.scores", [0.0] * len(tokens), list)
  if len(scores) != len(tokens):
    raise ValueError(f"{path}: tokenizer.ggml.scores holds {len(scores)} scores for {len(tokens)} tokens")
  unknown = _get(path, metadata, "tokenizer.ggml.unknown_token_id", kind=int)
  for index, (token, score, kind) in enumerate(zip(tokens, scores, types)):
    kind = USER_DEFINED if kind == CONTROL else UNKNOWN if index == unknown else kind
    proto.pieces.add(piece=token, score=score, type=kind)
  return proto.SerializeToString()


def _sentencepiece(path: Path, metadata) -> SentencePieceGGUFTokenizer:
  tokens, types = _tokens(path, metadata)
  processor = sentencepiece.SentencePieceProcessor()
  try:
    processor.LoadFromSerializedProto(_model_proto(path, metadata, tokens, types))
  except RuntimeError as error:
    reason = " ".join(str(error).split())
    raise ValueError(f"{path}: the tokens do not make a SentencePiece model: {reason}") from None
  return SentencePieceGGUFTokenizer(processor, path=path, vocab_size=len(tokens),
                                    bos=_special(path, metadata, "bos", True, len(tokens)),
                                    eos=_special(path, metadata, "eos", False, len(tokens)))


_BUILDERS = {"gpt2": _byte_level_bpe, "llama": _sentencepiece}


def from_gguf(path_or_file: str | os.PathLike | GGUFFile) -> GGUFTokenizer:
  """The tokenizer a GGUF file's tokenizer.ggml.* metadata describes (see the module)."""
  if not isinstance(path_or_file, GGUFFile):
    with GGUFFile(path_or_file) as file:
      return from_gguf(file)
  path, metadata = path_or_file.path, path_or_file.metadata
  model = _get(path, metadata, "tokenizer.ggml.model")
  if model not in _BUILDERS:
    found = "has no tokenizer.ggml.model" if model is None else f"has tokenizer.ggml.model {model!r}"
    raise ValueError(f"{path}: {found}; supported: {', '.join(map(repr, _BUILDERS))}")
  return _BUILDERS[model](path, metadata)
