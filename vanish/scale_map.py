"""Hyperparameter maps along rescaling rays: tanh(n·x) over (n, σ_w²), sigmoid over weight scale.

A tanh(n·x) layer is a tanh(x) layer with weights and biases multiplied by n
(``docs/seed_analysis.md`` §4, rescaling): ``tanh(n(W h + b)) = tanh((nW) h + nb)``. The
backpropagated ``δ^l`` of the two networks differ by the same factor n at every
layer, so the gradient's log-growth ``G = log ‖δ^1‖ − log ‖δ^L‖`` — and with it
the whole vanishing / stable / exploding classification of
:mod:`vanish.phase_map` — of a tanh(n·x) net at ``(σ_w², σ_b²)`` *equals* that of
a tanh net at ``(n²σ_w², n²σ_b²)``. A map over (n, σ_w²) at fixed σ_b² is
therefore the (σ_w², σ_b²) phase map read along the rays ``n² (σ_w², σ_b²)``,
and a sigmoid map over the weight scale s (weights ``N(0, s²/width)``) is the
phase map at ``σ_w² = s²``. Both are computed here by one jitted call over
arbitrary cells (:func:`cell_log_growth`), sharing the common random numbers
of :func:`vanish.phase_map.common_random_numbers`, so that with the same key
the n-map equals the tanh map at the scaled variances up to float rounding.

The mean-field overlay (Poole et al. 2016; Schoenholz et al. 2017, §4) is χ₁ at
every cell, vectorized over cells (:func:`mean_field_chi1`, equal to
:func:`vanish.theory.mean_field` to ~1e-10): its level lines χ₁ = 1 (order to
chaos) and ``χ₁ = ε^{±2/(L−1)}`` (finite-depth vanishing / exploding boundaries)
and the predicted phase of each cell (:func:`mean_field_phase`).

For the one-neuron chain of Nielsen ch. 5, :func:`one_neuron_log_gradient`
sweeps weight and bias scales with common random numbers, and
:func:`scaled_tanh_chain_log_gradient` sweeps n for tanh(n·x).

Example:
  >>> import jax, numpy as np
  >>> from vanish import scale_map
  >>> m = scale_map.scaled_tanh_map(np.array([0.5, 1.0, 2.0]), np.array([1.0]), sigma_b2=0.0,
  ...                               width=8, depth=10, members=8, key=jax.random.key(0),
  ...                               epsilon=1e-2)
  >>> m.p_vanish.shape, m.outcome.tolist()      # [σ_w², n]: n·σ_w = 1/2 vanishes
  ((1, 3), [[-1, 0, 0]])
  >>> m.sigma_w2.tolist()                        # the tanh cells n²σ_w²
  [[0.25, 1.0, 4.0]]
  >>> q, chi1 = scale_map.mean_field_chi1("tanh", np.array([0.5, 4.0]), np.array([0.0, 0.0]))
  >>> chi1.round(6).tolist()[0]                 # q* = 0, χ₁ = σ_w² in the ordered phase
  0.5
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from numpy.typing import ArrayLike

from vanish import _engine, chains, phase_map, theory
from vanish import activations as _activations
from vanish import init as _init
from vanish.networks import MLP, _check_key
from vanish.phase_map import (
  EXPLODE,
  STABLE,
  VANISH,
  _deterministic,
  _grid,
  _integer,
  _sampling,
  _unit_interval,
  _values,
  cell_log_growth,  # re-exported: the per-cell engine of every map
)

__all__ = [
  "CHAIN_BLOCK",
  "CellMap",
  "cell_log_growth",
  "cell_phase_map",
  "independent_chains",
  "mean_field_chi1",
  "mean_field_phase",
  "one_neuron_log_gradient",
  "outcome_classes",
  "scaled_tanh_chain_log_gradient",
  "scaled_tanh_map",
  "weight_scale_map",
]

# Chains per call of independent_chains: its results depend on it (float rounding only).
CHAIN_BLOCK = 4096


# --------------------------------------------------------------------------- Monte Carlo maps


def outcome_classes(p_vanish: ArrayLike, p_stable: ArrayLike, p_explode: ArrayLike) -> np.ndarray:
  """The most probable outcome of each cell: −1 vanishing, 0 stable, +1 exploding.

  Ties go to stable, then vanishing.

  Example:
    >>> outcome_classes([0.6, 0.2, 0.4], [0.3, 0.3, 0.4], [0.1, 0.5, 0.2]).tolist()
    [-1, 1, 0]
  """
  stacked = np.stack(np.broadcast_arrays(p_stable, p_vanish, p_explode), axis=0).astype(float)
  if np.any((stacked < 0) | (stacked > 1)):
    raise ValueError("p_vanish, p_stable and p_explode must be probabilities in [0, 1]")
  codes = np.array([STABLE, VANISH, EXPLODE], np.int8)
  return codes[np.argmax(stacked, axis=0)]


class CellMap(NamedTuple):
  """Outcome probabilities on a 2-D map whose cells are (σ_w², σ_b²) pairs.

  Every map is ``[Y, X]``: rows ``y[i]``, columns ``x[j]`` (an image with x on the
  horizontal axis).

  Attributes:
    x: ``[X]`` the horizontal grid (e.g. n, or the weight scale s).
    y: ``[Y]`` the vertical grid (e.g. σ_w², or σ_b²).
    x_name, y_name: what x and y are.
    sigma_w2: ``[Y, X]`` each cell's effective weight variance (tanh(x)-net units).
    sigma_b2: ``[Y, X]`` each cell's effective bias variance.
    p_vanish, p_stable, p_explode: ``[Y, X]`` outcome fractions at depth L.
    p_vanish_ci, p_stable_ci, p_explode_ci: ``[Y, X, 2]`` Wilson intervals.
    mean_log_growth, std_log_growth: ``[Y, X]`` moments of the finite log-growths.
    n_finite: ``[Y, X]`` how many log-growths are finite (the moments' sample size).
    outcome: ``[Y, X]`` int8 most probable outcome (:func:`outcome_classes`).
    config: activation, width, depth, members, inputs, trials, epsilon, precision, …
  """

  x: np.ndarray
  y: np.ndarray
  x_name: str
  y_name: str
  sigma_w2: np.ndarray
  sigma_b2: np.ndarray
  p_vanish: np.ndarray
  p_stable: np.ndarray
  p_explode: np.ndarray
  p_vanish_ci: np.ndarray
  p_stable_ci: np.ndarray
  p_explode_ci: np.ndarray
  mean_log_growth: np.ndarray
  std_log_growth: np.ndarray
  n_finite: np.ndarray
  outcome: np.ndarray
  config: dict[str, Any]


def cell_phase_map(
  activation: str | _activations.Activation,
  sigma_w2: ArrayLike,
  sigma_b2: ArrayLike,
  *,
  x: ArrayLike,
  y: ArrayLike,
  x_name: str,
  y_name: str,
  width: int,
  depth: int,
  members: int,
  key: jax.Array,
  epsilon: float = 1e-3,
  inputs: int = 1,
  chunk_size: int | None = None,
  precision: str = "highest",
  confidence: float = 0.95,
) -> CellMap:
  """Classifies ``[Y, X]`` cells of (σ_w², σ_b²) as vanishing / stable / exploding at depth L.

  The classification of :func:`vanish.phase_map.gradient_phase_map` (``G < log ε``
  vanishing, ``G > −log ε`` exploding) on arbitrary cells, one jitted call
  (:func:`cell_log_growth`).

  Args:
    activation: a name or an :class:`~vanish.activations.Activation`.
    sigma_w2, sigma_b2: ``[Y, X]`` the cells' variances.
    x, y: ``[X]`` and ``[Y]`` the axes the cells are labelled by.
    x_name, y_name: their names.
    width, depth, members, key, inputs, chunk_size, precision: as for :func:`cell_log_growth`.
    epsilon: ε in (0, 1).
    confidence: level of the Wilson intervals.

  Returns:
    A :class:`CellMap`.
  """
  sampling = _sampling(width, depth, members, key, inputs, chunk_size, precision)
  return _cell_map(
    activation, sigma_w2, sigma_b2, x, y, x_name, y_name, sampling, epsilon, confidence
  )


def _cell_map(
  activation, sigma_w2, sigma_b2, x, y, x_name, y_name, sampling, epsilon, confidence=0.95
) -> CellMap:
  """:func:`cell_phase_map` with the checked keywords of :func:`cell_log_growth` bundled."""
  sigma_w2, sigma_b2 = _values("sigma_w2", sigma_w2), _values("sigma_b2", sigma_b2)
  x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
  if sigma_w2.shape != (y.size, x.size) or sigma_b2.shape != sigma_w2.shape:
    raise ValueError(
      f"sigma_w2 and sigma_b2 must have shape [Y, X] = {(y.size, x.size)}, "
      f"got {sigma_w2.shape} and {sigma_b2.shape}"
    )
  stats, config = phase_map._classify_cells(
    activation, sigma_w2, sigma_b2, sampling, epsilon, confidence
  )
  outcome = outcome_classes(stats["p_vanish"], stats["p_stable"], stats["p_explode"])
  return CellMap(x, y, x_name, y_name, sigma_w2, sigma_b2, outcome=outcome, config=config, **stats)


def scaled_tanh_map(
  n: ArrayLike,
  sigma_w2: ArrayLike,
  *,
  sigma_b2: float = 0.0,
  width: int,
  depth: int,
  members: int,
  key: jax.Array,
  epsilon: float = 1e-3,
  inputs: int = 1,
  chunk_size: int | None = None,
  precision: str = "highest",
) -> CellMap:
  """The (n, σ_w²) map of tanh(n·x) networks at fixed σ_b², via the rescaling identity.

  A tanh(n·x) MLP with weights ``N(0, σ_w²/width)`` and biases ``N(0, σ_b²)`` has
  the log-growth of a tanh MLP at ``(n²σ_w², n²σ_b²)`` (``docs/seed_analysis.md`` §4; the δ's
  of the two differ by the factor n at every layer), so each cell is computed as
  that tanh cell, all in one jitted call with common random numbers.

  Args:
    n: ``[X]`` strictly increasing slopes n > 0.
    sigma_w2: ``[Y]`` strictly increasing weight variances > 0.
    sigma_b2: the fixed bias variance ≥ 0.
    width, depth, members, key, epsilon, inputs, chunk_size, precision: as for
      :func:`cell_phase_map`.

  Returns:
    A :class:`CellMap` with ``x = n``, ``y = σ_w²`` and effective tanh variances
    ``n²σ_w²``, ``n²σ_b²``.
  """
  sampling = _sampling(width, depth, members, key, inputs, chunk_size, precision)
  n = _grid("n", n, positive=True)
  sigma_w2 = _grid("sigma_w2", sigma_w2, positive=True)
  sigma_b2 = _values("sigma_b2", sigma_b2)
  if sigma_b2.size != 1:
    raise ValueError(f"sigma_b2 must be one bias variance >= 0, got {sigma_b2.tolist()}")
  sigma_b2 = float(sigma_b2.item())
  n2 = (n**2)[None, :]
  cells = n2 * sigma_w2[:, None], np.broadcast_to(n2 * sigma_b2, (sigma_w2.size, n.size))
  return _cell_map("tanh", *cells, n, sigma_w2, "n", "sigma_w2", sampling, epsilon)


def weight_scale_map(
  activation: str | _activations.Activation,
  weight_scale: ArrayLike,
  sigma_b2: ArrayLike,
  *,
  width: int,
  depth: int,
  members: int,
  key: jax.Array,
  epsilon: float = 1e-3,
  inputs: int = 1,
  chunk_size: int | None = None,
  precision: str = "highest",
) -> CellMap:
  """The (weight scale s, σ_b²) map: weights ``N(0, s²/width)``, i.e. σ_w² = s².

  Nielsen's "large weights" question for wide nets (ch. 5): does scaling the
  weights up rescue a sigmoid network from vanishing gradients?

  Args:
    activation: a name or an :class:`~vanish.activations.Activation`.
    weight_scale: ``[X]`` strictly increasing scales s > 0.
    sigma_b2: ``[Y]`` strictly increasing bias variances ≥ 0.
    width, depth, members, key, epsilon, inputs, chunk_size, precision: as for
      :func:`cell_phase_map`.

  Returns:
    A :class:`CellMap` with ``x = s``, ``y = σ_b²``.
  """
  sampling = _sampling(width, depth, members, key, inputs, chunk_size, precision)
  scale = _grid("weight_scale", weight_scale, positive=True)
  sigma_b2 = _grid("sigma_b2", sigma_b2)
  shape = (sigma_b2.size, scale.size)
  cells = np.broadcast_to((scale**2)[None, :], shape), np.broadcast_to(sigma_b2[:, None], shape)
  return _cell_map(
    activation, *cells, scale, sigma_b2, "weight_scale", "sigma_b2", sampling, epsilon
  )


# --------------------------------------------------------------------------- mean field, vectorized

_Z_MAX = 10.0  # P(|z| > 10) = 1.5e-23
_GL_X, _GL_W = np.polynomial.legendre.leggauss(12)
_PANELS = 24
_CHUNK, _LARGE_CHUNK = 64, 4096  # entries per compiled quadrature call


def _t_edges() -> np.ndarray:
  """Panel edges on [−1, 1] (24 equal panels), scaled by t_max per cell."""
  return np.linspace(-1.0, 1.0, _PANELS + 1)


@jax.jit(static_argnames=("act", "derivative", "act_scale", "kinks"))
def _gauss_expectation_jit(q, *, act, derivative, act_scale, kinks):
  q = jnp.maximum(q, 1e-300)[:, None]
  a = jnp.minimum(1.0, act_scale / jnp.sqrt(q))
  t_max = jnp.arcsinh(_Z_MAX / a)
  breaks = t_max * jnp.asarray(_t_edges(), q.dtype)[None, :]
  if kinks:  # φ or φ' jumps at u = kink: a panel edge there, at t = arcsinh(kink/(a√q))
    kink_t = jnp.arcsinh(jnp.asarray(kinks, q.dtype)[None, :] / (a * jnp.sqrt(q)))
    breaks = jnp.sort(jnp.concatenate([breaks, jnp.clip(kink_t, -t_max, t_max)], axis=1), axis=1)
  half = 0.5 * (breaks[:, 1:] - breaks[:, :-1])
  mid = 0.5 * (breaks[:, 1:] + breaks[:, :-1])
  gl_x, gl_w = (jnp.asarray(v, q.dtype) for v in (_GL_X, _GL_W))
  t = (mid[:, :, None] + half[:, :, None] * gl_x[None, None, :]).reshape(q.shape[0], -1)
  weights = (half[:, :, None] * gl_w[None, None, :]).reshape(q.shape[0], -1)
  z = a * jnp.sinh(t)
  jacobian = a * jnp.cosh(t)
  density = jnp.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)
  values = (act.derivative if derivative else act.fn)(jnp.sqrt(q) * z)
  return jnp.sum(weights * jacobian * density * values * values, axis=-1)


def _gauss_expectation(act, derivative: bool, act_scale: float, q: np.ndarray) -> np.ndarray:
  """E_z[f(√q z)²] with f = φ' (``derivative``) or φ, z ~ N(0, 1), for each entry of ``q``.

  The substitution z = a·sinh(t), a = min(1, act_scale/√q), packs nodes where the
  integrand varies on the activation's scale (|z| ≲ a) while still covering the
  Gaussian out to |z| = 10; composite Gauss–Legendre in t (24 panels × 12 nodes,
  split at the activation's kinks, e.g. hard-tanh's u = ±1). Float64, in calls of a
  fixed number of entries (64, or 4096 past 4096 entries) padded with q = 1, so that
  every grid compiles the same shape (each shape compiles in ~1 s on a CPU); every
  entry's value does not depend on the call it is in.
  """
  q = np.asarray(q, np.float64)
  size = q.size
  chunk = _CHUNK if size <= _LARGE_CHUNK else _LARGE_CHUNK
  padded = np.concatenate([q, np.ones(chunk * max(1, -(-size // chunk)) - size)])
  kinks = tuple(float(k) for k in theory._resolution(act).kinks)
  with jax.enable_x64(True):
    out = [
      _gauss_expectation_jit(
        jnp.asarray(padded[start : start + chunk]),
        act=act,
        derivative=derivative,
        act_scale=act_scale,
        kinks=kinks,
      )
      for start in range(0, padded.size, chunk)
    ]
    return np.concatenate([np.asarray(part, np.float64) for part in out])[:size]


def _feature_scale(act: _activations.Activation) -> float:
  params = dict(act.params)
  if act.name == "scaled_tanh":
    return 0.25 / params["n"]
  if act.name == "lecun_tanh":
    return 0.25 / _activations.LECUN_SLOPE
  return 0.25


def mean_field_chi1(
  activation: str | _activations.Activation, sigma_w2: ArrayLike, sigma_b2: ArrayLike
) -> tuple[np.ndarray, np.ndarray]:
  """Mean-field fixed point q* and χ₁ = σ_w² E[φ'(√q* z)²] at every cell, vectorized.

  Poole et al. (2016), Schoenholz et al. (2017) §2: q* is the stable fixed point
  of ``q ↦ σ_w² E[φ(√q z)²] + σ_b²``, found as :func:`vanish.theory.mean_field`
  does (first downward crossing of the gap on the grid q = 4^k, k = −30..30, then
  bisection to machine precision; q* = 0 when the map has the fixed point 0 and
  contracts next to it), but for all cells at once. Agrees with
  :func:`vanish.theory.mean_field` to ~1e-10 (tests). The piecewise-linear family
  (linear, ReLU, leaky ReLU) is in closed form, as there: ``q* = σ_b²/(1 − χ₁)``
  for ``χ₁ = σ_w²(1 + s²)/2 < 1``, else inf (nan for the identity map at χ₁ = 1,
  σ_b² = 0), and χ₁ is reported however q* ends (it does not depend on q).

  Args:
    activation: a deterministic activation; other than the piecewise-linear family,
      one with a bounded ``E φ²`` on the grid.
    sigma_w2: ``[*S]`` weight variances > 0.
    sigma_b2: ``[*S]`` bias variances ≥ 0 (broadcast against ``sigma_w2``).

  Returns:
    ``(q_star, chi1)``, each ``[*S]``; q* = inf where it diverges (nan for the identity
    map at χ₁ = 1), with χ₁ then its limit q → ∞ (σ_w²/2 for softplus).

  Example:
    >>> q, chi1 = mean_field_chi1("tanh", [1.5], [0.05])
    >>> round(float(q[0]), 6), round(float(chi1[0]), 6)
    (0.418037, 0.938636)
  """
  act = _deterministic(activation)
  sigma_w2 = _values("sigma_w2", sigma_w2, positive=True)
  sigma_b2 = _values("sigma_b2", sigma_b2)
  sigma_w2, sigma_b2 = np.broadcast_arrays(sigma_w2, sigma_b2)
  slope = theory._leaky_slope(act)
  if slope is not None:  # E φ² = (1 + s²) q/2: the quadrature's q ~ 1e9 gaps are rounding
    chi1 = sigma_w2 * 0.5 * (1 + slope**2)
    with np.errstate(divide="ignore", invalid="ignore"):
      q_star = np.where(chi1 < 1, sigma_b2 / (1 - chi1), np.inf)
    return np.where((chi1 == 1) & (sigma_b2 == 0), np.nan, q_star), chi1
  scale = _feature_scale(act)

  w2, b2 = sigma_w2.ravel(), sigma_b2.ravel()

  def gap(q):
    return w2 * _gauss_expectation(act, False, scale, q) + b2 - q

  at_zero = w2 * float(act.fn(jnp.zeros(())) ** 2) + b2
  lo, hi = np.zeros(w2.shape), np.full(w2.shape, np.inf)
  zero = np.zeros(w2.shape, bool)
  for k in range(-30, 31):  # bracket the first downward crossing on q = 4^k
    q = 4.0**k
    crossed = np.isinf(hi) & (gap(np.full(w2.shape, q)) < 0)
    if k == -30:
      zero = crossed & (at_zero == 0)
    hi = np.where(crossed, q, hi)
    lo = np.where(np.isinf(hi), q, lo)
    if np.isfinite(hi).all():
      break
  found = np.isfinite(hi)
  solve = found & ~zero
  for _ in range(100):  # bisection, geometric once lo > 0, to a relative width of 1e-13
    if not (solve & (hi - lo > 1e-13 * hi)).any():
      break
    b = np.where(solve, hi, 1.0)
    mid = np.where(lo > 0, np.sqrt(lo * b), 0.5 * b)
    above = gap(mid) >= 0
    lo = np.where(solve & above, mid, lo)
    hi = np.where(solve & ~above, mid, hi)
  q_star = np.where(zero, 0.0, np.where(found, 0.5 * (lo + hi), np.inf))
  ok = np.isfinite(q_star)
  slope2 = _gauss_expectation(act, True, scale, np.where(ok, q_star, 1.0))
  if not ok.all():  # q* = ∞: E φ'² at its limit q → ∞, as theory.mean_field reports it
    slope2 = np.where(ok, slope2, theory._dphi_power(act, theory._limit_q(act, math.inf), 2))
  q_star, slope2 = q_star.reshape(sigma_w2.shape), slope2.reshape(sigma_w2.shape)
  return q_star, sigma_w2 * slope2


def mean_field_phase(chi1: ArrayLike, *, depth: int, epsilon: float = 1e-3) -> np.ndarray:
  """The mean-field outcome at depth L: −1 if ``((L−1)/2) log χ₁ < log ε``, +1 if ``> −log ε``.

  Schoenholz et al. (2017) §4: the typical ratio ``‖δ^1‖/‖δ^L‖ = χ₁^{(L−1)/2}``
  (the prediction :func:`vanish.phase_map.mean_field_boundaries` draws as lines).
  χ₁ must not be NaN (:func:`mean_field_chi1`'s value where q* diverges): ValueError.

  Example:
    >>> mean_field_phase([0.5, 1.0, 2.0], depth=21, epsilon=1e-3).tolist()
    [-1, 0, 1]
  """
  depth = _integer("depth", depth, minimum=2)
  epsilon = _unit_interval("epsilon", epsilon)
  chi1 = np.asarray(chi1, np.float64)
  if np.isnan(chi1).any():  # NaN compares False both ways: it would read as "stable"
    raise ValueError(
      "chi1 contains NaN (no mean-field prediction, e.g. where q* diverges); "
      "mask those cells before classifying"
    )
  with np.errstate(divide="ignore", invalid="ignore"):
    growth = 0.5 * (depth - 1) * np.log(chi1)
  log_eps = math.log(epsilon)
  return np.where(growth < log_eps, VANISH, np.where(growth > -log_eps, EXPLODE, STABLE)).astype(
    np.int8
  )


# --------------------------------------------------------------------------- one-neuron chains


@jax.jit(static_argnames=("net", "precision"))
def _one_neuron_sweep(net, params, x, scales, *, precision):
  prec = _engine.lax_precision(precision)

  def log_gradient(p, xb):
    log_abs, _, _, _ = chains.one_neuron_factors(net, p, xb, None, prec)
    return jnp.cumsum(log_abs)

  def cell(scale):
    scaled = ({"w": params[0]["w"] * scale[0], "b": params[0]["b"] * scale[1]},)
    per_member = jax.vmap(log_gradient, in_axes=(None, 0))  # over a member's inputs
    return jax.vmap(per_member)(scaled, x)

  return jax.vmap(cell)(scales)


def one_neuron_log_gradient(
  activation: str | _activations.Activation,
  weight_scale: ArrayLike,
  bias_scale: ArrayLike,
  *,
  depth: int,
  members: int,
  key: jax.Array,
  inputs: int = 1,
  input_std: float = 1.0,
  precision: str = "highest",
  dtype: Any = jnp.float32,
) -> jax.Array:
  """``log |g_K|`` of the one-neuron chain for every (weight, bias) scale, common random numbers.

  Nielsen ch. 5: ``z_j = w_j a_{j−1} + b_j``, ``g_K = σ'(z_1) Π_{j=2..K} w_j σ'(z_j)``
  (:func:`vanish.scalar_chain`), with ``w_j = s_w·u_j``, ``b_j = s_b·v_j`` and the
  same standard normals u, v and inputs ``x ~ N(0, input_std²)`` in every cell:
  one jitted call, vmapped over cells, members and inputs. Every member has its
  own weights, biases and inputs, so members are independent draws of the chain
  (inputs included) and can be averaged with :func:`vanish.probability.summarize`.

  Args:
    activation: a deterministic activation.
    weight_scale: ``[S]`` weight scales s_w ≥ 0.
    bias_scale: ``[S]`` bias scales s_b ≥ 0.
    depth: chain length L.
    members: chains per cell.
    key: a typed PRNG key.
    inputs: inputs per chain.
    input_std: the inputs' standard deviation.
    precision: as for :func:`vanish.scalar_chain`.
    dtype: parameter dtype (``jnp.float64`` under ``jax.enable_x64`` for checks).

  Returns:
    ``[S, members, inputs, depth]``: ``log |g_K|`` for K = 1..depth.

  Example:
    >>> import jax
    >>> g = one_neuron_log_gradient("tanh", [1.0, 2.0], [1.0, 2.0], depth=5, members=4,
    ...                             key=jax.random.key(0))
    >>> g.shape                                  # [scales, members, inputs, depth]
    (2, 4, 1, 5)
  """
  act = _deterministic(activation)
  weight_scale = np.atleast_1d(_values("weight_scale", weight_scale))
  bias_scale = np.atleast_1d(_values("bias_scale", bias_scale))
  if weight_scale.ndim != 1 or weight_scale.shape != bias_scale.shape:
    raise ValueError(
      f"weight_scale and bias_scale must be 1-D of equal length, got {weight_scale.shape} "
      f"and {bias_scale.shape}"
    )
  depth = _integer("depth", depth)
  members = _integer("members", members)
  inputs = _integer("inputs", inputs)
  input_std = float(_values("input_std", input_std))
  _engine.check_precision(precision)
  _check_key(key)
  net = MLP([1] * (depth + 1), act, _init.normal(1.0), _init.normal(1.0))
  params = net.init(_init.fold_in(key, 0), members, dtype=dtype)
  # jax.random's bits by init's straight-line threefry: vmapped over chains by
  # independent_chains, jax.random compiles to a threefry loop that LLVM spends seconds on
  x = input_std * _init.normal(1.0)(_init.fold_in(key, 1), (members, inputs, 1), dtype)
  scales = jnp.asarray(np.stack([weight_scale, bias_scale], axis=1), dtype)
  return _one_neuron_sweep(net, params, x, scales, precision=precision)


def scaled_tanh_chain_log_gradient(
  n: ArrayLike,
  *,
  depth: int,
  members: int,
  key: jax.Array,
  weight_std: float = 1.0,
  bias_std: float = 1.0,
  inputs: int = 1,
  input_std: float = 1.0,
  precision: str = "highest",
  dtype: Any = jnp.float32,
) -> jax.Array:
  """``log |g_K|`` of tanh(n·x) one-neuron chains for every n, by rescaling.

  The tanh(n·x) chain with ``w ~ N(0, weight_std²)``, ``b ~ N(0, bias_std²)`` has
  the factors of the tanh chain with ``(n·w, n·b)`` except the first,
  ``n tanh'(n z_1)`` instead of ``tanh'(n z_1)``: ``log |g_K| = log n + log |g'_K|``.

  Args:
    n: ``[S]`` slopes n > 0.
    depth, members, key, inputs, input_std, precision, dtype: as for
      :func:`one_neuron_log_gradient`.
    weight_std, bias_std: the scales of the weights and biases at n = 1.

  Returns:
    ``[S, members, inputs, depth]``.

  Example:
    >>> import jax
    >>> g = scaled_tanh_chain_log_gradient([1.0, 2.0], depth=5, members=4, key=jax.random.key(0))
    >>> g_tanh = one_neuron_log_gradient("tanh", [1.0, 2.0], [1.0, 2.0], depth=5, members=4,
    ...                                  key=jax.random.key(0))
    >>> bool(jax.numpy.allclose(g[1], g_tanh[1] + jax.numpy.log(2.0)))   # the rescaling
    True
  """
  n = np.atleast_1d(_values("n", n, positive=True))
  weight_std = float(_values("weight_std", weight_std))
  bias_std = float(_values("bias_std", bias_std))
  log_g = one_neuron_log_gradient(
    "tanh",
    n * weight_std,
    n * bias_std,
    depth=depth,
    members=members,
    key=key,
    inputs=inputs,
    input_std=input_std,
    precision=precision,
    dtype=dtype,
  )
  return log_g + jnp.asarray(np.log(n), log_g.dtype)[:, None, None, None]


def independent_chains(
  sample: Callable[[jax.Array], jax.Array],
  *,
  chains: int,
  key: jax.Array,
  block: int = CHAIN_BLOCK,
) -> np.ndarray:
  """``chains`` independent one-neuron chains, chain m drawn by ``sample(fold_in(key, m))``.

  Every chain draws its own weights, biases and input from its own key, so the chains are
  iid (as Wilson intervals assume) rather than members sharing a few inputs. ``sample`` is
  vmapped over the chains' keys and jitted, and every call computes exactly ``block``
  chains — ``[j·block, (j+1)·block)``, the last call's padding dropped — as
  :mod:`vanish.streaming` does for networks. XLA's float rounding depends on the batch
  size (on the CPU, chain 0 of a tanh chain of depth 20 differs by 1.1e-5 in log|g|
  between calls of 3 and of 64 chains), so fixed blocks make chain m's values depend on
  ``key``, ``m`` and ``block`` only: the same bits for any ``chains`` (a subset of a
  larger run is that run's first columns). Memory: the result (filled in place, in
  ``sample``'s dtype) plus one block on the host; one block on the device.

  Args:
    sample: a key ↦ ``[S, 1, 1, K]`` function, e.g. :func:`one_neuron_log_gradient` or
      :func:`scaled_tanh_chain_log_gradient` with ``members=1`` and ``inputs=1``.
    chains: the number of chains.
    key: a typed PRNG key.
    block: chains per vmapped call (record it with the results: another block changes
      the float rounding only).

  Returns:
    ``[S, chains, K]`` in ``sample``'s dtype (float32 unless x64 is enabled): chain m's
    ``sample(...)[:, 0, 0]`` in column m.

  Example:
    >>> import jax
    >>> def sample(k):
    ...   return one_neuron_log_gradient("tanh", [1.0, 2.0], [1.0, 1.0], depth=3, members=1, key=k)
    >>> g = independent_chains(sample, chains=5, key=jax.random.key(0), block=2)
    >>> g.shape
    (2, 5, 3)
    >>> more = independent_chains(sample, chains=9, key=jax.random.key(0), block=2)
    >>> bool((more[:, :5] == g).all())  # the same bits, whatever the number of chains
    True
  """
  chains, block = _integer("chains", chains), _integer("block", block)
  _check_key(key)

  def one(m):
    return sample(_init.fold_in(key, m))[:, 0, 0]  # jax.random.fold_in's bits

  draw = jax.jit(jax.vmap(one))
  out = None
  for start in range(0, chains, block):
    part = np.asarray(draw(np.arange(start, start + block, dtype=np.uint32)))  # [block, S, K]
    if out is None:
      out = np.empty((part.shape[1], chains, part.shape[2]), part.dtype)
    stop = min(start + block, chains)
    out[:, start:stop] = np.moveaxis(part[: stop - start], 0, 1)
  return out
