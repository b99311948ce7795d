"""Tests of hydra_jax.data: TFDS builders without TensorFlow, record checks, batching, filtering.

All offline: known facts come from ../shared/data/known_1000.json (the project root's
sibling), CounterFact files are written into tmp_path, tokenizers are tiny fakes.
"""

import importlib
import json
import pathlib
import re

import numpy as np
import pytest
import tensorflow_datasets as tfds

from hydra_jax import data
from hydra_jax.data import counterfact, known_facts, records

SHARED_DATA = pathlib.Path(__file__).resolve().parents[1].parent / "shared" / "data"
KNOWN_FACTS_FILE = SHARED_DATA / "known_1000.json"


@pytest.fixture
def no_network(monkeypatch):
  """Any download attempt fails the test: preparing from manual_dir must not need the web."""
  def refuse(*args, **kwargs):
    raise AssertionError("tried to download although the file is in manual_dir")
  monkeypatch.setattr(tfds.download.DownloadManager, "download", refuse)


@pytest.fixture(scope="module")
def known_records(tmp_path_factory):
  if not KNOWN_FACTS_FILE.exists():
    pytest.skip(f"shared data file {KNOWN_FACTS_FILE} not found (expected beside the project root)")
  data_dir = tmp_path_factory.mktemp("tfds")
  with pytest.MonkeyPatch.context() as patch:
    patch.setattr(tfds.download.DownloadManager, "download",
                  lambda *a, **k: pytest.fail("tried to download"))
    loaded = data.load_records("known_facts", data_dir, manual_dir=SHARED_DATA)
  return data_dir, loaded


def counterfact_record(case_id, template="The mother tongue of {} is", subject="Danielle Darrieux",
                       true="French", new="English"):
  return {
      "case_id": case_id, "pararel_idx": 2796,
      "requested_rewrite": {
          "prompt": template, "relation_id": "P103", "subject": subject,
          "target_new": {"str": new, "id": "Q1860"}, "target_true": {"str": true, "id": "Q150"}},
      "paraphrase_prompts": ["Shayna does this. " + template.replace("{}", subject)],
  }


def write_json(path, content):
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text(content if isinstance(content, str) else json.dumps(content))
  return path


# --- TFDS builders ------------------------------------------------------------------------------

def test_tensorflow_is_not_installed():
  with pytest.raises(ImportError):
    importlib.import_module("tensorflow")


def test_known_facts_prepares_and_reads_back_without_tensorflow(known_records):
  data_dir, loaded = known_records
  with pytest.raises(ImportError):
    importlib.import_module("tensorflow")
  assert len(loaded) == known_facts.NUM_RECORDS_UPSTREAM == 1209
  assert [r["id"] for r in loaded] == list(range(1209))  # file order kept
  honus = loaded[19]
  assert honus == {
      "id": 19, "known_id": 19, "subject": "Honus Wagner", "attribute": "baseball",
      "label": "baseball", "template": "{} professionally plays the sport",
      "prediction": " of baseball. He is a member of the National",
      "prompt": "Honus Wagner professionally plays the sport of", "relation_id": "P641"}
  assert all(isinstance(r["prompt"], str) and r["prompt"] for r in loaded)
  shards = list((data_dir / "known_facts" / "1.0.0").glob("known_facts-train.array_record-*"))
  assert len(shards) == 1


def test_known_facts_reuses_prepared_dataset_offline(known_records, no_network):
  data_dir, loaded = known_records
  again = data.load_records("known_facts", data_dir)  # no manual_dir, no network: reused
  assert again == loaded


def test_counterfact_prepares_from_manual_dir(tmp_path, no_network):
  cases = [counterfact_record(0),
           counterfact_record(7, template="{}, a {citizen} of", subject="Toko Yasuda",
                              true="Japan", new="Italy")]
  write_json(tmp_path / "manual" / "counterfact.json", cases)
  loaded = data.load_records("counterfact", tmp_path / "tfds", tmp_path / "manual")
  assert loaded == [
      {"id": 0, "case_id": 0, "prompt": "The mother tongue of Danielle Darrieux is",
       "template": "The mother tongue of {} is", "subject": "Danielle Darrieux",
       "label": "French", "target_new": "English", "relation_id": "P103"},
      {"id": 7, "case_id": 7, "prompt": "Toko Yasuda, a {citizen} of",  # other braces stay
       "template": "{}, a {citizen} of", "subject": "Toko Yasuda",
       "label": "Japan", "target_new": "Italy", "relation_id": "P103"},
  ]


