"""Run metadata: what every result records about the software, the machine and the numerics.

A result is only reproducible if it says which versions, devices and matmul
precision made it. :func:`run_metadata` gathers that into one JSON-serializable
dict that the command line (and later the results store) writes next to every
array.

Example:
  >>> import json
  >>> from vanish.metadata import run_metadata
  >>> meta = run_metadata("highest", depth=30, activation="tanh")
  >>> meta["precision"], meta["config"]
  ('highest', {'depth': 30, 'activation': 'tanh'})
  >>> sorted(meta["versions"])
  ['flax', 'jax', 'jaxlib', 'numpy', 'optax', 'python', 'vanish']
  >>> meta["device_count"] >= 1 and meta["x64"] in (True, False)
  True
  >>> json.loads(json.dumps(meta)) == meta   # plain JSON, nothing lost
  True
"""

from __future__ import annotations

import datetime
import importlib.metadata
import math
import platform
import sys
from collections.abc import Mapping
from typing import Any

import jax
import numpy as np

from vanish import _engine

__all__ = ["run_metadata", "to_json"]

_PACKAGES = ("jax", "jaxlib", "flax", "optax", "numpy")


def _version(package: str) -> str | None:
  try:
    return importlib.metadata.version(package)
  except importlib.metadata.PackageNotFoundError:
    return None


def to_json(value: Any, *, where: str = "value", keep_nonfinite: bool = False) -> Any:
  """Converts ``value`` to plain JSON types; non-finite floats become ``None`` (by default).

  Numpy and JAX scalars and arrays become Python numbers and (nested) lists;
  tuples become lists; mapping keys must be strings.

  Args:
    value: a config value or result.
    where: a name for ``value`` used in error messages.
    keep_nonfinite: keep NaN and ±inf as floats (for ``json.dumps``' ``NaN`` and
      ``Infinity`` tokens, which ``json.loads`` reads back: an exact round trip).

  Returns:
    An equivalent object made of ``dict``, ``list``, ``str``, ``int``, ``float``,
    ``bool`` and ``None`` that ``json.dumps(..., allow_nan=False)`` accepts (with
    ``keep_nonfinite``, ``json.dumps`` with its default ``allow_nan=True``).

  Raises:
    TypeError: a value (named in the message) has no JSON equivalent.

  Example:
    >>> import numpy as np
    >>> to_json({"w": np.float32(0.5), "logs": np.array([0.0, -np.inf])})
    {'w': 0.5, 'logs': [0.0, None]}
  """
  if value is None or isinstance(value, (bool, str)):
    return value
  if isinstance(value, int):
    return value
  if isinstance(value, float):
    return value if keep_nonfinite or math.isfinite(value) else None
  if isinstance(value, Mapping):
    out = {}
    for k, v in value.items():
      if not isinstance(k, str):
        raise TypeError(f"{where}: keys must be strings, got {k!r}")
      out[k] = to_json(v, where=f"{where}[{k!r}]", keep_nonfinite=keep_nonfinite)
    return out
  if isinstance(value, (list, tuple)):
    return [
      to_json(v, where=f"{where}[{i}]", keep_nonfinite=keep_nonfinite) for i, v in enumerate(value)
    ]
  if isinstance(value, (np.ndarray, np.generic, jax.Array)):
    array = np.asarray(value)
    if array.dtype.kind in "biuf":
      return to_json(array.tolist(), where=where, keep_nonfinite=keep_nonfinite)
  raise TypeError(f"{where} is not JSON-serializable: {type(value).__name__} {value!r}")


def run_metadata(precision: str, **config: Any) -> dict[str, Any]:
  """The software, device and numerics facts a result must carry, plus its config.

  Args:
    precision: the matmul precision the computation used (``"highest"``, the
      vanish default, or another name accepted by ``vanish``'s chains).
    **config: the run's configuration (sizes, activation, seed, ...); values
      must have a JSON equivalent (see :func:`to_json`).

  Returns:
    A JSON-serializable dict with keys ``versions`` (vanish, jax, jaxlib, flax,
    optax, numpy, python), ``platform``, ``backend``, ``devices`` (the device
    kinds, one per device), ``device_count``, ``precision``,
    ``default_matmul_precision`` (JAX's global setting, ``None`` if unset),
    ``x64`` (the global ``jax_enable_x64`` flag where this is called; a computation
    in float64 inside a ``jax.enable_x64`` scope records its dtype in ``config``),
    ``timestamp`` (UTC, ISO 8601) and ``config``.

  Raises:
    ValueError: ``precision`` is not a known matmul precision.
    TypeError: a config value is not JSON-serializable.
  """
  from vanish import __version__

  precision = _engine.check_precision(precision)
  devices = jax.devices()
  versions = {"vanish": __version__}
  versions.update({package: _version(package) for package in _PACKAGES})
  versions["python"] = platform.python_version()
  return {
    "versions": versions,
    "platform": f"{platform.system()} {platform.machine()} ({sys.platform})",
    "backend": jax.default_backend(),
    "devices": [d.device_kind for d in devices],
    "device_count": len(devices),
    "precision": precision,
    "default_matmul_precision": to_json(jax.config.jax_default_matmul_precision),
    "x64": bool(jax.config.jax_enable_x64),
    "timestamp": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    "config": to_json(dict(config), where="config"),
  }
