"""Prompt sets and batching: from a JSON file to right-padded token batches.

    known_facts   TFDS builder for ROME's known facts (the paper's 1,209 prompts)
    counterfact   TFDS builder for CounterFact (21,919 prompts upstream)
    loading       prepare(...) / load_records(...): array_record files, read without TensorFlow
    batching      make_batches(...): tokens [B, T], lengths [B], label_tokens [B] in PromptBatch;
                  right_pad(rows, T): the one right-padding of token rows
    filtering     filter_correct(...): keep the prompts a model completes correctly
    builders      JsonRecordsBuilder: the builders' shared machinery, configured by their data
    records       field checks shared by the builders (errors name record and field)
    sources       manual_dir first, else download
    tfds_compat   workaround for tensorflow-datasets on current etils

Typical use:

    records = load_records("known_facts", data_dir, manual_dir="DIR_WITH_known_1000.json")
    batches = make_batches(records, tokenizer, batch_size=32, max_len=config.max_seq_len)
    batches, report = filter_correct(batches, predict_fn)
"""

from hydra_jax.data.batching import (Batching, PromptBatch, TokenizedPrompt, first_label_token,
                                     make_batches, right_pad, tokenize_records)
from hydra_jax.data.counterfact import Counterfact
from hydra_jax.data.filtering import FilterReport, answers_correctly, filter_correct
from hydra_jax.data.known_facts import KnownFacts
from hydra_jax.data.loading import BUILDERS, load_records, prepare

__all__ = [
    "BUILDERS", "Batching", "Counterfact", "FilterReport", "KnownFacts", "PromptBatch",
    "TokenizedPrompt", "answers_correctly", "filter_correct", "first_label_token",
    "load_records", "make_batches", "prepare", "right_pad", "tokenize_records",
]