class FakeDownloadManager:
  """Stands in for tfds' DownloadManager: a manual dir, and a download that fails (offline)."""

  def __init__(self, manual_dir):
    self._manual_dir = manual_dir

  @property
  def manual_dir(self):
    if self._manual_dir is None:
      raise AssertionError("Manual directory not enabled.")
    return self._manual_dir

  def download(self, url):
    raise OSError("network unreachable")


def test_source_prefers_manual_dir_and_explains_a_failed_download(tmp_path, caplog):
  from hydra_jax.data import sources
  path = write_json(tmp_path / "known_1000.json", [known_fact(0)])
  manager = FakeDownloadManager(tmp_path)
  with caplog.at_level("WARNING"):
    assert sources.locate_source(manager, "known_1000.json", known_facts.URL,
                                 known_facts.SHA256) == path
  assert "not the published" in caplog.text  # an edited copy is used, with a warning
  for manual_dir in (None, tmp_path / "elsewhere"):
    with pytest.raises(FileNotFoundError, match=r"could not download https://rome.baulab.info/"
                       r"data/dsets/known_1000.json \(OSError: network unreachable\); without "
                       r"network access put known_1000.json in a directory and pass it as "
                       r"manual_dir"):
      sources.locate_source(FakeDownloadManager(manual_dir), "known_1000.json", known_facts.URL)


def test_unknown_prompt_set_is_an_error(tmp_path):
  with pytest.raises(ValueError, match="unknown prompt set 'facts'.*counterfact.*known_facts"):
    data.load_records("facts", tmp_path)


# --- malformed records --------------------------------------------------------------------------

def known_fact(known_id, **changes):
  record = {"known_id": known_id, "subject": "Honus Wagner", "attribute": "baseball",
            "template": "{} professionally plays the sport", "prediction": " of baseball.",
            "prompt": "Honus Wagner professionally plays the sport of", "relation_id": "P641"}
  record.update(changes)
  return {k: v for k, v in record.items() if v is not None}


@pytest.mark.parametrize("bad, message", [
    (known_fact(7, attribute=None), r"record #1 \(known_id=7\): missing field 'attribute'"),
    (known_fact("7"), r"record #1 \(known_id='7'\): field 'known_id' should be int, got str"),
    (known_fact(True), r"record #1 \(known_id=True\): field 'known_id' should be int, got bool"),
    (known_fact(7, prompt=12), r"record #1 \(known_id=7\): field 'prompt' should be str, got int"),
    (known_fact(7, prompt="  "), r"record #1 \(known_id=7\): field 'prompt' is empty"),
    (["not", "an", "object"], r"record #1 is a JSON list, expected an object"),
    (known_fact(0), r"records #0 and #1 share known_id=0"),
])
def test_malformed_known_fact_names_record_and_field(bad, message):
  with pytest.raises(ValueError, match=message):
    known_facts.parse_known_facts([known_fact(0), bad])


@pytest.mark.parametrize("change, message", [
    (lambda r: r["requested_rewrite"]["target_true"].pop("str"),
     r"record #1 \(case_id=5\): missing field 'requested_rewrite.target_true.str'"),
    (lambda r: r["requested_rewrite"].update(prompt="The mother tongue of Darrieux is"),
     r"record #1 \(case_id=5\): field 'requested_rewrite.prompt' should contain '\{\}' exactly "
     r"once, found 0"),
    (lambda r: r["requested_rewrite"].update(prompt="{} and {}"), r"found 2"),
    (lambda r: r.update(requested_rewrite="oops"),
     r"record #1 \(case_id=5\): field 'requested_rewrite' should be an object, got str"),
    (lambda r: r.pop("case_id"), r"record #1: missing field 'case_id'"),
])
def test_malformed_counterfact_names_record_and_field(change, message):
  bad = counterfact_record(5)
  change(bad)
  with pytest.raises(ValueError, match=message):
    counterfact.parse_counterfact([counterfact_record(0), bad])


