"""Resumable storage of a sweep's results: one file per finished chunk, nothing lost.

A run's workdir holds

  run_config.json        the flattened config that produced the chunks (dotted keys)
  chunks/chunk_00000.npz one file per finished chunk of prompts, written atomically

Every file is written to a temporary name in the same folder and then moved into
place with `os.replace`, which is atomic on POSIX filesystems: a run killed at any
moment leaves either a complete chunk file or none. Running the same command again
skips the chunks already on disk, so an interrupted run ends with exactly the arrays
of an uninterrupted one.

A workdir whose run_config.json differs from the current config in a key that
changes results is refused, naming the differing keys. Keys that only change how
results are presented or where they are computed (`RESULT_NEUTRAL_PREFIXES`) may
differ between the runs.
"""

from __future__ import annotations

import json
import os
import tempfile
from typing import Any, Iterable, Mapping

import numpy as np

CONFIG_FILE = "run_config.json"
CHUNK_DIR = "chunks"
# Keys that do not change the arrays a chunk holds: report drawing, the dry-run switch,
# multi-host start-up and the device mesh (each chunk is computed under one mesh).
RESULT_NEUTRAL_PREFIXES = ("report.", "dry_run", "distributed", "mesh.")


def flatten(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
  """{"a": {"b": 1}} -> {"a.b": 1}, values made JSON-friendly (tuples become lists)."""
  flat = {}
  for key, value in config.items():
    name = f"{prefix}{key}"
    if isinstance(value, Mapping):
      flat.update(flatten(value, name + "."))
    else:
      flat[name] = list(value) if isinstance(value, tuple) else value
  return flat


def config_differences(stored: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
  """Dotted keys whose values differ (or exist on one side only), ignoring neutral keys."""
  keys = sorted(set(stored) | set(current))
  return [key for key in keys if not key.startswith(RESULT_NEUTRAL_PREFIXES)
          and stored.get(key, "<absent>") != current.get(key, "<absent>")]


def atomic_write_bytes(path: str, data: bytes) -> None:
  """Write `data` to `path` so that readers see the old file or the whole new one."""
  folder = os.path.dirname(os.path.abspath(path))
  os.makedirs(folder, exist_ok=True)
  handle, temporary = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=os.path.basename(path))
  try:
    with os.fdopen(handle, "wb") as f:
      f.write(data)
      f.flush()
      os.fsync(f.fileno())
    os.replace(temporary, path)
  except BaseException:
    if os.path.exists(temporary):
      os.remove(temporary)
    raise


def atomic_write_text(path: str, text: str) -> None:
  atomic_write_bytes(path, text.encode("utf-8"))


def atomic_save_npz(path: str, arrays: Mapping[str, np.ndarray]) -> None:
  """np.savez to a temporary file in the same folder, then os.replace into `path`."""
  folder = os.path.dirname(os.path.abspath(path))
  os.makedirs(folder, exist_ok=True)
  handle, temporary = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=".npz")
  try:
    with os.fdopen(handle, "wb") as f:
      np.savez(f, **{name: np.asarray(value) for name, value in arrays.items()})
      f.flush()
      os.fsync(f.fileno())
    os.replace(temporary, path)
  except BaseException:
    if os.path.exists(temporary):
      os.remove(temporary)
    raise


def load_npz(path: str) -> dict[str, np.ndarray]:
  with np.load(path, allow_pickle=False) as data:
    return {name: data[name] for name in data.files}


class ResultStore:
  """The chunk files and run config of one workdir."""

  def __init__(self, workdir: str):
    if not workdir:
      raise ValueError("--workdir is required: the folder that receives the results")
    self.workdir = workdir
    self.chunk_dir = os.path.join(workdir, CHUNK_DIR)

  # The config guard ------------------------------------------------------------------

  def claim(self, flat_config: Mapping[str, Any]) -> None:
    """Record the config in a fresh workdir, or check it against the one recorded there.

    Raises ValueError naming every differing key when the workdir holds chunks of a
    run with another config.
    """
    path = os.path.join(self.workdir, CONFIG_FILE)
    flat_config = json.loads(json.dumps(dict(flat_config), default=str))
    if os.path.exists(path):
      with open(path) as f:
        stored = json.load(f)
      differing = config_differences(stored, flat_config)
      if differing and self.finished_chunks():
        details = ", ".join(f"{key} ({stored.get(key, '<absent>')!r} there, "
                            f"{flat_config.get(key, '<absent>')!r} now)" for key in differing)
        raise ValueError(f"workdir {self.workdir} holds results of a different config; differing "
                         f"keys: {details}. Use another --workdir or delete that one.")
    atomic_write_text(path, json.dumps(flat_config, indent=2, sort_keys=True))

  # Chunks -----------------------------------------------------------------------------

  def chunk_path(self, index: int) -> str:
    return os.path.join(self.chunk_dir, f"chunk_{index:05d}.npz")

  def finished_chunks(self) -> list[int]:
    if not os.path.isdir(self.chunk_dir):
      return []
    names = (n for n in os.listdir(self.chunk_dir) if n.startswith("chunk_") and n.endswith(".npz"))
    return sorted(int(n[len("chunk_"):-len(".npz")]) for n in names)

  def save_chunk(self, index: int, arrays: Mapping[str, np.ndarray]) -> None:
    atomic_save_npz(self.chunk_path(index), arrays)

  def load_chunk(self, index: int) -> dict[str, np.ndarray]:
    return load_npz(self.chunk_path(index))

  def load_all(self, indices: Iterable[int]) -> dict[str, np.ndarray]:
    """Concatenate the given chunks' arrays along their first (prompt) axis."""
    chunks = [self.load_chunk(i) for i in indices]
    if not chunks:
      return {}
    return {name: np.concatenate([c[name] for c in chunks], axis=0) for name in chunks[0]}
