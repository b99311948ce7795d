"""Compare two main-job workdirs: results.npz array by array and summary.json number by number.

    python benchmarks/compare_workdirs.py OLD_DIR NEW_DIR [--rtol 1e-6]

A float array matches when max |new - old| <= rtol * max |old| (relative to the array's
scale: TE near zero has no meaningful elementwise relative error); integer and string
arrays must be equal. summary.json is compared the same way on every number it holds,
skipping timings, the configuration and the provenance (results.npz: the names of components
and axes, which older workdirs lack). Prints one line per difference and a verdict;
exits 1 when anything differs. Keys present in only one of the two are counted, not
compared (a newer report adds fields).
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

from hydra_jax.report import results as report_results

SKIPPED_SUMMARY_KEYS = ("timing", "config", "provenance")


def compare_arrays(old: dict, new: dict, rtol: float) -> list[str]:
  problems = [f"results.npz: {name} only in {side}" for side, a, b in (("old", old, new), ("new", new, old))
              for name in sorted(set(a) - set(b)) if not report_results.is_layout(name)]
  for name in sorted(set(old) & set(new)):
    a, b = old[name], new[name]
    if a.shape != b.shape:
      problems.append(f"results.npz: {name} shape {a.shape} vs {b.shape}")
    elif a.dtype.kind == "f":
      scale = float(np.nanmax(np.abs(a))) if a.size else 0.0
      worst = float(np.nanmax(np.abs(a - b))) if a.size else 0.0
      if worst > rtol * scale or not np.array_equal(np.isnan(a), np.isnan(b)):
        problems.append(f"results.npz: {name} differs by {worst:.3g} (scale {scale:.3g})")
    elif not np.array_equal(a, b):
      problems.append(f"results.npz: {name} differs")
  return problems


def _numbers(tree, path=""):
  if isinstance(tree, dict):
    for key, value in tree.items():
      yield from _numbers(value, f"{path}.{key}")
  elif isinstance(tree, list):
    for i, value in enumerate(tree):
      yield from _numbers(value, f"{path}[{i}]")
  else:
    yield path, tree


def compare_summaries(old: dict, new: dict, rtol: float) -> list[str]:
  strip = lambda s: {k: v for k, v in s.items() if k not in SKIPPED_SUMMARY_KEYS}
  a, b = dict(_numbers(strip(old))), dict(_numbers(strip(new)))
  problems = [f"summary.json: {len(set(x) - set(y))} numbers only in {side} (e.g. "
              f"{sorted(set(x) - set(y))[0]})" for side, x, y in (("old", a, b), ("new", b, a))
              if set(x) - set(y)]
  for key in sorted(set(a) & set(b)):
    x, y = a[key], b[key]
    if isinstance(x, (int, float)) and isinstance(y, (int, float)) and not isinstance(x, bool):
      if abs(x - y) > rtol * max(abs(x), 1.0):
        problems.append(f"summary.json: {key} {x!r} vs {y!r}")
    elif x != y:
      problems.append(f"summary.json: {key} {x!r} vs {y!r}")
  return problems


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("old")
  parser.add_argument("new")
  parser.add_argument("--rtol", type=float, default=1e-6)
  args = parser.parse_args()
  load = lambda d: dict(np.load(os.path.join(d, "results.npz"), allow_pickle=False))
  read = lambda d: json.load(open(os.path.join(d, "summary.json")))
  problems = (compare_arrays(load(args.old), load(args.new), args.rtol)
              + compare_summaries(read(args.old), read(args.new), args.rtol))
  print("\n".join(problems) or f"identical to rtol {args.rtol:g}: results.npz and summary.json")
  sys.exit(1 if problems else 0)


if __name__ == "__main__":
  main()
