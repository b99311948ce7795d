"""Where a run's numbers came from: versions, source commit, time and devices.

`collect()` returns a JSON-ready dict, written into summary.json as "provenance"
(`report.summary.write`) and shown as one line of report.md (`line`):

  hydra_jax                 the package's version (`hydra_jax.__version__`)
  jax, jaxlib, dm-haiku, numpy   the installed distributions' versions (None: not installed)
  python                    the interpreter's version, e.g. "3.11.7"
  git_commit, git_dirty     the commit of the checkout the package was imported from, and
                            whether its tracked files differ from it; both None when the
                            package is not a git checkout (an installed wheel) or git is absent
  utc                       when it was collected, ISO 8601 in UTC ("2025-01-31T12:00:00+00:00")
  platform, device_kind, device_count, process_count   jax.devices(): e.g. "tpu",
                            "TPU v4", 32, 8 (every process's devices)

Nothing here fails: a value that cannot be found is None.
"""

from __future__ import annotations

import datetime
import importlib.metadata
import os
import platform
import subprocess
from typing import Any, Mapping, Optional

import hydra_jax

DISTRIBUTIONS = ("jax", "jaxlib", "dm-haiku", "numpy")
GIT_TIMEOUT_SECONDS = 10
PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))


def _version(distribution: str) -> Optional[str]:
  try:
    return importlib.metadata.version(distribution)
  except importlib.metadata.PackageNotFoundError:
    return None


def _git(*args: str) -> Optional[str]:
  """git's stdout in the package's folder, stripped; None when git fails or is absent."""
  try:
    done = subprocess.run(["git", "-C", PACKAGE_DIR, *args], capture_output=True, text=True,
                          timeout=GIT_TIMEOUT_SECONDS)
  except (OSError, subprocess.SubprocessError):
    return None
  return done.stdout.strip() if done.returncode == 0 else None


def git_state() -> tuple[Optional[str], Optional[bool]]:
  """(commit, dirty) of the checkout holding this package; (None, None) outside one (a
  package installed into a virtualenv inside some other repository does not count)."""
  top = _git("rev-parse", "--show-toplevel")
  if top is None or os.path.realpath(top) != os.path.realpath(os.path.dirname(PACKAGE_DIR)):
    return None, None
  commit = _git("rev-parse", "HEAD")
  status = _git("status", "--porcelain", "--untracked-files=no")
  return commit, (None if commit is None or status is None else bool(status))


def devices() -> dict[str, Any]:
  """The platform, kind and count of jax.devices(), and the process count (None: no jax)."""
  try:
    import jax
    found = jax.devices()
    return dict(platform=found[0].platform, device_kind=found[0].device_kind,
                device_count=len(found), process_count=jax.process_count())
  except Exception:  # no backend starts: provenance is no reason to fail a report
    return dict(platform=None, device_kind=None, device_count=None, process_count=None)


def collect() -> dict[str, Any]:
  """The provenance of this process (see the module docstring)."""
  commit, dirty = git_state()
  found = dict(hydra_jax=hydra_jax.__version__)
  found.update((name, _version(name)) for name in DISTRIBUTIONS)
  found.update(python=platform.python_version(), git_commit=commit, git_dirty=dirty,
               utc=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"))
  found.update(devices())
  return found


def line(provenance: Optional[Mapping[str, Any]]) -> list[str]:
  """report.md's line for summary.json's "provenance" ([] without one)."""
  if not provenance:
    return []
  get = lambda key: provenance.get(key) or "?"
  commit = provenance.get("git_commit")
  source = (f", git {commit[:12]}{' (uncommitted changes)' if provenance.get('git_dirty') else ''}"
            if commit else "")
  return [f"- **Provenance**: hydra_jax {get('hydra_jax')}{source}; jax {get('jax')}, "
          f"jaxlib {get('jaxlib')}, Haiku {get('dm-haiku')}, numpy {get('numpy')}, Python "
          f"{get('python')}; {get('device_count')} x {get('device_kind')} ({get('platform')}) "
          f"in {get('process_count')} process(es); {get('utc')}"]
