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

from typing import Any, Mapping

import tensorflow_datasets as tfds

from hydra_jax.data import builders
from hydra_jax.data import records as records_lib

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


def _parse_case(record: Mapping[str, Any], where: str) -> dict[str, Any]:
  """One raw record (already known to be an object) as the flat example described above."""

  def text(name: str, non_empty: bool = True) -> str:
    return records_lib.get_field(record, where, "requested_rewrite." + name, str,
                                 non_empty=non_empty)

  template, subject = text("prompt"), text("subject")
  return {
      ID_FIELD: records_lib.get_field(record, where, ID_FIELD, int),
      "prompt": fill_subject(template, subject, where),
      "template": template,
      "subject": subject,
      "label": text("target_true.str"),
      "target_new": text("target_new.str", non_empty=False),
      "relation_id": text("relation_id", non_empty=False),
  }


class Counterfact(builders.JsonRecordsBuilder):
  """CounterFact (counterfact.json) as prompts with the subject filled in and the true target."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "counterfact.json as published with ROME (Meng et al. 2022)."}
  # The data, as JsonRecordsBuilder reads it (the module constants above).
  FILENAME, URL = FILENAME, URL
  ID_FIELD, TEXT_FEATURES = ID_FIELD, TEXT_FEATURES
  HOMEPAGE, CITATION = builders.ROME_HOMEPAGE, builders.ROME_CITATION
  parse_record = staticmethod(_parse_case)


# Raw JSON list -> checked flat examples; a malformed record raises ValueError naming
# the record (index and id) and the field.
parse_counterfact = Counterfact.parse
