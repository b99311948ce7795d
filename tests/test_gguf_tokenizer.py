"""from_gguf: a tokenizer rebuilt from a GGUF file's metadata encodes as the tokenizer the file
was written from, and as transformers' GGUF loader reading the same file.

Each original tokenizer is trained here, offline, on the known-facts prompts and answers
(../shared/data/known_1000.json; without it, on the texts below) and written with
gguf.GGUFWriter into a small GGUF file: architecture "llama", the tokenizer keys, no tensors.
  smollm   byte-level BPE, digits split one by one, then the GPT-2 regex (tokenizer.ggml.pre
           "smollm"), no BOS, as SmolLM2
  gpt-2    byte-level BPE with GPT-2's regex (llama.cpp's name "gpt-2"), add_bos_token true
  llama    a SentencePiece BPE with byte fallback, trained as Llama's (identity normalization,
           split digits), add_bos_token true

Every test runs on the texts made here (digits, punctuation, unicode, leading and trailing
spaces, tabs and newlines, special tokens inside text) and on the 2,418 known-facts texts
(each prompt and " " + its answer); the latter skip, saying why, without the file.

Runtime: about 20 s, most of it importing transformers.
"""

import functools
import io
import json

import gguf
import pytest
import sentencepiece as spm
import transformers
from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors, trainers

from hydra_jax.data import gguf_tokenizer, tokenizers
from tests.conftest import SHARED_DATA

KNOWN_FACTS = SHARED_DATA / "known_1000.json"
MADE = ["In 1987, 12345 people paid $3.50 (1,000.25 each) in 2024.",
        "Hello, world! It's 'quoted'; they're -- done?! #tag @user {x: [1, 2]}",
        "Café déjà vu — naïve Ünïcödé 日本語 😀 Ελληνικά",
        "  two leading spaces", " one leading space", "trailing spaces  ",
        "tabs\tand\nnew\n\nlines \n end", "a"]
BPE_SPECIAL = ["<|im_start|>user\nWhat is 2+2?<|im_end|>", "x<think>y <|endoftext|> z"]
SPM_USER_DEFINED = ["a<sep>b", "x <sep> y"]
SPM_CONTROL = {"x<s>y": 1, "Hi </s> there": 2}   # original SentencePiece does not parse control pieces
ARCH_KEYS = {"llama.context_length": 64, "llama.embedding_length": 8, "llama.block_count": 1,
             "llama.feed_forward_length": 16, "llama.attention.head_count": 2,
             "llama.attention.head_count_kv": 2, "llama.attention.layer_norm_rms_epsilon": 1e-5}


def _known_facts() -> list[str]:
  if not KNOWN_FACTS.is_file():
    pytest.skip(f"{KNOWN_FACTS} is absent (the known-facts prompts live in ../shared/data)")
  records = json.loads(KNOWN_FACTS.read_text(encoding="utf-8"))
  return [r["prompt"] for r in records] + [" " + r["attribute"] for r in records]


def _corpus() -> list[str]:
  return (_known_facts() if KNOWN_FACTS.is_file() else []) + MADE * 20


@pytest.fixture(params=["made", "known_facts"])
def texts(request) -> list[str]:
  return MADE if request.param == "made" else _known_facts()


def _write(path, fields: dict) -> None:
  """A GGUF file of architecture "llama" holding ARCH_KEYS and `fields`, no tensors."""
  writer = gguf.GGUFWriter(str(path), "llama")
  for key, value in (ARCH_KEYS | fields).items():
    if isinstance(value, list):
      writer.add_array(key, value)
    else:
      writer.add_key_value(key, value, gguf.GGUFValueType.get_type(value))
  writer.write_header_to_file()
  writer.write_kv_data_to_file()
  writer.write_tensors_to_file()
  writer.close()


def _byte_level_fields(original: Tokenizer, pre: str, **extra) -> dict:
  """The tokenizer.ggml.* keys llama.cpp's converter writes for a byte-level BPE."""
  spec = json.loads(original.to_str())
  vocab = original.get_vocab(with_added_tokens=True)
  added = {token["content"]: token["special"] for token in spec["added_tokens"]}
  tokens = sorted(vocab, key=vocab.get)
  return {"tokenizer.ggml.model": "gpt2", "tokenizer.ggml.pre": pre, "tokenizer.ggml.tokens": tokens,
          "tokenizer.ggml.token_type": [(3 if added[t] else 4) if t in added else 1 for t in tokens],
          "tokenizer.ggml.merges": [" ".join(merge) for merge in spec["model"]["merges"]],
          "tokenizer.ggml.bos_token_id": 0, "tokenizer.ggml.eos_token_id": 0, **extra}


