"""The one shape of our TFDS builders: a JSON list of records -> one split, "train".

`JsonRecordsBuilder` is the machinery; a subclass states only its data, as class attributes:

  FILENAME, URL, SHA256   the source file, where to download it, its published sha256
                          (None: not checked)
  ID_FIELD                the int64 feature unique per record, also each example's key
  TEXT_FEATURES           the string features
  HOMEPAGE, CITATION      for DatasetInfo
  parse_record            (record, where) -> one flat example, the record already known to
                          be a JSON object (a staticmethod; a malformed field raises
                          ValueError naming `where` and the field)
  VERSION, RELEASE_NOTES  as for any TFDS builder

The base gives every builder the same behaviour: DatasetInfo described by the subclass's
module docstring, with shuffling disabled (file order, so ids and results line up with the
source); `parse`, every record checked, in file order, ids unique; the source file from
`manual_dir` when present, else downloaded (`sources`); optional manual-download
instructions; examples keyed by their id. The base is abstract (`parse_record`), so TFDS
does not register it as a data set.
"""

from __future__ import annotations

import abc
import sys
from typing import Any, Iterator, Mapping, Optional

import numpy as np
import tensorflow_datasets as tfds

from hydra_jax.data import records as records_lib
from hydra_jax.data import sources
from hydra_jax.data import tfds_compat

# Both prompt sets were published with ROME.
ROME_HOMEPAGE = "https://rome.baulab.info/"
ROME_CITATION = ("Meng, Bau, Andonian, Belinkov. Locating and Editing Factual Associations "
                 "in GPT. NeurIPS 2022.")


class JsonRecordsBuilder(tfds_compat.PlainCodePath, tfds.core.GeneratorBasedBuilder):
  """A TFDS builder for one JSON list of records, configured by class attributes."""

  FILENAME: str
  URL: str
  SHA256: Optional[str] = None
  ID_FIELD: str
  TEXT_FEATURES: tuple[str, ...]
  HOMEPAGE: str
  CITATION: str

  @staticmethod
  @abc.abstractmethod
  def parse_record(record: Mapping[str, Any], where: str) -> dict[str, Any]:
    """One raw record (a JSON object) as a flat example; `where` names it in errors."""

  @classmethod
  def parse(cls, raw_records: list[Any]) -> list[dict[str, Any]]:
    """Checks every raw record and returns the flat examples, in file order.

    A malformed record raises ValueError naming the record (index and id) and the field.
    """
    return records_lib.parse_records(raw_records, cls.name, cls.ID_FIELD, cls.parse_record)

  @tfds.core.utils.classproperty
  @classmethod
  def MANUAL_DOWNLOAD_INSTRUCTIONS(cls) -> str:  # pylint: disable=invalid-name
    return (f"Optional: put {cls.FILENAME} (from {cls.URL}) in manual_dir to prepare "
            f"without network access.")

  def _info(self) -> tfds.core.DatasetInfo:
    # Built directly (not via dataset_info_from_configs), which would look for TFDS
    # package metadata files next to the builder's module.
    features = {self.ID_FIELD: np.int64}
    features.update({name: tfds.features.Text() for name in self.TEXT_FEATURES})
    return tfds.core.DatasetInfo(
        builder=self,
        description=sys.modules[type(self).__module__].__doc__,
        features=tfds.features.FeaturesDict(features),
        homepage=self.HOMEPAGE,
        citation=self.CITATION,
        disable_shuffling=True,  # keep file order: ids and results line up with the source
    )

  def _split_generators(self, dl_manager):
    path = sources.locate_source(dl_manager, self.FILENAME, self.URL, self.SHA256)
    return {"train": self._generate_examples(path)}

  def _generate_examples(self, path) -> Iterator[tuple[int, dict[str, Any]]]:
    raw_records = records_lib.read_json_list(path, self.name)
    for example in self.parse(raw_records):
      yield example[self.ID_FIELD], example
