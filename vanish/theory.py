"""Closed forms and accurate quadratures for the theory of unstable gradients.

Everything here is deterministic float64 math on plain Python floats and NumPy
arrays: the numbers that the Monte Carlo engines are tested against.

* Nielsen, *Neural Networks and Deep Learning*, ch. 5: the sigmoid factor bounds
  (:func:`sigmoid_factor_bound`, :func:`centered_sigmoid_factor`,
  :func:`sigmoid_unstable_input_width`).
* The tanh(n·x) analysis (``docs/seed_analysis.md`` §4): where one factor cancels depth − 1
  maximal ones (:func:`scaled_tanh_vanish_threshold`, stable for any depth) and
  where a factor exceeds one (:func:`scaled_tanh_explode_threshold`).
* Mean-field signal propagation (Poole et al. 2016, "Exponential expressivity in
  deep neural networks through transient chaos"; Schoenholz et al. 2017, "Deep
  Information Propagation"): the length and correlation maps, q*, χ₁, c*, χ_c and
  the depth scales ξ_q, ξ_c, ξ_∇ (:func:`mean_field`, :func:`critical_sigma_w2`).
* Dynamical isometry (Pennington, Schoenholz & Ganguli 2017, 2018): mean and
  variance of the squared singular values of the input–output Jacobian
  (:func:`jacobian_spectrum_moments`).
* Finite-width ReLU nets (Hanin 2018; Hanin & Nica 2020): the exact law of the
  squared gradient norm (:func:`relu_gradient_moments`).
* Lyapunov exponents of products of Gaussian matrices (Newman 1986)
  (:func:`newman_lyapunov`).

Gaussian expectations use closed forms where they exist (linear, ReLU, leaky ReLU,
noisy ReLU, erf) and otherwise composite Gauss–Legendre quadrature with panels
split at the activation's kinks and refined on its feature scale (relative error
~1e-13 or better for the zoo in ``vanish.activations``, checked against mpmath).
Closed forms, kinks and feature scales are looked up by the activation's
registry name; any other activation is integrated as smooth on the scale of one
unit (kinks at multiples of 0.5 are still panel breaks). Activations are evaluated
with their own ``jax.numpy`` functions under ``jax.enable_x64(True)``.

Example:
  >>> from vanish import theory
  >>> mf = theory.mean_field("tanh", sigma_w2=1.5, sigma_b2=0.05)
  >>> round(mf.q_star, 6), round(mf.chi1, 6)
  (0.418037, 0.938636)
  >>> round(theory.critical_sigma_w2("relu", sigma_b2=0.0), 6)
  2.0
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from numpy.typing import ArrayLike
from scipy import optimize, special, stats

from vanish import _checks, activations
from vanish.activations import Activation

__all__ = [
  "JacobianMoments",
  "MeanField",
  "ReluGradientMoments",
  "ResidualMeanField",
  "centered_sigmoid_factor",
  "correlation_map",
  "critical_sigma_w2",
  "jacobian_spectrum_moments",
  "length_map",
  "mean_field",
  "newman_lyapunov",
  "relu_gradient_moments",
  "residual_mean_field",
  "scaled_tanh_explode_threshold",
  "scaled_tanh_vanish_threshold",
  "scaled_tanh_widest_good_n",
  "sigmoid_derivative_max",
  "sigmoid_factor_bound",
  "sigmoid_unstable_input_width",
]

ActivationLike = str | Activation

# ----------------------------------------------------------------------------
# Input validation: every public function checks its arguments before any work.


def _real(name: str, value: ArrayLike) -> float:
  return _checks.number(name, value)  # rejects booleans and strings, which float() takes


def _nonnegative(name: str, value: ArrayLike) -> float:
  value = _real(name, value)
  if value < 0:
    raise ValueError(f"{name} must be >= 0 (a variance), got {value}")
  return value


def _positive(name: str, value: ArrayLike) -> float:
  value = _real(name, value)
  if value <= 0:
    raise ValueError(f"{name} must be > 0, got {value}")
  return value


def _real_array(name: str, value: ArrayLike) -> np.ndarray:
  array = _checks.real_array(name, value)
  if not np.all(np.isfinite(array)):
    raise ValueError(f"{name} must be finite, got {value!r}")
  return array


def _integer(name: str, value: int, minimum: int) -> int:
  return _checks.integer(name, value, minimum=minimum)


def _as_output(array: np.ndarray) -> float | np.ndarray:
  return float(array) if np.ndim(array) == 0 else array


# ----------------------------------------------------------------------------
# Nielsen ch. 5: the sigmoid factor w·σ'(z).


def sigmoid_derivative_max() -> float:
  """The maximum of the logistic derivative, max_z σ'(z) = σ'(0) = 1/4.

  Nielsen, *Neural Networks and Deep Learning*, ch. 5 ("What's causing the
  vanishing gradient problem?").

  Returns:
    ``0.25``.

  Example:
    >>> sigmoid_derivative_max()
    0.25
  """
  return 0.25


def sigmoid_factor_bound(w: ArrayLike) -> float | np.ndarray:
  """The largest possible chain factor, max_z |w·σ'(z)| = |w|/4.

  With weights from N(0, 1) most |w| < 1, so every factor of the backpropagated
  product is below 1/4 (Nielsen ch. 5).

  Args:
    w: weights, any shape.

  Returns:
    ``|w| / 4``, a float for scalar input, else an array of ``w``'s shape.

  Example:
    >>> sigmoid_factor_bound(-2.0)
    0.5
  """
  return _as_output(np.abs(_real_array("w", w)) * 0.25)


def centered_sigmoid_factor(w: ArrayLike) -> float | np.ndarray:
  """The factor w·σ'(0) = w/4 of Nielsen's exploding-gradient scheme.

  Choosing biases b_j = −w·a_{j−1} puts every pre-activation at z = 0 where σ' is
  largest; with w = 100 each layer multiplies the gradient by 25 (Nielsen ch. 5).

  Args:
    w: weights, any shape.

  Returns:
    ``w / 4`` (signed), a float for scalar input, else an array.

  Example:
    >>> centered_sigmoid_factor(100.0)
    25.0
  """
  return _as_output(_real_array("w", w) * 0.25)


def sigmoid_unstable_input_width(w: ArrayLike) -> float | np.ndarray:
  """Width of the set of inputs a with |w·σ'(w·a + b)| ≥ 1 (Nielsen ch. 5, problem).

  σ'(z) ≥ 1/|w| holds for σ(z) between the roots σ± = (1 ± √(1 − 4/|w|))/2, an
  interval of z of length 2·log(σ₊/σ₋), i.e. of a of length
  (2/|w|)·log(|w|(1 + √(1 − 4/|w|))/2 − 1). It is empty for |w| < 4 and at most
  ≈ 0.4477 (at |w| ≈ 6.89): large weights rarely help, since σ' shrinks with w.

  Args:
    w: weights, any shape.

  Returns:
    The width (0 where |w| ≤ 4), float for scalar input, else an array.

  Example:
    >>> round(sigmoid_unstable_input_width(6.9), 4)
    0.4477
  """
  w = np.abs(_real_array("w", w))
  safe = np.where(w > 4, w, 8.0)
  root = np.sqrt(1 - 4 / safe)
  width = (2 / safe) * np.log(safe * (1 + root) / 2 - 1)
  return _as_output(np.where(w > 4, width, 0.0))


# ----------------------------------------------------------------------------
# docs/seed_analysis.md §4: tanh(n·x), derivative n(1 − tanh²(n·x)) ∈ (0, n].


def _check_n(n: ArrayLike) -> np.ndarray:
  n = _real_array("n", n)
  if np.any(n <= 0):
    raise ValueError(f"n must be > 0 (the tanh(n·x) slope), got {n!r}")
  return n


def scaled_tanh_vanish_threshold(n: ArrayLike, depth: ArrayLike = 2) -> float | np.ndarray:
  """The |x| beyond which one tanh(n·x) factor cancels depth − 1 maximal ones.

  ``docs/seed_analysis.md`` §4: n(1 − tanh²(nx)) < n^{−(depth−1)} ⟺ |x| > t with
  t = (1/n)·artanh(√(1 − n^{−depth})). ``depth=2`` is t₁(n), where a factor drops
  below 1/n and cancels the best possible factor n; ``depth=1`` is where the
  factor drops below 1 (:func:`scaled_tanh_explode_threshold`).

  Computed in log space, stable for any depth: with ε = n^{−depth} and
  y = √(1 − ε), artanh(y) = log(1 + y) − ½·log ε exactly (because 1 − y = ε/(1 + y)),
  so t = [log(1 + y) + (depth/2)·log n]/n. ε underflowing to 0 is harmless, and
  t → (2·log 2 + depth·log n)/(2n) as depth → ∞.

  For n ≤ 1 the derivative is at most n ≤ n^{−(depth−1)}, with equality only at
  x = 0 when n = 1: the condition holds for every x ≠ 0 (for n < 1 for every x),
  and the threshold is 0.0.

  Args:
    n: slopes n > 0, scalar or array (broadcast against ``depth``).
    depth: the K of the analysis, a real ≥ 1, scalar or array.

  Returns:
    t ≥ 0, a float when both inputs are scalars, else an array.

  Raises:
    ValueError: n ≤ 0, depth < 1, or non-finite input.

  Example:
    >>> round(scaled_tanh_vanish_threshold(2.0), 6)
    0.658479
    >>> round(scaled_tanh_vanish_threshold(2.0, depth=1000), 6)
    173.633369
  """
  n = _check_n(n)
  depth = _real_array("depth", depth)
  if np.any(depth < 1):
    raise ValueError(f"depth must be >= 1, got {depth!r}")
  n, depth = np.broadcast_arrays(n, depth)
  log_n = np.log(n)
  with np.errstate(invalid="ignore", over="ignore"):
    one_minus_eps = -np.expm1(-depth * log_n)  # 1 − n^{−depth}, no cancellation
    y = np.sqrt(np.clip(one_minus_eps, 0.0, 1.0))
    t = (np.log1p(y) + 0.5 * depth * log_n) / n
  return _as_output(np.where(n > 1, t, 0.0))


def scaled_tanh_explode_threshold(n: ArrayLike) -> float | np.ndarray:
  """The |x| below which the factor n(1 − tanh²(n·x)) exceeds 1.

  ``docs/seed_analysis.md`` §4: n(1 − tanh²(nx)) > 1 ⟺ |x| < (1/n)·artanh(√(1 − 1/n)) for
  n > 1. For n ≤ 1 the set is empty and the threshold is 0.0. At the threshold the
  factor equals 1 exactly.

  Args:
    n: slopes n > 0, scalar or array.

  Returns:
    The threshold, a float for scalar input, else an array.

  Example:
    >>> round(scaled_tanh_explode_threshold(2.0), 6)
    0.440687
  """
  return scaled_tanh_vanish_threshold(n, depth=1)


def scaled_tanh_widest_good_n(depth: float = 2) -> float:
  """The slope n maximizing the "good" interval |x| ≤ t(n, depth) of tanh(n·x).

  The seed analysis (``docs/seed_analysis.md`` §4) puts the widest good interval at
  n = 2. Maximizing :func:`scaled_tanh_vanish_threshold` over n > 1 says: at depth 2 the maximum is
  at n ≈ 1.81 (t = 0.6627 against t = 0.6585 at n = 2), so n = 2 is the best
  integer, not the exact optimum. As depth → ∞ the optimum tends to e.

  Args:
    depth: the K of the analysis, a real ≥ 1.

  Returns:
    The maximizing n.

  Example:
    >>> round(scaled_tanh_widest_good_n(2), 4)
    1.8102
  """
  depth = _real("depth", depth)
  if depth < 1:
    raise ValueError(f"depth must be >= 1, got {depth}")
  grid = np.exp(np.linspace(1e-6, 3.0, 301))
  values = scaled_tanh_vanish_threshold(grid, depth)
  best = int(np.argmax(values))
  lo, hi = grid[max(best - 1, 0)], grid[min(best + 1, grid.size - 1)]
  result = optimize.minimize_scalar(
    lambda n: -scaled_tanh_vanish_threshold(n, depth),
    bounds=(lo, hi),
    method="bounded",
    options={"xatol": 1e-12},
  )
  return float(result.x)


# ----------------------------------------------------------------------------
# Gaussian expectations E_z[f(√q z)] and E[f(u₁) g(u₂)]: closed forms and quadrature.

_Z_MAX = 10.0  # P(|z| > 10) = 1.5e-23: the truncated tail is below float64 resolution.
_Z_STEP = 1.0  # panel width resolving the Gaussian weight itself
_GL_X, _GL_W = np.polynomial.legendre.leggauss(10)
_INV_SQRT_2PI = 1.0 / math.sqrt(2 * math.pi)
_Q_TINY = 1e-100  # q = 0 is evaluated as the limit q → 0⁺ (one-sided at kinks)
# q = ∞ (no fixed point, unbounded φ) is evaluated as the limit q → ∞, here: for φ' bounded
# with limits at ±∞, E[φ'(√q z)^k] and E[φ(√q z)²]/q converge like q^{-1/2} (≈ 1e-9 here).
_Q_LIMIT = 4.0**30
_CHUNK = 1 << 18


class _Resolution(NamedTuple):
  """Where an activation's features live, in pre-activation units u."""

  step: float  # panel width that resolves φ (a quarter of its feature scale or less)
  extent: float  # beyond |u| > extent, φ is smooth on the Gaussian's own scale
  kinks: tuple[float, ...]  # points where φ or φ' jumps


def _resolution(act: Activation) -> _Resolution:
  params = dict(act.params)
  scale = 1.0
  if act.name == "scaled_tanh":
    scale = 1.0 / params["n"]
  elif act.name == "lecun_tanh":
    scale = 1.0 / activations.LECUN_SLOPE
  extent = 16.0 * scale + params.get("steps", 0.0)
  kinks = {
    "relu": (0.0,),
    "leaky_relu": (0.0,),
    "noisy_relu": (0.0,),
    "hard_tanh": (-1.0, 1.0),
  }.get(act.name, ())
  return _Resolution(0.5 * scale, extent, kinks)


def _evaluate(fn: Callable[[jax.Array], jax.Array], u: np.ndarray) -> np.ndarray:
  """Applies a jnp elementwise ``fn`` to a float64 array in float64, in fixed-size chunks."""
  flat = np.ravel(u)
  size = flat.size
  chunk = min(_CHUNK, 1 << max(size - 1, 1).bit_length())
  padded = np.concatenate([flat, np.zeros((-size) % chunk)])
  out = np.empty_like(padded)
  with jax.enable_x64(True):
    for start in range(0, padded.size, chunk):
      piece = jnp.asarray(padded[start : start + chunk], dtype=jnp.float64)
      out[start : start + chunk] = np.asarray(fn(piece), dtype=np.float64)
  return out[:size].reshape(np.shape(u))


def _panels(breaks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Gauss–Legendre nodes and weights on consecutive panels; breaks (..., P + 1)."""
  half = 0.5 * (breaks[..., 1:] - breaks[..., :-1])
  mid = 0.5 * (breaks[..., 1:] + breaks[..., :-1])
  nodes = mid[..., None] + half[..., None] * _GL_X
  weights = half[..., None] * _GL_W
  shape = breaks.shape[:-1] + (-1,)
  return nodes.reshape(shape), weights.reshape(shape)


def _gauss_rule(
  res: _Resolution, mean: np.ndarray, std: float, extra: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
  """Rule for E_z[f(mean + std·z)], z ~ N(0, 1), one row per entry of ``mean``.

  Panels break at a uniform grid in z (resolving the Gaussian), at a grid of step
  ``res.step`` in u over |u| ≤ ``res.extent`` (resolving φ) and at the kinks;
  breakpoints outside |z| ≤ 10 are clipped, leaving harmless empty panels, so that
  every row has the same number of nodes.

  Returns:
    nodes z and weights (Gaussian density included), both (rows, nodes).
  """
  mean = np.atleast_1d(np.asarray(mean, dtype=np.float64))
  count = int(round(2 * _Z_MAX / _Z_STEP))
  z_grid = np.linspace(-_Z_MAX, _Z_MAX, count + 1)
  u_count = int(math.ceil(2 * res.extent / res.step))
  u_points = np.concatenate([np.linspace(-res.extent, res.extent, u_count + 1), res.kinks])
  if std > 0:
    mapped = (u_points[None, :] - mean[:, None]) / std
  else:
    mapped = np.zeros((mean.size, 0))
  parts = [np.broadcast_to(z_grid, (mean.size, z_grid.size)), mapped]
  if extra is not None:
    parts.append(np.broadcast_to(extra, (mean.size, extra.size)))
  breaks = np.sort(np.clip(np.concatenate(parts, axis=1), -_Z_MAX, _Z_MAX), axis=1)
  nodes, weights = _panels(breaks)
  return nodes, weights * np.exp(-0.5 * nodes * nodes) * _INV_SQRT_2PI


def _leaky_slope(act: Activation) -> float | None:
  """The slope s of φ(u) = max(u, s·u) for the piecewise-linear family, else None."""
  if act.name == "linear":
    return 1.0
  if act.name in ("relu", "noisy_relu"):
    return 0.0
  if act.name == "leaky_relu":
    return dict(act.params)["slope"]
  return None


def _effective(act: Activation, q: float, c: float = 1.0) -> tuple[float, float]:
  """Length and correlation after the activation's input noise (independent per input)."""
  noise = act.noise_std**2
  q_eff = q + noise
  c_eff = c * q / q_eff if q_eff > 0 else c
  return q_eff, c_eff


def _quad_1d(act: Activation, integrand: Callable[..., np.ndarray], q: float) -> float:
  """E_z[integrand(u, z)] with u = √q z, by composite Gauss–Legendre."""
  q = max(q, _Q_TINY)
  sqrt_q = math.sqrt(q)
  nodes, weights = _gauss_rule(_resolution(act), np.zeros(1), sqrt_q)
  return float(np.sum(weights * integrand(sqrt_q * nodes, nodes)))


def _phi_sq(act: Activation, q: float) -> float:
  """E[φ(u)²], u ~ N(0, q) (plus the activation's input noise)."""
  q, _ = _effective(act, q)
  slope = _leaky_slope(act)
  if slope is not None:
    return 0.5 * (1 + slope**2) * q
  if act.name == "erf":
    return (2 / math.pi) * math.asin(2 * q / (1 + 2 * q))
  if q == 0:  # exactly φ(0)², so that q = 0 is recognized as a fixed point
    return float(_evaluate(act.fn, np.zeros(1))[0] ** 2)
  return _quad_1d(act, lambda u, z: _evaluate(act.fn, u) ** 2, q)


def _phi_sq_slope(act: Activation, q: float) -> float:
  """d/dq E[φ(√q z)²] = E[φ(u)φ'(u) z]/√q (Stein's lemma; valid for kinked φ)."""
  q, _ = _effective(act, q)
  slope = _leaky_slope(act)
  if slope is not None:
    return 0.5 * (1 + slope**2)
  if act.name == "erf":
    return 4 / (math.pi * (1 + 2 * q) * math.sqrt(1 + 4 * q))
  q = max(q, _Q_TINY)
  return _quad_1d(
    act, lambda u, z: _evaluate(act.fn, u) * _evaluate(act.derivative, u) * z, q
  ) / math.sqrt(q)


def _dphi_power(act: Activation, q: float, power: int) -> float:
  """E[φ'(u)^power], u ~ N(0, q); μ_k of Pennington et al. is power = 2k."""
  q, _ = _effective(act, q)
  slope = _leaky_slope(act)
  if slope is not None:
    return 0.5 * (1 + slope**power)
  if act.name == "erf":
    return (2 / math.sqrt(math.pi)) ** power / math.sqrt(1 + 2 * power * q)
  return _quad_1d(act, lambda u, z: _evaluate(act.derivative, u) ** power, q)


def _quad_2d(act: Activation, fn: Callable, q: float, c: float) -> float:
  """E[f(u₁) f(u₂)], (u₁, u₂) ~ N(0, q[[1, c], [c, 1]]), by nested quadrature.

  u₁ = √q z₁, u₂ = √q (c z₁ + s z₂) with s = √(1 − c²): for each outer node z₁ the
  inner expectation over z₂ gets its own panels (breaks at φ's grid and kinks
  mapped through u₂). The outer rule is graded geometrically towards the points
  where a kink of the inner factor crosses, whose smoothed image has width s/|c|.
  """
  if c >= 1.0:
    return _quad_1d(act, lambda u, z: _evaluate(fn, u) ** 2, q)
  if c <= -1.0:
    return _quad_1d(act, lambda u, z: _evaluate(fn, u) * _evaluate(fn, -u), q)
  q = max(q, _Q_TINY)
  res = _resolution(act)
  sqrt_q, s = math.sqrt(q), math.sqrt((1 - c) * (1 + c))
  extra = None
  if res.kinks and c != 0:
    width = s / abs(c)
    levels = np.arange(-2, max(int(math.ceil(math.log2(4 * _Z_MAX / width))), -2) + 1)
    offsets = width * 2.0**levels
    centers = np.asarray(res.kinks) / (sqrt_q * c)
    extra = (centers[:, None] + np.concatenate([-offsets, offsets])[None, :]).ravel()
  z1, w1 = _gauss_rule(res, np.zeros(1), sqrt_q, extra)
  z1, w1 = z1[0], w1[0]
  mean = sqrt_q * c * z1
  z2, w2 = _gauss_rule(res, mean, sqrt_q * s)
  inner = np.sum(w2 * _evaluate(fn, mean[:, None] + sqrt_q * s * z2), axis=1)
  return float(np.sum(w1 * _evaluate(fn, sqrt_q * z1) * inner))


def _relu_angle(c: float) -> tuple[float, float]:
  theta = math.acos(min(max(c, -1.0), 1.0))
  return theta, math.sin(theta)


def _cross(act: Activation, q: float, c: float, derivative: bool) -> float:
  """E[φ(u₁)φ(u₂)] (or E[φ'(u₁)φ'(u₂)]) for two inputs of length q and correlation c.

  Closed forms: the arc-cosine kernel for the leaky-ReLU family (Cho & Saul 2009),
  Williams (1997) for erf. Input noise (noisy ReLU) is drawn independently for the
  two inputs: q → q + std², c → c·q/(q + std²).
  """
  q, c = _effective(act, q, c)
  slope = _leaky_slope(act)
  if slope is not None:
    theta, sin_theta = _relu_angle(c)
    relu_part = (math.pi - theta) / (2 * math.pi)
    if derivative:
      return slope + (1 - slope) ** 2 * relu_part
    relu_kernel = (sin_theta + (math.pi - theta) * c) / (2 * math.pi)
    return q * (slope * c + (1 - slope) ** 2 * relu_kernel)
  if act.name == "erf":
    if derivative:
      return (4 / math.pi) / math.sqrt((1 + 2 * q) ** 2 - (2 * q * c) ** 2)
    return (2 / math.pi) * math.asin(2 * q * c / (1 + 2 * q))
  return _quad_2d(act, act.derivative if derivative else act.fn, q, c)


# ----------------------------------------------------------------------------
# Mean field: Poole et al. 2016; Schoenholz et al. 2017.


def _resolve(activation: ActivationLike) -> Activation:
  act = activations.get(activation)
  if act.stochastic and _leaky_slope(act) is None:
    raise ValueError(
      f"activation {act.name!r} is stochastic; the theory integrates input noise only "
      "for noisy_relu (closed form)"
    )
  return act


def _length(act: Activation, sigma_w2: float, sigma_b2: float, q: float) -> float:
  return sigma_w2 * _phi_sq(act, q) + sigma_b2


def length_map(
  activation: ActivationLike, sigma_w2: float, sigma_b2: float, q: ArrayLike
) -> float | np.ndarray:
  """The length map q ↦ σ_w² E_z[φ(√q z)²] + σ_b².

  Poole et al. (2016) and Schoenholz et al. (2017), §2 (the variance map): the squared
  length per neuron of the pre-activations of layer l given that of layer l − 1,
  for weights N(0, σ_w²/N) and biases N(0, σ_b²) in the infinite-width limit.
  For noisy ReLU the noise enters as q + std² (noise is integrated, not sampled).

  Args:
    activation: a name or an :class:`~vanish.activations.Activation`.
    sigma_w2: weight variance σ_w² ≥ 0 (times fan-in).
    sigma_b2: bias variance σ_b² ≥ 0.
    q: pre-activation length(s) q ≥ 0, scalar or array.

  Returns:
    The next length, a float for scalar ``q``, else an array of its shape.

  Example:
    >>> round(length_map("relu", 2.0, 0.0, 1.5), 12)
    1.5
    >>> round(length_map("tanh", 1.0, 0.0, 1.0), 6)
    0.394294
  """
  sigma_w2 = _nonnegative("sigma_w2", sigma_w2)
  sigma_b2 = _nonnegative("sigma_b2", sigma_b2)
  q = _real_array("q", q)
  if np.any(q < 0):
    raise ValueError(f"q must be >= 0 (a squared length), got {q!r}")
  act = _resolve(activation)
  out = np.vectorize(lambda qi: _length(act, sigma_w2, sigma_b2, float(qi)), otypes=[float])(q)
  return _as_output(out)


def _correlation(act: Activation, sigma_w2: float, sigma_b2: float, q: float, c: float) -> float:
  numerator = sigma_w2 * _cross(act, q, c, derivative=False) + sigma_b2
  denominator = _length(act, sigma_w2, sigma_b2, q)
  return numerator / denominator if denominator > 0 else c


def correlation_map(
  activation: ActivationLike, sigma_w2: float, sigma_b2: float, q_star: float, c: ArrayLike
) -> float | np.ndarray:
  """The correlation map c ↦ [σ_w² E[φ(u₁)φ(u₂)] + σ_b²] / q*.

  Schoenholz et al. (2017), §2 (Poole et al. 2016, the correlation map): u₁ = √q* z₁,
  u₂ = √q* (c z₁ + √(1 − c²) z₂). The denominator is the length map at ``q_star``,
  which equals q* at the fixed point and makes c = 1 ↦ 1 exactly for any q.
  For noisy ReLU the two inputs get independent noise, so c = 1 ↦ c' < 1.

  Args:
    activation: a name or an :class:`~vanish.activations.Activation`.
    sigma_w2: weight variance σ_w² ≥ 0.
    sigma_b2: bias variance σ_b² ≥ 0.
    q_star: the length q ≥ 0 of both inputs (normally the fixed point q*).
    c: correlation(s) in [−1, 1], scalar or array.

  Returns:
    The next correlation, a float for scalar ``c``, else an array of its shape.

  Example:
    >>> round(correlation_map("relu", 2.0, 0.0, 1.0, 0.0), 6)
    0.31831
  """
  sigma_w2 = _nonnegative("sigma_w2", sigma_w2)
  sigma_b2 = _nonnegative("sigma_b2", sigma_b2)
  q_star = _nonnegative("q_star", q_star)
  c = _real_array("c", c)
  if np.any(np.abs(c) > 1):
    raise ValueError(f"c must be in [-1, 1] (a correlation), got {c!r}")
  act = _resolve(activation)
  out = np.vectorize(
    lambda ci: _correlation(act, sigma_w2, sigma_b2, q_star, float(ci)), otypes=[float]
  )(c)
  return _as_output(out)


def _homogeneous_q_star(act: Activation, sigma_w2: float, sigma_b2: float) -> float:
  """Fixed point of L(q) = σ_w² a (q + std²) + σ_b² with a = (1 + s²)/2 (leaky family)."""
  slope = _leaky_slope(act)
  gain = sigma_w2 * 0.5 * (1 + slope**2)
  offset = sigma_w2 * 0.5 * (1 + slope**2) * act.noise_std**2 + sigma_b2
  if gain < 1:
    return offset / (1 - gain)
  if gain == 1 and offset == 0:
    return math.nan  # the map is the identity: every q is a (neutral) fixed point
  return math.inf


def _q_star(act: Activation, sigma_w2: float, sigma_b2: float) -> float:
  """The stable fixed point q* of the length map.

  The closed form for the leaky-ReLU family, else the first downward crossing of
  L(q) − q on a geometric grid 4^k (k = −30..30) from q = 0, refined by Brent's
  method. q* = 0 when L(0) = 0 and L(q) < q just above 0; inf when L(q) > q up to
  q = 4^30.
  """
  if _leaky_slope(act) is not None:
    return _homogeneous_q_star(act, sigma_w2, sigma_b2)

  def gap(q: float) -> float:
    return _length(act, sigma_w2, sigma_b2, q) - q

  previous, previous_gap = 0.0, gap(0.0)
  for k in range(-30, 31):
    q = 4.0**k
    current_gap = gap(q)
    if current_gap < 0:
      if previous_gap == 0 and previous == 0.0:
        return 0.0
      return optimize.brentq(gap, previous, q, xtol=1e-300, rtol=4 * np.finfo(float).eps)
    if current_gap == 0:
      return q
    previous, previous_gap = q, current_gap
  return math.inf


def _c_star(act: Activation, sigma_w2: float, sigma_b2: float, q: float, chi1: float) -> float:
  """The stable fixed point of the correlation map.

  c* = 1 when χ₁ ≤ 1 (ordered phase) and the map has no input noise. Otherwise the
  stable root of M(c) − c below 1, bracketed from c = 0 towards 1 (at the points
  1 − 2^{−k}) or towards −1, then refined by Brent's method.
  """
  if act.noise_std == 0 and chi1 <= 1:
    return 1.0

  def gap(c: float) -> float:
    return _correlation(act, sigma_w2, sigma_b2, q, c) - c

  def solve(a: float, b: float) -> float:
    return optimize.brentq(gap, a, b, xtol=1e-14, rtol=4 * np.finfo(float).eps)

  at_zero = gap(0.0)
  if abs(at_zero) < 1e-14:
    return 0.0
  if at_zero > 0:
    lower = 0.0
    for k in range(1, 53):
      c = 1.0 - 2.0**-k
      if gap(c) < 0:
        return solve(lower, c)
      lower = c
    return 1.0 if act.noise_std == 0 else solve(lower, 1.0)
  upper = 0.0
  for k in range(1, 53):
    c = -1.0 + 2.0**-k
    if gap(c) > 0:
      return solve(c, upper)
    upper = c
  return -1.0


def _depth_scale(chi: float) -> float:
  """ξ = −1/log|χ|: > 0 for contraction, inf at |χ| = 1, < 0 for growth."""
  if math.isnan(chi):
    return math.nan
  chi = abs(chi)
  if chi == 1:
    return math.inf
  if chi == 0:
    return 0.0
  return -1.0 / math.log(chi)


class MeanField(NamedTuple):
  """Mean-field fixed point and depth scales of a deep random network.

  Attributes:
    q_star: the stable fixed point of the length map (0: lengths die out; inf:
      they grow without bound; nan: the map is the identity, every q is fixed).
    chi1: χ₁ = σ_w² E[φ'(√q* z)²], the mean squared singular value of one layer's
      Jacobian; the per-layer factor of E‖δ^l‖² (Schoenholz et al. 2017, §4).
    c_star: the stable fixed point of the correlation map (1 in the ordered phase).
    chi_c: χ_c = σ_w² E[φ'(u₁)φ'(u₂)] at c*, the slope of the correlation map there.
    xi_q: −1/log(∂L/∂q at q*), the depth scale of the length map.
    xi_c: −1/log|χ_c|, the depth scale of correlations; networks train up to ≈ 6 ξ_c.
    xi_grad: −1/log χ₁, the gradient depth scale: E‖δ^l‖² ∝ exp(−(L − l)/ξ_∇).
      Positive: vanishing (ordered); inf: critical; negative: exploding (chaotic).
    q_map_slope: ∂L/∂q at q* = χ₁ + σ_w² E[φ φ''(√q* z)].
    sigma_w2: the weight variance σ_w².
    sigma_b2: the bias variance σ_b².
  """

  q_star: float
  chi1: float
  c_star: float
  chi_c: float
  xi_q: float
  xi_c: float
  xi_grad: float
  q_map_slope: float
  sigma_w2: float
  sigma_b2: float


def _limit_q(act: Activation, q: float) -> float:
  """Where to evaluate φ' moments at q (see _Q_LIMIT): q itself if finite, else q → ∞.

  q = nan only for the piecewise-linear family at criticality, whose φ'² does not
  depend on q.
  """
  if math.isfinite(q):
    return q
  return 1.0 if _leaky_slope(act) is not None else _Q_LIMIT


def _chi1(act: Activation, sigma_w2: float, q: float) -> float:
  return sigma_w2 * _dphi_power(act, _limit_q(act, q), 2)


def mean_field(activation: ActivationLike, sigma_w2: float, sigma_b2: float) -> MeanField:
  """Fixed points, slopes and depth scales of mean-field signal propagation.

  Schoenholz, Gilmer, Ganguli & Sohl-Dickstein (2017), "Deep Information
  Propagation" (equation numbers differ between versions; sections of the
  published version): q* solves q* = σ_w² E[φ(√q* z)²] + σ_b² and χ₁ = σ_w²
  E[φ'(√q* z)²] (§2); c* is the stable fixed point of the correlation map (§2);
  χ_c = σ_w² E[φ'(u₁)φ'(u₂)] at c*, ξ_q = −1/log(χ₁ + σ_w² E[φ''φ]) and
  ξ_c = −1/log χ_c (§3); ξ_∇ = −1/log χ₁ (§4). Order (χ₁ < 1) and chaos
  (χ₁ > 1) meet at χ₁ = 1, where ξ_c and ξ_∇ diverge.

  Sign convention: ξ = −1/log χ is positive when the linearized map contracts
  (vanishing gradients, converging correlations), +inf at χ = 1 and negative when
  it expands (exploding gradients): then |ξ| is the e-folding depth of growth.

  Degenerate cases (documented, not errors):

  * q* = 0 (σ_b² = 0, φ(0) = 0, ordered; e.g. tanh with σ_w² ≤ 1, ReLU with
    σ_w² < 2): quantities are the limits q → 0⁺ (χ₁ = σ_w² φ'(0)² for smooth φ,
    σ_w²/2 for ReLU). The normalized correlation map then becomes neutral at c = 1
    (c ↦ c for smooth φ; the σ_w²-free arc-cosine map for ReLU), so c* = 1,
    χ_c = 1 and ξ_c = inf (convergence is at most polynomial).
  * q* = inf (unbounded φ with σ_w² above the critical value, e.g. ReLU with
    σ_w² > 2, or = 2 with σ_b² > 0): for the piecewise-linear family χ₁ does not
    depend on q and is reported, with ∂L/∂q = χ₁ and, as for q* = 0, c* = 1,
    χ_c = 1. For other unbounded activations (softplus) χ₁ is its limit q → ∞
    (σ_w²/2 for softplus), reported the same way: such a φ is piecewise linear at
    the scale √q → ∞.
  * q* = nan (piecewise-linear φ, σ_b² = 0, σ_w² exactly critical): the length map
    is the identity; χ₁ = 1 and the other fields are reported as at q* = inf.

  Noisy ReLU (φ(u + ε), ε ~ N(0, std²), independent per unit and input) is
  integrated over the noise: lengths enter as q + std², correlations between two
  inputs as c·q/(q + std²). Its correlation map therefore has c* < 1 always. Other
  stochastic activations raise ValueError.

  Cost: milliseconds in the ordered phase; in the chaotic phase c* needs ~20
  two-dimensional quadratures (~0.05 s each, ~1 s each for ``stepped_sigmoid``).

  Args:
    activation: a name or an :class:`~vanish.activations.Activation`.
    sigma_w2: weight variance σ_w² > 0 (weights N(0, σ_w²/fan_in)).
    sigma_b2: bias variance σ_b² ≥ 0.

  Returns:
    A :class:`MeanField`.

  Example:
    >>> mf = mean_field("erf", sigma_w2=1.0, sigma_b2=0.0)
    >>> round(mf.chi1, 6), mf.xi_c > 0
    (1.016903, True)
  """
  sigma_w2 = _positive("sigma_w2", sigma_w2)
  sigma_b2 = _nonnegative("sigma_b2", sigma_b2)
  act = _resolve(activation)
  q = _q_star(act, sigma_w2, sigma_b2)
  chi1 = _chi1(act, sigma_w2, q)
  if math.isfinite(q) and q > 0:
    q_slope = sigma_w2 * _phi_sq_slope(act, q)
    c_star = _c_star(act, sigma_w2, sigma_b2, q, chi1)
    chi_c = sigma_w2 * _cross(act, q, c_star, derivative=True)
  elif q == 0:
    q_slope = sigma_w2 * _phi_sq_slope(act, 0.0)
    c_star, chi_c = 1.0, 1.0
  elif math.isnan(chi1):
    q_slope, c_star, chi_c = math.nan, math.nan, math.nan
  else:
    q_slope, c_star, chi_c = chi1, 1.0, 1.0
  return MeanField(
    q_star=q,
    chi1=chi1,
    c_star=c_star,
    chi_c=chi_c,
    xi_q=_depth_scale(q_slope),
    xi_c=_depth_scale(chi_c),
    xi_grad=_depth_scale(chi1),
    q_map_slope=q_slope,
    sigma_w2=sigma_w2,
    sigma_b2=sigma_b2,
  )


def _zero_length_corner(act: Activation, sigma_b2: float) -> float | None:
  """1/φ'(0)² when q* = 0 is possible (σ_b² = 0, φ(0) = 0, no noise), else None."""
  if sigma_b2 != 0 or act.noise_std != 0:
    return None
  origin = np.zeros(1)
  slope = float(_evaluate(act.derivative, origin)[0])
  if float(_evaluate(act.fn, origin)[0]) != 0 or slope == 0:
    return None
  return 1.0 / slope**2


def critical_sigma_w2(activation: ActivationLike, sigma_b2: float) -> float:
  """The weight variance on the order-to-chaos line, where χ₁(σ_w², σ_b²) = 1.

  Schoenholz et al. (2017), Fig. 1: the critical line χ₁ = 1 in the (σ_w², σ_b²)
  plane. Closed form for the piecewise-linear family (χ₁ = σ_w²(1 + s²)/2 does
  not depend on q*): ReLU 2, linear 1, leaky ReLU 2/(1 + s²), noisy ReLU 2.
  Otherwise χ₁ − 1 is scanned on σ_w² = 2^k from k = −4 up to 20 (or, where
  χ₁ > 1 already at 2⁻⁴, e.g. tanh(n·x) with n ≥ 5, down to −60) for its sign
  change and refined by Brent's method (each χ₁ solves for q*).

  Known values: tanh at σ_b² = 0 → 1 (q* = 0 and χ₁ = σ_w²); erf at σ_b² = 0 →
  π/4; tanh at σ_b² = 0.05 → 1.7610; tanh(n·x) at σ_b² → tanh at n²σ_b², divided
  by n² (the rescaling of ``docs/seed_analysis.md`` §4).

  Args:
    activation: a name or an :class:`~vanish.activations.Activation`.
    sigma_b2: bias variance σ_b² ≥ 0.

  Returns:
    The critical σ_w².

  Softplus has χ₁ < 1 wherever q* is finite and χ₁ → σ_w²/2 as q* → ∞ (its
  exploding phase, σ_w² > 2): the transition is where q* jumps to ∞, σ_w² = 2
  (returned to ~1e-9, the accuracy of the limit q → ∞; see :func:`mean_field`).

  Raises:
    ValueError: bad input, or no sign change of χ₁ − 1 over the scanned range.

  Example:
    >>> round(critical_sigma_w2("tanh", 0.0), 6)
    1.0
    >>> round(critical_sigma_w2("leaky_relu", 0.0), 6)
    1.9998
  """
  sigma_b2 = _nonnegative("sigma_b2", sigma_b2)
  act = _resolve(activation)
  slope = _leaky_slope(act)
  if slope is not None:
    return 2.0 / (1 + slope**2)

  def excess(sigma_w2: float) -> float:
    return _chi1(act, sigma_w2, _q_star(act, sigma_w2, sigma_b2)) - 1

  # With σ_b² = 0 and φ(0) = 0, q* = 0 and χ₁ = σ_w² φ'(0)² up to σ_w² = 1/φ'(0)²,
  # beyond which χ₁ − 1 grows only quadratically: return that corner exactly.
  corner = _zero_length_corner(act, sigma_b2)

  def solve(lower: float, upper: float) -> float:  # excess(lower) < 0 < excess(upper)
    if corner is not None and lower < corner <= upper:
      # χ₁ = σ_w²/corner < 1 below the corner iff lengths still die out there.
      if _q_star(act, corner * (1 - 1e-6), sigma_b2) == 0:
        return corner
    return optimize.brentq(excess, lower, upper, xtol=1e-14 * lower, rtol=1e-14)

  # Steep activations (tanh(n·x): critical σ_w² = 1/n² at σ_b² = 0) cross below 2⁻⁴:
  # scan down from there until χ₁ < 1, else up until χ₁ > 1.
  start = excess(2.0**-4)
  if start == 0:
    return 2.0**-4
  if start > 0:
    for k in range(-5, -61, -1):
      value = excess(2.0**k)
      if math.isnan(value):
        break
      if value == 0:
        return 2.0**k
      if value < 0:
        return solve(2.0**k, 2.0 ** (k + 1))
    raise ValueError(
      f"chi1 > 1 for every sigma_w2 >= 2**-60 for activation {act.name!r} at sigma_b2 = "
      f"{sigma_b2}: no order-to-chaos transition found"
    )
  previous = 2.0**-4
  for k in range(-3, 21):
    sigma_w2 = 2.0**k
    value = excess(sigma_w2)
    if math.isnan(value):
      break
    if value == 0:
      return sigma_w2
    if value > 0:
      return solve(previous, sigma_w2)
    previous = sigma_w2
  raise ValueError(
    f"no order-to-chaos transition with finite q* for activation {act.name!r} at "
    f"sigma_b2 = {sigma_b2}: chi1 < 1 wherever q* is finite"
  )


def _exp_or_explain(what: str, log_name: str, log_value: float) -> float:
  """``exp(log_value)``, or an ``OverflowError`` that names the log-space field to use."""
  try:
    return math.exp(log_value)
  except OverflowError:
    raise OverflowError(
      f"{what} = exp({log_value:.6g}) is beyond float64's range; use {log_name}"
    ) from None


# ----------------------------------------------------------------------------
# Dynamical isometry: Pennington, Schoenholz & Ganguli 2017, 2018.

_S1 = {"gaussian": -1.0, "orthogonal": 0.0}


class JacobianMoments(NamedTuple):
  """Moments of the squared singular values λ of the input–output Jacobian.

  Attributes:
    log_mean: log m₁ = L·log χ₁, where m₁ = tr(JJᵀ)/N = χ₁^L (finite at any depth;
      −∞ only if φ' vanishes almost surely at q*).
    normalized_variance: σ²/m₁² = (m₂ − m₁²)/m₁² with m₂ = tr((JJᵀ)²)/N.
  """

  log_mean: float
  normalized_variance: float

  @property
  def mean(self) -> float:
    """m₁ = χ₁^L = exp(log_mean); ``OverflowError`` past float64's range (e^709.78)."""
    return _exp_or_explain("the mean m1 = chi1^L", "log_mean", self.log_mean)


def jacobian_spectrum_moments(
  activation: ActivationLike,
  sigma_w2: float,
  sigma_b2: float,
  depth: int,
  weights: str = "gaussian",
) -> JacobianMoments:
  """Mean and normalized variance of the spectrum of JJᵀ at the mean-field fixed point.

  J = D_L W_L ⋯ D_1 W_1 with D_l = diag(φ'(h^l)) is the input–output Jacobian of a
  width-N network whose pre-activations h^l all have length q* (inputs at the
  fixed point). As N → ∞ the spectral moments m_k = tr((JJᵀ)^k)/N of λ (the
  squared singular values) follow from multiplying S-transforms (Pennington,
  Schoenholz & Ganguli 2017, "Resurrecting the sigmoid"; 2018, "The emergence
  of spectral universality"): with μ_k = E[φ'(√q* z)^{2k}] and
  S_{WWᵀ}(z) = σ_w^{−2}(1 + s₁ z + …),

    m₁ = (σ_w² μ₁)^L = χ₁^L,   σ²/m₁² = L (μ₂/μ₁² − 1 − s₁),

  exact for every L at infinite width, since the first two S-transform
  coefficients of a product add up: each layer contributes the normalized variance
  of D² (μ₂/μ₁² − 1) plus that of WWᵀ (−s₁). Gaussian weights N(0, σ_w²/N) have
  s₁ = −1 (Marchenko–Pastur), scaled orthogonal weights σ_w·O have s₁ = 0. Finite
  width adds O(L/N) corrections. For noisy ReLU, D_l uses the same noise draw as
  the forward pass, so μ_k are those of ReLU (1/2). The mean is returned in log
  space, ``L·log χ₁``, so that depth 10,000 in the chaotic phase stays finite.

  Args:
    activation: a name or an :class:`~vanish.activations.Activation`.
    sigma_w2: weight variance σ_w² > 0.
    sigma_b2: bias variance σ_b² ≥ 0.
    depth: number of layers L ≥ 1.
    weights: ``"gaussian"`` or ``"orthogonal"``.

  Returns:
    A :class:`JacobianMoments` ``(log_mean, normalized_variance)``, with the mean
    itself as its ``mean`` property. Where q* = ∞ (an unbounded φ in its exploding
    phase) μ_k are their limits q → ∞, as for :func:`mean_field`'s χ₁.

  Example:
    >>> jacobian_spectrum_moments("linear", 1.0, 0.0, depth=10)
    JacobianMoments(log_mean=0.0, normalized_variance=10.0)
    >>> jacobian_spectrum_moments("linear", 1.0, 0.0, depth=10, weights="orthogonal").mean
    1.0
    >>> jacobian_spectrum_moments("linear", 2.0, 0.0, depth=10_000).log_mean  # 10⁴ log 2
    6931.471805599453
  """
  sigma_w2 = _positive("sigma_w2", sigma_w2)
  sigma_b2 = _nonnegative("sigma_b2", sigma_b2)
  depth = _integer("depth", depth, 1)
  if weights not in _S1:
    raise ValueError(f"weights must be one of {sorted(_S1)}, got {weights!r}")
  act = _resolve(activation)
  q = _limit_q(act, _q_star(act, sigma_w2, sigma_b2))
  mu1, mu2 = _dphi_power(act, q, 2), _dphi_power(act, q, 4)
  if mu1 == 0:
    return JacobianMoments(-math.inf, math.nan)
  log_mean = depth * math.log(sigma_w2 * mu1)
  return JacobianMoments(log_mean, depth * (mu2 / mu1**2 - 1 - _S1[weights]))


# ----------------------------------------------------------------------------
# Finite-width ReLU nets: Hanin 2018; Hanin & Nica 2020.


class ReluGradientMoments(NamedTuple):
  """The law of ‖J u‖² for a ReLU net at He initialization (see relu_gradient_moments).

  Attributes:
    mean: E‖Ju‖² = n_L/n₀ (dead networks count as 0).
    log_second_moment: log E‖Ju‖⁴ = Σ_l log((n_l² + 5 n_l)/n_{l−1}²) (the moment itself,
      the ``second_moment`` property, leaves float64's range near depth 10⁴ at width 8).
    log_mean: E[log ‖Ju‖² | no layer dead].
    log_var: Var[log ‖Ju‖² | no layer dead].
    dead_probability: P(some layer has no active unit) = 1 − Π_l (1 − 2^{−n_l}).
    log_mean_leading: log(n_L/n₀) − (5/2) Σ_l 1/n_l, the large-width expansion.
    log_var_leading: 5 Σ_l 1/n_l, the large-width expansion (Hanin 2018).
    backward_log_mean: E[log ‖Jᵀc‖² | no layer dead], c uniform on the unit sphere.
    backward_log_var: Var[log ‖Jᵀc‖² | no layer dead], c uniform on the unit sphere.
  """

  mean: float
  log_second_moment: float
  log_mean: float
  log_var: float
  dead_probability: float
  log_mean_leading: float
  log_var_leading: float
  backward_log_mean: float
  backward_log_var: float

  @property
  def second_moment(self) -> float:
    """E‖Ju‖⁴ = exp(log_second_moment); ``OverflowError`` past float64's range."""
    return _exp_or_explain("the second moment E|Ju|^4", "log_second_moment", self.log_second_moment)


def _log_chi2_binomial(width: int) -> tuple[float, float]:
  """Mean and variance of log χ²_K with K ~ Binomial(width, 1/2) conditioned on K ≥ 1."""
  sd = math.sqrt(width) / 2
  k = np.arange(max(1, int(width / 2 - 40 * sd)), min(width, int(width / 2 + 40 * sd) + 1) + 1)
  pmf = stats.binom.pmf(k, width, 0.5)
  pmf = pmf / pmf.sum()
  psi = special.digamma(k / 2)
  mean_psi = float(np.sum(pmf * psi))
  var = float(np.sum(pmf * special.polygamma(1, k / 2)) + np.sum(pmf * (psi - mean_psi) ** 2))
  return mean_psi + math.log(2), var


def _log_chi2(dof: int) -> tuple[float, float]:
  """Mean and variance of log χ²_dof: ψ(dof/2) + log 2 and ψ'(dof/2)."""
  return float(special.digamma(dof / 2)) + math.log(2), float(special.polygamma(1, dof / 2))


def relu_gradient_moments(widths: Sequence[int]) -> ReluGradientMoments:
  """Exact moments of the squared input–output gradient of a finite ReLU net.

  The net: h^l = W^l a^{l−1}, a^l = ReLU(h^l) for l = 1..L (ReLU at every layer,
  the output included), W^l ∈ R^{n_l × n_{l−1}} with iid N(0, 2/n_{l−1}) entries
  (He), zero biases, any input a⁰ = x ≠ 0. J = D_L W_L ⋯ D_1 W_1 = ∂a^L/∂x with
  D_l = diag(1[h^l > 0]).

  Forward law (exact, any widths; Hanin 2018, Hanin & Nica 2020): for any fixed
  unit u (orthogonal to x or not),

    ‖J u‖² =_d Π_{l=1}^{L} (2/n_{l−1}) χ²(K_l),   K_l ~ Binomial(n_l, 1/2),

  all factors independent, K_l the number of active units of layer l. (Flipping a
  weight row leaves (w·u)² unchanged and flips the unit's sign, so the mask is
  independent of the projected direction; the per-layer ratio's law does not
  depend on the direction.) Hence E‖Ju‖² = n_L/n₀ and
  E‖Ju‖⁴/(E‖Ju‖²)² = Π(1 + 5/n_l). log‖Ju‖² is −∞ when some K_l = 0; its moments
  are conditioned on no dead layer and mixed over the binomial exactly, with
  E[log χ²_k] = ψ(k/2) + log 2 and Var[log χ²_k] = ψ'(k/2). For large widths
  Var ≈ 5 Σ_l 1/n_l (4/n from χ² noise ψ'(n/4) plus 1/n from the binomial) and
  the mean ≈ log(n_L/n₀) − (5/2) Σ 1/n_l, as for a log-normal with mean n_L/n₀.

  Backward (the δ chain): for a cotangent c uniform on the unit sphere of R^{n_L},
  independent of the net, χ²_{n_L}·‖Jᵀc‖² =_d χ²_{n₀}·‖Ju‖² (both are Σ σ_i² ξ_i²
  for Gaussian probes), so E[log‖Jᵀc‖²] adds ψ(n₀/2) − ψ(n_L/2) and Var adds
  ψ'(n₀/2) − ψ'(n_L/2) to the forward values; E‖Jᵀc‖² = 1. For a *fixed* c (e.g. a
  basis vector) the law differs. For a sub-chain, pass the sub-list of widths.

  Args:
    widths: [n₀, n₁, …, n_L], integers ≥ 1, L ≥ 1.

  Returns:
    A :class:`ReluGradientMoments`.

  Example:
    >>> m = relu_gradient_moments([10] * 11)
    >>> round(m.mean, 6), round(m.second_moment, 3), round(m.log_var_leading, 6)
    (1.0, 57.665, 5.0)
  """
  if not isinstance(widths, Sequence | np.ndarray) or isinstance(widths, str) or len(widths) < 2:
    raise ValueError(f"widths must be a sequence [n0, n1, ..., nL] with L >= 1, got {widths!r}")
  widths = [_integer(f"widths[{i}]", n, 1) for i, n in enumerate(widths)]
  fan_in, fan_out = np.asarray(widths[:-1], float), np.asarray(widths[1:], float)
  per_layer = [_log_chi2_binomial(n) for n in widths[1:]]
  log_mean = float(np.sum(np.log(2 / fan_in)) + sum(m for m, _ in per_layer))
  log_var = float(sum(v for _, v in per_layer))
  in_mean, in_var = _log_chi2(widths[0])
  out_mean, out_var = _log_chi2(widths[-1])
  reciprocal = float(np.sum(1 / fan_out))
  return ReluGradientMoments(
    mean=widths[-1] / widths[0],
    log_second_moment=float(np.sum(np.log(fan_out**2 + 5 * fan_out) - 2 * np.log(fan_in))),
    log_mean=log_mean,
    log_var=log_var,
    dead_probability=float(-np.expm1(np.sum(np.log1p(-(0.5**fan_out))))),
    log_mean_leading=math.log(widths[-1] / widths[0]) - 2.5 * reciprocal,
    log_var_leading=5 * reciprocal,
    backward_log_mean=log_mean + in_mean - out_mean,
    backward_log_var=log_var + in_var - out_var,
  )


# ----------------------------------------------------------------------------
# Lyapunov exponents: Newman 1986.


def newman_lyapunov(n: int, sigma_w2: float = 1.0) -> np.ndarray:
  """Lyapunov exponents of products of n×n matrices with iid N(0, σ_w²/n) entries.

  Newman (1986), "The distribution of Lyapunov exponents: exact results for random
  matrices": λ_i = ½[log(2σ_w²/n) + ψ((n − i + 1)/2)], i = 1..n. Exact, because in
  the repeated-QR (Benettin) algorithm R_ii² ~ (σ_w²/n) χ²_{n−i+1}, independent
  across steps (Bartlett decomposition), so each λ_i = E[log R_ii] and the
  finite-T estimate has variance ψ'((n − i + 1)/2)/(4T).

  Args:
    n: matrix size, an integer ≥ 1.
    sigma_w2: entry variance times n, σ_w² > 0.

  Returns:
    Exponents, shape (n,), float64, descending.

  Example:
    >>> np.round(newman_lyapunov(2), 6)
    array([-0.288608, -0.981755])
  """
  n = _integer("n", n, 1)
  sigma_w2 = _positive("sigma_w2", sigma_w2)
  dof = np.arange(n, 0, -1, dtype=np.float64)
  return 0.5 * (math.log(2 * sigma_w2 / n) + special.digamma(dof / 2))


# ----------------------------------------------------------------------------
# Residual networks (Yang & Schoenholz 2017, "Mean field residual networks: on the
# edge of chaos"): h^l = h^{l−1} + α (W^l φ(h^{l−1}) + b^l).


class ResidualMeanField(NamedTuple):
  """Mean-field recursions of a residual network, layer by layer.

  Attributes:
    log_q: ``[L + 1]`` log of the per-unit squared length ``q^l = ‖h^l‖²/n`` (``q`` itself
      is the property of that name); ``log_q[0] = log q0``. ReLU lengths grow like
      ``(1 + α²σ_w²/2)^L``, beyond float64 by depth 10⁴ at α = 1.
    gradient_factor: ``[L]`` ``E‖g^{l−1}‖² / E‖g^l‖² = 1 + α² σ_w² E[φ'(√q^{l−1} z)²]``
      for the backpropagated ``g^l = ∂C/∂h^l`` — at least 1: residual gradients never vanish.
    log_gradient_growth: ``[L]`` ``log E‖g^{l−1}‖² − log E‖g^L‖²`` for l = L..1, i.e.
      entry ``l − 1`` is the log growth from the output back to layer l's input.
  """

  log_q: np.ndarray
  gradient_factor: np.ndarray
  log_gradient_growth: np.ndarray

  @property
  def q(self) -> np.ndarray:
    """``[L + 1]`` q^l = exp(log_q); ``OverflowError`` past float64's range."""
    largest = float(np.max(self.log_q))
    _exp_or_explain("the length q^l", "log_q", largest)
    return np.exp(self.log_q)


def residual_mean_field(
  activation: ActivationLike,
  sigma_w2: float,
  sigma_b2: float,
  *,
  alpha: float,
  depth: int,
  q0: float,
) -> ResidualMeanField:
  """Length and gradient recursions of ``h^l = h^{l−1} + α (W φ(h^{l−1}) + b)``.

  With W independent of ``h`` (the mean-field ansatz), the cross terms vanish and

      q^l = q^{l−1} + α² (σ_w² E[φ(√q^{l−1} z)²] + σ_b²),
      E‖g^{l−1}‖² = E‖g^l‖² (1 + α² σ_w² E[φ'(√q^{l−1} z)²])

  (Yang & Schoenholz 2017, §3; constant width n, weights N(0, σ_w²/n)). Unlike the
  plain MLP's χ1, the factor is at least 1, so gradients grow (polynomially for
  tanh, whose E φ'² decays as q grows; exponentially for ReLU) but never vanish.

  Lengths are carried in log space: ``log q^l = log q^{l−1} + log1p(r)`` with
  ``r = α² (σ_w² E[φ(√q z)²] + σ_b²)/q``. Past q = 4³⁰ the expectations are those
  of the limit q → ∞ (exact for the piecewise-linear family; relative error
  O(q^{-1/2}) for φ with bounded φ', e.g. softplus), so depth 10⁴ stays finite.

  Args:
    activation: a name or :class:`~vanish.activations.Activation`.
    sigma_w2, sigma_b2: weight and bias variances, ≥ 0.
    alpha: the branch scale α > 0.
    depth: number of residual layers L ≥ 1.
    q0: the input's per-unit squared length ``‖x‖²/n`` ≥ 0.

  Returns:
    A :class:`ResidualMeanField`.

  Example:
    >>> rmf = residual_mean_field("relu", 2.0, 0.0, alpha=0.1, depth=3, q0=1.0)
    >>> [round(float(v), 4) for v in rmf.q]        # ReLU: q grows by (1 + α²) per layer
    [1.0, 1.01, 1.0201, 1.0303]
    >>> [round(float(v), 4) for v in rmf.gradient_factor]
    [1.01, 1.01, 1.01]
  """
  act = _resolve(activation)
  sigma_w2 = _nonnegative("sigma_w2", sigma_w2)
  sigma_b2 = _nonnegative("sigma_b2", sigma_b2)
  alpha = _positive("alpha", alpha)
  depth = _integer("depth", depth, 1)
  q0 = _nonnegative("q0", q0)
  log_q = np.empty(depth + 1)
  factor = np.empty(depth)
  q = q0
  log_q[0] = math.log(q0) if q0 > 0 else -math.inf
  for l in range(depth):  # a scalar recursion: host-side float64
    if q < _Q_LIMIT:
      factor[l] = 1 + alpha**2 * sigma_w2 * _dphi_power(act, q, 2)
      q = q + alpha**2 * (sigma_w2 * _phi_sq(act, q) + sigma_b2)
      log_q[l + 1] = math.log(q) if q > 0 else -math.inf
    else:  # q → ∞: E[φ²]/q and E[φ'²] at their limits, the length in log space
      factor[l] = 1 + alpha**2 * sigma_w2 * _dphi_power(act, _Q_LIMIT, 2)
      ratio = sigma_w2 * _phi_sq(act, _Q_LIMIT) / _Q_LIMIT + sigma_b2 * math.exp(-log_q[l])
      log_q[l + 1] = log_q[l] + math.log1p(alpha**2 * ratio)
  growth = np.cumsum(np.log(factor[::-1]))[::-1]
  return ResidualMeanField(log_q=log_q, gradient_factor=factor, log_gradient_growth=growth)
