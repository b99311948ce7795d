"""Preparing a prompt set with TFDS and reading it back as plain Python records.

    prepare(name, data_dir, manual_dir)       -> the prepared TFDS builder (array_record)
    load_records(name, data_dir, manual_dir)  -> list[dict], in file order

TensorFlow is never needed: datasets are written as array_record files and read through
`builder.as_data_source()["train"]` (random access, no tf.data). A dataset already
prepared under `data_dir` is reused as is; pass `overwrite=True` to regenerate it after
changing the source file (the download cache is kept).

Every record returned by `load_records` has the uniform fields

    id       int   known_id / case_id
    prompt   str   the text the model completes
    label    str   the correct completion: known facts' `attribute`, CounterFact's target_true.str
    subject  str

plus all of its dataset's own fields (strings decoded from UTF-8, integers as int).
"""

from __future__ import annotations

import os
from typing import Any, Optional

import numpy as np
import tensorflow_datasets as tfds

from hydra_jax.data import counterfact
from hydra_jax.data import known_facts

BUILDERS = {
    "known_facts": known_facts.KnownFacts,
    "counterfact": counterfact.Counterfact,
}
FILE_FORMAT = "array_record"
PathLike = Optional[os.PathLike | str]


def builder_class(name: str) -> type[tfds.core.GeneratorBasedBuilder]:
  if name not in BUILDERS:
    raise ValueError(f"unknown prompt set {name!r}; choose one of {sorted(BUILDERS)}")
  return BUILDERS[name]


def prepare(name: str, data_dir: PathLike = None, manual_dir: PathLike = None, *,
            overwrite: bool = False) -> tfds.core.GeneratorBasedBuilder:
  """Prepares prompt set `name` under `data_dir` (if not already there) and returns its builder.

  `manual_dir` holding the source JSON (known_1000.json / counterfact.json) means no
  network access; otherwise the file is downloaded. `data_dir=None` is TFDS's default
  (~/tensorflow_datasets).
  """
  builder = builder_class(name)(
      data_dir=None if data_dir is None else os.fspath(data_dir), file_format=FILE_FORMAT)
  mode = (tfds.download.GenerateMode.REUSE_CACHE_IF_EXISTS if overwrite
          else tfds.download.GenerateMode.REUSE_DATASET_IF_EXISTS)
  download_config = tfds.download.DownloadConfig(
      manual_dir=None if manual_dir is None else os.fspath(manual_dir),
      download_mode=mode,
      try_download_gcs=False,  # never look for a pre-built copy on the TFDS bucket
  )
  builder.download_and_prepare(download_config=download_config, file_format=FILE_FORMAT)
  return builder


def load_records(name: str, data_dir: PathLike = None, manual_dir: PathLike = None, *,
                 overwrite: bool = False) -> list[dict[str, Any]]:
  """All records of prompt set `name` ("known_facts" or "counterfact") as uniform dicts."""
  builder = prepare(name, data_dir, manual_dir, overwrite=overwrite)
  source = builder.as_data_source()["train"]
  records = [decode_example(source[i]) for i in range(len(source))]
  return [uniform_view(name, record) for record in records]


def uniform_view(name: str, record: dict[str, Any]) -> dict[str, Any]:
  """Adds the shared `id` / `label` fields to a decoded record of prompt set `name`."""
  view = dict(record)
  if name == "known_facts":
    view["id"] = record[known_facts.ID_FIELD]
    view["label"] = record["attribute"]
  elif name == "counterfact":
    view["id"] = record[counterfact.ID_FIELD]
  else:
    raise ValueError(f"unknown prompt set {name!r}; choose one of {sorted(BUILDERS)}")
  return view


def decode_example(example: dict[str, Any]) -> dict[str, Any]:
  """A data-source example (bytes, numpy scalars) as plain Python (str, int, float, list)."""
  return {key: _to_python(value) for key, value in example.items()}


def _to_python(value: Any) -> Any:
  if isinstance(value, bytes):
    return value.decode("utf-8")
  if isinstance(value, np.ndarray):
    return [_to_python(v) for v in value.tolist()] if value.ndim else _to_python(value.item())
  if isinstance(value, np.generic):
    return value.item()
  if isinstance(value, (list, tuple)):
    return [_to_python(v) for v in value]
  return value
