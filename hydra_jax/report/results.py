"""results.npz with names: which component each column is, which axis each dimension is.

    from hydra_jax import report
    results = report.load("/tmp/hydra_tiny")
    results.components                 # ['a0', 'm0', 'a1', 'm1', ...]: c = 2l is "a{l}",
                                       # the attention of layer l; 2l + 1 is "m{l}", its MLP
    results.axes["response"]           # ('prompt', 'ablated', 'responding')
    results["response"]                # the array [N, C, C]
    results.sel("response", ablated="a3", responding="m5")    # [N]
    results.to_pandas()                # one row per value (needs pandas)
    results.to_xarray()                # an xarray.Dataset with named coordinates (needs xarray)

The report writes the names into results.npz beside the arrays (`with_layout`), so numpy
alone reads them: `components` [C] and, per array `name`, `axes/<name>` (its axis names).
A results.npz written before they were stored gets the same names from `axes_of`. Axes:

  prompt        the N kept prompts, in prompt order (prompt_id, prompt, label, ...)
  first_prompt  the first M of them (response_by_source: keep_sources)
  source        the K resample sources (or noise draws) of each prompt
  component     a component in the clean run (direct_effect)
  ablated       the ablated component (the [N, C] measures: DE lost, TE, CE, ...)
  responding    the component whose DE changes in response (response)

Shapes: N prompts, M prompts with per-source matrices, K sources, C = 2L components.
"""

from __future__ import annotations

import json
from typing import Any, Iterator, Mapping, Optional

import numpy as np

from hydra_jax import store as results_store

COMPONENTS_KEY = "components"
AXES_PREFIX = "axes/"
RESULTS_FILE = "results.npz"
SUMMARY_FILE = "summary.json"
COMPONENT_AXES = ("component", "ablated", "responding")     # the axes labelled by components
PROMPT_ARRAYS = ("prompt_id", "prompt", "label", "token", "token_text", "clean_logit",
                 "embed_direct_effect", "relation", "subject")
ABLATED_ARRAYS = ("direct_change", "compensation_attn", "compensation_mlp", "norm_remainder",
                  "total_effect_mean")
AXES = {**{name: ("prompt",) for name in PROMPT_ARRAYS},
        **{name: ("prompt", "ablated") for name in ABLATED_ARRAYS},
        "direct_effect": ("prompt", "component"), "sources": ("prompt", "source"),
        "total_effect": ("prompt", "source", "ablated"),
        "response": ("prompt", "ablated", "responding"),
        "response_by_source": ("first_prompt", "source", "ablated", "responding")}


def component_names(num_components: int) -> list[str]:
  """["a0", "m0", "a1", ...]: component 2l is layer l's attention, 2l + 1 its MLP."""
  return [f"{'am'[c % 2]}{c // 2}" for c in range(num_components)]


def axes_of(name: str, ndim: int) -> tuple[str, ...]:
  """The axis names of array `name` with `ndim` dimensions; an array of no known layout gets
  ("prompt", "<name>_1", ...)."""
  known = AXES.get(name) or (("prompt", "source", "ablated") if "_by_source" in name else None)
  if known is not None and len(known) == ndim:
    return known
  return ("prompt",) + tuple(f"{name}_{axis}" for axis in range(1, ndim))


