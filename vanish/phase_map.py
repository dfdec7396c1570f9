"""Hyperparameter phase maps: where in the (σ_w², σ_b²) plane do gradients vanish or explode?

For every cell of a grid of weight and bias variances and every member of an
ensemble of deep MLPs, the backpropagated gradient's log-growth across depth

    G = log ‖δ^1‖ − log ‖δ^L‖        (δ^l = ∂C/∂b^l, a random cotangent at the output)

is classified as vanishing (``G < log ε``), exploding (``G > −log ε``) or stable,
and the per-cell probabilities of the three outcomes are estimated with Wilson
intervals. Mean-field theory (Poole et al. 2016; Schoenholz et al. 2017, §4)
predicts ``E‖δ^l‖² = χ₁ E‖δ^{l+1}‖²``, so a typical ratio of norms is
``χ₁^{(L−1)/2}``: the finite-depth phase boundaries are the level lines
``χ₁ = ε^{±2/(L−1)}`` and the L → ∞ limit is the order-to-chaos line ``χ₁ = 1``.

Common random numbers: every cell uses the same standard-normal weights, biases,
inputs and cotangents, scaled per cell (``W √σ_w²``, ``b √σ_b²``), so that
neighbouring cells differ only through the variances, the map is smooth, and
differences between cells are not sampling noise. The scaling is applied to the
matrix–vector products (``√σ_w² (W h)``), never by materializing a scaled copy
of the weights per cell, so a 200 × 200 grid × 256 members × depth 100 is one
jitted call whose matmuls are batched over the cells of a chunk.

Example:
  >>> import jax, numpy as np
  >>> from vanish import phase_map
  >>> pm = phase_map.gradient_phase_map(
  ...   "tanh", np.array([0.25, 1.0, 16.0]), np.array([0.0, 0.5]),
  ...   width=32, depth=30, members=16, key=jax.random.key(0), epsilon=1e-2)
  >>> pm.p_vanish.shape                       # [σ_b², σ_w²]
  (2, 3)
  >>> pm.p_vanish[:, 0].tolist(), pm.p_explode[:, 2].tolist()   # ordered | chaotic
  ([1.0, 1.0], [1.0, 1.0])
  >>> mf = phase_map.mean_field_boundaries("tanh", [0.0], depth=30, epsilon=1e-2)
  >>> round(float(mf.vanish[0]), 4), float(mf.critical[0])   # χ₁ = σ_w² at σ_b² = 0
  (0.7279, 1.0)
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from numpy.typing import ArrayLike
from scipy import optimize

from vanish import _checks, _engine, chains, theory
from vanish import activations as _activations
from vanish import init as _init
from vanish.networks import MLP, Segment, _check_key
from vanish.probability import wilson_interval

__all__ = [
  "BoundaryDisagreement",
  "CommonRandomNumbers",
  "EmpiricalBoundaries",
  "MeanFieldBoundaries",
  "PhaseMap",
  "boundary_disagreement",
  "cell_log_growth",
  "common_random_numbers",
  "default_chunk_size",
  "empirical_boundary",
  "gradient_phase_map",
  "log_growth",
  "mean_field_boundaries",
  "mean_field_log_growth",
  "summarize_growth",
]

_CPU_BUDGET_BYTES = 1 << 30  # 1 GiB of per-chunk traces on the host
_TRACE_ARRAYS = 3  # the backward chain stores (h_in, pre-activation, slope) per layer


# --------------------------------------------------------------------------- validation
# Shared by vanish.scale_map and vanish.parameter_map.

VANISH, STABLE, EXPLODE = -1, 0, 1  # outcome codes of a cell or a gradient


def _integer(name: str, value: Any, minimum: int = 1) -> int:
  return _checks.integer(name, value, minimum=minimum)


def _q0(value: Any) -> float | None:
  return None if value is None else _checks.number("q0", value, minimum=0)


def _unit_interval(name: str, value: Any) -> float:
  value = _checks.number(name, value)
  if not 0 < value < 1:
    raise ValueError(f"{name} must be in (0, 1), got {value}")
  return value


def _values(name: str, values: ArrayLike, *, positive: bool = False) -> np.ndarray:
  """A non-empty float64 array of finite values ≥ 0 (> 0 if ``positive``)."""
  array = _checks.real_array(name, values)
  if array.size == 0:
    raise ValueError(f"{name} must not be empty")
  bad = ~np.isfinite(array) | ((array <= 0) if positive else (array < 0))
  if bad.any():
    bound = "> 0" if positive else ">= 0"
    raise ValueError(f"{name} must be finite and {bound}, got {array.ravel()[bad.ravel()][:5]}")
  return array


def _grid(name: str, values: ArrayLike, *, positive: bool = False) -> np.ndarray:
  """A strictly increasing 1-D grid of :func:`_values` (a scalar is a grid of one)."""
  grid = np.atleast_1d(_values(name, values, positive=positive))
  if grid.ndim != 1 or np.any(np.diff(grid) <= 0):
    raise ValueError(f"{name} must be a strictly increasing 1-D grid, got {grid.tolist()}")
  return grid


def _deterministic(activation: Any) -> _activations.Activation:
  act = _activations.get(activation)
  if act.stochastic:
    raise ValueError(f"activation must be deterministic, got the stochastic {act.name!r}")
  return act


# --------------------------------------------------------------------------- the vectorized chain


@dataclasses.dataclass(frozen=True)
class _ScaledDense:
  """``z = s_w (W h) + s_b b`` with per-cell scales ``s = √σ²`` carried in the params.

  The same chain as :class:`vanish.layers.Dense` with weights ``s_w W`` and
  biases ``s_b b``, but the standard-normal ``W`` stays shared by every cell.
  """

  activation: _activations.Activation

  def forward(self, params, h, key, precision):
    z = params["sw"] * jnp.matmul(params["w"], h, precision=precision) + params["sb"] * params["b"]
    value, slope = self.activation.value_and_derivative(z, key=key)
    return value, z, slope

  def slope_log_scale(self, slope):
    return jnp.zeros((), slope.dtype)

  def input_cotangent(self, params, slope, g, precision):
    return params["sw"] * jnp.matmul(params["w"].T, slope * g, precision=precision)

  def bias_cotangent(self, params, slope, g):
    del params
    return slope * g


class _ScaledChain(NamedTuple):
  """The (hashable, static) network spec that the engine's scans read: its segments."""

  segments: tuple[Segment, ...]


