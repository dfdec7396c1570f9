"""Approximate transcendentals for the one-neuron kernel: PTX's ``.approx`` instructions.

Pallas' Triton lowering calls libdevice's accurate functions (``__nv_logf``, ``__nv_sinf``,
…): tens of instructions each, and the one-neuron Monte Carlo spends most of its time in them
(Box–Muller's log, sqrt, sin and cos per pair of normals, then φ, log |φ'| and log |w| per
factor). The GPU's special-function unit computes ``lg2``, ``ex2``, ``sin``, ``cos``, ``sqrt``
and ``rcp`` in one instruction each, to about 2⁻²² (PTX ISA, "Floating-Point Instructions"):
absolute errors of ~10⁻⁷ in a log and ~5·10⁻⁷ in a normal, far below the Monte Carlo error of
any statistic of ``log|g|``.

The formulas here are written once against a :class:`Math` namespace:

* :data:`PTX`: the one-instruction approximations (``elementwise_inline_asm``; compiled Triton
  kernels only);
* :data:`ACCURATE`: the same operations in ``jnp`` (any backend, Pallas interpret mode), so the
  formulas themselves are tested on a CPU against the activations' own closed forms.

Only the activations whose closed forms are written here have a fast form: the logistic
sigmoid and ``a·tanh(s·z)`` (tanh, scaled_tanh, lecun_tanh); :func:`activation_form` names them.

Example:
  >>> import jax.numpy as jnp
  >>> from vanish import activations
  >>> from vanish.kernels import fast_math
  >>> form = fast_math.activation_form(activations.get("sigmoid"))
  >>> value, slope, log_slope = form(jnp.array([0.0, 30.0]), fast_math.ACCURATE)
  >>> [round(float(v), 4) for v in (value[0], slope[0], log_slope[1])]
  [0.5, 0.25, -30.0]
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

__all__ = ["ACCURATE", "PTX", "Math", "activation_form", "box_muller", "log"]

LN2 = math.log(2.0)
LOG2E = 1.0 / LN2

ArrayFn = Callable[[jax.Array], jax.Array]


class Math(NamedTuple):
  """The elementary float32 functions the fast formulas use."""

  log2: ArrayFn
  exp2: ArrayFn
  sin: ArrayFn  # accurate on [−π, π] for PTX
  cos: ArrayFn
  sqrt: ArrayFn
  reciprocal: ArrayFn


def _ptx(instruction: str) -> ArrayFn:
  """``instruction $0, $1;`` elementwise on float32 (e.g. ``lg2.approx.ftz.f32``)."""

  def fn(x: jax.Array) -> jax.Array:
    from jax.experimental.pallas import triton as pltr

    (out,) = pltr.elementwise_inline_asm(
      f"{instruction} $0, $1;",
      args=[x],
      constraints="=f,f",
      pack=1,
      result_shape_dtypes=[jax.ShapeDtypeStruct(x.shape, jnp.float32)],
    )
    return out

  return fn


PTX = Math(
  log2=_ptx("lg2.approx.ftz.f32"),
  exp2=_ptx("ex2.approx.ftz.f32"),
  sin=_ptx("sin.approx.ftz.f32"),
  cos=_ptx("cos.approx.ftz.f32"),
  sqrt=_ptx("sqrt.approx.ftz.f32"),
  reciprocal=_ptx("rcp.approx.ftz.f32"),
)
ACCURATE = Math(
  log2=jnp.log2,
  exp2=jnp.exp2,
  sin=jnp.sin,
  cos=jnp.cos,
  sqrt=jnp.sqrt,
  reciprocal=lambda x: 1.0 / x,
)


def log(x: jax.Array, m: Math) -> jax.Array:
  """Natural log as ``ln 2 · log₂ x``."""
  return LN2 * m.log2(x)


def box_muller(u1: jax.Array, u2: jax.Array, m: Math) -> tuple[jax.Array, jax.Array]:
  """:func:`vanish.kernels.philox.box_muller`'s normals, ``(r cos 2πu₂, r sin 2πu₂)``.

  The angle is taken as ``2π(u₂ − ½) ∈ (−π, π)``, where PTX's sin and cos are accurate, and
  both results negated: ``cos(θ − π) = −cos θ`` and ``sin(θ − π) = −sin θ``.
  """
  # lg2.approx errs by up to 2⁻²² near 1, more than |log₂ u₁| for u₁ = 1 − 2⁻²⁴: keep the
  # square root's argument ≥ 0 (a NaN would poison every statistic).
  radius = m.sqrt(jnp.maximum((-2.0 * LN2) * m.log2(u1), 0.0))
  angle = (2.0 * math.pi) * (u2 - 0.5)
  return -radius * m.cos(angle), -radius * m.sin(angle)


Form = Callable[[jax.Array, Math], tuple[jax.Array, jax.Array, jax.Array]]


def _sigmoid(z: jax.Array, m: Math) -> tuple[jax.Array, jax.Array, jax.Array]:
  """σ from ``t = e^{−|z|}``: ``σ(|z|) = 1/(1+t)``, ``σ' = t/(1+t)²``,
  ``log σ' = −|z| − 2 log(1 + t)`` (never underflows)."""
  a = jnp.abs(z)
  t = m.exp2(-LOG2E * a)
  inv = m.reciprocal(1.0 + t)
  value = jnp.where(z >= 0, inv, t * inv)
  return value, t * inv * inv, -a - 2.0 * log(1.0 + t, m)


def _scaled_tanh(amplitude: float, slope: float) -> Form:
  """``a·tanh(s·z)`` from ``t = e^{−2|s·z|}``: ``tanh|s·z| = (1 − t)/(1 + t)``,
  ``φ' = 4as·t/(1+t)²``, ``log φ' = log(4as) − 2|s·z| − 2 log(1 + t)``."""
  offset = math.log(4.0 * amplitude * slope)

  def form(z: jax.Array, m: Math) -> tuple[jax.Array, jax.Array, jax.Array]:
    u = jnp.abs(slope * z)
    t = m.exp2((-2.0 * LOG2E) * u)
    inv = m.reciprocal(1.0 + t)
    magnitude = amplitude * (1.0 - t) * inv
    value = jnp.where(z < 0, -magnitude, magnitude)
    return (
      value,
      (4.0 * amplitude * slope) * t * inv * inv,
      offset - 2.0 * u - 2.0 * log(1.0 + t, m),
    )

  return form


def activation_form(activation: Any) -> Form | None:
  """``(z, math) ↦ (φ(z), φ'(z), log φ'(z))`` for an activation (or its name) with a fast
  form, else None.

  Each is positive-sloped (sign φ' = +1), and ``log φ'`` comes from the closed form, finite
  where φ' itself underflows.
  """
  from vanish import activations

  activation = activations.get(activation)  # a name or an Activation; raises for others
  params = dict(activation.params)
  if activation.stochastic:
    return None
  if activation.name == "sigmoid":
    return _sigmoid
  if activation.name == "tanh":
    return _scaled_tanh(1.0, 1.0)
  if activation.name == "scaled_tanh":
    return _scaled_tanh(1.0, float(params["n"]))
  if activation.name == "lecun_tanh":
    return _scaled_tanh(activations.LECUN_AMPLITUDE, activations.LECUN_SLOPE)
  return None
