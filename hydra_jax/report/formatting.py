"""One number format for report.md and the figures' text.

  number(value)               three significant figures, signed: '+0.452', '-0.00232',
                              '+11.9', '-1,234' (no decimals from 1,000 up), '+1.20e-05'
                              (below 1e-4), '0', 'n/a' (None, NaN, inf); integers (counts)
                              as '1,000'
  number(value, signed=False) the same without '+', for magnitudes: R², shares,
                              component counts, seconds
  interval(value, band)       '+0.452 [+0.401, +0.503]': a value and its 95% interval
  percent(share)              '55.0%': a share in [0, 1], unsigned

Significant zeros are kept ('+0.450', not '+0.45'), so every number states its precision
the same way and a column of them reads at one glance.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

import numpy as np

SIGNIFICANT = 3           # significant figures of every number
SMALLEST_FIXED = 1e-4     # below this magnitude: exponent notation


def number(value, signed: bool = True) -> str:
  """The report's one number format (module docstring)."""
  if value is None or isinstance(value, (bool, np.bool_)):
    return "n/a"
  if isinstance(value, (int, np.integer)):
    return f"{int(value):,}"
  value = float(value)
  if not math.isfinite(value):
    return "n/a"
  rounded = float(f"{value:.{SIGNIFICANT}g}")
  if rounded == 0:
    return "0"
  sign = "+" if signed else ""
  if abs(rounded) >= 10 ** SIGNIFICANT:
    return f"{rounded:{sign},.0f}"
  if abs(rounded) < SMALLEST_FIXED:
    return f"{rounded:{sign}.{SIGNIFICANT - 1}e}"
  return f"{rounded:{sign}#.{SIGNIFICANT}g}".rstrip(".")


def interval(value, band: Optional[Sequence] = None, signed: bool = True) -> str:
  """'value [low, high]'; the value alone where the band is missing or undefined."""
  low, high = band if band is not None and len(band) == 2 else (None, None)
  if low is None or high is None or not (math.isfinite(low) and math.isfinite(high)):
    return number(value, signed)
  return f"{number(value, signed)} [{number(low, signed)}, {number(high, signed)}]"


def percent(share) -> str:
  """A share in [0, 1] as a percentage, '55.0%' ('n/a' where undefined)."""
  text = number(None if share is None else 100 * float(share), signed=False)
  return text if text == "n/a" else text + "%"
