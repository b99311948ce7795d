"""Workarounds that let our TFDS builders run on a plain `pip install tensorflow-datasets`.

`PlainCodePath` is a mixin for builders: list it *before* `GeneratorBasedBuilder`.

Why: tensorflow-datasets 4.9.x computes `DatasetBuilder.code_path` (the builder's source
file, used only to find an optional url-checksums file beside it) by probing
`importlib_resources.abc.Traversable`. Recent `etils[epath]` no longer installs the
`importlib_resources` backport, so preparing any builder that lives in a package fails
with "No module named 'importlib_resources'". TFDS's own fallback for ordinary files is
`inspect.getfile(cls)`; the mixin returns exactly that, skipping the probe.
"""

from __future__ import annotations

import inspect
from typing import Optional

import tensorflow_datasets as tfds
from etils import epath


class PlainCodePath:
  """Mixin: `code_path` is the builder's source file, found without importlib_resources."""

  @tfds.core.utils.classproperty
  @classmethod
  def code_path(cls) -> Optional[epath.Path]:
    try:
      return epath.Path(inspect.getfile(cls))
    except (TypeError, OSError):  # defined interactively: no source file
      return None