@functools.partial(jax.jit, static_argnames=("chain", "precision", "chunk_size"))
def _log_growth(chain, params, x, cotangent, noise_key, scales, *, precision, chunk_size):
  """``[cells, M, inputs]`` log-growth for ``scales = [cells, 2]`` of ``(√σ_w², √σ_b²)``."""
  prec = _engine.lax_precision(precision)
  depth = params[0]["w"].shape[1]

  def cell(scale):
    def per_input(p, xb, k, c):
      layer_scales = {
        "sw": jnp.broadcast_to(scale[0], (depth,)),
        "sb": jnp.broadcast_to(scale[1], (depth,)),
      }
      scaled = ({**p[0], **layer_scales},)
      log_norms = chains._backward_log_norms(chain, scaled, xb, k, c, prec, "bias")
      first, last = log_norms[0], log_norms[-1]
      # δ^L = 0 makes every δ^l = 0: a vanished gradient, not NaN = −inf − (−inf).
      return jnp.where(jnp.isneginf(last), -jnp.inf, first - last)

    return chains.ensemble_map(per_input, params, x, noise_key, True, cotangent)

  return lax.map(cell, scales, batch_size=chunk_size)


class CommonRandomNumbers(NamedTuple):
  """The standard-normal draws shared by every cell of a phase map.

  Attributes:
    net: ``vn.MLP([width] * (depth + 1), activation, gaussian(1.0), normal(1.0))``;
      its params scaled by ``(√σ_w², √σ_b²)`` are the cell's network.
    params: ``net.init(fold_in(key, 0), members)``: ``W ~ N(0, 1/width)``, ``b ~ N(0, 1)``.
    x: ``[inputs, width]`` inputs ``N(0, I)`` (so ``q⁰ ≈ 1``), shared by the members.
    cotangent: ``[inputs, width]`` output cotangents ``∇_a C ~ N(0, I)``.
    noise_key: the key of a stochastic activation's noise, else None.
  """

  net: MLP
  params: tuple[dict[str, jax.Array], ...]
  x: jax.Array
  cotangent: jax.Array
  noise_key: jax.Array | None


def common_random_numbers(
  activation: str | _activations.Activation,
  *,
  width: int,
  depth: int,
  members: int,
  key: jax.Array,
  inputs: int = 1,
  dtype: Any = jnp.float32,
) -> CommonRandomNumbers:
  """Samples the draws that every cell shares (see :class:`CommonRandomNumbers`).

  Example:
    >>> import jax
    >>> crn = common_random_numbers("tanh", width=8, depth=5, members=3, key=jax.random.key(0))
    >>> crn.params[0]["w"].shape, crn.x.shape
    ((3, 5, 8, 8), (1, 8))
  """
  width = _integer("width", width)
  depth = _integer("depth", depth)
  members = _integer("members", members)
  inputs = _integer("inputs", inputs)
  _check_key(key)
  act = _activations.get(activation)
  net = MLP([width] * (depth + 1), act, _init.gaussian(1.0), _init.normal(1.0))
  params = net.init(jax.random.fold_in(key, 0), members, dtype=dtype)
  normal = _init.normal(1.0)  # jax.random.normal's bits without its slow-to-compile CPU loop
  x = normal(jax.random.fold_in(key, 1), (inputs, width), dtype)
  cotangent = normal(jax.random.fold_in(key, 2), (inputs, width), dtype)
  noise_key = jax.random.fold_in(key, 3) if act.stochastic else None
  return CommonRandomNumbers(net, params, x, cotangent, noise_key)


