"""Weight and bias initializers.

A weight initializer maps ``(key, shape, dtype)`` to an array of ``shape =
(fan_out, fan_in)``: the matrix ``W`` of ``z = W h + b``. A bias initializer maps
``(key, shape, dtype)`` to ``(fan_out,)``. Any callable with that signature
works, including ``jax.nn.initializers`` and ``flax.nnx.initializers`` ones, but
the named ones below carry the parameters that the theory module needs (σ_w²,
σ_b²) and print readably in result metadata.

Example:
  >>> import jax
  >>> from vanish import init
  >>> w = init.gaussian(sigma_w2=2.0)(jax.random.key(0), (256, 512))
  >>> round(float(w.var() * 512), 1)   # σ_w² / fan_in scaling
  2.0
  >>> init.orthogonal(gain=1.5)
  orthogonal(gain=1.5)
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp

from vanish import _checks

__all__ = [
  "Centered",
  "Initializer",
  "centered",
  "constant",
  "gaussian",
  "get",
  "glorot",
  "he",
  "large_centered",
  "lecun",
  "normal",
  "orthogonal",
  "uniform",
  "zeros",
]


@dataclasses.dataclass(frozen=True)
class Initializer:
  """A named, hashable initializer ``(key, shape, dtype) -> Array``.

  Attributes:
    name: e.g. ``"gaussian"``.
    params: sorted ``(name, value)`` pairs, e.g. ``(("sigma_w2", 1.5),)``.
  """

  name: str
  params: tuple[tuple[str, float], ...] = ()

  def param(self, name: str) -> float:
    return dict(self.params)[name]

  def __call__(self, key: jax.Array, shape: Sequence[int], dtype: Any = jnp.float32) -> jax.Array:
    return _SAMPLERS[self.name](key, tuple(shape), dtype, **dict(self.params))

  def __repr__(self) -> str:
    return f"{self.name}({', '.join(f'{k}={v:g}' for k, v in self.params)})"


def _fans(shape: tuple[int, ...]) -> tuple[int, int]:
  if len(shape) == 1:
    return shape[0], shape[0]
  return shape[-1], shape[-2]  # (fan_in, fan_out) for W of shape (fan_out, fan_in)


def _normal(key, shape, dtype, *, std: float):
  return std * jax.random.normal(key, shape, dtype)


def _gaussian(key, shape, dtype, *, sigma_w2: float):
  fan_in, _ = _fans(shape)
  return _normal(key, shape, dtype, std=math.sqrt(sigma_w2 / fan_in))


def _uniform(key, shape, dtype, *, low: float, high: float):
  return jax.random.uniform(key, shape, dtype, low, high)


def _orthogonal(key, shape, dtype, *, gain: float):
  """Haar-random (semi-)orthogonal matrix times ``gain`` (Saxe et al. 2014)."""
  fan_in, fan_out = _fans(shape)
  rows, cols = max(fan_out, fan_in), min(fan_out, fan_in)
  a = jax.random.normal(key, (rows, cols), dtype)
  q, r = jnp.linalg.qr(a)
  q = q * jnp.sign(jnp.diagonal(r))[None, :]  # Mezzadri's sign fix: Haar measure
  if fan_out < fan_in:
    q = q.T
  return gain * q.reshape(shape)


def _glorot(key, shape, dtype):
  fan_in, fan_out = _fans(shape)
  return _normal(key, shape, dtype, std=math.sqrt(2.0 / (fan_in + fan_out)))


def _constant(key, shape, dtype, *, value: float):
  del key
  return jnp.full(shape, value, dtype)


_SAMPLERS = {
  "normal": _normal,
  "gaussian": _gaussian,
  "uniform": _uniform,
  "orthogonal": _orthogonal,
  "glorot": _glorot,
  "constant": _constant,
}


def _finite(name: str, value: float, *, low: float = -math.inf, strict: bool = False) -> float:
  return _checks.number(name, value, minimum=low, strict=strict)


def gaussian(sigma_w2: float = 1.0) -> Initializer:
  """W_ij ~ N(0, σ_w²/fan_in): the mean-field parameterization (Poole et al. 2016)."""
  return Initializer("gaussian", (("sigma_w2", _finite("sigma_w2", sigma_w2, low=0)),))


def normal(std: float = 1.0) -> Initializer:
  """Unscaled N(0, std²) for weights (Nielsen's N(0, 1)) or biases (std = σ_b)."""
  return Initializer("normal", (("std", _finite("std", std, low=0)),))


def uniform(low: float = -1.0, high: float = 1.0) -> Initializer:
  """U(low, high), e.g. for parameter-space maps."""
  low, high = _finite("low", low), _finite("high", high)
  if not low < high:
    raise ValueError(f"need low < high, got low={low}, high={high}")
  return Initializer("uniform", (("high", high), ("low", low)))


def orthogonal(gain: float = 1.0) -> Initializer:
  """A Haar-random orthogonal matrix scaled by ``gain``; σ_w² = gain² (Saxe et al. 2014)."""
  return Initializer("orthogonal", (("gain", _finite("gain", gain, low=0)),))


def glorot() -> Initializer:
  """Glorot & Bengio (2010) normal: N(0, 2/(fan_in + fan_out))."""
  return Initializer("glorot")


def he() -> Initializer:
  """He et al. (2015): N(0, 2/fan_in), i.e. ``gaussian(sigma_w2=2)``, critical for ReLU."""
  return gaussian(2.0)


def lecun() -> Initializer:
  """LeCun et al. (1998): N(0, 1/fan_in), i.e. ``gaussian(sigma_w2=1)``."""
  return gaussian(1.0)


def zeros() -> Initializer:
  """All zeros (the usual bias)."""
  return constant(0.0)


def constant(value: float) -> Initializer:
  """Every entry equal to ``value`` (the seed's w = 100)."""
  return Initializer("constant", (("value", _finite("value", value)),))


@dataclasses.dataclass(frozen=True)
class Centered:
  """Biases that zero every pre-activation at a reference input (the seed's fix).

  With ``b^1 = −W^1 x_ref`` and ``b^l = −W^l φ(0)·1`` for ``l ≥ 2`` every layer
  sees ``z^l = 0`` at ``x_ref``, the point of steepest σ: with w = 100 and sigmoid
  each factor ``w σ'(0) = 25`` (MISSION.md §2). The network resolves this
  initializer itself because it needs the weights and the activation.

  Attributes:
    reference: the reference input ``x_ref``, shape ``(n_0,)``, or a scalar that is
      broadcast.
  """

  reference: tuple[float, ...]

  def __repr__(self) -> str:
    return f"centered(reference={list(self.reference)})"


def centered(reference: Any = 0.0) -> Centered:
  """Biases ``b = −W a_ref`` so that every pre-activation is 0 at ``reference``."""
  values = tuple(float(v) for v in jnp.ravel(jnp.asarray(reference, jnp.float32)))
  for v in values:
    _finite("reference", v)
  return Centered(values)


def large_centered(weight: float = 100.0, reference: Any = 0.0) -> tuple[Initializer, Centered]:
  """The seed analysis' "large weights, centered biases": ``(constant(w), centered(x))``.

  Example:
    >>> from vanish import init
    >>> weights, biases = init.large_centered(100.0, reference=0.5)
  """
  return constant(weight), centered(reference)


_NAMED = {
  "gaussian": gaussian,
  "normal": normal,
  "uniform": uniform,
  "orthogonal": orthogonal,
  "glorot": glorot,
  "he": he,
  "lecun": lecun,
  "zeros": zeros,
  "constant": constant,
  "centered": centered,
}


def get(spec: Any, **params: float) -> Any:
  """Resolves a name like ``"gaussian"`` (with ``**params``) or passes a callable through."""
  if isinstance(spec, str):
    if spec not in _NAMED:
      raise ValueError(f"unknown initializer {spec!r}; known: {', '.join(sorted(_NAMED))}")
    return _NAMED[spec](**params)
  if not callable(spec) and not isinstance(spec, Centered):
    raise TypeError(f"initializer must be a name or a callable, got {type(spec).__name__}")
  return spec