def test_malformed_record_fails_preparation_and_leaves_nothing_prepared(tmp_path, no_network):
  write_json(tmp_path / "manual" / "known_1000.json", [known_fact(0), known_fact(3, subject=None)])
  with pytest.raises(ValueError, match=r"record #1 \(known_id=3\): missing field 'subject'"):
    data.load_records("known_facts", tmp_path / "tfds", tmp_path / "manual")
  assert not list((tmp_path / "tfds").glob("known_facts/1.0.0/*.array_record*"))


@pytest.mark.parametrize("content", ["", "  \n", "[]"])
def test_empty_file_is_an_error_that_says_so(tmp_path, content):
  path = write_json(tmp_path / "known_1000.json", content)
  with pytest.raises(ValueError, match=f"known_facts file {re.escape(str(path))} is empty"):
    records.read_json_list(path, "known_facts")


def test_empty_counterfact_file_fails_preparation(tmp_path, no_network):
  write_json(tmp_path / "manual" / "counterfact.json", "")
  with pytest.raises(ValueError, match=r"counterfact file .*counterfact\.json is empty"):
    data.load_records("counterfact", tmp_path / "tfds", tmp_path / "manual")


def test_file_that_is_not_a_list_is_an_error(tmp_path):
  path = write_json(tmp_path / "x.json", {"known_id": 0})
  with pytest.raises(ValueError, match="holds a JSON dict, expected a list"):
    records.read_json_list(path, "known_facts")


# --- batching -----------------------------------------------------------------------------------

class FakeTokenizer:
  """Pieces are words with their leading space (" of"), like byte-level BPE; optional BOS."""
  PIECES = ["<pad>", "<bos>", "A", " B", " C", " D", " E", " F", " baseball", "baseball", " x"]

  def __init__(self, add_bos=True):
    self.ids = {piece: i for i, piece in enumerate(self.PIECES)}
    self.vocab_size = len(self.PIECES)
    self.add_bos = add_bos

  def encode(self, text):
    return [1] * self.add_bos + [self.ids[p] for p in re.findall(r" ?[^ ]+", text)]


def prompt_record(record_id, prompt, label="baseball"):
  return {"id": record_id, "prompt": prompt, "label": label, "subject": "A"}


RECORDS = [
    prompt_record(10, "A B C D"),   # 5 tokens with BOS
    prompt_record(11, "A"),         # 2
    prompt_record(12, "A B C"),     # 4
    prompt_record(13, "A B"),       # 3
    prompt_record(14, "A B C D E"), # 6
]


def test_batches_are_sorted_by_length_and_right_padded():
  batching = data.make_batches(RECORDS, FakeTokenizer(), batch_size=2, max_len=8, pad_id=0)
  assert (batching.total, batching.too_long_ids, len(batching), batching.num_prompts) == (5, (), 3, 5)
  first, second, last = batching.batches
  np.testing.assert_array_equal(first.tokens, np.array([[1, 2, 0], [1, 2, 3]], np.int32))
  np.testing.assert_array_equal(first.lengths, [2, 3])
  np.testing.assert_array_equal(first.ids, [11, 13])
  np.testing.assert_array_equal(second.tokens, [[1, 2, 3, 4, 0], [1, 2, 3, 4, 5]])
  np.testing.assert_array_equal(second.ids, [12, 10])
  np.testing.assert_array_equal(last.tokens, [[1, 2, 3, 4, 5, 6]])
  assert last.prompts == ("A B C D E",) and last.labels == ("baseball",)
  for batch in batching:
    assert batch.tokens.dtype == np.int32 and batch.lengths.dtype == np.int32
    np.testing.assert_array_equal(batch.label_tokens, [8] * batch.batch_size)  # " baseball"


