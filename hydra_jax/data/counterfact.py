"""The CounterFact prompt set (ROME, 21,919 records upstream) as factual prompts.

A raw record (only the fields used here are listed; others are ignored):

    case_id              int
    requested_rewrite    {prompt: "The mother tongue of {} is",   "{}" marks the subject
                          subject: "Danielle Darrieux",
                          target_true: {str: "French", id: "Q150"},
                          target_new:  {str: "English", id: "Q1860"},
                          relation_id: "P103"}
    paraphrase_prompts, neighborhood_prompts, ...   (not kept)

and the example it becomes:

    case_id        int   the record's id
    prompt         str   the template with the subject filled in: "The mother tongue of Danielle Darrieux is"
    template       str   requested_rewrite.prompt, still holding "{}"
    subject        str
    label          str   target_true.str, the true completion ("French")
    target_new     str   target_new.str, ROME's counterfactual edit target
    relation_id    str

The template must contain "{}" exactly once. `Counterfact` is a TFDS builder with one
split, "train", in file order; prepare it with `file_format="array_record"` and read it
with `as_data_source()`. Offline, put counterfact.json in `manual_dir`.
"""

from __future__ import annotations

from typing import Any, Iterator

import numpy as np
import tensorflow_datasets as tfds

from hydra_jax.data import records as records_lib
from hydra_jax.data import sources
from hydra_jax.data import tfds_compat

FILENAME = "counterfact.json"
URL = "https://rome.baulab.info/data/dsets/counterfact.json"
NUM_RECORDS_UPSTREAM = 21919

ID_FIELD = "case_id"
SUBJECT_SLOT = "{}"
TEXT_FEATURES = ("prompt", "template", "subject", "label", "target_new", "relation_id")


def fill_subject(template: str, subject: str, where: str) -> str:
  """The template with its single "{}" replaced by the subject (not str.format: other braces stay)."""
  slots = template.count(SUBJECT_SLOT)
  if slots != 1:
    raise ValueError(f"{where}: field 'requested_rewrite.prompt' should contain "
                     f"'{SUBJECT_SLOT}' exactly once, found {slots} in {template!r}")
  return template.replace(SUBJECT_SLOT, subject)


def parse_counterfact(raw_records: list[Any]) -> list[dict[str, Any]]:
  """Checks every raw record and returns the flat examples described above.

  A malformed record raises ValueError naming the record (index and case_id) and the field.
  """
  parsed = []
  for index, raw in enumerate(raw_records):
    where = "counterfact " + records_lib.describe_record(index, raw, ID_FIELD)
    record = records_lib.require_object(raw, where)

    def text(name: str, non_empty: bool = True) -> str:
      return records_lib.get_field(record, where, "requested_rewrite." + name, str,
                                   non_empty=non_empty)

    template, subject = text("prompt"), text("subject")
    parsed.append({
        ID_FIELD: records_lib.get_field(record, where, ID_FIELD, int),
        "prompt": fill_subject(template, subject, where),
        "template": template,
        "subject": subject,
        "label": text("target_true.str"),
        "target_new": text("target_new.str", non_empty=False),
        "relation_id": text("relation_id", non_empty=False),
    })
  records_lib.check_unique_ids((r[ID_FIELD] for r in parsed), "counterfact", ID_FIELD)
  return parsed


class Counterfact(tfds_compat.PlainCodePath, tfds.core.GeneratorBasedBuilder):
  """CounterFact (counterfact.json) as prompts with the subject filled in and the true target."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "counterfact.json as published with ROME (Meng et al. 2022)."}
  MANUAL_DOWNLOAD_INSTRUCTIONS = (
      f"Optional: put {FILENAME} (from {URL}) in manual_dir to prepare without network access.")

  def _info(self) -> tfds.core.DatasetInfo:
    # Built directly (not via dataset_info_from_configs), which would look for TFDS
    # package metadata files next to this module.
    features = {ID_FIELD: np.int64}
    features.update({name: tfds.features.Text() for name in TEXT_FEATURES})
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
    path = sources.locate_source(dl_manager, FILENAME, URL)
    return {"train": self._generate_examples(path)}

  def _generate_examples(self, path) -> Iterator[tuple[int, dict[str, Any]]]:
    raw_records = records_lib.read_json_list(path, "counterfact")
    for example in parse_counterfact(raw_records):
      yield example[ID_FIELD], example
