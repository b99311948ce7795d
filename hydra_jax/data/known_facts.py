"""The "known facts" prompt set: ROME's known_1000.json, the paper's 1,209 prompts.

Each record is a factual prompt whose next word is the attribute:

    known_id     int   unique id (0..1208 upstream)
    subject      str   "Honus Wagner"
    attribute    str   "baseball"                    the correct completion (the label)
    template     str   "{} professionally plays the sport"
    prediction   str   " of baseball. He is ..."      GPT-2 XL's greedy continuation
    prompt       str   "Honus Wagner professionally plays the sport of"
    relation_id  str   "P641"                         Wikidata relation

`KnownFacts` is a TFDS builder with one split, "train", in file order. Prepare it with
`file_format="array_record"` and read it with `as_data_source()` (no TensorFlow needed);
`hydra_jax.data.loading.load_records("known_facts", ...)` does both. Offline, put
known_1000.json in `manual_dir`; it is preferred over the download whenever present.
"""

from __future__ import annotations

from typing import Any, Mapping

import tensorflow_datasets as tfds

from hydra_jax.data import builders
from hydra_jax.data import records as records_lib

FILENAME = "known_1000.json"
URL = "https://rome.baulab.info/data/dsets/known_1000.json"
SHA256 = "61daca55318bb5260c1e62e133debef9102c7b278bbc7b19dd2ac655543f333a"
NUM_RECORDS_UPSTREAM = 1209

ID_FIELD = "known_id"
# Every field of a record and its JSON type; the prompt, subject and label must be non-empty.
STRING_FIELDS = ("subject", "attribute", "template", "prediction", "prompt", "relation_id")
NON_EMPTY_FIELDS = ("subject", "attribute", "prompt")


def _parse_fact(record: Mapping[str, Any], where: str) -> dict[str, Any]:
  """One raw record (already known to be an object) as a flat dict of the fields above."""
  example = {ID_FIELD: records_lib.get_field(record, where, ID_FIELD, int)}
  for name in STRING_FIELDS:
    example[name] = records_lib.get_field(record, where, name, str,
                                          non_empty=name in NON_EMPTY_FIELDS)
  return example


class KnownFacts(builders.JsonRecordsBuilder):
  """ROME's known facts (known_1000.json), 1,209 prompts with their correct attribute."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "known_1000.json as published with ROME (Meng et al. 2022)."}
  # The data, as JsonRecordsBuilder reads it (the module constants above).
  FILENAME, URL, SHA256 = FILENAME, URL, SHA256
  ID_FIELD, TEXT_FEATURES = ID_FIELD, STRING_FIELDS
  HOMEPAGE, CITATION = builders.ROME_HOMEPAGE, builders.ROME_CITATION
  parse_record = staticmethod(_parse_fact)


# Raw JSON list -> checked flat examples; a malformed record raises ValueError naming
# the record (index and id) and the field.
parse_known_facts = KnownFacts.parse