def test_padded_length_rounds_up_to_multiple_but_not_past_max_len():
  batching = data.make_batches(RECORDS, FakeTokenizer(), batch_size=2, max_len=6,
                               length_multiple=4, pad_id=0)
  assert [b.padded_length for b in batching] == [4, 6, 6]  # 3 -> 4, 5 -> 8 capped at 6, 6
  np.testing.assert_array_equal(batching.batches[0].tokens, [[1, 2, 0, 0], [1, 2, 3, 0]])


def test_unsorted_batches_keep_record_order():
  batching = data.make_batches(RECORDS, FakeTokenizer(), batch_size=3, max_len=8,
                               sort_by_length=False)
  np.testing.assert_array_equal(batching.batches[0].ids, [10, 11, 12])
  np.testing.assert_array_equal(batching.batches[0].lengths, [5, 2, 4])


def test_label_token_follows_the_leading_space_convention():
  bpe_like = FakeTokenizer(add_bos=False)
  assert data.first_label_token(bpe_like, "baseball", label_prefix=" ") == 8
  assert data.first_label_token(bpe_like, "baseball", label_prefix="") == 9
  with_bos = FakeTokenizer(add_bos=True)  # the BOS the tokenizer adds is not the label token
  assert data.first_label_token(with_bos, "baseball", label_prefix="") == 9
  batching = data.make_batches(RECORDS[:1], with_bos, batch_size=4, max_len=8, label_prefix="")
  np.testing.assert_array_equal(batching.batches[0].label_tokens, [9])
  with pytest.raises(ValueError, match=r"record #0 \(id=10\): label '' encodes to no tokens"):
    data.make_batches([prompt_record(10, "A", label="")], with_bos, batch_size=1, max_len=8,
                      label_prefix="")


def test_too_long_prompts_are_dropped_and_counted():
  batching = data.make_batches(RECORDS, FakeTokenizer(), batch_size=8, max_len=4)
  assert batching.total == 5 and batching.too_long_ids == (10, 14) and batching.num_prompts == 3
  np.testing.assert_array_equal(batching.batches[0].ids, [11, 13, 12])
  assert batching.batches[0].padded_length == 4


def test_too_long_prompts_raise_on_request():
  with pytest.raises(ValueError, match=r"2 of 5 prompts are longer than max_len=4 tokens "
                                       r"\(e.g. id 14: 6 tokens\)"):
    data.make_batches(RECORDS, FakeTokenizer(), batch_size=8, max_len=4, on_too_long="error")
  with pytest.raises(ValueError, match="all 5 prompts are longer than max_len=1"):
    data.make_batches(RECORDS, FakeTokenizer(), batch_size=8, max_len=1)


def test_batching_rejects_bad_records_and_tokens():
  with pytest.raises(ValueError, match=r"record #1 \(id=3\): missing field 'label'"):
    data.make_batches([RECORDS[0], {"id": 3, "prompt": "A"}], FakeTokenizer(), batch_size=2,
                      max_len=8)
  with pytest.raises(ValueError, match="no records to batch"):
    data.make_batches([], FakeTokenizer(), batch_size=2, max_len=8)
  with pytest.raises(ValueError, match=r"pad_id: token ids \[99\] outside \[0, vocab_size=11\)"):
    data.make_batches(RECORDS, FakeTokenizer(), batch_size=2, max_len=8, pad_id=99)
  with pytest.raises(ValueError, match="prompt '' encodes to no tokens of its own"):
    data.make_batches([prompt_record(1, "")], FakeTokenizer(), batch_size=2, max_len=8)


def test_batching_works_on_loaded_known_facts(known_records):
  _, loaded = known_records

  class CharTokenizer:
    vocab_size = 256

    def encode(self, text):
      return [1] + [min(ord(c), 255) for c in text]

  batching = data.make_batches(loaded, CharTokenizer(), batch_size=64, max_len=60,
                               length_multiple=8)
  assert batching.num_prompts + len(batching.too_long_ids) == 1209
  assert batching.too_long_ids  # some prompts exceed 60 characters
  for batch in batching:
    assert batch.padded_length % 8 == 0 or batch.padded_length == 60
    assert batch.padded_length - batch.lengths.max() < 8  # little padding