def default_chunk_size(
  cells: int, *, width: int, depth: int, members: int, inputs: int = 1, itemsize: int = 4
) -> int:
  """Cells per vmapped chunk so that the stored traces fit the device.

  Each cell keeps ``3 · members · inputs · depth · width`` numbers alive (the
  forward trace ``(h, z, φ'(z))`` that the backward chain reads). The budget is
  1 GiB on CPU and, on an accelerator, a third of the memory left after the
  shared weights.

  Example:
    >>> default_chunk_size(40_000, width=256, depth=100, members=256) >= 1
    True
  """
  cells, width, depth = _integer("cells", cells), _integer("width", width), _integer("depth", depth)
  members, inputs = _integer("members", members), _integer("inputs", inputs)
  itemsize = _integer("itemsize", itemsize)
  per_cell = _TRACE_ARRAYS * members * inputs * depth * width * itemsize
  device = jax.devices()[0]
  budget = _CPU_BUDGET_BYTES
  if device.platform != "cpu":
    stats = device.memory_stats() or {}
    if "bytes_limit" in stats:
      weights = members * depth * width * (width + 1) * itemsize
      budget = max((stats["bytes_limit"] - weights) // 3, per_cell)
  return int(max(1, min(cells, budget // per_cell)))


def log_growth(
  activation: str | _activations.Activation,
  sigma_w2: ArrayLike,
  sigma_b2: ArrayLike,
  *,
  width: int,
  depth: int,
  members: int,
  key: jax.Array,
  inputs: int = 1,
  chunk_size: int | None = None,
  precision: str = "highest",
  dtype: Any = jnp.float32,
) -> jax.Array:
  """The gradient's log-growth ``log ‖δ^1‖ − log ‖δ^L‖`` in every cell, for every member.

  One jitted computation: ``lax.map`` over chunks of cells, each chunk ``vmap``-ed
  over cells, members and inputs, the depth a ``lax.scan`` (the backward chain of
  :func:`vanish.log_gradient_norms`, in log space). Cells share the draws of
  :func:`common_random_numbers` (``key``), scaled per cell.

  Args:
    activation: a name or an :class:`~vanish.activations.Activation`.
    sigma_w2: ``[A]`` weight variances σ_w² ≥ 0 (weights ``N(0, σ_w²/width)``).
    sigma_b2: ``[B]`` bias variances σ_b² ≥ 0 (biases ``N(0, σ_b²)``).
    width: every layer's width n (and the input's).
    depth: number of layers L.
    members: networks per cell.
    key: a typed PRNG key.
    inputs: random inputs per network.
    chunk_size: cells per vmapped chunk; default :func:`default_chunk_size`.
      Results do not depend on it.
    precision: matmul precision.
    dtype: parameter dtype (``jnp.float64`` under ``jax.enable_x64`` for checks).

  Returns:
    ``[B, A, members, inputs]``; ``−inf`` where the gradient is exactly zero.
  """
  sampling = _sampling(width, depth, members, key, inputs, chunk_size, precision, dtype)
  sigma_w2, sigma_b2 = _grid("sigma_w2", sigma_w2), _grid("sigma_b2", sigma_b2)
  return _cell_log_growth(activation, *np.meshgrid(sigma_w2, sigma_b2), sampling)  # [B, A]


def cell_log_growth(
  activation: str | _activations.Activation,
  sigma_w2: ArrayLike,
  sigma_b2: ArrayLike,
  *,
  width: int,
  depth: int,
  members: int,
  key: jax.Array,
  inputs: int = 1,
  chunk_size: int | None = None,
  precision: str = "highest",
  dtype: Any = jnp.float32,
) -> jax.Array:
  """The log-growth ``log ‖δ^1‖ − log ‖δ^L‖`` at arbitrary (σ_w², σ_b²) cells, one jitted call.

  :func:`log_growth` for cells that need not form an outer-product grid (e.g. the rays
  ``n²(σ_w², σ_b²)`` of a tanh(n·x) map, :mod:`vanish.scale_map`). Every cell uses the
  same standard-normal draws of :func:`common_random_numbers` (``key``), scaled by
  ``(√σ_w², √σ_b²)``, so a cell equal to a grid point of ``log_growth(..., key=key)``
  gives the same numbers.

  Args:
    activation: a name or an :class:`~vanish.activations.Activation`.
    sigma_w2: ``[*S]`` weight variances ≥ 0 (weights ``N(0, σ_w²/width)``).
    sigma_b2: ``[*S]`` bias variances ≥ 0 (same shape as ``sigma_w2``).
    width, depth, members, key, inputs, chunk_size, precision, dtype: as for
      :func:`log_growth`.

  Returns:
    ``[*S, members, inputs]``; ``−inf`` where the gradient is exactly zero.

  Example:
    >>> import jax
    >>> g = cell_log_growth("tanh", [[0.25, 1.0, 4.0]], [[0.0, 0.0, 0.0]], width=8, depth=10,
    ...                     members=8, key=jax.random.key(0))
    >>> g.shape, bool((g[0, 0] < g[0, 2]).all())
    ((1, 3, 8, 1), True)
  """
  sampling = _sampling(width, depth, members, key, inputs, chunk_size, precision, dtype)
  return _cell_log_growth(activation, sigma_w2, sigma_b2, sampling)


class _Sampling(NamedTuple):
  """The checked keywords of :func:`cell_log_growth`, bundled for the maps built on it."""

  width: int
  depth: int
  members: int
  key: jax.Array
  inputs: int
  chunk_size: int | None  # None: default_chunk_size
  precision: str
  dtype: Any

  def cells_per_chunk(self, cells: int) -> int:
    if self.chunk_size is not None:
      return self.chunk_size
    width, depth, members, _, inputs, _, _, dtype = self
    itemsize = jnp.dtype(dtype).itemsize
    return default_chunk_size(
      cells, width=width, depth=depth, members=members, inputs=inputs, itemsize=itemsize
    )


def _sampling(width, depth, members, key, inputs, chunk_size, precision, dtype=jnp.float32):
  """Checks the keywords that every Monte Carlo map passes to :func:`cell_log_growth`."""
  width = _integer("width", width)
  depth = _integer("depth", depth)
  members = _integer("members", members)
  inputs = _integer("inputs", inputs)
  _engine.check_precision(precision)
  if chunk_size is not None:
    chunk_size = _integer("chunk_size", chunk_size)
  _check_key(key)
  return _Sampling(width, depth, members, key, inputs, chunk_size, precision, dtype)


def _cell_log_growth(
  activation: str | _activations.Activation,
  sigma_w2: ArrayLike,
  sigma_b2: ArrayLike,
  sampling: _Sampling,
) -> jax.Array:
  """:func:`cell_log_growth` with its checked keywords bundled."""
  sigma_w2, sigma_b2 = _values("sigma_w2", sigma_w2), _values("sigma_b2", sigma_b2)
  if sigma_w2.shape != sigma_b2.shape:
    raise ValueError(
      f"sigma_w2 and sigma_b2 must have the same shape, got {sigma_w2.shape} and {sigma_b2.shape}"
    )
  width, depth, members, key, inputs, _, precision, dtype = sampling
  cells = sigma_w2.size
  chunk_size = min(sampling.cells_per_chunk(cells), cells)
  crn = common_random_numbers(
    activation, width=width, depth=depth, members=members, key=key, inputs=inputs, dtype=dtype
  )
  (segment,) = crn.net.segments  # equal widths, one layer type: a single scan
  chain = _ScaledChain(
    (dataclasses.replace(segment, layer=_ScaledDense(segment.layer.activation)),)
  )
  chunks = -(-cells // chunk_size)
  chunk_size = -(-cells // chunks)  # balanced chunks; pad the last with copies of a cell
  scales = np.stack([np.sqrt(sigma_w2).ravel(), np.sqrt(sigma_b2).ravel()], axis=1)
  scales = np.concatenate([scales, np.repeat(scales[-1:], chunks * chunk_size - cells, axis=0)])
  out = _log_growth(
    chain,
    crn.params,
    crn.x,
    crn.cotangent,
    crn.noise_key,
    jnp.asarray(scales, dtype),
    precision=precision,
    chunk_size=chunk_size,
  )
  return out[:cells].reshape(*sigma_w2.shape, members, inputs)


# --------------------------------------------------------------------------- the map


class PhaseMap(NamedTuple):
  """Per-cell outcome probabilities of the gradient's log-growth across depth.

  Every map is ``[B, A]``: rows are σ_b² (``sigma_b2[b]``), columns σ_w²
  (``sigma_w2[a]``), as an image with σ_w² on the x-axis.

  Attributes:
    sigma_w2: ``[A]`` the weight-variance grid.
    sigma_b2: ``[B]`` the bias-variance grid.
    p_vanish: ``[B, A]`` fraction of samples with ``G < log ε``.
    p_stable: ``[B, A]`` fraction with ``log ε ≤ G ≤ −log ε``.
    p_explode: ``[B, A]`` fraction with ``G > −log ε``.
    p_vanish_ci, p_stable_ci, p_explode_ci: ``[B, A, 2]`` Wilson intervals.
    mean_log_growth: ``[B, A]`` mean of the finite ``G`` (nan if none).
    std_log_growth: ``[B, A]`` their standard deviation (ddof = 1; nan below 2).
    n_finite: ``[B, A]`` how many ``G`` are finite (the samples of the two moments:
      the standard error of the mean is ``std_log_growth / √n_finite``).
    config: activation, width, depth, members, inputs, trials, epsilon,
      confidence, precision, chunk_size.
  """

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
  config: dict[str, Any]


def summarize_growth(
  growth: ArrayLike, *, epsilon: float = 1e-3, confidence: float = 0.95
) -> dict[str, np.ndarray]:
  """Outcome probabilities, Wilson intervals and moments of log-growth samples.

  Args:
    growth: ``[..., S]`` samples per cell (the last axis; ``−inf`` counts as vanished).
    epsilon: vanished if ``G < log ε``, exploded if ``G > −log ε``.
    confidence: level of the Wilson intervals, in (0, 1).

  Returns:
    A dict with the :class:`PhaseMap` fields ``p_vanish`` … ``n_finite``.
    The intervals treat the S samples as independent trials: exact for one input
    per member; with several inputs per member they are too narrow.

  Example:
    >>> s = summarize_growth(np.array([[-9.0, 0.0, 9.0, 1.0]]), epsilon=1e-3)
    >>> s["p_vanish"].tolist(), s["p_stable"].tolist(), s["p_explode"].tolist()
    ([0.25], [0.5], [0.25])
  """
  epsilon = _unit_interval("epsilon", epsilon)
  confidence = _unit_interval("confidence", confidence)
  samples = np.asarray(growth, np.float64)
  if samples.ndim < 1 or samples.shape[-1] == 0:
    raise ValueError(f"growth must have shape [..., S] with S >= 1, got {samples.shape}")
  if np.isnan(samples).any():
    raise ValueError("growth contains NaN")
  trials = samples.shape[-1]
  log_eps = math.log(epsilon)
  counts = {
    "vanish": (samples < log_eps).sum(axis=-1),
    "explode": (samples > -log_eps).sum(axis=-1),
  }
  counts["stable"] = trials - counts["vanish"] - counts["explode"]
  finite = np.isfinite(samples)
  n = finite.sum(axis=-1)
  values = np.where(finite, samples, 0.0)
  mean = np.where(n > 0, values.sum(axis=-1) / np.maximum(n, 1), np.nan)
  squares = np.where(finite, (samples - mean[..., None]) ** 2, 0.0).sum(axis=-1)
  std = np.where(n > 1, np.sqrt(squares / np.maximum(n - 1, 1)), np.nan)
  out = {}
  for name in ("vanish", "stable", "explode"):
    out[f"p_{name}"] = counts[name] / trials
    out[f"p_{name}_ci"] = wilson_interval(counts[name], trials, confidence)
  out["mean_log_growth"] = mean
  out["std_log_growth"] = std
  out["n_finite"] = n
  return out


def gradient_phase_map(
  activation: str | _activations.Activation,
  sigma_w2: ArrayLike,
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
  confidence: float = 0.95,
) -> PhaseMap:
  """Classifies every (σ_w², σ_b²) cell as vanishing / stable / exploding at depth L.

  In each cell, each of ``members`` MLPs of ``depth`` layers of ``width`` units
  (weights ``N(0, σ_w²/width)``, biases ``N(0, σ_b²)``, the activation at every
  layer) backpropagates a random cotangent from a random input; the gradient's
  log-growth ``G = log ‖δ^1‖ − log ‖δ^L‖`` across the L − 1 layer Jacobians is
  vanishing if ``G < log ε``, exploding if ``G > −log ε`` and stable otherwise
  (Schoenholz et al. 2017, §4: ``E‖δ^1‖²/E‖δ^L‖² = χ₁^{L−1}``; compare
  :func:`mean_field_boundaries`). All cells share the same standard-normal draws
  (common random numbers, see :func:`log_growth`).

  Args:
    activation: a name or an :class:`~vanish.activations.Activation`.
    sigma_w2: ``[A]`` strictly increasing weight variances ≥ 0.
    sigma_b2: ``[B]`` strictly increasing bias variances ≥ 0.
    width, depth, members, key, inputs, chunk_size, precision: as for
      :func:`log_growth`.
    epsilon: the threshold ε in (0, 1).
    confidence: level of the Wilson intervals.

  Returns:
    A :class:`PhaseMap` with ``[B, A]`` maps.

  Raises:
    ValueError: a negative, non-finite, unsorted or empty grid, ``epsilon`` outside
      (0, 1), or ``width``, ``depth``, ``members``, ``inputs`` or ``chunk_size`` < 1.
  """
  sampling = _sampling(width, depth, members, key, inputs, chunk_size, precision)
  sigma_w2, sigma_b2 = _grid("sigma_w2", sigma_w2), _grid("sigma_b2", sigma_b2)
  cells = np.meshgrid(sigma_w2, sigma_b2)  # [B, A]
  stats, config = _classify_cells(activation, *cells, sampling, epsilon, confidence)
  config["chunk_size"] = sampling.cells_per_chunk(sigma_w2.size * sigma_b2.size)
  return PhaseMap(sigma_w2=sigma_w2, sigma_b2=sigma_b2, config=config, **stats)


def _classify_cells(
  activation: str | _activations.Activation,
  sigma_w2: ArrayLike,
  sigma_b2: ArrayLike,
  sampling: _Sampling,
  epsilon: float,
  confidence: float,
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
  """The :func:`summarize_growth` of ``[*S]`` cells of (σ_w², σ_b²), and the map's config.

  The one implementation behind :func:`gradient_phase_map` (an outer-product grid)
  and :func:`vanish.scale_map.cell_phase_map` (any cells).
  """
  epsilon = _unit_interval("epsilon", epsilon)
  confidence = _unit_interval("confidence", confidence)
  growth = np.asarray(_cell_log_growth(activation, sigma_w2, sigma_b2, sampling))
  trials = sampling.members * sampling.inputs
  stats = summarize_growth(
    growth.reshape(*growth.shape[:-2], trials), epsilon=epsilon, confidence=confidence
  )
  act = _activations.get(activation)
  config = {
    "activation": act.name,
    "activation_params": dict(act.params),
    "width": sampling.width,
    "depth": sampling.depth,
    "members": sampling.members,
    "inputs": sampling.inputs,
    "trials": trials,
    "epsilon": epsilon,
    "confidence": float(confidence),
    "precision": sampling.precision,
  }
  return stats, config


# --------------------------------------------------------------------------- theory


class MeanFieldBoundaries(NamedTuple):
  """Mean-field phase boundaries at finite depth, per σ_b².

  Attributes:
    sigma_b2: ``[B]`` the bias variances.
    vanish: ``[B]`` σ_w² where ``χ₁ = ε^{2/(L−1)}`` (or, with the finite-size
      corrections, where the predicted log-growth is ``log ε``): below it the
      typical gradient shrinks by more than ε across the L − 1 layers (nan: no
      root in range).
    explode: ``[B]`` σ_w² where ``χ₁ = ε^{−2/(L−1)}`` (predicted log-growth ``−log ε``).
    critical: ``[B]`` the L → ∞ line ``χ₁ = 1`` (:func:`vanish.theory.critical_sigma_w2`;
      nan where it has none).
    chi1_vanish: the level ``ε^{2/(L−1)}``.
    chi1_explode: the level ``ε^{−2/(L−1)}``.
    depth: L.
    epsilon: ε.
    width: the width of the finite-width correction (None: infinite width).
    q0: the input length of the finite-depth correction (None: q = q* throughout).
  """

  sigma_b2: np.ndarray
  vanish: np.ndarray
  explode: np.ndarray
  critical: np.ndarray
  chi1_vanish: float
  chi1_explode: float
  depth: int
  epsilon: float
  width: int | None = None
  q0: float | None = None


def _layer_log_factor(act: _activations.Activation, sigma_w2: float, q: float, width) -> float:
  """Mean-field ``E log(‖D Wᵀu‖/‖u‖)`` for one layer at pre-activation length q.

  ``‖D Wᵀu‖² = (σ_w²/n) Σ_i φ'(z_i)² w_i`` with ``w_i ~ χ²₁`` (gradient
  independence), whose mean is χ₁ and relative variance ``(3κ − 1)/n`` with
  ``κ = E φ'⁴/(E φ'²)²``; to first order in 1/n, ``E log = log χ₁ − (3κ − 1)/(2n)``.
  """
  m2 = theory._dphi_power(act, q, 2)
  if not m2 > 0:
    return -math.inf if m2 == 0 else math.nan
  value = math.log(sigma_w2 * m2)
  if width is not None:
    kappa = theory._dphi_power(act, q, 4) / m2**2
    value -= (3 * kappa - 1) / (2 * width)
  return 0.5 * value


def _predicted_growth(act, sigma_w2: float, sigma_b2: float, depth: int, width, q0) -> float:
  """Mean-field typical log-growth ``log ‖δ^1‖ − log ‖δ^L‖`` (see :func:`mean_field_boundaries`)."""
  if q0 is None:  # every layer at the fixed point q*
    q = theory._q_star(act, sigma_w2, sigma_b2)
    if width is None:
      # theory.mean_field(...).chi1, without the correlation fixed point c* that costs
      # ~1 s per call in the chaotic phase and is not needed here.
      chi1 = theory._chi1(act, sigma_w2, q)
      if math.isnan(chi1) or chi1 <= 0:
        return -math.inf if chi1 == 0 else math.nan
      return 0.5 * (depth - 1) * math.log(chi1)
    return (depth - 1) * _layer_log_factor(act, sigma_w2, theory._limit_q(act, q), width)
  total, q = 0.0, sigma_w2 * q0 + sigma_b2  # q^1 = σ_w² ‖x‖²/n + σ_b²
  for layer in range(depth - 1):  # δ^l = D^l (W^{l+1})ᵀ δ^{l+1}, l = L−1..1, D^l at q^l
    if q >= theory._Q_LIMIT:  # lengths diverge: the rest of the layers at the limit q → ∞
      return total + (depth - 1 - layer) * _layer_log_factor(act, sigma_w2, q, width)
    term = _layer_log_factor(act, sigma_w2, q, width)
    q_next = sigma_w2 * theory._phi_sq(act, q) + sigma_b2
    if not math.isfinite(q_next):
      return math.nan
    if abs(q_next - q) <= 1e-13 * q or q_next < 1e-30:  # converged: the rest are equal
      return total + (depth - 1 - layer) * term
    total, q = total + term, q_next
  return total


def mean_field_log_growth(
  activation: str | _activations.Activation,
  sigma_w2: float,
  sigma_b2: float,
  *,
  depth: int,
  width: int | None = None,
  q0: float | None = None,
) -> float:
  """The mean-field typical log-growth ``log ‖δ^1‖ − log ‖δ^L‖`` of one cell.

  ``((L − 1)/2) log χ₁`` (Schoenholz et al. 2017, §4) when ``width`` and ``q0`` are
  None; with them, the sum over layers of ``½ [log χ₁(q^l) − (3κ(q^l) − 1)/(2n)]``
  described in :func:`mean_field_boundaries`. Compare with
  :attr:`PhaseMap.mean_log_growth`.

  Example:
    >>> round(mean_field_log_growth("tanh", 0.5, 0.0, depth=21), 4)   # 10 log 0.5
    -6.9315
    >>> round(mean_field_log_growth("tanh", 0.5, 0.0, depth=21, width=128, q0=1.0), 2)
    -7.47
  """
  act = _activations.get(activation)
  sigma_w2 = _checks.number("sigma_w2", sigma_w2, minimum=0, strict=True)
  sigma_b2 = float(_grid("sigma_b2", sigma_b2)[0])
  depth = _integer("depth", depth)
  if width is not None:
    width = _integer("width", width)
  q0 = _q0(q0)
  return _predicted_growth(act, sigma_w2, sigma_b2, depth, width, q0)


def _first_crossings(act, sigma_b2, targets, low, high, depth, width, q0) -> list[float]:
  """For each target, the smallest σ_w² in [low, high] where the predicted log-growth reaches it.

  One scan of ``log σ_w²`` in steps of log 2 brackets every first upward crossing,
  which Brent's method then refines; nan if the growth is already above the
  target at ``low``, never reaches it, or is undefined (nan) before it does.
  """

  def growth(u: float) -> float:
    return _predicted_growth(act, math.exp(u), sigma_b2, depth, width, q0)

  a, b = math.log(low), math.log(high)
  scan = np.append(np.arange(a, b, math.log(2.0)), b)
  found: list[float | None] = [None] * len(targets)
  previous = None
  for u in scan:
    value = growth(u)
    if math.isnan(value):
      break
    for j, target in enumerate(targets):
      if found[j] is None and value >= target:
        if previous is None:
          found[j] = math.nan  # the boundary lies below the range
        elif value == target:
          found[j] = math.exp(u)
        else:
          root = optimize.brentq(
            lambda v, t=target: growth(v) - t, previous, u, xtol=1e-9, rtol=1e-9
          )
          found[j] = math.exp(root)
    if all(f is not None for f in found):
      break
    previous = u
  return [math.nan if f is None else f for f in found]


def mean_field_boundaries(
  activation: str | _activations.Activation,
  sigma_b2: ArrayLike,
  *,
  depth: int,
  epsilon: float = 1e-3,
  width: int | None = None,
  q0: float | None = None,
  sigma_w2_range: tuple[float, float] = (2.0**-8, 2.0**10),
) -> MeanFieldBoundaries:
  """The mean-field prediction of :func:`gradient_phase_map`'s boundaries.

  Schoenholz et al. (2017), §4: ``E‖δ^l‖² = χ₁ E‖δ^{l+1}‖²`` with ``χ₁ = σ_w²
  E[φ'(√q* z)²]``, so across the L − 1 layer Jacobians ``E‖δ^1‖²/E‖δ^L‖² =
  χ₁^{L−1}`` and the typical ratio of norms is ``χ₁^{(L−1)/2}``. It equals ε on
  ``χ₁ = ε^{2/(L−1)}`` (vanishing boundary) and 1/ε on ``χ₁ = ε^{−2/(L−1)}``
  (exploding boundary); as L → ∞ both tend to the critical line ``χ₁ = 1``.

  With ``width`` and/or ``q0`` the prediction is corrected for a finite network
  (both corrections are first order; they are what the measured boundaries of
  :func:`gradient_phase_map` approach, see the tests):

  * finite width n: ``E log‖D Wᵀu‖ = ½ [log χ₁ − (3κ − 1)/(2n)]`` per layer, with
    ``κ = E φ'⁴/(E φ'²)²`` (the log of a sum of n weighted χ²₁ variables, gradient
    independence assumed; for ReLU this is Hanin's 5/(2n)). It moves both
    boundaries to larger σ_w², most where φ' is spread out (saturated tanh).
  * finite depth: the lengths ``q^1 = σ_w² q0 + σ_b²``, ``q^{l+1} = σ_w² E φ(√q^l z)²
    + σ_b²`` start from the input's ``q0 = ‖x‖²/n`` instead of q*, and every layer
    uses its own ``χ₁(q^l)`` (:func:`gradient_phase_map` draws ``x ~ N(0, I)``:
    ``q0 = 1``).

  Each boundary is the smallest σ_w² in ``sigma_w2_range`` where the predicted
  log-growth reaches ``log ε`` (or ``−log ε``): bracketed by a scan of ``log σ_w²``
  in steps of log 2, refined by Brent's method. χ₁ is increasing in σ_w² for the
  activations tested (tanh, erf, sigmoid; checked in the tests), so the plain
  boundaries are unique. The finite-width correction is first order: trust it
  where ``(3κ − 1)/(2n) ≪ 1`` (at width 16, saturated tanh at σ_w² ~ 10³ makes it
  O(1) and the predicted growth falls again).

  Args:
    activation: a name or an :class:`~vanish.activations.Activation`.
    sigma_b2: ``[B]`` bias variances ≥ 0.
    depth: the number of layers L ≥ 2.
    epsilon: ε in (0, 1).
    width: the layer width n for the finite-width correction; None: n = ∞.
    q0: the input length ``‖x‖²/n`` for the finite-depth transient; None: q = q*
      in every layer.
    sigma_w2_range: ``(low, high)``, 0 < low < high: where to look for roots.

  Returns:
    A :class:`MeanFieldBoundaries`; nan where no root lies in the range.

  Example:
    >>> b = mean_field_boundaries("tanh", [0.0, 0.05], depth=100, epsilon=1e-3)
    >>> np.round(b.critical, 4).tolist()
    [1.0, 1.761]
    >>> bool(np.all(b.vanish < b.critical) and np.all(b.critical < b.explode))
    True
    >>> finite = mean_field_boundaries("tanh", [0.05], depth=100, width=256, q0=1.0)
    >>> bool(finite.explode[0] > b.explode[1])      # finite width: explodes later
    True
  """
  sigma_b2 = _grid("sigma_b2", sigma_b2)
  depth = _integer("depth", depth, minimum=2)
  epsilon = _unit_interval("epsilon", epsilon)
  if width is not None:
    width = _integer("width", width)
  q0 = _q0(q0)
  low, high = (float(v) for v in sigma_w2_range)
  if not (0 < low < high and math.isfinite(high)):
    raise ValueError(
      f"sigma_w2_range must be (low, high) with 0 < low < high, got {sigma_w2_range}"
    )
  act = _activations.get(activation)
  chi1_vanish = epsilon ** (2.0 / (depth - 1))
  chi1_explode = 1.0 / chi1_vanish
  vanish, explode, critical = (np.full(sigma_b2.size, np.nan) for _ in range(3))
  log_eps = math.log(epsilon)
  for i, sb2 in enumerate(sigma_b2):
    vanish[i], explode[i] = _first_crossings(
      act, sb2, (log_eps, -log_eps), low, high, depth, width, q0
    )
    try:
      critical[i] = theory.critical_sigma_w2(act, sb2)
    except ValueError:
      critical[i] = math.nan
  return MeanFieldBoundaries(
    sigma_b2, vanish, explode, critical, chi1_vanish, chi1_explode, depth, epsilon, width, q0
  )


# --------------------------------------------------------------------------- comparison


class EmpiricalBoundaries(NamedTuple):
  """Where the measured outcome probabilities cross ``level``, per σ_b².

  Attributes:
    sigma_b2: ``[B]`` the bias variances.
    sigma_w2: ``[A]`` the weight-variance grid the map was measured on.
    vanish: ``[B]`` the σ_w² where ``P(vanish)`` first falls through ``level``
      (nan if it is below ``level`` at the first grid point or never falls through).
    explode: ``[B]`` the σ_w² where ``P(explode)`` first rises through ``level``.
    level: the crossing level.
  """

  sigma_b2: np.ndarray
  sigma_w2: np.ndarray
  vanish: np.ndarray
  explode: np.ndarray
  level: float


def _first_crossing(grid: np.ndarray, p: np.ndarray, level: float) -> float:
  """The x where rising ``p`` first reaches ``level``, by linear interpolation; nan if none."""
  if p[0] >= level:
    return math.nan
  above = np.flatnonzero(p >= level)
  if above.size == 0:
    return math.nan
  i = above[0]
  t = (level - p[i - 1]) / (p[i] - p[i - 1])
  return float(grid[i - 1] + t * (grid[i] - grid[i - 1]))


def empirical_boundary(phase_map: PhaseMap, level: float = 0.5) -> EmpiricalBoundaries:
  """The measured phase boundaries: where P(vanish) and P(explode) cross ``level``.

  Along each σ_b² row, the σ_w² at which ``P(vanish)`` falls through ``level``
  and the σ_w² at which ``P(explode)`` rises through it, interpolated linearly
  between grid points (at ``level = 0.5``: where the median log-growth crosses
  ``log ε`` and ``−log ε``, the quantities that mean-field theory predicts).

  Args:
    phase_map: a :class:`PhaseMap`.
    level: in (0, 1).

  Returns:
    An :class:`EmpiricalBoundaries`.

  Example:
    >>> grid = np.array([1.0, 2.0, 3.0])
    >>> pm = PhaseMap(grid, np.array([0.0]), np.array([[1.0, 0.5, 0.0]]), None,
    ...               np.array([[0.0, 0.2, 0.8]]), None, None, None, None, None, None, {})
    >>> b = empirical_boundary(pm)
    >>> b.vanish.tolist(), b.explode.tolist()
    ([2.0], [2.5])
  """
  level = _unit_interval("level", level)
  grid = _grid("sigma_w2", phase_map.sigma_w2)
  p_vanish = np.asarray(phase_map.p_vanish, np.float64)
  p_explode = np.asarray(phase_map.p_explode, np.float64)
  vanish = np.array([_first_crossing(grid, -row, -level) for row in p_vanish])
  explode = np.array([_first_crossing(grid, row, level) for row in p_explode])
  return EmpiricalBoundaries(np.asarray(phase_map.sigma_b2), grid, vanish, explode, level)


def _grid_position(values: np.ndarray, grid: np.ndarray) -> np.ndarray:
  """Fractional grid index of each value (linear, extrapolated by the end spacings)."""
  index = np.arange(grid.size, dtype=np.float64)
  if grid.size == 1:
    return np.where(np.isfinite(values), 0.0, np.nan)
  pos = np.interp(values, grid, index)
  low = (values - grid[0]) / (grid[1] - grid[0])
  high = grid.size - 1 + (values - grid[-1]) / (grid[-1] - grid[-2])
  pos = np.where(values < grid[0], low, np.where(values > grid[-1], high, pos))
  return np.where(np.isfinite(values), pos, np.nan)


class BoundaryDisagreement(NamedTuple):
  """Empirical minus mean-field boundaries (positive: measured at larger σ_w²).

  Attributes:
    sigma_b2: ``[B]``.
    vanish_sigma_w2: ``[B]`` empirical − predicted vanishing boundary, in σ_w².
    explode_sigma_w2: ``[B]`` the same for the exploding boundary.
    vanish_cells: ``[B]`` the vanishing difference in grid cells (fractional
      grid index; nan where either boundary is nan).
    explode_cells: ``[B]`` the exploding difference in grid cells.
    critical_between: ``[B]`` whether the critical line lies strictly between the
      empirical vanishing and exploding boundaries.
  """

  sigma_b2: np.ndarray
  vanish_sigma_w2: np.ndarray
  explode_sigma_w2: np.ndarray
  vanish_cells: np.ndarray
  explode_cells: np.ndarray
  critical_between: np.ndarray


def boundary_disagreement(
  empirical: EmpiricalBoundaries, predicted: MeanFieldBoundaries
) -> BoundaryDisagreement:
  """How far the measured boundaries lie from the mean-field ones, in σ_w² and grid cells.

  Example:
    >>> emp = EmpiricalBoundaries(np.array([0.0]), np.array([0.5, 1.0, 1.5]),
    ...                           np.array([0.6]), np.array([1.45]), 0.5)
    >>> mf = MeanFieldBoundaries(np.array([0.0]), np.array([0.55]), np.array([1.5]),
    ...                          np.array([1.0]), 0.5, 2.0, 10, 1e-3)
    >>> d = boundary_disagreement(emp, mf)
    >>> np.round(d.vanish_cells, 3).tolist(), np.round(d.explode_sigma_w2, 3).tolist()
    ([0.1], [-0.05])
    >>> d.critical_between.tolist()
    [True]
  """
  if not np.array_equal(np.asarray(empirical.sigma_b2), np.asarray(predicted.sigma_b2)):
    raise ValueError("empirical and predicted boundaries are for different sigma_b2 grids")
  grid = np.asarray(empirical.sigma_w2, np.float64)

  def cells(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return _grid_position(np.asarray(a), grid) - _grid_position(np.asarray(b), grid)

  with np.errstate(invalid="ignore"):
    between = (empirical.vanish < predicted.critical) & (predicted.critical < empirical.explode)
  return BoundaryDisagreement(
    sigma_b2=np.asarray(empirical.sigma_b2),
    vanish_sigma_w2=empirical.vanish - predicted.vanish,
    explode_sigma_w2=empirical.explode - predicted.explode,
    vanish_cells=cells(empirical.vanish, predicted.vanish),
    explode_cells=cells(empirical.explode, predicted.explode),
    critical_between=between,
  )
