"""Tokenizers encode prompts exactly as transformers' AutoTokenizer of the same directory.

Every tokenizer is trained here, offline, on a few lines of text: a GPT-2-style byte-level
BPE (no BOS), a Llama-style BPE whose tokenizer.json template adds BOS (also with the
policy overridden in tokenizer_config.json), and a SentencePiece model, both as a bare
.model file and wrapped by transformers' LlamaTokenizer.

Runtime: about 10 s (training the tiny tokenizers, importing transformers).
"""

import io
import json
import shutil

import pytest
import sentencepiece as spm
import transformers
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

from hydra_jax.data import tokenizers

CORPUS = ["The Eiffel Tower is located in the city of Paris.",
          "Honus Wagner professionally plays the sport of baseball.",
          "Miles Davis plays the trumpet; his music is jazz.",
          "Toyota is headquartered in Japan, in Toyota City."] * 4
PROMPTS = ["Honus Wagner professionally plays the sport of", "The Eiffel Tower is in",
           "  leading spaces, Ünïcödé and digits 1234", "a"]


def _save(backend, directory, **special_tokens):
  transformers.PreTrainedTokenizerFast(tokenizer_object=backend, **special_tokens).save_pretrained(directory)
  return directory


def _edit_config(directory, **changes):
  path = directory / "tokenizer_config.json"
  path.write_text(json.dumps(json.loads(path.read_text()) | changes))


def _assert_like_transformers(directory, expect_bos):
  ours = tokenizers.load(directory)
  reference = transformers.AutoTokenizer.from_pretrained(directory)
  for prompt in PROMPTS:
    ids = ours.encode(prompt)
    assert ids == reference.encode(prompt), prompt
    assert (ids[0] == ours.bos_id) == expect_bos, prompt
    assert ours.decode(ids) == reference.decode(ids), prompt
  assert ours.bos_id == reference.bos_token_id and ours.eos_id == reference.eos_token_id
  assert ours.vocab_size == len(reference)
  return ours


