"""Weight and bias initializers.

A weight initializer maps ``(key, shape, dtype)`` to an array of ``shape =
(fan_out, fan_in)``: the matrix ``W`` of ``z = W h + b``. A bias initializer maps
``(key, shape, dtype)`` to ``(fan_out,)``. Any callable with that signature
works, including ``jax.nn.initializers`` and ``flax.nnx.initializers`` ones, but
the named ones below carry the parameters that the theory module needs (σ_w²,
σ_b²) and print readably in result metadata.

:func:`sample` draws one array per key of a whole key array in one vectorized
call: ``sample(init, keys, shape)[i]`` is ``init(keys[i], shape)`` bit for bit, and
:func:`fold_in` derives such key arrays: ``fold_in(keys, data)[i]`` is
``jax.random.fold_in(keys[i], data[i])``.
The named initializers hash threefry counters themselves (the same bits as
``jax.random`` with its default ``jax_threefry_partitionable``) in a form that XLA's
CPU backend compiles in a fraction of the time of vmapped ``jax.random`` calls.

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
import functools
import math
import numbers
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from vanish import _checks

__all__ = [
  "Centered",
  "Initializer",
  "centered",
  "constant",
  "fold_in",
  "gaussian",
  "get",
  "glorot",
  "he",
  "large_centered",
  "lecun",
  "normal",
  "orthogonal",
  "sample",
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
    return sample(self, key, shape, dtype)

  def __repr__(self) -> str:
    return f"{self.name}({', '.join(f'{k}={v:g}' for k, v in self.params)})"


def _fans(shape: tuple[int, ...]) -> tuple[int, int]:
  if len(shape) == 1:
    return shape[0], shape[0]
  return shape[-1], shape[-2]  # (fan_in, fan_out) for W of shape (fan_out, fan_in)


def _normal(draws, shape, dtype, *, std: float):
  return std * draws.normal(shape, dtype)


def _gaussian(draws, shape, dtype, *, sigma_w2: float):
  fan_in, _ = _fans(shape)
  return _normal(draws, shape, dtype, std=math.sqrt(sigma_w2 / fan_in))


def _uniform(draws, shape, dtype, *, low: float, high: float):
  return draws.uniform(shape, dtype, low, high)


def _orthogonal(draws, shape, dtype, *, gain: float):
  """Haar-random (semi-)orthogonal matrix times ``gain`` (Saxe et al. 2014)."""
  fan_in, fan_out = _fans(shape)
  rows, cols = max(fan_out, fan_in), min(fan_out, fan_in)
  a = draws.normal((rows, cols), dtype)  # [..., rows, cols]
  q, r = jnp.linalg.qr(a)
  q = q * jnp.sign(jnp.diagonal(r, axis1=-2, axis2=-1))[..., None, :]  # Mezzadri: Haar measure
  if fan_out < fan_in:
    q = jnp.swapaxes(q, -1, -2)
  return gain * q.reshape(*draws.batch, *shape)


def _glorot(draws, shape, dtype):
  fan_in, fan_out = _fans(shape)
  return _normal(draws, shape, dtype, std=math.sqrt(2.0 / (fan_in + fan_out)))


def _constant(draws, shape, dtype, *, value: float):
  return jnp.full((*draws.batch, *shape), value, dtype)


_SAMPLERS = {
  "normal": _normal,
  "gaussian": _gaussian,
  "uniform": _uniform,
  "orthogonal": _orthogonal,
  "glorot": _glorot,
  "constant": _constant,
}


# Threefry-2x32 (Salmon et al. 2011) as jax.random's CPU lowering computes it, but in
# straight-line jnp ops: jax lowers it on CPU to a while loop whose rotation amounts are
# loop state, and LLVM's loop unswitching and loop-strength reduction then spend seconds
# on every vmapped draw (session 6 profile: 5-10 s of a small network's init).
_ROTATIONS = ((13, 15, 26, 6), (17, 29, 16, 24))


def _rotate_left(x: jax.Array, r: int) -> jax.Array:
  return lax.shift_left(x, np.uint32(r)) | lax.shift_right_logical(x, np.uint32(32 - r))


def _threefry2x32(k1, k2, x1, x2):
  """The threefry2x32 block cipher, 20 rounds, elementwise over broadcast uint32 arrays."""
  ks = (k1, k2, k1 ^ k2 ^ np.uint32(0x1BD11BDA))
  x1, x2 = x1 + k1, x2 + k2
  for i in range(5):
    for r in _ROTATIONS[i % 2]:
      x1 = x1 + x2
      x2 = x1 ^ _rotate_left(x2, r)
    x1 = x1 + ks[(i + 1) % 3]
    x2 = x2 + ks[(i + 2) % 3] + np.uint32(i + 1)
  return x1, x2


def _hash(words, counter):
  """threefry2x32 of the key ``words = (k1, k2)`` at the 64-bit counter ``(0, counter)``.

  ``counter`` is XORed with a zero that the compiler cannot prove zero (k·(k+1) is
  even): counters are iotas, and once LLVM's scalar evolution sees the cipher's adds
  and shifts as functions of the loop index its loop-strength reduction takes seconds
  per kernel. The value is unchanged.
  """
  k1, k2 = words
  opaque_zero = (k1 * (k1 + np.uint32(1))) & np.uint32(1)
  return _threefry2x32(k1, k2, jnp.zeros_like(counter), counter ^ opaque_zero)


def _fold_in(keys: jax.Array, data: jax.Array) -> jax.Array:
  """``jax.random.fold_in(keys, data)`` elementwise (threefry keys, uint32 ``data``)."""
  data = jnp.asarray(data, jnp.uint32)
  words = jax.random.key_data(keys)
  batch = jnp.broadcast_shapes(keys.shape, data.shape)
  k1, k2 = (jnp.broadcast_to(words[..., i], batch) for i in range(2))
  y1, y2 = _hash((k1, k2), jnp.broadcast_to(data, batch))
  return jax.random.wrap_key_data(jnp.stack([y1, y2], axis=-1), impl="threefry2x32")


def fold_in(keys: jax.Array, data: Any) -> jax.Array:
  """``jax.random.fold_in`` of every key with its datum, broadcast: one elementwise hash.

  ``fold_in(keys, data)[i]`` is ``jax.random.fold_in(keys[i], data[i])`` bit for bit,
  over ``broadcast_shapes(keys.shape, data.shape)``. ``jax.random.fold_in`` takes one key
  and one scalar, so per-member keys need a ``vmap``, which XLA's CPU backend compiles to
  a threefry while loop per call (seconds of LLVM time); this is straight-line code. With
  :func:`sample` it replaces ``vmap(lambda m: jax.random.normal(fold_in(key, m), shape))``
  by ``sample(normal(1.0), fold_in(key, m), shape)``, the same bits.

  Args:
    keys: typed threefry keys (``jax.random.key``'s default implementation), any shape.
    data: integers broadcastable with ``keys``: Python ints in [0, 2³²), or arrays of any
      integer dtype, taken modulo 2³² as ``jax.random.fold_in`` takes them.

  Returns:
    typed keys, ``broadcast_shapes(keys.shape, jnp.shape(data))``.

  Raises:
    TypeError: ``keys`` is not a typed key array of the threefry implementation, or
      ``data`` is not integer.
    ValueError: a Python int ``data`` outside [0, 2³²).

  Example:
    >>> import jax
    >>> import jax.numpy as jnp
    >>> from vanish import init
    >>> key = jax.random.key(0)
    >>> keys = init.fold_in(key, jnp.arange(3, dtype=jnp.uint32))   # members 0, 1, 2
    >>> same = jax.random.key_data(keys[2]) == jax.random.key_data(jax.random.fold_in(key, 2))
    >>> keys.shape, bool(same.all())
    ((3,), True)
    >>> init.fold_in(keys[:, None], jnp.arange(2, dtype=jnp.uint32)[None, :]).shape
    (3, 2)
  """
  if not (isinstance(keys, jax.Array) and jnp.issubdtype(keys.dtype, jax.dtypes.prng_key)):
    raise TypeError(
      "keys must be typed PRNG keys from jax.random.key (or wrap_key_data), got "
      f"{getattr(keys, 'dtype', type(keys).__name__)}"
    )
  if not _is_threefry(keys):
    raise TypeError(
      f"keys must use the threefry2x32 implementation (jax.random.key's default), got "
      f"{jax.random.key_impl(keys)}"
    )
  if isinstance(data, int) and not isinstance(data, bool) and not 0 <= data < 2**32:
    raise ValueError(f"data must be in [0, 2**32 - 1], got {data}")
  dtype = data.dtype if hasattr(data, "dtype") else np.asarray(data).dtype
  if not isinstance(data, numbers.Integral | np.ndarray | jax.Array) or not jnp.issubdtype(
    dtype, jnp.integer
  ):
    raise TypeError(f"data must be integers (an int or an integer array), got {data!r}")
  return _jit_fold_in(keys, jnp.asarray(data, jnp.uint32))


_jit_fold_in = jax.jit(_fold_in)


class _CounterDraws:
  """``jax.random.normal`` / ``uniform`` of every key of ``keys`` (threefry), batched.

  Entry ``j`` (row-major) of key ``i``'s draw of ``shape`` hashes the counter ``j``
  with key ``i``, as ``jax.random`` does with ``jax_threefry_partitionable``.
  """

  def __init__(self, keys: jax.Array):
    self.batch = keys.shape
    self._words = jax.random.key_data(keys)

  def _bits(self, shape, width):
    count = math.prod(shape)
    if count >= 2**32:
      raise ValueError(f"one draw has at most 2**32 - 1 entries, got shape {shape}")
    rank = len(shape)
    k1, k2 = (self._words[..., i].reshape(*self.batch, *([1] * rank)) for i in range(2))
    counter = lax.iota(np.uint32, count).reshape(*([1] * len(self.batch)), *shape)
    y1, y2 = _hash((k1, k2), counter)
    if width == 64:
      return lax.shift_left(y1.astype(np.uint64), np.uint64(32)) | y2.astype(np.uint64)
    bits = y1 ^ y2
    return bits if width == 32 else bits.astype(np.dtype(f"uint{width}"))

  def uniform(self, shape, dtype, low, high):
    # jax.random.uniform: the top mantissa bits of a float in [1, 2), minus 1, scaled.
    finfo = jnp.finfo(dtype)
    width = finfo.bits if finfo.nmant >= 8 else 8
    unsigned = np.dtype(f"uint{finfo.bits}")
    bits = self._bits(shape, width).astype(unsigned)
    one = np.array(1.0, dtype).view(unsigned)
    mantissa = lax.shift_right_logical(bits, unsigned.type(width - finfo.nmant)) | one
    floats = lax.bitcast_convert_type(mantissa, dtype) - np.array(1.0, dtype)
    low, high = np.array(low, dtype), np.array(high, dtype)
    return lax.max(low, floats * (high - low) + low)

  def normal(self, shape, dtype):
    # jax.random.normal: √2 erf⁻¹(u), u uniform on (−1, 1).
    low = np.nextafter(np.array(-1.0, dtype), np.array(0.0, dtype), dtype=dtype)
    u = self.uniform(shape, dtype, low, np.array(1.0, dtype))
    return lax.mul(np.array(np.sqrt(2), dtype), lax.erf_inv(u))


class _KeyDraws:
  """``jax.random`` draws of one key of any implementation (``batch = ()``)."""

  batch = ()

  def __init__(self, key: jax.Array):
    self._key = key

  def uniform(self, shape, dtype, low, high):
    return jax.random.uniform(self._key, shape, dtype, low, high)

  def normal(self, shape, dtype):
    return jax.random.normal(self._key, shape, dtype)


def _is_threefry(keys: jax.Array) -> bool:
  return str(jax.random.key_impl(keys)) == "threefry2x32"


def sample(initializer: Any, keys: jax.Array, shape: Sequence[int], dtype: Any = jnp.float32):
  """One draw of ``initializer`` per key: ``[*keys.shape, *shape]``.

  Entry ``i`` equals ``initializer(keys[i], shape, dtype)``: bit for bit for named
  initializers (on a CPU for any callable). Named initializers with threefry keys
  (``jax.random.key``'s default) draw all keys in one elementwise computation; any other
  callable, or another key implementation, is vmapped over the keys; on a GPU, XLA fuses
  such a vmapped callable's multiply-adds differently from an eager call of it, a few ulp
  (7 for ``jax.nn.initializers.lecun_normal`` on an H100).

  Args:
    initializer: an :class:`Initializer` or any ``(key, shape, dtype) -> Array``.
    keys: a typed key array of any shape (``jax.random.key``, ``split``, ``fold_in``).
    shape: the shape of one draw, e.g. ``(fan_out, fan_in)``.
    dtype: a floating dtype.

  Returns:
    ``[*keys.shape, *shape]`` draws.

  Example:
    >>> import jax
    >>> from vanish import init
    >>> keys = jax.random.split(jax.random.key(0), 3)
    >>> w = init.sample(init.gaussian(2.0), keys, (4, 5))
    >>> w.shape, bool((w[1] == init.gaussian(2.0)(keys[1], (4, 5))).all())
    ((3, 4, 5), True)
  """
  return _sample(initializer, keys, tuple(shape), jnp.dtype(dtype))


# One compiled computation, as jax.random's functions are: XLA contracts a · b + c into
# fused multiply-adds inside a kernel, so op-by-op dispatch would round differently.
@functools.partial(jax.jit, static_argnums=(0, 2, 3))
def _sample(initializer, keys, shape, dtype):
  if isinstance(initializer, Initializer):
    sampler = functools.partial(_SAMPLERS[initializer.name], **dict(initializer.params))
    if _is_threefry(keys):
      return sampler(_CounterDraws(keys), shape, dtype)
    draw = lambda key: sampler(_KeyDraws(key), shape, dtype)  # noqa: E731
  else:
    draw = lambda key: initializer(key, shape, dtype)  # noqa: E731
  flat = keys.reshape(-1)
  return jax.vmap(draw)(flat).reshape(*keys.shape, *shape)


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
  each factor ``w σ'(0) = 25`` (docs/seed_analysis.md §2). The network resolves this
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
