"""A GGUF file (llama.cpp's format): its metadata and its tensors, read with the `gguf` package.

    with GGUFFile(path) as file:
      file.metadata["llama.block_count"]           # 30: every key/value pair, decoded
      file.names                                   # tensor names ("blk.0.attn_q.weight", ...)
      file.shape("blk.0.attn_q.weight")            # (576, 576): [out, in], numpy's order
      file.read("blk.0.attn_q.weight")             # float32 [out, in], dequantized

GGUF stores each tensor's dimensions in ggml's order, fastest first ([in, out] for a
matrix); `shape` and `read` give them reversed, i.e. the row-major [out, in] that numpy,
safetensors and Hugging Face use. Every ggml type the `gguf` package knows (F32, F16,
BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, the K-quants Q2_K..Q6_K, the IQ types) is dequantized
by it with numpy, one tensor at a time, so only one float32 tensor is in memory at once.

Everything wrong with a file is a CheckpointError naming it: not a GGUF file, an
unsupported GGUF version, a truncated file (its tensors run past the end), a ggml type
the reader does not know, or weights that dequantize to NaN or inf.
"""

from __future__ import annotations

import contextlib
import functools
import os
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from hydra_jax.checkpoints.layout import CheckpointError

MAGIC = b"GGUF"
SUPPORTED_VERSIONS = (2, 3)


def _gguf():
  """The `gguf` package (imported on first use: only GGUF checkpoints need it)."""
  import gguf
  return gguf


def _check_header(path: Path) -> None:
  """Magic and version, read from the first 8 bytes before the reader maps the file."""
  if not path.is_file():
    raise CheckpointError(f"{path}: no such GGUF file")
  with open(path, "rb") as handle:
    head = handle.read(8)
  if head[:4] != MAGIC:
    raise CheckpointError(f"{path}: not a GGUF file (it starts with {head[:4]!r}, not {MAGIC!r})")
  version = int.from_bytes(head[4:8], "little") if len(head) == 8 else None
  if version not in SUPPORTED_VERSIONS:
    raise CheckpointError(f"{path}: GGUF version {version} is not supported "
                          f"(supported: {', '.join(map(str, SUPPORTED_VERSIONS))})")


def _value(field) -> Any:
  """A reader field's value: a Python scalar or str, or a list of them for arrays."""
  value = field.contents()
  return value.tolist() if isinstance(value, np.ndarray) else value


class Metadata(Mapping):
  """The file's key/value pairs, each decoded when first read (a 262,144-token vocabulary
  takes seconds to decode, and most callers want a few scalars)."""

  def __init__(self, fields):
    self._fields, self._decoded = fields, {}

  def __getitem__(self, name: str) -> Any:
    if name not in self._decoded:
      self._decoded[name] = _value(self._fields[name])
    return self._decoded[name]

  def __iter__(self):
    return iter(self._fields)

  def __len__(self) -> int:
    return len(self._fields)


@functools.lru_cache(maxsize=2)
def _parsed(path: str, size: int, mtime_ns: int):
  """(reader, {name: tensor}, Metadata) of one version of a file (its size and mtime are
  part of the key): the job opens a GGUF file three times (plan, weights, tokenizer), and
  parsing a 262,144-token vocabulary's header takes seconds, so it is parsed once."""
  del size, mtime_ns
  gguf = _gguf()
  try:
    reader = gguf.GGUFReader(path, "r")
  except (ValueError, KeyError, IndexError, OSError) as error:
    reason = str(error)
    if "GGMLQuantizationType" in reason:
      reason = f"a tensor of unknown ggml type ({reason}); known: " + ", ".join(
          t.name for t in gguf.GGMLQuantizationType)
    raise CheckpointError(f"{path}: truncated or corrupt GGUF file "
                          f"({os.path.getsize(path):,} bytes): {reason}") from None
  tensors = {tensor.name: tensor for tensor in reader.tensors}
  metadata = Metadata({name: field for name, field in reader.fields.items()
                       if not name.startswith("GGUF.")})
  return reader, tensors, metadata


class GGUFFile(contextlib.AbstractContextManager):
  """The metadata and lazily read tensors of one GGUF file (memory-mapped, read-only)."""

  def __init__(self, path: str | os.PathLike):
    self.path = Path(path)
    _check_header(self.path)
    stat = self.path.stat()
    self._reader, self._tensors, self.metadata = _parsed(str(self.path), stat.st_size,
                                                         stat.st_mtime_ns)

  def __exit__(self, *exc) -> None:
    self._reader = None

  @property
  def names(self) -> tuple[str, ...]:
    return tuple(self._tensors)

  def shape(self, name: str) -> tuple[int, ...]:
    """The tensor's shape in numpy's (row-major) order: ggml's dimensions reversed."""
    return tuple(int(n) for n in reversed(self._tensors[name].shape.tolist()))

  def type_name(self, name: str) -> str:
    return self._tensors[name].tensor_type.name

  def read(self, name: str) -> np.ndarray:
    """The tensor dequantized to float32, in `shape(name)`; NaN or inf is an error."""
    tensor = self._tensors[name]
    try:
      values = _gguf().quants.dequantize(tensor.data, tensor.tensor_type)
    except NotImplementedError as error:
      raise CheckpointError(f"{self.path}: tensor {name!r}: {error}") from None
    values = np.asarray(values, np.float32).reshape(self.shape(name))
    if not np.isfinite(values).all():
      bad = int(np.size(values) - np.isfinite(values).sum())
      raise CheckpointError(f"{self.path}: tensor {name!r} ({tensor.tensor_type.name}) "
                            f"dequantizes to {bad:,} NaN or inf value(s)")
    return values
