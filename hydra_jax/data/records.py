"""Raw JSON records: reading a dataset file and checking each record's fields.

Both prompt sets (known facts, CounterFact) arrive as one JSON file holding a list of
objects. This module owns the checks shared by their builders:

  read_json_list(path, what)        the file -> list of raw records; an empty file, an
                                    empty list or a non-list is a ValueError saying so
  get_field(record, where, "a.b", str)
                                    a (possibly nested) field with its type checked; a
                                    missing field or a wrong type is a ValueError naming
                                    the record (`where`) and the field
  check_unique_ids(ids, what)       duplicate record ids are a ValueError naming both
  parse_records(raw, what, id_field, parse_one)
                                    every record checked to be an object, flattened by
                                    parse_one(record, where), then ids checked unique
  sha256_of(path)                   hex digest, to compare against a published file

Nothing here knows TFDS; the builders call these from their example generators.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any, Callable, Iterable, Mapping

_MISSING = object()


def read_json_list(path: os.PathLike | str, what: str) -> list[Any]:
  """Parses `path` as a JSON list of records of `what` (e.g. "known facts")."""
  with open(path, "rb") as f:
    raw = f.read()
  if not raw.strip():
    raise ValueError(f"{what} file {os.fspath(path)} is empty: expected a JSON list of records")
  try:
    records = json.loads(raw)
  except json.JSONDecodeError as e:
    raise ValueError(f"{what} file {os.fspath(path)} is not valid JSON: {e}") from e
  if not isinstance(records, list):
    raise ValueError(f"{what} file {os.fspath(path)} holds a JSON {type(records).__name__}, "
                     "expected a list of records")
  if not records:
    raise ValueError(f"{what} file {os.fspath(path)} is empty: its JSON list has no records")
  return records


def describe_record(index: int, record: Any, id_field: str) -> str:
  """A name for a record in error messages: its position and, when readable, its id."""
  if isinstance(record, Mapping) and id_field in record:
    return f"record #{index} ({id_field}={record[id_field]!r})"
  return f"record #{index}"


def require_object(record: Any, where: str) -> Mapping[str, Any]:
  if not isinstance(record, Mapping):
    raise ValueError(f"{where} is a JSON {type(record).__name__}, expected an object")
  return record


def get_field(record: Mapping[str, Any], where: str, dotted_name: str, kind: type,
              *, non_empty: bool = False) -> Any:
  """`record[a][b]...` for `dotted_name` "a.b...", checked to be an instance of `kind`.

  `bool` never passes for `int` (JSON true is not an id). With `non_empty`, an empty or
  all-whitespace string is rejected too.
  """
  value: Any = record
  for depth, key in enumerate(dotted_name.split(".")):
    if not isinstance(value, Mapping):
      parent = ".".join(dotted_name.split(".")[:depth])
      raise ValueError(f"{where}: field '{parent}' should be an object, "
                       f"got {type(value).__name__}")
    value = value.get(key, _MISSING)
    if value is _MISSING:
      raise ValueError(f"{where}: missing field '{dotted_name}'")
  wrong_type = not isinstance(value, kind) or (kind is int and isinstance(value, bool))
  if wrong_type:
    raise ValueError(f"{where}: field '{dotted_name}' should be {kind.__name__}, "
                     f"got {type(value).__name__} ({_short_repr(value)})")
  if non_empty and isinstance(value, str) and not value.strip():
    raise ValueError(f"{where}: field '{dotted_name}' is empty")
  return value


def check_unique_ids(ids: Iterable[int], what: str, id_field: str) -> None:
  first_index: dict[int, int] = {}
  for index, record_id in enumerate(ids):
    if record_id in first_index:
      raise ValueError(f"{what}: records #{first_index[record_id]} and #{index} share "
                       f"{id_field}={record_id}")
    first_index[record_id] = index


def parse_records(raw_records: list[Any], what: str, id_field: str,
                  parse_one: Callable[[Mapping[str, Any], str], dict[str, Any]]
                  ) -> list[dict[str, Any]]:
  """`parse_one(record, where)` of every raw record, in order, their `id_field` unique.

  `where` names the record in errors ("<what> record #3 (<id_field>=3)"); a record that
  is not a JSON object is a ValueError before `parse_one` sees it.
  """
  parsed = []
  for index, raw in enumerate(raw_records):
    where = f"{what} " + describe_record(index, raw, id_field)
    parsed.append(parse_one(require_object(raw, where), where))
  check_unique_ids((r[id_field] for r in parsed), what, id_field)
  return parsed


def sha256_of(path: os.PathLike | str) -> str:
  digest = hashlib.sha256()
  with open(path, "rb") as f:
    for chunk in iter(lambda: f.read(1 << 20), b""):
      digest.update(chunk)
  return digest.hexdigest()


def _short_repr(value: Any, limit: int = 40) -> str:
  text = repr(value)
  return text if len(text) <= limit else text[:limit - 3] + "..."