@pytest.fixture(scope="module")
def byte_level_dir(tmp_path_factory):
  backend = Tokenizer(models.BPE())
  backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
  backend.decoder = decoders.ByteLevel()
  backend.post_processor = processors.ByteLevel(trim_offsets=False)
  backend.train_from_iterator(CORPUS, trainers.BpeTrainer(
      vocab_size=300, special_tokens=["<|endoftext|>"],
      initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
  return _save(backend, tmp_path_factory.mktemp("gpt2"), bos_token="<|endoftext|>",
               eos_token="<|endoftext|>")


def _llama_style_backend():
  backend = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True))
  backend.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
  backend.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(),
                                       decoders.Fuse(), decoders.Strip(" ", 1, 0)])
  backend.train_from_iterator(CORPUS, trainers.BpeTrainer(
      vocab_size=200, special_tokens=["<unk>", "<s>", "</s>"]))
  backend.post_processor = processors.TemplateProcessing(
      single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", 1)])
  return backend


@pytest.fixture
def llama_style_dir(tmp_path):
  return _save(_llama_style_backend(), tmp_path, bos_token="<s>", eos_token="</s>", unk_token="<unk>")


def test_byte_level_bpe_without_bos(byte_level_dir):
  ours = _assert_like_transformers(byte_level_dir, expect_bos=False)
  assert isinstance(ours, tokenizers.HFTokenizer)
  assert ours.decode(ours.encode(PROMPTS[0])) == PROMPTS[0]


def test_template_post_processor_adds_bos(llama_style_dir):
  ours = _assert_like_transformers(llama_style_dir, expect_bos=True)
  assert ours.bos_id == 1 and ours.eos_id == 2


def test_tokenizer_json_template_outranks_tokenizer_config(llama_style_dir, byte_level_dir):
  _edit_config(llama_style_dir, add_bos_token=False)       # transformers 5 ignores it here
  _assert_like_transformers(llama_style_dir, expect_bos=True)
  _edit_config(byte_level_dir, add_bos_token=True)
  _assert_like_transformers(byte_level_dir, expect_bos=False)


def test_constructor_overrides_the_policy(llama_style_dir):
  plain = tokenizers.load(llama_style_dir)
  ours = tokenizers.HFTokenizer(llama_style_dir / "tokenizer.json", add_bos=False, add_eos=True)
  for prompt in PROMPTS:
    assert ours.encode(prompt) == plain.encode(prompt)[1:] + [plain.eos_id]


@pytest.fixture(scope="module")
def sentencepiece_file(tmp_path_factory):
  model = io.BytesIO()
  spm.SentencePieceTrainer.train(     # Llama's settings: no normalisation, byte fallback
      sentence_iterator=iter(CORPUS), model_writer=model, vocab_size=320, model_type="bpe",
      unk_id=0, bos_id=1, eos_id=2, pad_id=-1, character_coverage=1.0, byte_fallback=True,
      normalization_rule_name="identity", remove_extra_whitespaces=False, minloglevel=2)
  path = tmp_path_factory.mktemp("spm") / "tiny.model"
  path.write_bytes(model.getvalue())
  return path


def test_sentencepiece_tokenizer(sentencepiece_file):
  reference = spm.SentencePieceProcessor(model_file=str(sentencepiece_file))
  with_bos = tokenizers.SentencePieceTokenizer(sentencepiece_file, add_bos=True)
  without = tokenizers.SentencePieceTokenizer(sentencepiece_file, add_bos=False)
  assert with_bos.bos_id == 1 and with_bos.eos_id == 2 and with_bos.vocab_size == 320
  for prompt in PROMPTS:
    assert with_bos.encode(prompt) == [1] + reference.encode(prompt)
    assert without.encode(prompt) == reference.encode(prompt)
    assert with_bos.decode(with_bos.encode(prompt)) == reference.decode(reference.encode(prompt))
  assert tokenizers.load(sentencepiece_file).encode("a")[0] == 1      # a bare .model: BOS first


def test_sentencepiece_in_a_transformers_directory(sentencepiece_file, tmp_path):
  sp_dir, json_dir = tmp_path / "sp", tmp_path / "saved"
  sp_dir.mkdir()
  shutil.copy(sentencepiece_file, sp_dir / "tokenizer.model")
  (sp_dir / "tokenizer_config.json").write_text(json.dumps(
      {"tokenizer_class": "LlamaTokenizer", "add_bos_token": True, "bos_token": "<s>",
       "eos_token": "</s>", "unk_token": "<unk>"}))
  ours = tokenizers.load(sp_dir)
  assert isinstance(ours, tokenizers.SentencePieceTokenizer)
  reference = transformers.AutoTokenizer.from_pretrained(sp_dir)
  # transformers' converted pipeline drops SentencePiece's dummy prefix before leading
  # spaces ("  x" -> "▁▁x", sentencepiece: "▁▁▁x"); every other text agrees.
  for prompt in PROMPTS + ["x  y", "Ünïcödé 1234"]:
    if not prompt.startswith(" "):
      assert ours.encode(prompt) == reference.encode(prompt), prompt
  reference.save_pretrained(json_dir)                 # transformers writes a tokenizer.json
  assert isinstance(_assert_like_transformers(json_dir, expect_bos=True), tokenizers.HFTokenizer)


def test_bad_input_is_named(tmp_path, byte_level_dir):
  with pytest.raises(ValueError, match="neither tokenizer.json nor tokenizer.model"):
    tokenizers.load(tmp_path)
  with pytest.raises(ValueError, match="text must be a str"):
    tokenizers.load(byte_level_dir).encode(["not", "text"])
  with pytest.raises(ValueError, match="model_file"):
    tokenizers.SentencePieceTokenizer(tmp_path / "missing.model")
