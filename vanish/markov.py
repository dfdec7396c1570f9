"""The Markov model of gradient dynamics: the "one-way street" (docs/seed_analysis.md §4).

The seed analysis models training as a two-state Markov chain between a healthy
gradient ``[g ≉ 0]`` (state 0) and a vanished one ``[g ≈ 0]`` (state 1),

    P = [[1 − p, p    ],      p = P(≉ → ≈): the rate of vanishing,
         [q,     1 − q]],     q = P(≈ → ≉): the escape probability,

and claims a *one-way street*: once the gradient has vanished no gradient brings
it back, q ≈ 0, so ``[g ≈ 0]`` is absorbing and the time to absorption from
``[g ≉ 0]`` is geometric, ``P(τ > k) = (1 − p)^k`` with mean ``1/p``.

This module estimates that chain from ensembles of trajectories and tests the
claim:

* :func:`states` classifies ``log g`` (e.g. a logged per-layer learning speed,
  :func:`log_first_layer_speed`) as vanished where it lies below a threshold;
* :func:`transition_counts` and :func:`estimate`: the maximum-likelihood
  transition matrix ``n_ij / n_i`` of a time-homogeneous chain (Anderson &
  Goodman 1957), with a binomial confidence interval per entry (Wilson 1927, or
  the exact Clopper & Pearson 1934), the initial distribution, the mean
  absorption time ``1/p`` and the stationary share of ``[g ≈ 0]``;
* :func:`first_passage`: the empirical first-passage (absorption) times into
  ``[g ≈ 0]`` of the members that start healthy, right-censored at the end of the
  run, their survival curve with pointwise intervals, the geometric model's MLE of
  ``p`` from them (events / exposure) and its predicted survival;
* :func:`one_way_street_test`: the exact binomial test of ``H0: q ≤ q0`` against
  ``q > q0`` and the one-sided Clopper–Pearson upper bound on ``q``;
* :func:`homogeneity_test`: the likelihood-ratio test (Anderson & Goodman 1957)
  that the transition probabilities are the same in every time window — the
  assumption under which the absorption time is geometric;
* :func:`simulate`: synthetic chains with a known matrix (for checks and power).

Members are independent chains; transitions of all members and steps are pooled.
Statistics are computed in float64 on the host; only :func:`simulate` runs in JAX.

Example:
  >>> import jax, jax.numpy as jnp
  >>> from vanish import markov
  >>> truth = jnp.array([[0.95, 0.05], [0.0, 1.0]])       # a one-way street
  >>> s = markov.simulate(jax.random.key(0), truth, jnp.array([1.0, 0.0]), members=200, steps=100)
  >>> est = markov.estimate(s)
  >>> int(est.counts[1, 0]), bool(abs(est.matrix[0, 1] - 0.05) < 0.01)
  (0, True)
  >>> markov.one_way_street_test(s, q0=0.01).rejected   # q = 0 is not rejected
  False
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike
from scipy import special, stats

from vanish import _checks
from vanish.networks import _check_key

__all__ = [
  "METHODS",
  "FirstPassage",
  "HomogeneityTest",
  "OneWayStreetTest",
  "TransitionEstimate",
  "binomial_interval",
  "estimate",
  "first_passage",
  "homogeneity_test",
  "log_first_layer_speed",
  "one_way_street_test",
  "simulate",
  "states",
  "transition_counts",
]

METHODS = ("wilson", "clopper_pearson")
HEALTHY, VANISHED = 0, 1  # state indices: [g ≉ 0], [g ≈ 0]


class TransitionEstimate(NamedTuple):
  """The estimated two-state chain (state 0 = ``[g ≉ 0]``, 1 = ``[g ≈ 0]``).

  Attributes:
    counts: ``[2, 2]`` int, ``counts[i, j]`` = number of steps ``i → j``.
    matrix: ``[2, 2]`` MLE ``counts[i, j] / counts[i].sum()`` (NaN for a row never left).
    intervals: ``[2, 2, 2]`` lower and upper bounds of each entry.
    initial_counts: ``[2]`` members starting in each state.
    initial: ``[2]`` the initial distribution.
    absorption_time: ``1/p``, the mean first-passage time into ``[g ≈ 0]`` (steps).
    absorption_time_interval: ``[2]`` from the interval of ``p``: ``[1/p_hi, 1/p_lo]``.
    stationary_vanished: ``p / (p + q)``, the long-run share of ``[g ≈ 0]``.
    confidence: the confidence level of the intervals.
    method: ``"wilson"`` or ``"clopper_pearson"``.
  """

  counts: np.ndarray
  matrix: np.ndarray
  intervals: np.ndarray
  initial_counts: np.ndarray
  initial: np.ndarray
  absorption_time: float
  absorption_time_interval: np.ndarray
  stationary_vanished: float
  confidence: float
  method: str


class FirstPassage(NamedTuple):
  """First-passage (absorption) times into ``[g ≈ 0]`` of the members starting healthy.

  Attributes:
    time: ``[M0]`` int: the first step t ≥ 1 with ``[g ≈ 0]``, or ``T − 1`` if censored.
    observed: ``[M0]`` bool: False where the member never vanished (right-censored).
    survival: ``[T]``: the fraction with ``τ > k``, ``k = 0..T−1`` (exact here: every
      member is censored at the same step ``T − 1``, so Kaplan–Meier reduces to it).
    survival_interval: ``[T, 2]`` pointwise intervals of ``survival``.
    rate: the geometric model's MLE ``p̂ = events / exposure`` (exposure = Σ time).
    rate_interval: ``[2]`` the interval of ``rate``.
    geometric_survival: ``[T]`` the prediction ``(1 − p̂)^k``.
  """

  time: np.ndarray
  observed: np.ndarray
  survival: np.ndarray
  survival_interval: np.ndarray
  rate: float
  rate_interval: np.ndarray
  geometric_survival: np.ndarray


class OneWayStreetTest(NamedTuple):
  """The exact binomial test of the one-way street ``H0: q ≤ q0``.

  Attributes:
    escapes: steps ``[g ≈ 0] → [g ≉ 0]``.
    trials: steps leaving ``[g ≈ 0]`` to anywhere (``counts[1].sum()``).
    escape_probability: ``q̂ = escapes / trials`` (NaN without trials).
    upper_bound: the one-sided Clopper–Pearson upper confidence bound on q.
    q0: the tolerated escape probability.
    p_value: ``P(Binomial(trials, q0) ≥ escapes)``.
    rejected: ``p_value < 1 − confidence``: the data refute the one-way street.
    confidence: the level.
  """

  escapes: int
  trials: int
  escape_probability: float
  upper_bound: float
  q0: float
  p_value: float
  rejected: bool
  confidence: float


class HomogeneityTest(NamedTuple):
  """The likelihood-ratio test that the chain is the same in every time window.

  Attributes:
    statistic: ``G = 2 Σ_w Σ_ij n_wij log(p̂_wij / p̂_ij)``.
    dof: degrees of freedom, ``Σ_i (windows visiting i − 1)·(destinations ever reached
      from i − 1)``: one per extra window for a row with both transitions observed, none for
      a row with a structural zero (e.g. the absorbing row of a one-way street).
    p_value: ``P(χ²_dof ≥ G)`` (1 when dof = 0).
    window_counts: ``[W, 2, 2]`` the transition counts of each window.
  """

  statistic: float
  dof: int
  p_value: float
  window_counts: np.ndarray


# --------------------------------------------------------------------------- checks


def _check_confidence(confidence: float) -> float:
  if isinstance(confidence, bool) or not (0 < float(confidence) < 1):
    raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")
  return float(confidence)


def _check_method(method: str) -> str:
  if method not in METHODS:
    raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
  return method


def _check_states(states: ArrayLike) -> np.ndarray:
  """Bool ``[M, T]`` (a single trajectory ``[T]`` becomes ``[1, T]``)."""
  s = np.asarray(states)
  if s.dtype.kind not in "biuf":
    raise TypeError(f"states must be a boolean or 0/1 array, got dtype {s.dtype}")
  if s.ndim == 1:
    s = s[None]
  if s.ndim != 2 or s.shape[0] < 1 or s.shape[1] < 1:
    raise ValueError(f"states must have shape [M, T] or [T] with M, T >= 1, got {s.shape}")
  if s.dtype != np.bool_:
    if not np.isin(s, (0, 1)).all():
      raise ValueError("states must be boolean (True = [g ≈ 0]) or 0/1")
    s = s.astype(bool)
  return s


# --------------------------------------------------------------------------- intervals


def binomial_interval(
  successes: ArrayLike, trials: ArrayLike, confidence: float = 0.95, method: str = "wilson"
) -> np.ndarray:
  """Two-sided confidence interval of a binomial proportion ``k / n``.

  Wilson's score interval (Wilson 1927) or the exact Clopper–Pearson interval
  (Clopper & Pearson 1934: Beta quantiles; coverage ≥ the level). Zero trials
  give ``[NaN, NaN]``.

  Args:
    successes: counts ``k``, any shape.
    trials: counts ``n ≥ k``, broadcastable with ``successes``.
    confidence: in (0, 1).
    method: ``"wilson"`` or ``"clopper_pearson"``.

  Returns:
    ``[..., 2]``: lower and upper bounds.

  Example:
    >>> from vanish import markov
    >>> markov.binomial_interval(0, 100, method="clopper_pearson").round(4).tolist()
    [0.0, 0.0362]
    >>> markov.binomial_interval(5, 10).round(4).tolist()
    [0.2366, 0.7634]
  """
  confidence, method = _check_confidence(confidence), _check_method(method)
  k = _checks.real_array("successes", successes)
  k, n = np.broadcast_arrays(k, _checks.real_array("trials", trials))
  for name, value in (("successes", k), ("trials", n)):
    if not (np.isfinite(value) & (value == np.round(value))).all():
      raise ValueError(f"{name} must be whole numbers, got {value!r}")
  if (k < 0).any() or (k > n).any():
    raise ValueError("successes must lie in [0, trials]")
  alpha = 1 - confidence
  with np.errstate(divide="ignore", invalid="ignore"):
    if method == "clopper_pearson":
      lower = np.where(k > 0, special.betaincinv(k, n - k + 1, alpha / 2), 0.0)
      upper = np.where(k < n, special.betaincinv(k + 1, n - k, 1 - alpha / 2), 1.0)
    else:
      z = special.ndtri(1 - alpha / 2)
      p = k / n
      denominator = 1 + z**2 / n
      center = (p + z**2 / (2 * n)) / denominator
      half = z / denominator * np.sqrt(p * (1 - p) / n + z**2 / (4 * n**2))
      lower = np.where(k == 0, 0.0, np.maximum(center - half, 0.0))
      upper = np.where(k == n, 1.0, np.minimum(center + half, 1.0))
  empty = n == 0
  return np.stack([np.where(empty, np.nan, lower), np.where(empty, np.nan, upper)], axis=-1)


def _upper_bound(k: int, n: int, confidence: float) -> float:
  """One-sided Clopper–Pearson upper bound: ``P(Bin(n, u) ≤ k) = 1 − confidence``."""
  if n == 0:
    return math.nan
  return 1.0 if k == n else float(special.betaincinv(k + 1, n - k, confidence))


# --------------------------------------------------------------------------- states


def log_first_layer_speed(bias_speed: ArrayLike, *, relative_to_last: bool = False) -> np.ndarray:
  """``log g`` from logged learning speeds: the first layer's, or its ratio to the last's.

  Args:
    bias_speed: ``[M, T, L]`` Nielsen's speeds ``‖∂C/∂b^l‖`` (e.g.
      :attr:`vanish.training.Log.bias_speed` with ``log="step"``).
    relative_to_last: return ``log(‖∂C/∂b^1‖ / ‖∂C/∂b^L‖)``: the vanishing of the
      backpropagated product itself, insensitive to the cost having been fitted.

  Returns:
    ``[M, T]`` float64; ``−inf`` where the first layer's speed is exactly 0 (also
    when the last layer's is 0 too), ``+inf`` where only the last layer's is.

  Example:
    >>> import numpy as np
    >>> from vanish import markov
    >>> speeds = np.array([[[1e-4, 1e-2], [0.0, 1e-1]]])          # M=1, T=2, L=2
    >>> markov.log_first_layer_speed(speeds, relative_to_last=True).round(3).tolist()
    [[-4.605, -inf]]
  """
  speeds = np.asarray(bias_speed, np.float64)
  if speeds.ndim != 3 or speeds.shape[-1] < 1:
    raise ValueError(f"bias_speed must have shape [M, T, L], got {speeds.shape}")
  if not (speeds >= 0).all():
    raise ValueError("bias_speed must be >= 0 and not NaN (did training diverge?)")
  with np.errstate(divide="ignore", invalid="ignore"):
    log = np.log(speeds)
    if relative_to_last:  # 0/0 (every layer's gradient exactly 0) counts as vanished
      return np.where(speeds[..., 0] == 0, -np.inf, log[..., 0] - log[..., -1])
  return log[..., 0]


def states(log_g: ArrayLike, threshold: float) -> np.ndarray:
  """Classifies each step: ``[g ≈ 0]`` (True) where ``log g < threshold``.

  Args:
    log_g: ``[M, T]`` (or ``[T]``) ``log g`` per member and step; ``−inf`` allowed.
    threshold: the log threshold, e.g. ``log(1e-3)``.

  Returns:
    bool ``[M, T]``: True = vanished.

  Example:
    >>> import numpy as np
    >>> from vanish import markov
    >>> markov.states(np.log([[1.0, 1e-4, 1e-2]]), np.log(1e-3)).tolist()
    [[False, True, False]]
  """
  values = _checks.real_array("log_g", log_g)
  if values.ndim == 1:
    values = values[None]
  if values.ndim != 2 or values.size == 0:
    raise ValueError(f"log_g must have shape [M, T] or [T], got {values.shape}")
  if np.isnan(values).any():
    raise ValueError("log_g contains NaN (did training diverge?)")
  return values < _checks.number("threshold", threshold)


def _check_counts(counts: ArrayLike) -> np.ndarray:
  raw = np.asarray(counts)
  if raw.shape != (2, 2) or raw.dtype == np.bool_:
    raise ValueError(f"counts must be a [2, 2] array of counts, got {raw.dtype} {raw.shape}")
  value = raw.astype(np.float64)
  if not (np.isfinite(value).all() and (value >= 0).all() and (value == np.round(value)).all()):
    raise ValueError(f"counts must be whole numbers >= 0, got {raw.tolist()}")
  return value.astype(np.int64)


def transition_counts(states: ArrayLike) -> np.ndarray:
  """``[2, 2]`` counts of ``s_t = i, s_{t+1} = j`` over all members and steps.

  Args:
    states: bool ``[M, T]`` or ``[T]`` (True = ``[g ≈ 0]``).

  Returns:
    int64 ``[2, 2]``, summing to ``M (T − 1)``.

  Example:
    >>> from vanish import markov
    >>> markov.transition_counts([[0, 0, 1, 1, 0]]).tolist()
    [[1, 1], [1, 1]]
  """
  s = _check_states(states).astype(np.int64)
  pair = 2 * s[:, :-1] + s[:, 1:]
  return np.bincount(pair.ravel(), minlength=4).reshape(2, 2)


# --------------------------------------------------------------------------- estimates


def _row_estimate(counts: np.ndarray, confidence: float, method: str):
  visits = counts.sum(axis=1)
  with np.errstate(divide="ignore", invalid="ignore"):
    matrix = counts / visits[:, None]
  intervals = binomial_interval(counts, visits[:, None], confidence, method)
  return matrix, intervals


def estimate(
  states: ArrayLike, *, confidence: float = 0.95, method: str = "wilson"
) -> TransitionEstimate:
  """The maximum-likelihood two-state chain of ``states``, with confidence intervals.

  For a time-homogeneous chain the likelihood factorizes over the rows into
  binomials, so the MLE of ``P_ij`` is ``n_ij / n_i`` and each entry gets the
  binomial interval of its row (Anderson & Goodman 1957; Billingsley 1961).

  Args:
    states: bool ``[M, T]`` (True = ``[g ≈ 0]``), T ≥ 2.
    confidence: level of every interval.
    method: ``"wilson"`` or ``"clopper_pearson"`` (see :func:`binomial_interval`).

  Returns:
    A :class:`TransitionEstimate`.

  Example:
    >>> from vanish import markov
    >>> est = markov.estimate([[0, 0, 0, 1, 1, 1], [0, 1, 1, 1, 1, 1]])
    >>> est.counts.tolist(), est.matrix[0].round(3).tolist(), est.absorption_time
    ([[2, 2], [0, 6]], [0.5, 0.5], 2.0)
  """
  confidence, method = _check_confidence(confidence), _check_method(method)
  s = _check_states(states)
  if s.shape[1] < 2:
    raise ValueError(f"states needs T >= 2 steps to count transitions, got {s.shape[1]}")
  counts = transition_counts(s)
  matrix, intervals = _row_estimate(counts, confidence, method)
  initial_counts = np.bincount(s[:, 0].astype(np.int64), minlength=2)
  p, q = matrix[HEALTHY, VANISHED], matrix[VANISHED, HEALTHY]
  p_lo, p_hi = intervals[HEALTHY, VANISHED]
  with np.errstate(divide="ignore", invalid="ignore"):
    time = 1 / p
    time_interval = np.array([1 / p_hi, 1 / p_lo])
    stationary = p / (p + q)
  return TransitionEstimate(
    counts=counts,
    matrix=matrix,
    intervals=intervals,
    initial_counts=initial_counts,
    initial=initial_counts / s.shape[0],
    absorption_time=float(time),
    absorption_time_interval=time_interval,
    stationary_vanished=float(stationary),
    confidence=confidence,
    method=method,
  )


def first_passage(
  states: ArrayLike, *, confidence: float = 0.95, method: str = "wilson"
) -> FirstPassage:
  """Empirical absorption times into ``[g ≈ 0]`` and the geometric model's fit to them.

  Only members with ``s_0 = [g ≉ 0]`` are at risk. Member m's time is
  ``τ_m = min{t ≥ 1 : s_t = [g ≈ 0]}``, right-censored at ``T − 1`` if it never
  vanishes. Under the chain, ``τ`` is geometric, ``P(τ > k) = (1 − p)^k``; with
  censoring the MLE is ``p̂ = d / Σ_m τ_m`` (d observed events; each of the
  ``τ_m`` steps was one Bernoulli trial), and its interval is the binomial one of
  ``d`` out of ``Σ τ_m``.

  Args:
    states: bool ``[M, T]``, T ≥ 2.
    confidence, method: as for :func:`estimate`.

  Returns:
    A :class:`FirstPassage` (empty arrays and NaN rate if no member starts healthy).

  Example:
    >>> from vanish import markov
    >>> fp = markov.first_passage([[0, 0, 1, 0], [0, 0, 0, 0], [1, 1, 1, 1]])
    >>> fp.time.tolist(), fp.observed.tolist(), fp.rate, fp.survival.tolist()
    ([2, 3], [True, False], 0.2, [1.0, 1.0, 0.5, 0.5])
  """
  confidence, method = _check_confidence(confidence), _check_method(method)
  s = _check_states(states)
  steps = s.shape[1]
  if steps < 2:
    raise ValueError(f"states needs T >= 2 steps, got {steps}")
  at_risk = s[~s[:, 0]]
  observed = at_risk.any(axis=1)
  time = np.where(observed, np.argmax(at_risk, axis=1), steps - 1).astype(np.int64)
  ks = np.arange(steps)
  survivors = (time[:, None] > ks[None, :]) | ~observed[:, None]  # τ > k; censored ones survive
  n = at_risk.shape[0]
  alive = survivors.sum(axis=0)
  events, exposure = int(observed.sum()), int(time.sum())
  rate = events / exposure if exposure else math.nan
  with np.errstate(invalid="ignore"):
    survival = alive / n if n else np.full(steps, np.nan)
    geometric = (1 - rate) ** ks.astype(np.float64)
  return FirstPassage(
    time=time,
    observed=observed,
    survival=survival.astype(np.float64),
    survival_interval=binomial_interval(alive, np.full(steps, n), confidence, method),
    rate=float(rate),
    rate_interval=binomial_interval(events, exposure, confidence, method),
    geometric_survival=geometric,
  )


def one_way_street_test(
  states: ArrayLike | None = None,
  *,
  counts: ArrayLike | None = None,
  q0: float = 0.01,
  confidence: float = 0.95,
) -> OneWayStreetTest:
  """Tests the one-way street: is the escape probability ``q = P(≈ → ≉)`` at most ``q0``?

  Conditional on the ``n = n_1`` steps leaving ``[g ≈ 0]``, the escapes are
  ``Binomial(n, q)``; the exact test of ``H0: q ≤ q0`` rejects for
  ``P(Binomial(n, q0) ≥ escapes) < 1 − confidence``. ``q0 = 0`` is strict
  absorption, refuted by one escape. The one-sided Clopper–Pearson bound
  ``q ≤ upper_bound`` holds at the level (with no escape it is
  ``1 − (1 − confidence)^{1/n}``, ≈ 3/n at 95 %: the "rule of three").

  Args:
    states: bool (or 0/1) states ``[M, T]`` or ``[T]``; or, instead,
    counts: ``[2, 2]`` transition counts, e.g. from :func:`transition_counts` or
      :attr:`TransitionEstimate.counts`. Exactly one of the two (a ``[2, 2]`` array
      of 0s and 1s could be either, so the keyword says which).
    q0: the tolerated escape probability, in [0, 1).
    confidence: in (0, 1); the test's level is ``1 − confidence``.

  Returns:
    A :class:`OneWayStreetTest`.

  Example:
    >>> import numpy as np
    >>> from vanish import markov
    >>> t = markov.one_way_street_test(counts=np.array([[990, 10], [3, 297]]), q0=0.001)
    >>> t.escapes, t.trials, round(t.p_value, 4), t.rejected
    (3, 300, 0.0036, True)
  """
  confidence = _check_confidence(confidence)
  if isinstance(q0, bool) or not 0 <= float(q0) < 1:
    raise ValueError(f"q0 must be in [0, 1), got {q0!r}")
  q0 = float(q0)
  if (states is None) == (counts is None):
    raise ValueError("pass exactly one of states (a [M, T] record) and counts= ([2, 2])")
  if counts is None:
    counts = transition_counts(states)
  else:
    counts = _check_counts(counts)
  escapes, trials = int(counts[VANISHED, HEALTHY]), int(counts[VANISHED].sum())
  if trials == 0:
    p_value = math.nan
  elif escapes == 0:
    p_value = 1.0
  else:
    p_value = float(stats.binom.sf(escapes - 1, trials, q0))
  return OneWayStreetTest(
    escapes=escapes,
    trials=trials,
    escape_probability=escapes / trials if trials else math.nan,
    upper_bound=_upper_bound(escapes, trials, confidence),
    q0=q0,
    p_value=p_value,
    rejected=bool(p_value < 1 - confidence),
    confidence=confidence,
  )


def homogeneity_test(states: ArrayLike, windows: int = 2) -> HomogeneityTest:
  """Likelihood-ratio test of a time-homogeneous chain against one per time window.

  The ``T − 1`` transitions are split into ``windows`` consecutive blocks of
  (nearly) equal length; under H0 the blocks share one matrix and
  ``G = 2 Σ n_wij log(p̂_wij / p̂_ij)`` is asymptotically χ² with one degree of
  freedom per extra (window, visited row) (Anderson & Goodman 1957, §3.3), except
  for rows whose pooled counts have a zero: their entries are 0 and 1 in every
  window, leaving nothing free (counting them made the test conservative, a level
  of 0.5–2 % instead of 5 % on one-way-street chains). A
  small p-value says the rates drift during training, so the absorption time
  need not be geometric.

  Args:
    states: bool ``[M, T]``.
    windows: number of time windows, 2 ≤ windows ≤ T − 1.

  Returns:
    A :class:`HomogeneityTest`.

  Example:
    >>> import numpy as np
    >>> from vanish import markov
    >>> early = np.tile([0, 1] * 10, (20, 1))          # flips every step, then ...
    >>> late = np.zeros((20, 20), int)                 # ... never leaves [g ≉ 0]
    >>> markov.homogeneity_test(np.concatenate([early, late], axis=1)).p_value < 1e-6
    True
  """
  s = _check_states(states)
  if isinstance(windows, bool) or not isinstance(windows, (int, np.integer)) or windows < 2:
    raise ValueError(f"windows must be an integer >= 2, got {windows!r}")
  if windows > s.shape[1] - 1:
    raise ValueError(f"windows ({windows}) exceeds the T - 1 = {s.shape[1] - 1} transitions")
  edges = np.linspace(0, s.shape[1] - 1, windows + 1).round().astype(int)
  per_window = np.stack(
    [transition_counts(s[:, a : b + 1]) for a, b in zip(edges[:-1], edges[1:], strict=True)]
  )
  pooled = per_window.sum(axis=0)
  with np.errstate(divide="ignore", invalid="ignore"):
    p_window = per_window / per_window.sum(axis=2, keepdims=True)
    p_pooled = pooled / pooled.sum(axis=1, keepdims=True)
    terms = np.where(per_window > 0, per_window * np.log(p_window / p_pooled[None]), 0.0)
  statistic = float(2 * terms.sum())
  visited = (per_window.sum(axis=2) > 0).sum(axis=0)  # [2] windows visiting each row
  # A row whose pooled counts have a zero (the absorbing [g ≈ 0] of a one-way street) has it
  # in every window too: that row has no free entry and adds no degree of freedom.
  free = np.maximum((pooled > 0).sum(axis=1) - 1, 0)  # [2] free entries of each row
  dof = int(np.sum(np.maximum(visited - 1, 0) * free))
  p_value = float(stats.chi2.sf(statistic, dof)) if dof else 1.0
  return HomogeneityTest(statistic, dof, p_value, per_window)


# --------------------------------------------------------------------------- synthetic chains


def _check_transition(transition: ArrayLike, initial: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
  matrix = np.asarray(transition, np.float64)
  if matrix.shape != (2, 2) or not ((matrix >= 0) & (matrix <= 1)).all():
    raise ValueError(f"transition must be a [2, 2] matrix of probabilities, got {matrix!r}")
  if not np.allclose(matrix.sum(axis=1), 1, atol=1e-6):
    raise ValueError(f"transition rows must sum to 1, got {matrix.sum(axis=1)}")
  start = np.asarray(initial, np.float64)
  if start.shape != (2,) or not (start >= 0).all() or not np.isclose(start.sum(), 1, atol=1e-6):
    raise ValueError(f"initial must be a distribution over 2 states, got {start!r}")
  return matrix, start


def simulate(
  key: jax.Array, transition: ArrayLike, initial: ArrayLike, *, members: int, steps: int
) -> jax.Array:
  """Trajectories of ``members`` independent two-state chains with a known matrix.

  Args:
    key: a typed key (``jax.random.key``).
    transition: ``[2, 2]`` row-stochastic ``P[i, j] = P(s_{t+1} = j | s_t = i)``,
      state 1 = ``[g ≈ 0]``.
    initial: ``[2]`` the distribution of ``s_0``.
    members: M ≥ 1.
    steps: T ≥ 1.

  Returns:
    bool ``[M, T]`` (True = ``[g ≈ 0]``).

  Example:
    >>> import jax, jax.numpy as jnp
    >>> from vanish import markov
    >>> start = jnp.array([0.0, 1.0])
    >>> markov.simulate(jax.random.key(1), jnp.eye(2), start, members=2, steps=3).tolist()
    [[True, True, True], [True, True, True]]
  """
  _check_key(key)
  for name, value in (("members", members), ("steps", steps)):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
      raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
  matrix, start = _check_transition(transition, initial)
  return _simulate(key, jnp.asarray(matrix[:, 1]), jnp.asarray(start[1]), int(members), int(steps))


@functools.partial(jax.jit, static_argnames=("members", "steps"))
def _simulate(key, to_vanished, start_vanished, members, steps):
  """``to_vanished[i] = P(i → [g ≈ 0])``; one uniform per member and step, scanned over time."""
  uniforms = jax.random.uniform(key, (steps, members), to_vanished.dtype)
  first = uniforms[0] < start_vanished

  def step(state, u):
    nxt = u < to_vanished[state.astype(jnp.int32)]
    return nxt, nxt

  _, rest = jax.lax.scan(step, first, uniforms[1:])
  return jnp.concatenate([first[None], rest], axis=0).T