def _train_byte_level(split_digits: bool) -> Tokenizer:
  return Tokenizer.from_str(_trained_byte_level(split_digits))


@functools.lru_cache(maxsize=None)
def _trained_byte_level(split_digits: bool) -> str:
  original = Tokenizer(models.BPE())
  byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False)
  digits = pre_tokenizers.Digits(individual_digits=True)
  original.pre_tokenizer = pre_tokenizers.Sequence([digits, byte_level]) if split_digits else byte_level
  original.decoder = decoders.ByteLevel()
  original.train_from_iterator(_corpus(), trainers.BpeTrainer(
      vocab_size=1000, special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
      initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False))
  original.add_tokens([AddedToken("<think>", special=False, normalized=False)])
  return original.to_str()


@pytest.fixture(scope="module", params=["smollm", "gpt-2"])
def byte_level(request, tmp_path_factory):
  """(original, ours, transformers' tokenizer, number of BOS ids) of one GGUF file."""
  smollm = request.param == "smollm"
  original = _train_byte_level(split_digits=smollm)
  directory = tmp_path_factory.mktemp(request.param)
  _write(directory / "t.gguf", _byte_level_fields(original, request.param,
                                                  **{"tokenizer.ggml.add_bos_token": not smollm}))
  if not smollm:
    original.post_processor = processors.TemplateProcessing(
        single="<|endoftext|> $A", special_tokens=[("<|endoftext|>", 0)])
  return (original, gguf_tokenizer.from_gguf(directory / "t.gguf"),
          transformers.AutoTokenizer.from_pretrained(directory, gguf_file="t.gguf"), int(not smollm))


def test_byte_level_bpe_encodes_as_the_original_and_as_transformers(byte_level, texts):
  original, ours, theirs, n_bos = byte_level
  assert (ours.vocab_size, ours.bos_id, ours.eos_id, ours.add_bos) == (
      original.get_vocab_size(), 0, 0, bool(n_bos))
  for text in texts + BPE_SPECIAL:
    expected = original.encode(text).ids
    assert ours.encode(text) == expected, text
    # transformers' GGUF loader ignores "smollm" (it keeps GPT-2's regex, no digit split); that
    # changes nothing for a vocabulary trained with the split, which has no token spanning
    # two digits (test_transformers_ignores_the_smollm_digit_split shows where it does).
    assert theirs.encode(text) == expected, text


def test_transformers_ignores_the_smollm_digit_split(tmp_path):
  """A vocabulary with multi-digit tokens written as "smollm": the digits must still be split
  (as llama.cpp and SmolLM2's tokenizer.json do); transformers merges them."""
  original = _train_byte_level(split_digits=False)
  _write(tmp_path / "t.gguf", _byte_level_fields(original, "smollm"))
  ours = gguf_tokenizer.from_gguf(tmp_path / "t.gguf")
  theirs = transformers.AutoTokenizer.from_pretrained(tmp_path, gguf_file="t.gguf")
  digits = [original.token_to_id(digit) for digit in "Ġ1987"]   # "Ġ" is the space
  assert ours.encode(" 1987") == digits
  assert theirs.encode(" 1987") == [original.token_to_id("Ġ1987")]   # one token, not five


@pytest.fixture(scope="module")
def sentencepiece_model(tmp_path_factory):
  """(original processor, ours, transformers' tokenizer) of one GGUF file."""
  model = io.BytesIO()
  spm.SentencePieceTrainer.train(
      sentence_iterator=iter(_corpus()), model_writer=model, model_type="bpe", vocab_size=600,
      byte_fallback=True, normalization_rule_name="identity", remove_extra_whitespaces=False,
      split_digits=True, allow_whitespace_only_pieces=True, character_coverage=1.0,
      user_defined_symbols=["<sep>"], hard_vocab_limit=False, minloglevel=2)
  original = spm.SentencePieceProcessor(model_proto=model.getvalue())
  pieces = range(original.get_piece_size())
  directory = tmp_path_factory.mktemp("llama")
  _write(directory / "t.gguf", {
      "tokenizer.ggml.model": "llama", "tokenizer.ggml.tokens": [original.id_to_piece(i) for i in pieces],
      "tokenizer.ggml.scores": [original.get_score(i) for i in pieces],
      "tokenizer.ggml.token_type": [_piece_type(original, i) for i in pieces],
      "tokenizer.ggml.bos_token_id": 1, "tokenizer.ggml.eos_token_id": 2,
      "tokenizer.ggml.unknown_token_id": 0, "tokenizer.ggml.add_bos_token": True,
      "tokenizer.ggml.add_space_prefix": True})
  return (original, gguf_tokenizer.from_gguf(directory / "t.gguf"),
          transformers.AutoTokenizer.from_pretrained(directory, gguf_file="t.gguf"))


