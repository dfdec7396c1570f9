"""The probabilistic model of vanishing gradients (docs/seed_analysis.md §4 (i)).

The gradient reaching an early layer is a product of per-layer factors, so
``log |g|`` is a *sum* of per-layer log-factors. This module turns ensembles of
such sums — from :func:`vanish.scalar_chain` (the one-neuron chain) or
:func:`vanish.log_gradient_norms` (full-width layers) — into the quantities the
seed analysis asks for:

* :func:`summarize`: per depth, the moments and quantiles of ``log |g|``, its
  histogram and a smooth (binned Gaussian-kernel) density, and the probabilities
  ``P(|g| < ε)`` (vanished) and ``P(|g| > 1/ε)`` (exploded) with Wilson
  confidence intervals.
* :func:`scalar_chain_log_factors` and :func:`clt_prediction`: the central-limit
  approximation ``log |g_K| ≈ N(Σ μ_l, Σ s_l²)`` from the per-layer log-factor
  moments (independent layers), its prediction of ``P(vanish)``, and how far the
  observed variance departs from it (the correlations between layers).
* :func:`joint_histogram` and :func:`inside_fraction`: the joint law of a layer's
  pre-activation or weight and the resulting product, and the fraction of layers
  whose pre-activation lies in ``[−t, t]`` (for the seed's tanh(2x) claim with
  ``t = t1(2)``).

All statistics are computed in float64 on the host from samples; sampling itself
is the engine's single jitted, vmapped call.

Example:
  >>> import jax, jax.numpy as jnp, vanish as vn
  >>> net = vn.MLP([1] * 51, "sigmoid", vn.init.normal(1.0), vn.init.normal(1.0))
  >>> log_g, _ = vn.scalar_chain(net, net.init(jax.random.key(0), 4096), jnp.ones(1))
  >>> summary = vn.probability.summarize(log_g, epsilon=1e-3)
  >>> summary.p_vanish.shape, bool(summary.p_vanish[-1] > 0.99)
  ((50,), True)
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import NamedTuple

import jax
import numpy as np
from scipy import special, stats

from vanish import _checks, _engine
from vanish.chains import check_call, check_one_neuron, ensemble_map, one_neuron_factors
from vanish.networks import Network

__all__ = [
  "CLTPrediction",
  "LogGradientSummary",
  "clt_prediction",
  "inside_fraction",
  "joint_histogram",
  "scalar_chain_log_factors",
  "summarize",
  "wilson_interval",
]


class LogGradientSummary(NamedTuple):
  """Per-depth distribution of ``log |g|`` over S samples (natural logs).

  Attributes:
    depth: ``[L]`` 1-based depths (or layer indices).
    samples: S, the number of samples per depth.
    mean, std, skewness: ``[L]`` moments of the finite values.
    quantile_levels: ``[Q]``; quantiles: ``[L, Q]``.
    epsilon: the threshold ε.
    p_vanish, p_vanish_ci: ``P(|g| < ε)``, ``[L]`` and ``[L, 2]`` (Wilson).
    p_explode, p_explode_ci: ``P(|g| > 1/ε)``, likewise.
    p_zero: ``[L]`` the fraction exactly zero (``log |g| = −inf``).
    bin_edges: ``[B + 1]``; histogram: ``[L, B]`` densities (integrate to the
      finite fraction).
    density_grid: ``[G]``; density: ``[L, G]`` the smooth estimate.
    confidence: the intervals' confidence level.
  """

  depth: np.ndarray
  samples: int
  mean: np.ndarray
  std: np.ndarray
  skewness: np.ndarray
  quantile_levels: np.ndarray
  quantiles: np.ndarray
  epsilon: float
  p_vanish: np.ndarray
  p_vanish_ci: np.ndarray
  p_explode: np.ndarray
  p_explode_ci: np.ndarray
  p_zero: np.ndarray
  bin_edges: np.ndarray
  histogram: np.ndarray
  density_grid: np.ndarray
  density: np.ndarray
  confidence: float


def wilson_interval(successes: np.ndarray, trials: int, confidence: float = 0.95) -> np.ndarray:
  """Wilson score interval for a binomial proportion (Wilson 1927).

  Args:
    successes: counts, any shape.
    trials: the number of trials n ≥ 1.
    confidence: in (0, 1).

  Returns:
    ``[..., 2]`` lower and upper bounds.

  Example:
    >>> [round(float(v), 4) for v in wilson_interval(np.array(0), 100)]
    [0.0, 0.037]
  """
  trials_array = np.asarray(trials)
  whole = trials_array.dtype.kind in "iu" or (
    trials_array.dtype.kind == "f" and np.all(np.mod(trials_array, 1) == 0)
  )
  if not whole or not np.all(trials_array >= 1):
    raise ValueError(f"trials must be an integer >= 1 (a count), got {trials!r}")
  successes = np.asarray(successes, np.float64)
  if np.any(successes < 0) or np.any(successes > trials_array):
    raise ValueError(f"successes must lie in [0, trials], got {successes} for trials={trials}")
  z = special.ndtri(0.5 + _check_level("confidence", confidence) / 2)
  p = successes / trials
  denominator = 1 + z**2 / trials
  center = (p + z**2 / (2 * trials)) / denominator
  half = z / denominator * np.sqrt(p * (1 - p) / trials + z**2 / (4 * trials**2))
  # exact at the edges: no successes -> lower bound 0; all successes -> upper bound 1
  lower = np.where(p == 0, 0.0, np.maximum(center - half, 0))
  upper = np.where(p == 1, 1.0, np.minimum(center + half, 1))
  return np.stack([lower, upper], axis=-1)


def _as_samples(log_g: jax.Array | np.ndarray) -> np.ndarray:
  """``[..., L] -> [S, L]`` float64, every leading axis a sample axis."""
  array = _checks.real_array("log_g", log_g)
  if array.ndim < 2:
    raise ValueError(
      f"log_g must have shape [..., L] with at least one sample axis, got {array.shape}"
    )
  if array.size == 0:
    raise ValueError(f"log_g must hold at least one sample and one depth, got {array.shape}")
  if np.isnan(array).any():
    raise ValueError("log_g contains NaN")
  return array.reshape(-1, array.shape[-1])


def _check_level(name: str, value: float) -> float:
  value = float(value)
  if not 0 < value < 1:
    raise ValueError(f"{name} must be in (0, 1), got {value}")
  return value


def _binned_density(values: np.ndarray, edges: np.ndarray, bandwidth: float) -> np.ndarray:
  """Gaussian-kernel density on the bin centers, by convolving a fine histogram."""
  counts, _ = np.histogram(values, bins=edges)
  width = edges[1] - edges[0]
  half = max(1, int(math.ceil(4 * bandwidth / width)))
  offsets = np.arange(-half, half + 1) * width
  kernel = np.exp(-0.5 * (offsets / bandwidth) ** 2)
  kernel /= kernel.sum()
  smooth = np.convolve(counts, kernel, mode="full")[half : half + counts.size]
  return smooth / (values.size * width) if values.size else smooth


def summarize(
  log_g: jax.Array | np.ndarray,
  *,
  epsilon: float = 1e-3,
  quantile_levels: Sequence[float] = (0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99),
  bins: int = 80,
  value_range: tuple[float, float] | None = None,
  confidence: float = 0.95,
) -> LogGradientSummary:
  """Distribution of ``log |g|`` at every depth.

  Args:
    log_g: ``[..., L]`` natural logs of ``|g|`` (``−inf`` for exact zeros), e.g.
      ``vn.scalar_chain(...)[0]`` or ``vn.log_gradient_norms(...)``; every leading
      axis (members, inputs) counts as a sample. The Wilson intervals take the samples
      as independent: inputs of one member share its weights and are not, so for
      honest intervals pass one input per member (``log_g[:, 0]``).
    epsilon: vanishing threshold ε in (0, 1): vanished if ``|g| < ε``, exploded if
      ``|g| > 1/ε``.
    quantile_levels: levels in (0, 1).
    bins: histogram bins (the smooth density uses 4× finer ones).
    value_range: histogram range; default the finite data's range.
    confidence: level of the Wilson intervals.

  Returns:
    A :class:`LogGradientSummary`.
  """
  samples = _as_samples(log_g)
  epsilon = _check_level("epsilon", epsilon)
  confidence = _check_level("confidence", confidence)
  levels = np.asarray([_check_level("quantile_levels", q) for q in quantile_levels])
  if int(bins) != bins or bins < 2:
    raise ValueError(f"bins must be an integer >= 2, got {bins}")
  count, depth = samples.shape
  finite = np.isfinite(samples)
  masked = np.where(finite, samples, np.nan)
  with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
    warnings.simplefilter("ignore", RuntimeWarning)  # an all-zero depth has no finite moments
    mean = np.nanmean(masked, axis=0)
    std = np.nanstd(masked, axis=0, ddof=1) if count > 1 else np.zeros(depth)
    centered = masked - mean
    third = np.nanmean(centered**3, axis=0)
    second = np.nanmean(centered**2, axis=0)
    skewness = np.where(second > 0, third / np.where(second > 0, second, 1) ** 1.5, np.nan)
  # −inf (exact zero) sorts below everything: include it in the quantiles.
  quantiles = np.quantile(samples, levels, axis=0, method="inverted_cdf").T  # no −inf lerp
  log_eps = math.log(epsilon)
  vanished = (samples < log_eps).sum(axis=0)
  exploded = (samples > -log_eps).sum(axis=0)
  if value_range is None:
    values = samples[finite]
    low, high = (values.min(), values.max()) if values.size else (-1.0, 1.0)
    pad = 1e-9 + 1e-6 * (high - low)
    value_range = (low - pad, high + pad)
  edges = np.linspace(value_range[0], value_range[1], int(bins) + 1)
  fine_edges = np.linspace(value_range[0], value_range[1], 4 * int(bins) + 1)
  histogram = np.empty((depth, int(bins)))
  density = np.empty((depth, 4 * int(bins)))
  for l in range(depth):  # host-side statistics over L ≤ 10⁴ columns
    column = samples[finite[:, l], l]
    hist, _ = np.histogram(column, bins=edges)
    histogram[l] = hist / (count * (edges[1] - edges[0]))
    spread = np.std(column) if column.size > 1 else 0.0
    bandwidth = max(
      1.06 * spread * max(column.size, 1) ** (-0.2), 2 * (fine_edges[1] - fine_edges[0])
    )
    density[l] = _binned_density(column, fine_edges, bandwidth) * column.size / count
  return LogGradientSummary(
    depth=np.arange(1, depth + 1),
    samples=count,
    mean=mean,
    std=std,
    skewness=skewness,
    quantile_levels=levels,
    quantiles=quantiles,
    epsilon=epsilon,
    p_vanish=vanished / count,
    p_vanish_ci=wilson_interval(vanished, count, confidence),
    p_explode=exploded / count,
    p_explode_ci=wilson_interval(exploded, count, confidence),
    p_zero=np.isneginf(samples).sum(axis=0) / count,
    bin_edges=edges,
    histogram=histogram,
    density_grid=0.5 * (fine_edges[1:] + fine_edges[:-1]),
    density=density,
    confidence=confidence,
  )


def scalar_chain_log_factors(
  net: Network, params, x: jax.Array, *, key: jax.Array | None = None, precision: str = "highest"
) -> tuple[jax.Array, jax.Array, jax.Array]:
  """Per-layer factors of the one-neuron chain, ``log |f_j|`` with ``g_K = Π_{j≤K} f_j``.

  ``f_1 = σ'(z_1)`` and ``f_j = w_j σ'(z_j)`` for j ≥ 2 (Nielsen ch. 5).

  Args:
    net: an :class:`~vanish.MLP` with every width 1.
    params, x, key, precision: as for :func:`vanish.scalar_chain`.

  Returns:
    ``(log_abs_factor, preactivation, weight)``, each ``[M, (batch,) L]``.
  """
  check_one_neuron(net)
  x, batched = check_call(net, params, x, key, precision)
  return _scalar_factors(net, params, x, key, precision=precision, batched=batched)


@jax.jit(static_argnames=("net", "precision", "batched"))
def _scalar_factors(net, params, x, key, *, precision, batched):
  prec = _engine.lax_precision(precision)

  def per_input(p, xb, k):
    log_abs, _, pre, weights = one_neuron_factors(net, p, xb, k, prec)
    return log_abs, pre, weights

  return ensemble_map(per_input, params, x, key, batched)


class CLTPrediction(NamedTuple):
  """The central-limit (independent-layer) model of ``log |g_K| = Σ_{l≤K} log |f_l|``.

  Attributes:
    factor_mean, factor_var: ``[L]`` per-layer moments of ``log |f_l|``.
    mean: ``[L]`` ``Σ_{l≤K} μ_l``, the predicted mean of ``log |g_K|``.
    var_independent: ``[L]`` ``Σ_{l≤K} s_l²``, the variance if layers were independent.
    var_observed: ``[L]`` the sample variance of the partial sums.
    correlation_excess: ``[L]`` ``var_observed / var_independent − 1``: twice the
      summed inter-layer covariances relative to the independent part.
    p_vanish: ``[L]`` the Gaussian prediction ``Φ((log ε − mean)/√var_independent)``.
    epsilon: the threshold.
  """

  factor_mean: np.ndarray
  factor_var: np.ndarray
  mean: np.ndarray
  var_independent: np.ndarray
  var_observed: np.ndarray
  correlation_excess: np.ndarray
  p_vanish: np.ndarray
  epsilon: float


def clt_prediction(log_factors: jax.Array | np.ndarray, *, epsilon: float = 1e-3) -> CLTPrediction:
  """Fits the CLT model to per-layer log-factors and predicts ``P(|g_K| < ε)``.

  Args:
    log_factors: ``[..., L]`` samples of ``log |f_l|`` (all finite), e.g. from
      :func:`scalar_chain_log_factors`.
    epsilon: the vanishing threshold.

  Returns:
    A :class:`CLTPrediction`.

  Example:
    >>> rng = np.random.default_rng(0)
    >>> fit = clt_prediction(rng.normal(-1.0, 0.5, (20000, 30)))
    >>> round(float(fit.mean[-1]), 1), round(float(fit.var_independent[-1]), 1)
    (-30.0, 7.5)
  """
  samples = _as_samples(log_factors)
  epsilon = _check_level("epsilon", epsilon)
  if not np.isfinite(samples).all():
    raise ValueError("log_factors must be finite (exact zeros have no CLT); drop them first")
  factor_mean = samples.mean(axis=0)
  factor_var = samples.var(axis=0, ddof=1)
  mean = np.cumsum(factor_mean)
  var_independent = np.cumsum(factor_var)
  var_observed = np.cumsum(samples, axis=1).var(axis=0, ddof=1)
  # A zero-variance prefix (e.g. ReLU's first factor σ'(z_1) = 1) is deterministic.
  spread = np.sqrt(var_independent)
  gap = math.log(epsilon) - mean
  with np.errstate(divide="ignore", invalid="ignore"):
    p_vanish = np.where(spread > 0, stats.norm.cdf(gap / spread), (gap > 0).astype(float))
    correlation_excess = np.where(var_independent > 0, var_observed / var_independent - 1, 0.0)
  return CLTPrediction(
    factor_mean=factor_mean,
    factor_var=factor_var,
    mean=mean,
    var_independent=var_independent,
    var_observed=var_observed,
    correlation_excess=correlation_excess,
    p_vanish=p_vanish,
    epsilon=epsilon,
  )


def joint_histogram(
  values: jax.Array | np.ndarray,
  log_g: jax.Array | np.ndarray,
  *,
  bins: int | tuple[int, int] = 60,
  value_range: tuple[tuple[float, float], tuple[float, float]] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """2-D density of a layer quantity (pre-activation, weight) against ``log |g|``.

  Args:
    values: ``[...]`` e.g. one layer's pre-activations over the ensemble.
    log_g: same shape, the resulting ``log |g|``; non-finite pairs are dropped.
    bins: bins per axis.
    value_range: ``((x_lo, x_hi), (g_lo, g_hi))``; default the data's range.

  Returns:
    ``(density [Bx, Bg], x_edges, g_edges)``, normalized over the finite pairs.
  """
  x, g = _checks.real_array("values", values), _checks.real_array("log_g", log_g)
  if x.shape != g.shape:  # pairs are matched by position: a transposed array would mismatch
    raise ValueError(f"values and log_g must have the same shape, got {x.shape} and {g.shape}")
  x, g = x.ravel(), g.ravel()
  keep = np.isfinite(x) & np.isfinite(g)
  if not keep.any():
    raise ValueError("no finite (value, log_g) pairs")
  density, x_edges, g_edges = np.histogram2d(
    x[keep], g[keep], bins=bins, range=value_range, density=True
  )
  return density, x_edges, g_edges


def inside_fraction(preactivations: jax.Array | np.ndarray, half_width: float) -> np.ndarray:
  """Fraction of layers whose pre-activation lies in ``[−t, t]``, per sample.

  The seed analysis argues that for tanh(2x) about half or more of the
  pre-activations must lie inside ``[−t1, t1]`` (``t1 = 0.658…``,
  :func:`vanish.theory.scaled_tanh_vanish_threshold`) to keep the product from
  vanishing.

  Args:
    preactivations: ``[..., L]``.
    half_width: t ≥ 0.

  Returns:
    ``[...]`` fractions in [0, 1].
  """
  half_width = _checks.number("half_width", half_width, minimum=0)
  z = _checks.real_array("preactivations", preactivations)
  return (np.abs(z) <= half_width).mean(axis=-1)
