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

import jax.numpy as jnp
import numpy as np

__all__ = ["integer", "number", "real_array"]


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


def real_array(name: str, value: Any) -> np.ndarray:
  """``value`` as a float64 NumPy array; integer and floating dtypes (bfloat16 included) only.

  Booleans, strings and complex numbers raise ``ValueError`` (``np.asarray(v, float64)`` would
  coerce them, dropping an imaginary part with only a warning).

  Example:
    >>> import jax.numpy as jnp
    >>> real_array("log_g", jnp.ones(2, jnp.bfloat16)).dtype
    dtype('float64')
    >>> real_array("log_g", [1 + 2j])
    Traceback (most recent call last):
    ...
    ValueError: log_g must be real numbers (integer or float), got dtype complex128
  """
  try:
    raw = np.asarray(value)
  except (TypeError, ValueError):
    raise ValueError(f"{name} must be real numbers, got {value!r}") from None
  real = jnp.issubdtype(raw.dtype, jnp.floating) or jnp.issubdtype(raw.dtype, jnp.integer)
  if not real or raw.dtype == np.bool_:
    raise ValueError(f"{name} must be real numbers (integer or float), got dtype {raw.dtype}")
  return raw.astype(np.float64)