def _piece_type(processor, index: int) -> int:
  for kind, test in ((2, processor.is_unknown), (3, processor.is_control), (5, processor.is_unused),
                     (6, processor.is_byte)):
    if test(index):
      return kind
  return 4 if processor.id_to_piece(index) == "<sep>" else 1


def test_sentencepiece_encodes_as_the_original_and_as_transformers(sentencepiece_model, texts):
  original, ours, theirs = sentencepiece_model
  assert (ours.vocab_size, ours.bos_id, ours.eos_id, ours.add_bos) == (
      original.get_piece_size(), 1, 2, True)
  for text in texts + SPM_USER_DEFINED:
    assert ours.encode(text) == [1] + original.encode(text), text
    # transformers drops the dummy prefix of a text that starts with a space: it encodes
    # " Antarctica" as SentencePiece (and llama.cpp) encode "Antarctica" ("▁Ant...", not "▁▁Ant...").
    same_as = text[1:] if text.startswith(" ") else text
    assert theirs.encode(text) == ours.encode(same_as), text
  for text, control in SPM_CONTROL.items():   # matched whole, as transformers (and llama.cpp) do
    assert ours.encode(text) == theirs.encode(text) and control in ours.encode(text)[1:], text


def test_decode_round_trips(byte_level, sentencepiece_model, texts):
  for ours, n_bos in ((byte_level[1], byte_level[3]), (sentencepiece_model[1], 1)):
    for text in texts + (BPE_SPECIAL if ours.model == "gpt2" else SPM_USER_DEFINED + list(SPM_CONTROL)):
      assert ours.decode(ours.encode(text)[n_bos:]) == text


@pytest.mark.parametrize("pre, add_bos, expected", [
    ("llama-bpe", None, True),    # absent: llama.cpp adds BOS for the Llama 3 family ...
    ("smollm", None, False),      # ... and for no other "gpt2" pre-tokenizer we know
    ("llama-bpe", False, False), ("smollm", True, True)])
def test_bos_follows_add_bos_token_else_llama_cpp(tmp_path, pre, add_bos, expected):
  original = _train_byte_level(split_digits=True)
  extra = {} if add_bos is None else {"tokenizer.ggml.add_bos_token": add_bos}
  _write(tmp_path / "t.gguf", _byte_level_fields(original, pre, **extra))
  ours = tokenizers.load(tmp_path / "t.gguf")
  assert isinstance(ours, gguf_tokenizer.GGUFTokenizer)
  assert ours.encode("The Eiffel Tower") == [0] * expected + original.encode("The Eiffel Tower").ids


@pytest.mark.parametrize("fields, needles", [
    ({"tokenizer.ggml.pre": "not-a-pre"}, ["tokenizer.ggml.pre 'not-a-pre'", "smollm", "gpt-2"]),
    ({"tokenizer.ggml.pre": "gpt2"}, ["tokenizer.ggml.pre 'gpt2'", "gpt-2"]),   # llama.cpp spells it gpt-2
    ({"tokenizer.ggml.model": "bert"}, ["tokenizer.ggml.model 'bert'", "'gpt2', 'llama'"]),
    ({"tokenizer.ggml.model": None}, ["no tokenizer.ggml.model", "'gpt2', 'llama'"]),
    ({"tokenizer.ggml.bos_token_id": None, "tokenizer.ggml.add_bos_token": True},
     ["adds BOS", "no tokenizer.ggml.bos_token_id"]),
    ({"tokenizer.ggml.merges": None}, ["needs tokenizer.ggml.merges"])])
def test_a_tokenizer_it_cannot_build_is_a_one_line_error_naming_the_file(tmp_path, fields, needles):
  base = _byte_level_fields(_train_byte_level(split_digits=True), "smollm")
  _write(tmp_path / "bad.gguf", {k: v for k, v in (base | fields).items() if v is not None})
  with pytest.raises(ValueError) as raised:
    gguf_tokenizer.from_gguf(tmp_path / "bad.gguf")
  message = str(raised.value)
  assert "\n" not in message and str(tmp_path / "bad.gguf") in message
  for needle in needles:
    assert needle in message
