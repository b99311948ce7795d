"""Resumable storage of a sweep's results: one file per finished chunk, nothing lost.

A run's workdir holds

  run_config.json        the flattened config that produced the chunks (dotted keys)
  chunks/chunk_00000.npz one file per finished chunk of prompts, written atomically

The workdir is a local folder or a bucket (`gs://bucket/run`): every file of a run
(these, and the report's) goes through `etils.epath` paths and the writers here. A
local file is written to a temporary name in the same folder and then moved into
place with `os.replace`, atomic on POSIX filesystems; an object store makes a new
object visible only once its upload is complete, so a direct write is atomic there.
Every local file is created as `open()` creates one (mode 0o666 less the umask; folders
0o777 less the umask): 0o644 under the usual umask 022, 0o600 under 077 (`FILE_MODE`).
Either way a run killed at any moment leaves a complete chunk file or none, and a
preempted VM loses nothing that a bucket holds. Running the same command again skips
the chunks already stored, so an interrupted run ends with exactly the arrays of an
uninterrupted one. (Buckets need an epath backend: `pip install gcsfs`.)

A workdir whose run_config.json differs from the current config in a key that
changes results is refused, naming the differing keys. Keys that only change how
results are presented or where they are computed (`RESULT_NEUTRAL_PREFIXES`) may
differ between the runs.
"""

from __future__ import annotations

import io
import json
import os
import secrets
from typing import Any, Callable, Iterable, Mapping, Union

import numpy as np
from etils import epath

CONFIG_FILE = "run_config.json"
CHUNK_DIR = "chunks"
# Keys that do not change the arrays a chunk holds: report drawing, the dry-run switch,
# multi-host start-up and the device mesh (each chunk is computed under one mesh).
RESULT_NEUTRAL_PREFIXES = ("report.", "dry_run", "distributed", "mesh.")
# The mode a new workdir file is created with; the kernel takes the umask away, as for
# open(). (tempfile.mkstemp's files are 0o600 whatever the umask: never used here.)
FILE_MODE = 0o666


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


PathLike = Union[str, os.PathLike]


def as_path(location: PathLike) -> epath.Path:
  """A local path or a bucket URL (gs://...) as one path type."""
  return epath.Path(location)


def is_local(path: PathLike) -> bool:
  return "://" not in os.fspath(path)


def _temporary_beside(path: str) -> tuple[int, str]:
  """A new empty file in path's folder, opened for writing: (descriptor, its name). Made
  with FILE_MODE less the umask, so that the file moved into place is as open() makes it."""
  folder, name = os.path.split(path)
  flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
  for _ in range(100):
    temporary = os.path.join(folder, f".tmp-{secrets.token_hex(6)}-{name}")
    try:
      return os.open(temporary, flags, FILE_MODE), temporary
    except FileExistsError:
      continue
  raise FileExistsError(f"no free temporary name beside {path}")


def _write_atomically(path: PathLike, write: Callable[[Any], None]) -> None:
  """Call write(binary file) so that readers of `path` see the old file or the whole new one."""
  path = as_path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  if not is_local(path):            # an object appears only when its upload is complete
    with path.open("wb") as f:
      write(f)
    return
  handle, temporary = _temporary_beside(os.fspath(path))
  try:
    with os.fdopen(handle, "wb") as f:
      write(f)
      f.flush()
      os.fsync(f.fileno())
    os.replace(temporary, os.fspath(path))
  except BaseException:
    if os.path.exists(temporary):
      os.remove(temporary)
    raise


def atomic_write_bytes(path: PathLike, data: bytes) -> None:
  """Write `data` to `path` so that readers see the old file or the whole new one."""
  _write_atomically(path, lambda f: f.write(data))


def atomic_write_text(path: PathLike, text: str) -> None:
  atomic_write_bytes(path, text.encode("utf-8"))


def atomic_save_npz(path: PathLike, arrays: Mapping[str, np.ndarray]) -> None:
  """np.savez of `arrays` into `path`, atomically."""
  _write_atomically(path, lambda f: np.savez(
      f, **{name: np.asarray(value) for name, value in arrays.items()}))


def load_npz(path: PathLike) -> dict[str, np.ndarray]:
  with as_path(path).open("rb") as f:
    buffer = io.BytesIO(f.read())   # np.load wants seeking, which not every bucket file offers
  with np.load(buffer, allow_pickle=False) as data:
    return {name: data[name] for name in data.files}


def read_json(path: PathLike) -> Any:
  return json.loads(as_path(path).read_text())


class ResultStore:
  """The chunk files and run config of one workdir."""

  def __init__(self, workdir: PathLike):
    if not workdir:
      raise ValueError("--workdir is required: the folder that receives the results")
    self.workdir = os.fspath(workdir)
    self.root = as_path(workdir)
    self.chunk_dir = self.root / CHUNK_DIR

  # The config guard ------------------------------------------------------------------

  def check_claim(self, flat_config: Mapping[str, Any]) -> dict[str, Any]:
    """The config as it will be recorded; raises ValueError naming every differing key when
    the workdir holds chunks of a run with another config. Writes nothing."""
    path = self.root / CONFIG_FILE
    flat_config = json.loads(json.dumps(dict(flat_config), default=str))
    if path.exists():
      stored = read_json(path)
      differing = config_differences(stored, flat_config)
      if differing and self.finished_chunks():
        details = ", ".join(f"{key} ({stored.get(key, '<absent>')!r} there, "
                            f"{flat_config.get(key, '<absent>')!r} now)" for key in differing)
        raise ValueError(f"workdir {self.workdir} holds results of a different config; differing "
                         f"keys: {details}. Use another --workdir or delete that one.")
    return flat_config

  def claim(self, flat_config: Mapping[str, Any]) -> None:
    """Record the config in a fresh workdir, or check it against the one recorded there
    (`check_claim`) and record it."""
    flat_config = self.check_claim(flat_config)
    atomic_write_text(self.root / CONFIG_FILE, json.dumps(flat_config, indent=2, sort_keys=True))

  # Chunks -----------------------------------------------------------------------------

  def chunk_path(self, index: int) -> epath.Path:
    return self.chunk_dir / f"chunk_{index:05d}.npz"

  def finished_chunks(self) -> list[int]:
    if not self.chunk_dir.is_dir():
      return []
    names = (p.name for p in self.chunk_dir.iterdir())
    return sorted(int(n[len("chunk_"):-len(".npz")]) for n in names
                  if n.startswith("chunk_") and n.endswith(".npz"))

  def save_chunk(self, index: int, arrays: Mapping[str, np.ndarray]) -> None:
    atomic_save_npz(self.chunk_path(index), arrays)

  def load_chunk(self, index: int) -> dict[str, np.ndarray]:
    return load_npz(self.chunk_path(index))

  def load_all(self, indices: Iterable[int]) -> dict[str, np.ndarray]:
    """Concatenate the given chunks' arrays along their first (prompt) axis."""
    return concatenate([self.load_chunk(i) for i in indices])


def concatenate(chunks: Iterable[Mapping[str, np.ndarray]]) -> dict[str, np.ndarray]:
  """Chunks' arrays (each [n_i, ...], the same names) concatenated along their first axis;
  {} for no chunk."""
  chunks = list(chunks)
  if not chunks:
    return {}
  return {name: np.concatenate([c[name] for c in chunks], axis=0) for name in chunks[0]}