def with_layout(arrays: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
  """`arrays` plus their names, as results.npz stores them (see the module docstring)."""
  data = {name: value for name, value in arrays.items() if not is_layout(name)}
  named = dict(data)
  named[COMPONENTS_KEY] = np.array(component_names(data["direct_effect"].shape[1]))
  named.update((AXES_PREFIX + name, np.array(axes_of(name, np.ndim(value))))
               for name, value in data.items())
  return named


def is_layout(name: str) -> bool:
  """Whether a results.npz entry is a name (`with_layout`) rather than an array of the sweep."""
  return name == COMPONENTS_KEY or name.startswith(AXES_PREFIX)


class Results(Mapping):
  """A finished run's arrays by name (a read-only dict), with `components`, `axes`, `sel`,
  `to_pandas` and `to_xarray`; `summary` is summary.json's content (None without it)."""

  def __init__(self, stored: Mapping[str, np.ndarray], summary: Optional[dict] = None):
    self._arrays = {name: value for name, value in stored.items() if not is_layout(name)}
    if "direct_effect" not in self._arrays:
      raise ValueError("these are no sweep results: results.npz holds no direct_effect array")
    count = self._arrays["direct_effect"].shape[1]
    self.components = ([str(c) for c in stored[COMPONENTS_KEY]] if COMPONENTS_KEY in stored
                       else component_names(count))
    self.axes = {name: (tuple(str(a) for a in stored[AXES_PREFIX + name])
                        if AXES_PREFIX + name in stored else axes_of(name, value.ndim))
                 for name, value in self._arrays.items()}
    self.summary = summary

  def __getitem__(self, name: str) -> np.ndarray:
    if name not in self._arrays:
      raise KeyError(f"results.npz holds no array {name!r}; it holds {', '.join(self._arrays)}")
    return self._arrays[name]

  def __iter__(self) -> Iterator[str]:
    return iter(self._arrays)

  def __len__(self) -> int:
    return len(self._arrays)

  def index(self, component: str) -> int:
    """The position of a component name ("a3") on a component axis."""
    if component not in self.components:
      raise ValueError(f"no component {component!r}: the components are "
                       f"{self.components[0]} .. {self.components[-1]}")
    return self.components.index(component)

  def coords(self, axis: str, size: int) -> list:
    """The labels of `axis`: component names on a component axis, else 0 .. size - 1."""
    return list(self.components) if axis in COMPONENT_AXES else list(range(size))

  def sel(self, name: str, **labels: Any) -> np.ndarray:
    """Array `name` at the given labels, e.g. sel("response", ablated="a3"): a component
    axis takes a name, another axis an index."""
    array, axes = self[name], self.axes[name]
    unknown = sorted(set(labels) - set(axes))
    if unknown:
      raise ValueError(f"{name} has the axes {', '.join(axes)}, not {', '.join(unknown)}")
    where = tuple(labels.get(axis, slice(None)) for axis in axes)
    where = tuple(self.index(w) if axis in COMPONENT_AXES and isinstance(w, str) else w
                  for axis, w in zip(axes, where))
    return array[where]

  def to_pandas(self, names: Optional[list[str]] = None):
    """A long pandas.DataFrame: one row per value of the numeric arrays `names` (default
    all), with columns array, value and one per axis (empty where an array lacks it)."""
    pandas = _optional("pandas", "to_pandas")
    frames = []
    for name in names or [n for n, v in self._arrays.items() if v.dtype.kind in "biuf"]:
      array, axes = self[name], self.axes[name]
      grid = np.meshgrid(*[np.arange(size) for size in array.shape], indexing="ij")
      columns = {axis: (np.array(self.components, object)[index.ravel()]
                        if axis in COMPONENT_AXES else index.ravel())
                 for axis, index in zip(axes, grid)}
      frames.append(pandas.DataFrame(dict(array=name, **columns, value=array.ravel())))
    return pandas.concat(frames, ignore_index=True)

  def to_xarray(self):
    """An xarray.Dataset of every array, the component names as coordinates; an array named
    like an axis ("prompt": the texts) is the variable "<name>_text"."""
    xarray = _optional("xarray", "to_xarray")
    sizes = {axis: size for name, value in self._arrays.items()
             for axis, size in zip(self.axes[name], value.shape)}
    coords = {axis: self.coords(axis, size) for axis, size in sizes.items()}
    variables = {(f"{name}_text" if name in sizes else name): (self.axes[name], value)
                 for name, value in self._arrays.items()}
    return xarray.Dataset(variables, coords=coords)


def _optional(module: str, method: str):
  """Import an optional dependency of `method`, or a one-line error saying how to get it."""
  try:
    return __import__(module)
  except ImportError:
    raise ImportError(f"Results.{method}() needs {module}: pip install {module}") from None


def load(workdir: results_store.PathLike) -> Results:
  """The named results of a finished run in `workdir` (a folder or gs:// bucket path)."""
  root = results_store.as_path(workdir)
  if not (root / RESULTS_FILE).exists():
    raise ValueError(f"{root / RESULTS_FILE} does not exist: run python -m hydra_jax.main "
                     f"--workdir={workdir} first")
  summary_path = root / SUMMARY_FILE
  summary = json.loads(summary_path.read_text()) if summary_path.exists() else None
  return Results(results_store.load_npz(root / RESULTS_FILE), summary)
