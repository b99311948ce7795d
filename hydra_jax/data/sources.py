"""Where a builder's raw JSON file comes from: the manual directory first, else the web.

`locate_source(dl_manager, filename, url, sha256)` returns a local path:

  1. `<manual_dir>/<filename>` when that file exists. The network is never touched, so
     preparing works offline (tests, TPU VMs without egress).
  2. Otherwise `dl_manager.download(url)`. A failed download (e.g. no network) becomes a
     FileNotFoundError saying where to put the file by hand.

A known sha256 that does not match is logged as a warning, not raised: a locally
edited or newer copy of the file is a legitimate input, and its records are checked
field by field anyway.
"""

from __future__ import annotations

import os
from typing import Optional

from absl import logging

from hydra_jax.data import records as records_lib


def manual_file(dl_manager, filename: str) -> Optional[os.PathLike]:
  """`<manual_dir>/<filename>` if the download manager has a manual dir holding it."""
  try:
    manual_dir = dl_manager.manual_dir  # raises when unset, missing or empty
  except (AssertionError, ValueError):
    return None
  path = manual_dir / filename
  return path if path.exists() else None


def locate_source(dl_manager, filename: str, url: str, sha256: Optional[str] = None):
  """A local path to `filename`: from the manual dir if present, else downloaded from `url`."""
  path = manual_file(dl_manager, filename)
  if path is None:
    try:
      path = dl_manager.download(url)
    except Exception as e:  # network, SSL, HTTP errors all mean the same to the user here
      raise FileNotFoundError(
          f"could not download {url} ({type(e).__name__}: {e}); without network access put "
          f"{filename} in a directory and pass it as manual_dir") from e
  if sha256 is not None:
    actual = records_lib.sha256_of(path)
    if actual != sha256:
      logging.warning("%s has sha256 %s, not the published %s; using it anyway",
                      os.fspath(path), actual, sha256)
  return path
