"""Philox-4x32 counter-based random numbers in uint32 ``jnp`` ops, usable inside Pallas kernels.

Salmon, Moraes, Dror, Shaw, "Parallel random numbers: as easy as 1, 2, 3" (SC 2011), §3.2:
``Philox4x32-R`` maps a 128-bit counter and a 64-bit key to 128 random bits by ``R`` rounds of

    (c0, c1, c2, c3) ← (hi(M1·c2) ⊕ c1 ⊕ k0,  lo(M1·c2),  hi(M0·c0) ⊕ c3 ⊕ k1,  lo(M0·c0)),
    (k0, k1) ← (k0 + W0, k1 + W1)   between rounds,

with the 32×32 → 64-bit products split into high and low words. It is what cuRAND and PyTorch
use on GPUs. Because the output is a pure function of ``(counter, key)``, a kernel that sets the
counter from (chain index, layer) gives results that do not depend on its grid or block size.

The only operation without a ``jax.lax`` primitive is the high word of a 32×32-bit product.
:func:`mulhi_emulated` builds it from 16-bit halves (exact, any backend, Pallas interpret mode);
inside a Triton kernel :func:`mulhi_ptx` is one ``mul.hi.u32`` instruction. Both return the
same integers, so kernel and reference draw bit-identical uniforms.

Example:
  >>> import jax.numpy as jnp
  >>> from vanish.kernels import philox
  >>> zero = jnp.zeros((1,), jnp.uint32)
  >>> [hex(int(v[0])) for v in philox.philox4x32((zero,) * 4, (zero, zero))]  # Random123 KAT
  ['0x6627e8d5', '0xe169c58d', '0xbc57ac4c', '0x9b00dbd8']
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

from vanish import _checks

__all__ = ["box_muller", "mulhi_emulated", "mulhi_ptx", "normals4", "philox4x32", "uniform"]

# Salmon et al. (2011), Table 2 / Random123 philox.h.
M0, M1 = 0xD2511F53, 0xCD9E8D57
W0, W1 = 0x9E3779B9, 0xBB67AE85
DEFAULT_ROUNDS = 10

MulHi = Callable[[jax.Array, int], jax.Array]


def mulhi_emulated(a: jax.Array, m: int) -> jax.Array:
  """The high 32 bits of ``a · m`` (uint32 ``a``, constant ``m``) from 16-bit partial products.

  Exact on every backend: each partial product of two 16-bit halves fits in 32 bits, and the
  carries are added in 16-bit pieces so no sum overflows.
  """
  mask = jnp.uint32(0xFFFF)
  a_lo, a_hi = a & mask, a >> 16
  m_lo, m_hi = jnp.uint32(m & 0xFFFF), jnp.uint32(m >> 16)
  lo_lo = a_lo * m_lo
  hi_lo = a_hi * m_lo
  lo_hi = a_lo * m_hi
  hi_hi = a_hi * m_hi
  middle = (lo_lo >> 16) + (hi_lo & mask) + (lo_hi & mask)  # < 3·2^16: no overflow
  return hi_hi + (hi_lo >> 16) + (lo_hi >> 16) + (middle >> 16)


def mulhi_ptx(a: jax.Array, m: int) -> jax.Array:
  """The high 32 bits of ``a · m`` as one PTX ``mul.hi.u32`` (Pallas Triton kernels only)."""
  from jax.experimental.pallas import triton as pltr

  # int32 in and out: jax's inline-asm lowering types uint32 results as ui32, which Triton's
  # signless integer ops then reject (jax 0.10.2); the bitcasts are free.
  signed = lambda v: lax.bitcast_convert_type(v, jnp.int32)
  (out,) = pltr.elementwise_inline_asm(
    "mul.hi.u32 $0, $1, $2;",
    args=[signed(a), signed(jnp.full(a.shape, m, jnp.uint32))],
    constraints="=r,r,r",
    pack=1,
    result_shape_dtypes=[jax.ShapeDtypeStruct(a.shape, jnp.int32)],
  )
  return lax.bitcast_convert_type(out, jnp.uint32)


MAX_ROUNDS = 16


def check_rounds(rounds: Any) -> int:
  """``rounds`` as an int in [1, :data:`MAX_ROUNDS`], else a ValueError naming it."""
  return _checks.integer("rounds", rounds, minimum=1, maximum=MAX_ROUNDS)


def philox4x32(
  counter: Sequence[jax.Array],
  key: Sequence[jax.Array],
  *,
  rounds: int = DEFAULT_ROUNDS,
  mulhi: MulHi = mulhi_emulated,
  unroll: bool = True,
) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
  """Philox4x32-``rounds`` (Salmon et al. 2011) elementwise over uint32 arrays.

  Args:
    counter: four uint32 arrays of one shape (the 128-bit counter, word 0 first).
    key: two uint32 arrays or scalars broadcastable to it (the 64-bit key).
    rounds: number of rounds; 10 is the standard (Crush-resistant from 7 on).
    mulhi: how to take the high word of a product (:func:`mulhi_emulated` or
      :func:`mulhi_ptx`).
    unroll: unroll the rounds (GPU kernels); ``False`` runs them in a ``lax.fori_loop``,
      the same integers with a much smaller program (faster XLA compiles on a CPU).

  Returns:
    Four uint32 arrays of the counter's shape.
  """
  rounds = check_rounds(rounds)
  c = tuple(jnp.asarray(v, jnp.uint32) for v in counter)
  k0, k1 = (jnp.asarray(k, jnp.uint32) for k in key)
  c = jnp.broadcast_arrays(*c)

  def round_(r, c):  # round r (0-based) uses the key (k0 + r·W0, k1 + r·W1) mod 2³²
    r = jnp.asarray(r, jnp.uint32)
    c0, c1, c2, c3 = c
    hi0, lo0 = mulhi(c0, M0), c0 * jnp.uint32(M0)
    hi1, lo1 = mulhi(c2, M1), c2 * jnp.uint32(M1)
    return (hi1 ^ c1 ^ (k0 + r * jnp.uint32(W0)), lo1, hi0 ^ c3 ^ (k1 + r * jnp.uint32(W1)), lo0)

  if unroll:
    for r in range(rounds):
      c = round_(r, c)
    return c
  return lax.fori_loop(0, rounds, round_, tuple(c))


def uniform(bits: jax.Array) -> jax.Array:
  """float32 uniforms on the open interval (0, 1): ``((bits >> 9) + ½) · 2⁻²³``.

  The 2²³ midpoints ``2⁻²⁴ … 1 − 2⁻²⁴``, symmetric about ½. Every one is a float32,
  so none rounds to 0 or 1: with 24 bits, ``(2²⁴ − 1) + ½`` rounded to ``2²⁴`` and
  one draw in 2²⁴ was exactly 1, a Box–Muller radius of 0 and a weight of exactly 0
  (``log|w| = −inf``; the H100 benchmark of session 10 met ~3 in 5·10⁷ factors).

  Example:
    >>> import jax.numpy as jnp
    >>> u = uniform(jnp.array([0, 2**32 - 1], jnp.uint32))
    >>> float(u[0]) == 2.0**-24, float(u[1]) == 1 - 2.0**-24
    (True, True)
  """
  return ((bits >> 9).astype(jnp.float32) + 0.5) * (1.0 / (1 << 23))


def box_muller(u1: jax.Array, u2: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Two independent N(0, 1) from two uniforms on (0, 1) (Box & Muller 1958)."""
  radius = jnp.sqrt(-2.0 * jnp.log(u1))
  angle = (2.0 * math.pi) * u2
  return radius * jnp.cos(angle), radius * jnp.sin(angle)


def normals4(
  counter: Sequence[jax.Array],
  key: Sequence[jax.Array],
  *,
  rounds: int = DEFAULT_ROUNDS,
  mulhi: MulHi = mulhi_emulated,
  unroll: bool = True,
  normals: Callable[[jax.Array, jax.Array], tuple[jax.Array, jax.Array]] = box_muller,
) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
  """Four independent float32 N(0, 1) per counter: one Philox call, two Box–Muller pairs
  (``normals``: :func:`box_muller`, or the same formula in approximate arithmetic)."""
  b0, b1, b2, b3 = philox4x32(counter, key, rounds=rounds, mulhi=mulhi, unroll=unroll)
  n0, n1 = normals(uniform(b0), uniform(b1))
  n2, n3 = normals(uniform(b2), uniform(b3))
  return n0, n1, n2, n3
