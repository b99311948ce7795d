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

from typing import Any, Iterator

import numpy as np
import tensorflow_datasets as tfds

from hydra_jax.data import records as records_lib
from hydra_jax.data import sources
from hydra_jax.data import tfds_compat

FILENAME = "known_1000.json"
URL = "https://rome.baulab.info/data/dsets/known_1000.json"
SHA256 = "61daca55318bb5260c1e62e133debef9102c7b278bbc7b19dd2ac655543f333a"
NUM_RECORDS_UPSTREAM = 1209

ID_FIELD = "known_id"
# Every field of a record and its JSON type; the prompt, subject and label must be non-empty.
STRING_FIELDS = ("subject", "attribute", "template", "prediction", "prompt", "relation_id")
NON_EMPTY_FIELDS = ("subject", "attribute", "prompt")


def parse_known_facts(raw_records: list[Any]) -> list[dict[str, Any]]:
  """Checks every raw record and returns them as flat dicts of the fields above.

  A malformed record raises ValueError naming the record (index and known_id) and the field.
  """
  parsed = []
  for index, raw in enumerate(raw_records):
    where = "known_facts " + records_lib.describe_record(index, raw, ID_FIELD)
    record = records_lib.require_object(raw, where)
    example = {ID_FIELD: records_lib.get_field(record, where, ID_FIELD, int)}
    for name in STRING_FIELDS:
      example[name] = records_lib.get_field(record, where, name, str,
                                            non_empty=name in NON_EMPTY_FIELDS)
    parsed.append(example)
  records_lib.check_unique_ids((r[ID_FIELD] for r in parsed), "known_facts", ID_FIELD)
  return parsed


class KnownFacts(tfds_compat.PlainCodePath, tfds.core.GeneratorBasedBuilder):
  """ROME's known facts (known_1000.json), 1,209 prompts with their correct attribute."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "known_1000.json as published with ROME (Meng et al. 2022)."}
  MANUAL_DOWNLOAD_INSTRUCTIONS = (
      f"Optional: put {FILENAME} (from {URL}) in manual_dir to prepare without network access.")

  def _info(self) -> tfds.core.DatasetInfo:
    # Built directly (not via dataset_info_from_configs), which would look for TFDS
    # package metadata files next to this module.
    features = {ID_FIELD: np.int64}
    features.update({name: tfds.features.Text() for name in STRING_FIELDS})
    return tfds.core.DatasetInfo(
        builder=self,
        description=__doc__,
        features=tfds.features.FeaturesDict(features),
        homepage="https://rome.baulab.info/",
        citation="Meng, Bau, Andonian, Belinkov. Locating and Editing Factual Associations "
                 "in GPT. NeurIPS 2022.",
        disable_shuffling=True,  # keep file order: ids and results line up with the source
    )

  def _split_generators(self, dl_manager):
    path = sources.locate_source(dl_manager, FILENAME, URL, SHA256)
    return {"train": self._generate_examples(path)}

  def _generate_examples(self, path) -> Iterator[tuple[int, dict[str, Any]]]:
    raw_records = records_lib.read_json_list(path, "known_facts")
    for example in parse_known_facts(raw_records):
      yield example[ID_FIELD], example
