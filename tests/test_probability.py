"""The probabilistic model against synthetic laws with known answers and the theory thresholds."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

import vanish as vn
from vanish import probability, theory


def test_summary_of_gaussian_sums_matches_the_closed_form():
  rng = np.random.default_rng(0)
  samples, depth, mu, s = 40_000, 12, -0.8, 0.6
  log_g = np.cumsum(rng.normal(mu, s, (samples, depth)), axis=1)
  summary = probability.summarize(log_g, epsilon=1e-2)
  k = np.arange(1, depth + 1)
  np.testing.assert_array_less(np.abs(summary.mean - mu * k), 5 * s * np.sqrt(k / samples))
  np.testing.assert_allclose(summary.std, s * np.sqrt(k), rtol=5 / math.sqrt(2 * samples))
  expected = stats.norm.cdf((math.log(1e-2) - mu * k) / (s * np.sqrt(k)))
  se = np.sqrt(expected * (1 - expected) / samples) + 1e-12
  np.testing.assert_array_less(np.abs(summary.p_vanish - expected), 5 * se + 1e-9)
  assert (summary.p_vanish_ci[:, 0] <= summary.p_vanish).all()
  assert (summary.p_vanish <= summary.p_vanish_ci[:, 1]).all()
  median = summary.quantiles[:, list(summary.quantile_levels).index(0.5)]
  # the median's standard error is √(π/2)·σ/√S for a Gaussian
  np.testing.assert_array_less(np.abs(median - mu * k), 5 * 1.26 * s * np.sqrt(k / samples))
  # the smooth density integrates to one and peaks near the mean
  width = summary.density_grid[1] - summary.density_grid[0]
  np.testing.assert_allclose(summary.density.sum(axis=1) * width, 1.0, atol=1e-2)


def test_wilson_intervals_have_their_coverage():
  rng = np.random.default_rng(1)
  p, n, repeats = 0.07, 200, 4000
  counts = rng.binomial(n, p, repeats)
  ci = probability.wilson_interval(counts, n, 0.95)
  coverage = np.mean((ci[:, 0] <= p) & (p <= ci[:, 1]))
  # Wilson's actual coverage oscillates around nominal; allow MC error plus 1.5 points.
  assert abs(coverage - 0.95) < 5 * math.sqrt(0.95 * 0.05 / repeats) + 0.015


def test_exact_zeros_count_as_vanished():
  log_g = np.array([[-np.inf, 0.0], [0.0, 0.0], [1.0, 9.0]])
  summary = probability.summarize(log_g, epsilon=1e-3)
  np.testing.assert_allclose(summary.p_zero, [1 / 3, 0])
  np.testing.assert_allclose(summary.p_vanish, [1 / 3, 0])
  np.testing.assert_allclose(summary.p_explode, [0, 1 / 3])


def test_clt_on_independent_factors_has_no_correlation_excess():
  rng = np.random.default_rng(2)
  samples, depth = 20_000, 30
  fit = probability.clt_prediction(rng.gamma(2.0, 0.5, (samples, depth)) * -1)
  # var of a sample variance ≈ 2σ⁴/S for near-Gaussian sums: a 5σ band on the ratio.
  assert np.abs(fit.correlation_excess[-5:]).max() < 5 * math.sqrt(2 / samples) * 1.5


def test_clt_detects_correlated_layers():
  # AR(1) log-factors with correlation ρ: Var(Σ) / Σ Var → (1 + ρ)/(1 − ρ) for long chains.
  rng = np.random.default_rng(3)
  samples, depth, rho = 20_000, 200, 0.5
  noise = rng.normal(size=(samples, depth))
  factors = np.empty_like(noise)
  factors[:, 0] = noise[:, 0]
  for l in range(1, depth):
    factors[:, l] = rho * factors[:, l - 1] + math.sqrt(1 - rho**2) * noise[:, l]
  fit = probability.clt_prediction(factors - 1.0)
  k = depth
  exact = (1 + rho) / (1 - rho) - 2 * rho * (1 - rho**k) / (k * (1 - rho) ** 2)
  assert abs(fit.correlation_excess[-1] + 1 - exact) < 5 * exact * math.sqrt(2 / samples)


def test_scalar_chain_factors_reproduce_the_chain_and_clt_tracks_monte_carlo():
  net = vn.MLP([1] * 31, "tanh", vn.init.normal(1.0), vn.init.normal(1.0))
  params = net.init(jax.random.key(0), members=20_000)
  log_g, _ = vn.scalar_chain(net, params, jnp.ones(1))
  log_f, pre, weights = probability.scalar_chain_log_factors(net, params, jnp.ones(1))
  np.testing.assert_allclose(np.cumsum(np.asarray(log_f, np.float64), axis=1), log_g, atol=1e-3)
  np.testing.assert_array_equal(weights, np.concatenate([p["w"][:, :, 0, 0] for p in params], 1))
  fit = probability.clt_prediction(log_f)
  observed = probability.summarize(log_g, epsilon=1e-3)
  # the mean is additive; P(vanish) from the Gaussian model within a few points at depth 30
  np.testing.assert_allclose(fit.mean, observed.mean, rtol=1e-6)
  assert abs(fit.p_vanish[-1] - observed.p_vanish[-1]) < 0.05


def test_tanh2x_product_above_one_needs_half_the_preactivations_inside_t1():
  # Seed analysis: tanh(2x)'s slope exceeds 1/2 exactly inside [−t1, t1], and at most 2,
  # so a product of slopes ≥ 1 needs at least half of the factors inside.
  n = 2.0
  t1 = theory.scaled_tanh_vanish_threshold(n, depth=2)
  act = vn.activations.scaled_tanh(n)
  with jax.enable_x64(True):
    assert float(act.derivative(jnp.asarray(t1))) == pytest.approx(1 / n, rel=1e-12)
  net = vn.MLP([1] * 21, act, vn.init.normal(1.0), vn.init.normal(0.5))
  params = net.init(jax.random.key(1), members=50_000)
  log_f, pre, weights = probability.scalar_chain_log_factors(net, params, jnp.full((1,), 0.3))
  log_slope = np.asarray(log_f, np.float64)
  log_slope[:, 1:] -= np.log(np.abs(np.asarray(weights[:, 1:], np.float64)))  # drop the w_j
  survived = log_slope.sum(axis=1) >= 0
  fraction = probability.inside_fraction(pre, t1)
  assert survived.any()
  assert (fraction[survived] >= 0.5).all()
  # necessary, not sufficient: many chains with half inside still vanish
  assert survived.mean() < (fraction >= 0.5).mean()


@pytest.mark.parametrize(
  "call, match",
  [
    (lambda: probability.summarize(np.zeros(5)), "at least one sample axis"),
    (lambda: probability.summarize(np.zeros((3, 2)), epsilon=2.0), "epsilon must be in"),
    (lambda: probability.summarize(np.full((3, 2), np.nan)), "NaN"),
    (lambda: probability.clt_prediction(np.full((3, 2), -np.inf)), "finite"),
    (lambda: probability.inside_fraction(np.zeros(3), -1.0), "half_width"),
    (lambda: probability.joint_histogram(np.zeros(3), np.zeros(4)), "same shape"),
    (lambda: probability.joint_histogram(np.zeros((2, 3)), np.zeros((3, 2))), "same shape"),
  ],
)
def test_bad_input(call, match):
  with pytest.raises(ValueError, match=match):
    call()


def test_counts_and_probabilities_are_validated():
  from vanish import scale_map

  with pytest.raises(ValueError, match="trials must be an integer >= 1"):
    probability.wilson_interval(np.array(1), 2.5)
  assert probability.wilson_interval(np.array(1), 4.0).shape == (2,)  # a whole float is a count
  with pytest.raises(ValueError, match="at least one sample"):
    probability.summarize(np.zeros((0, 3)))
  with pytest.raises(ValueError, match=r"probabilities in \[0, 1\]"):
    scale_map.outcome_classes([1.5], [0.0], [0.0])
