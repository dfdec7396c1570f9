"""Layers: the per-layer interface every Jacobian chain is built on.

A layer maps a state ``h`` (shape ``(fan_in,)``) to ``h'`` (``(fan_out,)``) and
exposes the Jacobian ``J = ∂h'/∂h`` only through its action, so that the chains
never form it unless asked:

* ``forward(params, h, key) -> (h', preactivation, slope)`` where ``slope`` is
  whatever the layer needs to apply ``J`` later (the activation derivative);
* ``slope_log_scale(slope) = s``: the actions below are those of ``e^{−s} J``, so that
  a layer whose derivatives all lie far below float32's range (every unit saturated)
  still has an exact Jacobian up to the scalar ``e^s``, which the chains add in log
  space (0 for layers that never need it);
* ``jacobian_action(params, slope, V) = e^{−s} J V`` for ``V`` of shape ``(fan_in, k)``;
* ``input_cotangent(params, slope, g) = e^{−s} Jᵀ g`` and
  ``bias_cotangent(params, slope, g) = e^{−s} (∂h'/∂b)ᵀ g`` for ``g = ∂C/∂h'``.

Normalization layers, convolutions and recurrent cells plug in by implementing
these four functions; nothing in :mod:`vanish.chains` or :mod:`vanish.spectrum`
changes. Parameters of one layer are a dict ``{"w": (fan_out, fan_in), "b":
(fan_out,)}``.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Protocol

import jax
import jax.numpy as jnp

from vanish.activations import Activation

__all__ = ["Dense", "Layer", "Residual", "scaled_slope"]

Params = dict[str, jax.Array]


class Layer(Protocol):
  """What a chain needs from a layer (see the module docstring)."""

  activation: Activation

  def forward(
    self, params: Params, h: jax.Array, key: jax.Array | None, precision: Any
  ) -> tuple[jax.Array, jax.Array, jax.Array]: ...

  def slope_log_scale(self, slope: Any) -> jax.Array: ...

  def jacobian_action(
    self, params: Params, slope: jax.Array, v: jax.Array, precision: Any
  ) -> jax.Array: ...

  def input_cotangent(
    self, params: Params, slope: jax.Array, g: jax.Array, precision: Any
  ) -> jax.Array: ...

  def bias_cotangent(self, params: Params, slope: jax.Array, g: jax.Array) -> jax.Array: ...

  def weight_cotangent_norm(
    self, params: Params, h: jax.Array, slope: jax.Array, g: jax.Array, key: jax.Array | None
  ) -> jax.Array: ...


def scaled_slope(
  activation: Activation, z: jax.Array, slope: jax.Array
) -> tuple[jax.Array, jax.Array]:
  """``(φ'(z)·e^{−s}, s)`` with ``s = max_i log |φ'(z_i)|``, from the closed-form log-derivative.

  For activations whose derivative decays exponentially (sigmoid, the tanh family,
  softplus, erf) a layer with every unit saturated has every ``φ'(z_i)`` below float32's
  range (σ'(z) = 0 once |z| ≳ 90, tanh' once |z| ≳ 9), and the chain through it would
  read an exact zero. Scaled by its largest entry the slope keeps its relative sizes and
  ``s`` carries the magnitude in log space. The sign is ``φ'(z)``'s own, signed zeros
  included (an underflowed negative derivative is ``−0.0``). Other activations keep
  ``(slope, 0)``.
  """
  if activation.log_derivative is None or activation.stochastic:
    return slope, jnp.zeros((), slope.dtype)
  log_slope = activation.log_derivative(z)
  top = jnp.max(log_slope)
  top = jnp.where(jnp.isfinite(top), top, 0.0)  # every φ' exactly 0 (z = −inf): slopes of 0
  return jnp.copysign(jnp.exp(log_slope - top), slope), top


@dataclasses.dataclass(frozen=True)
class Dense:
  """``h' = φ(z)``, ``z = W h + b``; ``J = diag(φ'(z)) W`` (Nielsen ch. 5, eq. for δ^l).

  Its ``slope`` is the pair :func:`scaled_slope` returns: ``φ'(z)`` divided by its
  largest entry, and the log of that entry.
  """

  activation: Activation

  def forward(self, params, h, key, precision):
    z = jnp.matmul(params["w"], h, precision=precision) + params["b"]
    value, slope = self.activation.value_and_derivative(z, key=key)
    return value, z, scaled_slope(self.activation, z, slope)

  def slope_log_scale(self, slope):
    return slope[1]

  def jacobian_action(self, params, slope, v, precision):
    return slope[0][:, None] * jnp.matmul(params["w"], v, precision=precision)

  def input_cotangent(self, params, slope, g, precision):
    return jnp.matmul(params["w"].T, slope[0] * g, precision=precision)

  def bias_cotangent(self, params, slope, g):
    return slope[0] * g

  def weight_cotangent_norm(self, params, h, slope, g, key):
    # ∂C/∂W = δ hᵀ is an outer product: its Frobenius norm is ‖δ‖‖h‖.
    del params, key
    return jnp.linalg.norm(slope[0] * g) * jnp.linalg.norm(h)


@dataclasses.dataclass(frozen=True)
class Residual:
  """``h' = h + α (W φ(h) + b)``; ``J = I + α W diag(φ'(h))``.

  The standard practical fix for deep chains (He et al. 2016; mean field in Yang &
  Schoenholz 2017). The reported pre-activation is the argument of φ, i.e. the
  incoming state ``h``.
  """

  activation: Activation
  alpha: float = 1.0

  def forward(self, params, h, key, precision):
    value, slope = self.activation.value_and_derivative(h, key=key)
    update = jnp.matmul(params["w"], value, precision=precision) + params["b"]
    return h + self.alpha * update, h, slope

  def slope_log_scale(self, slope):
    return jnp.zeros((), slope.dtype)  # J = I + ...: the identity keeps it in range

  def jacobian_action(self, params, slope, v, precision):
    return v + self.alpha * jnp.matmul(params["w"], slope[:, None] * v, precision=precision)

  def input_cotangent(self, params, slope, g, precision):
    return g + self.alpha * slope * jnp.matmul(params["w"].T, g, precision=precision)

  def bias_cotangent(self, params, slope, g):
    del params, slope
    return self.alpha * g

  def weight_cotangent_norm(self, params, h, slope, g, key):
    del params, slope
    return self.alpha * jnp.linalg.norm(g) * jnp.linalg.norm(self.activation(h, key=key))