# --- filtering ----------------------------------------------------------------------------------

def last_token_predictor(answers, calls=None):
  """A fake model: predicts answers[last prompt token] at position lengths - 1."""
  def predict(tokens, lengths):
    if calls is not None:
      calls.append((tokens.dtype, lengths.dtype, tokens.shape))
    last = tokens[np.arange(len(lengths)), lengths - 1]
    return np.array([answers.get(int(t), 0) for t in last], np.int32)
  return predict


def test_filter_correct_keeps_right_answers_and_reports_why_others_went():
  batching = data.make_batches(RECORDS, FakeTokenizer(), batch_size=2, max_len=5)
  # batches: ids [11, 13] (last tokens 2, 3), [12, 10] (4, 5); id 14 too long
  calls = []
  predict = last_token_predictor({2: 8, 3: 7, 4: 8, 5: 8}, calls)  # id 13 answers wrongly
  kept, report = data.filter_correct(batching, predict)
  assert calls == [(np.int32, np.int32, (2, 3)), (np.int32, np.int32, (2, 5))]
  assert [list(b.ids) for b in kept] == [[11], [12, 10]]
  np.testing.assert_array_equal(kept[0].tokens, [[1, 2, 0]])  # row dropped, T kept
  np.testing.assert_array_equal(kept[0].lengths, [2])
  assert kept[0].prompts == ("A",)
  assert (report.total, report.kept, report.too_long, report.wrong_answer, report.correct) == \
      (5, 3, 1, 1, 3)
  assert report.too_long_ids == (14,) and report.wrong_answer_ids == (13,)
  assert report.kept_rows == (0, 2, 3)          # the batches' rows end to end: 11, 13 | 12, 10
  assert report.dropped == 2
  assert report.summary() == "5 prompts: 3 kept, 1 too long (> max_len=5 tokens), 1 answered wrongly"


def test_filter_correct_can_keep_all():
  batching = data.make_batches(RECORDS, FakeTokenizer(), batch_size=2, max_len=8)
  kept, report = data.filter_correct(batching, last_token_predictor({2: 8}), keep_all=True)
  assert sum(b.batch_size for b in kept) == 5
  assert (report.kept, report.wrong_answer, report.correct) == (5, 0, 1)
  assert report.kept_rows == (0, 1, 2, 3, 4)
  kept, report = data.filter_correct(batching, None, keep_all=True)
  assert report.correct is None and report.kept == 5


def test_right_pad_pads_each_row_after_its_tokens():
  tokens, lengths = data.right_pad([(5, 6, 7), [8], (), [9, 10]], 4, pad_id=1)
  assert tokens.dtype == lengths.dtype == np.int32
  np.testing.assert_array_equal(tokens, [[5, 6, 7, 1], [8, 1, 1, 1], [1, 1, 1, 1], [9, 10, 1, 1]])
  np.testing.assert_array_equal(lengths, [3, 1, 0, 2])
  assert data.right_pad([], 3)[0].shape == (0, 3)
  with pytest.raises(ValueError, match="a token row of 3 tokens does not fit length=2"):
    data.right_pad([[1], [1, 2, 3]], 2)


def test_empty_result_after_filtering_says_why():
  batching = data.make_batches(RECORDS, FakeTokenizer(), batch_size=2, max_len=4)
  with pytest.raises(ValueError, match=r"no prompts left after filtering: 5 prompts: 0 kept, "
                                       r"2 too long \(> max_len=4 tokens\), 3 answered wrongly"):
    data.filter_correct(batching, last_token_predictor({}))


def test_predict_fn_must_return_one_token_per_prompt():
  batching = data.make_batches(RECORDS, FakeTokenizer(), batch_size=2, max_len=8)
  with pytest.raises(ValueError, match=r"shape \(2,\), got float32 \(2, 11\)"):
    data.filter_correct(batching, lambda tokens, lengths: np.zeros((2, 11), np.float32))
  with pytest.raises(ValueError, match="needs a predict_fn unless keep_all=True"):
    data.filter_correct(batching, None)
