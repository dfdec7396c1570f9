"""Initialization maps: which actual initial weights and biases make gradients vanish or explode.

The seed analysis (``docs/seed_analysis.md`` §4 (ii)) asks for a *deterministic map* of
which initial weights lead to vanishing, with trajectories from initial to final
values. This module computes it for tiny networks, where the parameters can be
drawn as a plane:

* :func:`tied_chain_log_gradient` / :func:`tied_chain_map`: the one-neuron chain
  ``z_j = w a_{j−1} + b``, ``a_j = φ(z_j)``, ``a_0 = x`` with *every* weight
  equal to ``w`` and every bias to ``b``. Its gradient (Nielsen ch. 5)

      g_K = ∂a_K/∂b_1 = φ'(z_1) · Π_{j=2..K} w φ'(z_j)

  is a function of the point ``(w, b)`` and the input alone, so the map over a
  grid of ``(w, b)`` is deterministic. It is summed in log space with a stable
  ``log φ'`` (no underflow of ``σ'(z)`` at large ``|z|``), so depth 10,000
  neither overflows nor underflows.
* :func:`slice_map`: networks of width n (1–3 in practice) on the 2-D slice
  ``W_l = w · Ŵ_l``, ``b_l = b·𝟙 + s_b b̂_l`` (a weight scale × a bias shift)
  through parameter space, with ``Ŵ_l ~ N(0, 1/n)``, ``b̂_l ~ N(0, 1)`` and the
  inputs random; it returns ``P(vanish)``, ``P(stable)``, ``P(explode)`` per
  point over those random draws.
* :func:`tied_chain_descent`: plain gradient descent on ``(w, b)`` of the tied
  chain fitting a scalar function, from many starting points at once (``vmap``
  over starts, ``lax.scan`` over steps), recording ``(w_t, b_t, loss_t,
  log|g_t|)`` so the map shows the basins and the flow between them.

A gradient is *vanished* if ``|g| < ε``, *exploded* if ``|g| > 1/ε`` and
*stable* otherwise (:func:`classify`).

A tied chain is a 1-D iterated map ``a ↦ φ(w a + b)``: for monotone φ its orbit
settles on an attracting fixed point or 2-cycle, whose multiplier ``|w φ'(z*)|``
is at most 1, so at large depth ``log|g_K|/K → log|w φ'(z*)| ≤ 0`` and almost
every point vanishes; explosion needs the orbit to linger near an *unstable*
fixed point (Nielsen's ``w = 100``, ``z = 0`` construction), which it does only
for a transient number of layers.

Example:
  >>> import numpy as np
  >>> from vanish import parameter_map
  >>> m = parameter_map.tied_chain_map("sigmoid", np.array([-4.0, 1.0, 100.0]),
  ...                                  np.array([-50.0, 0.0]), np.array([0.5]), depth=10)
  >>> m.log_g.shape                               # [depths, B, A, inputs]
  (1, 2, 3, 1)
  >>> m.outcome[0].tolist()   # Nielsen: w = 100, b = −w/2 keeps z = 0: factor 25 per layer
  [[-1, -1, 1], [0, -1, -1]]
  >>> round(float(m.log_g[0, 0, 2, 0] / np.log(25.0)), 3)   # |g_10| = 25^9 / 4
  8.569
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from numpy.typing import ArrayLike

from vanish import _checks
from vanish import activations as _activations
from vanish import init as _init
from vanish.networks import _check_key
from vanish.phase_map import (
  EXPLODE,
  STABLE,
  VANISH,
  _deterministic,
  _integer,
  _unit_interval,
  summarize_growth,
)

__all__ = [
  "EXPLODE",
  "STABLE",
  "VANISH",
  "ChainMap",
  "SliceMap",
  "Trajectories",
  "classify",
  "log_abs_derivative",
  "slice_log_gradient",
  "slice_map",
  "tied_chain_descent",
  "tied_chain_log_gradient",
  "tied_chain_map",
  "tied_chain_outputs",
  "tied_tanh_critical_lines",
]

# --------------------------------------------------------------------------- validation


def _finite(name: str, value: ArrayLike, ndim: int | None = None) -> np.ndarray:
  return _checked_finite(name, _checks.real_array(name, value), ndim)


def _checked_finite(name: str, array: np.ndarray, ndim: int | None) -> np.ndarray:
  if ndim is not None and array.ndim != ndim:
    raise ValueError(f"{name} must be {ndim}-D, got shape {array.shape}")
  if array.size == 0:
    raise ValueError(f"{name} must not be empty")
  if not np.all(np.isfinite(array)):
    raise ValueError(f"{name} must be finite (no inf or NaN)")
  return array


def _vector(name: str, values: ArrayLike) -> np.ndarray:
  """A 1-D, non-empty, finite float64 vector; a scalar counts as one entry."""
  return _checked_finite(name, np.atleast_1d(_checks.real_array(name, values)), ndim=1)


def _grid(name: str, values: ArrayLike) -> np.ndarray:
  """A 1-D, non-empty, finite, strictly increasing grid (negative values allowed)."""
  grid = _vector(name, values)
  if np.any(np.diff(grid) <= 0):
    raise ValueError(f"{name} must be strictly increasing, got {grid.tolist()}")
  return grid


def _depths(depths: int | Sequence[int]) -> tuple[int, ...]:
  values = tuple(depths) if isinstance(depths, Sequence | np.ndarray) else (depths,)
  if not values:
    raise ValueError("depths must hold at least one depth")
  values = tuple(_integer("depth", d) for d in values)
  if any(b <= a for a, b in zip(values, values[1:], strict=False)):
    raise ValueError(f"depths must be strictly increasing, got {list(values)}")
  return values


def _points(w: ArrayLike, b: ArrayLike, x: ArrayLike, dtype: Any) -> tuple[tuple[int, ...], list]:
  """``(S, [w, b, x])``: the finite ``w``, ``b``, ``x`` broadcast to shape S and flattened."""
  w, b, x = (_finite(name, v) for name, v in (("w", w), ("b", b), ("x", x)))
  try:
    shape = np.broadcast_shapes(w.shape, b.shape, x.shape)
  except ValueError:
    raise ValueError(
      f"w, b and x must broadcast together, got shapes {w.shape}, {b.shape}, {x.shape}"
    ) from None
  return shape, [jnp.asarray(np.broadcast_to(v, shape).ravel(), dtype) for v in (w, b, x)]


# --------------------------------------------------------------------------- primitives


def log_abs_derivative(activation: str | _activations.Activation, z: jax.Array) -> jax.Array:
  """``log |φ'(z)|``, computed without underflow (``Activation.log_abs_derivative``).

  ``σ'(z) = σ(z)(1 − σ(z))`` is exactly 0 in float32 once ``|z| ≳ 90``; its log
  ``−softplus(z) − softplus(−z)`` is not. Likewise ``log(1 − tanh² u) = log 4 −
  2|u| − 2 softplus(−2|u|)`` for tanh, tanh(n·x) and LeCun's tanh. Activations without
  a closed form use ``log |φ'(z)|`` (``−inf`` where φ' is exactly 0, e.g. ReLU).

  Example:
    >>> import jax.numpy as jnp
    >>> float(log_abs_derivative("sigmoid", jnp.array(200.0)))   # σ'(200) = 0 in float32
    -200.0
    >>> round(float(log_abs_derivative("tanh", jnp.array(0.0))), 6)
    0.0
  """
  return _activations.get(activation).log_abs_derivative(z)


def classify(log_g: ArrayLike, epsilon: float = 1e-3) -> np.ndarray:
  """The outcome of each ``log |g|``: −1 vanished (``|g| < ε``), 0 stable, +1 exploded (``> 1/ε``).

  ``−inf`` (an exactly zero gradient) is vanished.

  Raises:
    ValueError: ``epsilon`` outside (0, 1), or ``log_g`` contains NaN or ``+inf``.

  Example:
    >>> classify([-7.0, -6.9, 0.0, 6.9, 7.0, -np.inf], epsilon=1e-3).tolist()
    [-1, 0, 0, 0, 1, -1]
  """
  epsilon = _unit_interval("epsilon", epsilon)
  values = _checks.real_array("log_g", log_g)
  if np.isnan(values).any() or np.isposinf(values).any():
    raise ValueError("log_g contains NaN or +inf")
  log_eps = math.log(epsilon)
  out = np.zeros(values.shape, np.int8)
  out[values < log_eps] = VANISH
  out[values > -log_eps] = EXPLODE
  return out


# --------------------------------------------------------------------------- the tied chain


def _tied_point(act, w, b, x, depths):
  """``[D]`` log|g_K| at the depths ``depths`` for one scalar point (w, b) and input x."""
  z = w * x + b
  state = (act.fn(z), log_abs_derivative(act, z))  # layer 1: the bias enters directly
  log_w = jnp.log(jnp.abs(w))

  def layer(state, _):
    a, log_g = state
    z = w * a + b
    return (act.fn(z), log_g + log_w + log_abs_derivative(act, z)), None

  out, done = [], 1
  for depth in depths:  # one scan per stretch between recorded depths
    if depth > done:
      state, _ = lax.scan(layer, state, None, length=depth - done)
    out.append(state[1])
    done = depth
  return jnp.stack(out)


@functools.partial(jax.jit, static_argnames=("act", "depths"))
def _tied_flat(act, w, b, x, *, depths):
  return jax.vmap(lambda wi, bi, xi: _tied_point(act, wi, bi, xi, depths), out_axes=-1)(w, b, x)


def tied_chain_log_gradient(
  activation: str | _activations.Activation,
  w: ArrayLike,
  b: ArrayLike,
  x: ArrayLike,
  *,
  depths: int | Sequence[int],
  dtype: Any = jnp.float32,
) -> jax.Array:
  """``log |g_K|`` of the tied one-neuron chain, elementwise over broadcast ``(w, b, x)``.

  ``g_K = ∂a_K/∂b_1 = φ'(z_1) Π_{j=2..K} w φ'(z_j)`` with ``z_j = w a_{j−1} + b``,
  ``a_0 = x`` (Nielsen ch. 5 with every weight ``w`` and every bias ``b``): one
  jitted call, ``vmap`` over the broadcast points, ``lax.scan`` over depth.

  Args:
    activation: a deterministic activation (name or :class:`~vanish.activations.Activation`).
    w, b, x: weights, biases and inputs; broadcast against each other to shape ``S``.
    depths: one depth K ≥ 1 or strictly increasing depths at which to record.
    dtype: ``jnp.float32``, or ``jnp.float64`` under ``jax.enable_x64``.

  Returns:
    ``[D, *S]`` natural logs; ``−inf`` exactly where a factor is 0 (``w = 0`` or a
    dead ReLU), never NaN.

  Example:
    >>> import jax.numpy as jnp
    >>> log_g = tied_chain_log_gradient("tanh", 0.5, 0.0, 0.0, depths=(1, 3))
    >>> [round(float(v), 5) for v in jnp.exp(log_g)]   # x = b = 0 stays at 0: φ' = 1
    [1.0, 0.25]
  """
  act = _deterministic(activation)
  depths = _depths(depths)
  shape, flat = _points(w, b, x, dtype)
  out = _tied_flat(act, *flat, depths=depths)
  return out.reshape((len(depths), *shape))


class ChainMap(NamedTuple):
  """The tied-chain map over a ``(w, b)`` grid.

  Attributes:
    w: ``[A]`` the weight grid (the x-axis of an image).
    b: ``[B]`` the bias grid (rows).
    x: ``[X]`` the inputs.
    depths: ``[D]`` the depths K.
    log_g: ``[D, B, A, X]`` ``log |g_K|``.
    median_log_g: ``[D, B, A]`` its median over the inputs.
    outcome: ``[D, B, A]`` :func:`classify` of the median (−1, 0, +1).
    p_vanish, p_stable, p_explode: ``[D, B, A]`` fractions of the inputs.
    epsilon: the threshold.
  """

  w: np.ndarray
  b: np.ndarray
  x: np.ndarray
  depths: np.ndarray
  log_g: np.ndarray
  median_log_g: np.ndarray
  outcome: np.ndarray
  p_vanish: np.ndarray
  p_stable: np.ndarray
  p_explode: np.ndarray
  epsilon: float


def tied_chain_map(
  activation: str | _activations.Activation,
  w: ArrayLike,
  b: ArrayLike,
  x: ArrayLike,
  *,
  depth: int | Sequence[int],
  epsilon: float = 1e-3,
) -> ChainMap:
  """Vanishing / stable / exploding over a grid of tied initial weights and biases.

  Args:
    activation: a deterministic activation.
    w: ``[A]`` strictly increasing weights (any sign).
    b: ``[B]`` strictly increasing biases.
    x: ``[X]`` inputs ``a_0``.
    depth: a depth K ≥ 1 or strictly increasing depths.
    epsilon: vanished if ``|g| < ε``, exploded if ``|g| > 1/ε``.

  Returns:
    A :class:`ChainMap` (one jitted call for the whole grid).
  """
  w, b = _grid("w", w), _grid("b", b)
  x = _vector("x", x)
  epsilon = _unit_interval("epsilon", epsilon)
  depths = _depths(depth)
  log_g = tied_chain_log_gradient(
    activation, w[None, :, None], b[:, None, None], x[None, None, :], depths=depths
  )
  log_g = np.asarray(log_g, np.float64)
  probs = summarize_growth(log_g, epsilon=epsilon)
  median = np.median(log_g, axis=-1)
  return ChainMap(
    w=w,
    b=b,
    x=x,
    depths=np.asarray(depths),
    log_g=log_g,
    median_log_g=median,
    outcome=classify(median, epsilon),
    p_vanish=probs["p_vanish"],
    p_stable=probs["p_stable"],
    p_explode=probs["p_explode"],
    epsilon=epsilon,
  )


def tied_tanh_critical_lines(w: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
  """The bifurcation lines of the tied tanh chain, where an attractor becomes marginal.

  The tied chain iterates ``a ↦ tanh(w a + b)``; a fixed point ``a*`` has
  multiplier ``m = w (1 − a*²)`` and, once the orbit has settled on an
  attractor, ``log|g_K| ≈ K log|m|``. Solving ``w(1 − a²) = ±1`` with
  ``b = artanh(a) − w a`` gives, for ``|w| > 1``, ``a = √(1 ∓ 1/w)`` and two
  curves ``b = ±(artanh a − w a)``:

  * ``w < −1``: the period-doubling (flip, ``m = −1``) lines. Between them the
    fixed point is unstable and a 2-cycle attracts; on them the attractor is
    marginal and the gradient decays only polynomially — stable at any depth.
  * ``w > 1``: the fold (``m = +1``) lines bounding the bistable wedge
    ``|b| < b_c(w)``; on them only orbits in the basin of the folding fixed point
    decay polynomially, the others go to a strongly attracting one.

  The two families meet the marginal points ``(w, b) = (±1, 0)``.

  Args:
    w: weights, any shape.

  Returns:
    ``(b_low, b_high)`` of the shape of ``w``: the curve ``b_high = −b_low ≥ 0``
    (nan where ``|w| ≤ 1``).

  Example:
    >>> lo, hi = tied_tanh_critical_lines([-2.0, 0.5, 2.0])
    >>> np.round(hi, 4).tolist()
    [2.2956, nan, 0.5328]
  """
  w = np.asarray(w, np.float64)
  with np.errstate(invalid="ignore", divide="ignore"):
    a = np.sqrt(1 - 1 / w)  # m = +1 for w > 1; for w < −1 this is √(1 + 1/|w|) > 1: use the flip
    a = np.where(w < -1, np.sqrt(1 + 1 / w), a)
    high = np.abs(np.arctanh(a) - w * a)
  high = np.where(np.abs(w) > 1, high, np.nan)
  return -high, high


# --------------------------------------------------------------------------- width-n slices


def _slice_sample(act, w, b, weights, biases, bias_std, x, u):
  """``log ‖∂C/∂b^1‖`` for ``C = uᵀ a^L``, one network of width n on the slice.

  The Jacobian ``P_l = ∂a^l/∂b^1 = D_l W_l P_{l−1}`` (``P_1 = D_1``) is an n × n
  matrix carried *forward* with the pre-activations, renormalized every layer and
  its log-norm accumulated; ``D_l`` is applied as ``exp(log φ' − max log φ')``.
  """

  def diag(z):
    log_d = log_abs_derivative(act, z)
    top = jnp.max(log_d)
    shift = jnp.where(jnp.isfinite(top), top, 0.0)
    # the sign from φ' itself (it may underflow to 0 where log φ' is finite: then it is +)
    sign = jnp.where(act.derivative(z) < 0, -1.0, 1.0).astype(z.dtype)
    return sign * jnp.exp(log_d - shift), top

  def renormalize(p, log_scale):
    norm = jnp.linalg.norm(p)
    safe = jnp.where(norm > 0, norm, 1.0)
    return p / safe, log_scale + jnp.log(norm)

  def layer(state, params):
    a, p, log_scale = state
    w_l, b_l = params
    z = w * (w_l @ a) + b + bias_std * b_l
    d, top = diag(z)
    p, log_scale = renormalize(d[:, None] * (w_l @ p), log_scale + top + jnp.log(jnp.abs(w)))
    return (act.fn(z), p, log_scale), None

  z = w * (weights[0] @ x) + b + bias_std * biases[0]
  d, top = diag(z)
  p, log_scale = renormalize(jnp.diag(d), top)
  state = (act.fn(z), p, log_scale)
  (_, p, log_scale), _ = lax.scan(layer, state, (weights[1:], biases[1:]))
  return log_scale + jnp.log(jnp.linalg.norm(p.T @ u))


@functools.partial(jax.jit, static_argnames=("act", "chunk_size"))
def _slice_cells(act, cells, weights, biases, bias_std, x, u, *, chunk_size):
  """``[C, S]`` for ``cells = [C, 2]`` of (w, b) and S (network, input, cotangent) triples."""

  def cell(point):
    def sample(wts, bs, xi, ui):
      return _slice_sample(act, point[0], point[1], wts, bs, bias_std, xi, ui)

    return jax.vmap(sample)(weights, biases, x, u)

  return lax.map(cell, cells, batch_size=chunk_size)


def slice_log_gradient(
  activation: str | _activations.Activation,
  w: ArrayLike,
  b: ArrayLike,
  weights: ArrayLike,
  biases: ArrayLike,
  x: ArrayLike,
  cotangent: ArrayLike,
  *,
  bias_std: float = 0.0,
  chunk_size: int | None = None,
  dtype: Any = jnp.float32,
) -> jax.Array:
  """``log ‖∂C/∂b^1‖`` on the slice ``W_l = w Ŵ_l``, ``b_l = b 𝟙 + s_b b̂_l`` for given draws.

  Sample s is the network ``z^l = W_l a^{l−1} + b_l``, ``a^l = φ(z^l)``,
  ``a^0 = x_s``, l = 1..L, every layer of width n, with ``C = u_sᵀ a^L``; so
  ``∂C/∂b^1 = δ^1`` of Nielsen's BP2 with ``∇_a C = u_s``. For n = 1, ``Ŵ = 1``,
  ``s_b = 0`` and ``u = 1`` this is ``g_L`` of the tied chain. The Jacobian is
  carried forward as an n × n matrix, renormalized every layer (log space), so
  no depth overflows.

  Args:
    activation: a deterministic activation.
    w: ``[A]`` strictly increasing weight scales (any sign).
    b: ``[B]`` strictly increasing bias shifts.
    weights: ``[S, L, n, n]`` the draws Ŵ.
    biases: ``[S, L, n]`` the draws b̂.
    x: ``[S, n]`` inputs.
    cotangent: ``[S, n]`` the output cotangents u.
    bias_std: ``s_b ≥ 0``.
    chunk_size: grid cells per vmapped chunk (memory only; results agree to float rounding,
      ~1e-7 relative, as XLA vectorizes a different number of cells, not bit for bit).
    dtype: computation dtype (``jnp.float64`` under ``jax.enable_x64``).

  Returns:
    ``[B, A, S]``; ``−inf`` where the gradient is exactly 0.

  Example:
    >>> import numpy as np
    >>> one = np.ones((1, 3, 1, 1))          # n = 1, L = 3, Ŵ = 1: the tied chain
    >>> g = slice_log_gradient("tanh", [0.5], [0.0], one, np.zeros((1, 3, 1)),
    ...                        np.zeros((1, 1)), np.ones((1, 1)))
    >>> round(float(np.exp(g[0, 0, 0])), 5)   # 0.5² (φ' = 1 at 0)
    0.25
  """
  act = _deterministic(activation)
  w, b = _grid("w", w), _grid("b", b)
  weights = _finite("weights", weights, ndim=4)
  samples, depth, n, n_in = weights.shape
  if n != n_in:
    raise ValueError(f"weights must be [S, L, n, n] (square layers), got {weights.shape}")
  biases = _finite("biases", biases, ndim=3)
  if biases.shape != (samples, depth, n):
    raise ValueError(f"biases must have shape {(samples, depth, n)}, got {biases.shape}")
  x = _finite("x", x, ndim=2)
  cotangent = _finite("cotangent", cotangent, ndim=2)
  if x.shape != (samples, n) or cotangent.shape != (samples, n):
    raise ValueError(
      f"x and cotangent must both have shape {(samples, n)}, got {x.shape} and {cotangent.shape}"
    )
  bias_std = _checks.number("bias_std", bias_std, minimum=0)
  cells = b.size * w.size
  chunk_size = cells if chunk_size is None else min(_integer("chunk_size", chunk_size), cells)
  grid = np.stack(np.broadcast_arrays(w[None, :], b[:, None]), axis=-1).reshape(cells, 2)
  as_dtype = functools.partial(jnp.asarray, dtype=dtype)
  out = _slice_cells(
    act,
    as_dtype(grid),
    as_dtype(weights),
    as_dtype(biases),
    as_dtype(bias_std),
    as_dtype(x),
    as_dtype(cotangent),
    chunk_size=chunk_size,
  )
  return out.reshape(b.size, w.size, samples)


class SliceMap(NamedTuple):
  """Outcome probabilities over a ``(w, b)`` slice of width-n networks.

  Attributes:
    w: ``[A]`` weight scales; b: ``[B]`` bias shifts.
    log_g: ``[B, A, S]`` ``log ‖∂C/∂b^1‖`` per sampled network (each with its own input).
    p_vanish, p_stable, p_explode: ``[B, A]`` fractions of the S samples.
    p_vanish_ci, p_stable_ci, p_explode_ci: ``[B, A, 2]`` 95 % Wilson intervals.
    median_log_g: ``[B, A]``.
    config: activation, width, depth, samples, bias_std, epsilon.
  """

  w: np.ndarray
  b: np.ndarray
  log_g: np.ndarray
  p_vanish: np.ndarray
  p_stable: np.ndarray
  p_explode: np.ndarray
  p_vanish_ci: np.ndarray
  p_stable_ci: np.ndarray
  p_explode_ci: np.ndarray
  median_log_g: np.ndarray
  config: dict[str, Any]


def slice_map(
  activation: str | _activations.Activation,
  w: ArrayLike,
  b: ArrayLike,
  *,
  width: int,
  depth: int,
  samples: int,
  key: jax.Array,
  bias_std: float = 0.0,
  epsilon: float = 1e-3,
  chunk_size: int | None = None,
) -> SliceMap:
  """P(vanish / stable / explode) over a weight-scale × bias-shift slice of tiny networks.

  Draws S independent networks and inputs — ``Ŵ_l ~ N(0, 1/n)``, ``b̂_l ~ N(0, 1)``,
  ``x ~ N(0, I_n)`` and a uniformly random unit cotangent ``u`` — shared by every
  cell (common random numbers, so the map is smooth), and evaluates
  :func:`slice_log_gradient` at every ``(w, b)`` in one jitted call.

  Args:
    activation: a deterministic activation.
    w: ``[A]`` strictly increasing weight scales; b: ``[B]`` bias shifts.
    width: n ≥ 1; depth: L ≥ 1; samples: S ≥ 1.
    key: a typed PRNG key.
    bias_std: the random part of the biases, ``s_b ≥ 0`` (0: every bias is b).
    epsilon: the threshold ε in (0, 1).
    chunk_size: cells per vmapped chunk.

  Returns:
    A :class:`SliceMap`.

  Example:
    >>> import jax, numpy as np
    >>> m = slice_map("tanh", [0.1, 1.0, 8.0], [0.0], width=2, depth=10, samples=16,
    ...               key=jax.random.key(0), epsilon=1e-2)
    >>> m.p_vanish.tolist()    # small weights: factors < 1; large: saturated, φ' ≈ 0
    [[1.0, 0.375, 1.0]]
  """
  _deterministic(activation)
  w, b = _grid("w", w), _grid("b", b)
  width = _integer("width", width)
  depth = _integer("depth", depth)
  samples = _integer("samples", samples)
  epsilon = _unit_interval("epsilon", epsilon)
  bias_std = _checks.number("bias_std", bias_std, minimum=0)
  if chunk_size is not None:
    chunk_size = _integer("chunk_size", chunk_size)
  _check_key(key)
  k_w, k_b, k_x, k_u = (jax.random.fold_in(key, i) for i in range(4))
  # jax.random.normal's bits, drawn by init's straight-line threefry: jax.random.normal
  # compiles a threefry loop per shape (~3 s of CPU compile for the weights alone)
  normal, dtype = _init.normal(1.0), jax.dtypes.canonicalize_dtype(float)
  weights = normal(k_w, (samples, depth, width, width), dtype) / math.sqrt(width)
  biases = normal(k_b, (samples, depth, width), dtype)
  x = normal(k_x, (samples, width), dtype)
  u = normal(k_u, (samples, width), dtype)
  u = u / jnp.linalg.norm(u, axis=-1, keepdims=True)
  log_g = slice_log_gradient(
    activation, w, b, weights, biases, x, u, bias_std=bias_std, chunk_size=chunk_size
  )
  log_g = np.asarray(log_g, np.float64)
  probs = summarize_growth(log_g, epsilon=epsilon)
  config = {
    "activation": _activations.get(activation).name,
    "width": width,
    "depth": depth,
    "samples": samples,
    "bias_std": float(bias_std),
    "epsilon": epsilon,
  }
  return SliceMap(
    w=_grid("w", w),
    b=_grid("b", b),
    log_g=log_g,
    median_log_g=np.median(log_g, axis=-1),
    config=config,
    **{k: v for k, v in probs.items() if k.startswith("p_")},
  )


# --------------------------------------------------------------------------- trajectories


class Trajectories(NamedTuple):
  """Gradient-descent paths of tied chains in the ``(w, b)`` plane.

  Every array is ``[S, T + 1]``: start s, step t = 0..T (t = 0 is the start).

  Attributes:
    w, b: the parameters.
    loss: ``½ mean_i (a_K(x_i) − y_i)²``.
    log_g: median over the training inputs of ``log |g_K| = log |∂a_K/∂b_1|``
      (the map's quantity, :func:`tied_chain_log_gradient`).
    log_grad_norm: ``log ‖∇_{(w,b)} loss‖``, the learning signal of the tied
      parameters (it sums the contributions of every layer).
    diverged: ``[S]`` whether an update was non-finite (the path then stays at
      its last finite point).
    config: activation, depth, learning_rate, steps.
  """

  w: np.ndarray
  b: np.ndarray
  loss: np.ndarray
  log_g: np.ndarray
  log_grad_norm: np.ndarray
  diverged: np.ndarray
  config: dict[str, Any]


def _tied_output(act, theta, x, depth):
  def layer(a, _):
    return act.fn(theta[0] * a + theta[1]), None

  a, _ = lax.scan(layer, x, None, length=depth)
  return a


def _loss(act, theta, x, y, depth):
  return 0.5 * jnp.mean((_tied_output(act, theta, x, depth) - y) ** 2)


@functools.partial(jax.jit, static_argnames=("act", "depth"))
def _tied_outputs(act, w, b, x, *, depth):
  return jax.vmap(lambda wi, bi, xi: _tied_output(act, jnp.stack([wi, bi]), xi, depth))(w, b, x)


def tied_chain_outputs(
  activation: str | _activations.Activation,
  w: ArrayLike,
  b: ArrayLike,
  x: ArrayLike,
  *,
  depth: int,
  dtype: Any = jnp.float32,
) -> jax.Array:
  """The tied chain's output ``a_K(x; w, b)``, elementwise over broadcast ``(w, b, x)``.

  Example:
    >>> import numpy as np
    >>> [round(float(a), 4) for a in tied_chain_outputs("tanh", 1.0, 0.0, [0.5], depth=2)]
    [0.4318]
  """
  act = _deterministic(activation)
  depth = _integer("depth", depth)
  shape, flat = _points(w, b, x, dtype)
  return _tied_outputs(act, *flat, depth=depth).reshape(shape)


@functools.partial(jax.jit, static_argnames=("act", "depth", "steps"))
def _descent(act, starts, x, y, learning_rate, *, depth, steps):
  value_and_grad = jax.value_and_grad(_loss, argnums=1)

  def measure(theta):
    loss, grad = value_and_grad(act, theta, x, y, depth)
    log_g = jax.vmap(lambda xi: _tied_point(act, theta[0], theta[1], xi, (depth,))[0])(x)
    return grad, (theta, loss, jnp.median(log_g), jnp.log(jnp.linalg.norm(grad)))

  def per_start(theta0):
    def step(state, _):
      theta, diverged = state
      grad, record = measure(theta)
      new = theta - learning_rate * grad
      ok = jnp.all(jnp.isfinite(new))
      return (jnp.where(ok, new, theta), diverged | ~ok), record

    (final, diverged), history = lax.scan(step, (theta0, False), None, length=steps)
    _, last = measure(final)
    history = jax.tree.map(lambda h, f: jnp.concatenate([h, f[None]]), history, last)
    return history, diverged

  return jax.vmap(per_start)(starts)


def tied_chain_descent(
  activation: str | _activations.Activation,
  w0: ArrayLike,
  b0: ArrayLike,
  x: ArrayLike,
  y: ArrayLike,
  *,
  depth: int,
  learning_rate: float,
  steps: int,
  dtype: Any = jnp.float32,
) -> Trajectories:
  """Plain gradient descent on the tied chain's ``(w, b)`` from many starts at once.

  The model is the output ``a_K(x; w, b)`` of the depth-K tied chain; the loss
  ``½ mean_i (a_K(x_i) − y_i)²`` (a regression of the targets ``y``) is
  descended with ``θ ← θ − η ∇θ loss`` — one jitted call, ``vmap`` over starts,
  ``lax.scan`` over steps, ``jax.grad`` through the ``lax.scan`` over layers.

  Args:
    activation: a deterministic activation.
    w0, b0: ``[S]`` starting weights and biases (finite).
    x, y: ``[N]`` training inputs and targets (finite).
    depth: K ≥ 1.
    learning_rate: η > 0.
    steps: T ≥ 1.
    dtype: computation dtype.

  Returns:
    :class:`Trajectories` with ``[S, T + 1]`` arrays.

  Example:
    >>> import numpy as np
    >>> x = np.linspace(-1, 1, 8)
    >>> y = np.tanh(0.8 * np.tanh(0.8 * x + 0.1) + 0.1)        # a depth-2 teacher
    >>> t = tied_chain_descent("tanh", [1.5], [-0.5], x, y, depth=2, learning_rate=0.5,
    ...                        steps=2000)
    >>> t.loss.shape, bool(t.loss[0, -1] < 1e-3 * t.loss[0, 0])
    ((1, 2001), True)
    >>> np.round([t.w[0, -1], t.b[0, -1]], 2).tolist()          # it found the teacher
    [0.8, 0.1]
  """
  act = _deterministic(activation)
  w0 = _vector("w0", w0)
  b0 = _vector("b0", b0)
  if w0.shape != b0.shape:
    raise ValueError(f"w0 and b0 must have the same shape [S], got {w0.shape} and {b0.shape}")
  x = _vector("x", x)
  y = _vector("y", y)
  if x.shape != y.shape:
    raise ValueError(f"x and y must have the same shape [N], got {x.shape} and {y.shape}")
  depth = _integer("depth", depth)
  steps = _integer("steps", steps)
  learning_rate = _checks.number("learning_rate", learning_rate, minimum=0, strict=True)
  starts = jnp.asarray(np.stack([w0, b0], axis=1), dtype)
  (theta, loss, log_g, log_grad), diverged = _descent(
    act,
    starts,
    jnp.asarray(x, dtype),
    jnp.asarray(y, dtype),
    jnp.asarray(learning_rate, dtype),
    depth=depth,
    steps=steps,
  )
  theta = np.asarray(theta, np.float64)
  return Trajectories(
    w=theta[..., 0],
    b=theta[..., 1],
    loss=np.asarray(loss, np.float64),
    log_g=np.asarray(log_g, np.float64),
    log_grad_norm=np.asarray(log_grad, np.float64),
    diverged=np.asarray(diverged),
    config={
      "activation": act.name,
      "depth": depth,
      "learning_rate": learning_rate,
      "steps": steps,
    },
  )
