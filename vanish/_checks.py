"""Argument checks shared by every public entry point: scalars named in their errors.

Each check returns the value in its canonical Python type or raises ``ValueError`` naming
the parameter, the allowed range and the value received, before any JAX work.

Example:
  >>> from vanish import _checks
  >>> _checks.integer("members", 1e3)
  1000
  >>> _checks.number("std", "0.5", minimum=0)
  Traceback (most recent call last):
  ...
  ValueError: std must be a finite number >= 0, got '0.5'
"""

from __future__ import annotations

import math
import numbers
from typing import Any

__all__ = ["integer", "number"]


def integer(name: str, value: Any, *, minimum: int = 1, maximum: int | None = None) -> int:
  """``value`` as an ``int`` in ``[minimum, maximum]``; integral floats (``1e6``) count.

  Rejects booleans, strings, NaN and infinities.
  """
  ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
  ok = ok and math.isfinite(value) and float(value).is_integer()
  ok = ok and minimum <= value and (maximum is None or value <= maximum)
  if not ok:
    bound = f">= {minimum}" if maximum is None else f"in [{minimum}, {maximum}]"
    raise ValueError(f"{name} must be an integer {bound}, got {value!r}")
  return int(value)


def number(
  name: str,
  value: Any,
  *,
  minimum: float = -math.inf,
  strict: bool = False,
  maximum: float = math.inf,
) -> float:
  """``value`` as a finite ``float`` ≥ ``minimum`` (> if ``strict``) and ≤ ``maximum``.

  Accepts Python and NumPy reals and 0-d arrays; rejects booleans, strings, NaN and
  infinities.
  """
  if hasattr(value, "ndim") and getattr(value, "ndim", 1) == 0 and hasattr(value, "item"):
    value = value.item()  # a 0-d NumPy or JAX array
  ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
  ok = ok and math.isfinite(value) and value <= maximum
  ok = ok and (value > minimum if strict else value >= minimum)
  if not ok:
    bounds = []
    if minimum > -math.inf:
      bounds.append(f"{'>' if strict else '>='} {minimum:g}")
    if maximum < math.inf:
      bounds.append(f"<= {maximum:g}")
    text = " ".join([f"{name} must be a finite number", " and ".join(bounds)]).rstrip()
    raise ValueError(f"{text}, got {value!r}")
  return float(value)
