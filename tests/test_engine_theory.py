"""The engine against the theory module: Monte Carlo ensembles vs closed forms.

Tolerances: k standard errors of the Monte Carlo estimate (bootstrap or across
members) plus, where the theory is a width → ∞ limit, an allowance for the
O(depth/width) finite-width correction.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import vanish as vn
from vanish import theory


def _inputs_at_fixed_point(key, batch, width, q_star, sigma_w2, sigma_b2):
  """Inputs with ‖x‖²/n = (q* − σ_b²)/σ_w², so the first layer already sits at q*."""
  x = jax.random.normal(key, (batch, width))
  scale = math.sqrt(width * (q_star - sigma_b2) / sigma_w2)
  return x / jnp.linalg.norm(x, axis=1, keepdims=True) * scale


@pytest.mark.parametrize(
  "activation, sigma_w2, sigma_b2", [("tanh", 1.5, 0.05), ("tanh", 0.8, 0.05), ("erf", 2.0, 0.0)]
)
def test_gradient_norm_growth_per_layer_is_log_chi1(activation, sigma_w2, sigma_b2):
  # Schoenholz et al. (2017), eq. (12): E‖δ^l‖² = χ1 E‖δ^{l+1}‖² at the fixed point q*.
  mf = theory.mean_field(activation, sigma_w2, sigma_b2)
  width, depth, members, batch = 128, 20, 16, 4
  net = vn.MLP(
    [width] * (depth + 1),
    activation,
    vn.init.gaussian(sigma_w2),
    vn.init.normal(math.sqrt(sigma_b2)),
  )
  params = net.init(jax.random.key(0), members=members)
  x = _inputs_at_fixed_point(jax.random.key(1), batch, width, mf.q_star, sigma_w2, sigma_b2)
  cotangent = jax.random.normal(jax.random.key(2), (batch, width))
  log_norms = vn.log_gradient_norms(net, params, x, cotangent)
  squared = np.exp(2 * np.asarray(log_norms, np.float64)).reshape(-1, depth)
  layers = np.arange(2, depth - 2)

  def slope(samples):
    return np.polyfit(layers, np.log(samples.mean(axis=0))[2:-2], 1)[0]

  rng = np.random.default_rng(0)
  boot = [slope(squared[rng.integers(0, len(squared), len(squared))]) for _ in range(200)]
  assert abs(slope(squared) + math.log(mf.chi1)) < 4 * np.std(boot) + 0.5 / width


@pytest.mark.parametrize("activation, sigma_w2, sigma_b2", [("tanh", 1.5, 0.05), ("erf", 2.0, 0.0)])
@pytest.mark.parametrize("weights", ["gaussian", "orthogonal"])
def test_jacobian_spectrum_moments_match_free_probability(activation, sigma_w2, sigma_b2, weights):
  # Pennington, Schoenholz & Ganguli (2017, 2018): mean χ1^L; the normalized
  # variance differs sharply between Gaussian (S-transform −1) and orthogonal (0).
  depth, width, members = 4, 128, 16
  mf = theory.mean_field(activation, sigma_w2, sigma_b2)
  init = (
    vn.init.gaussian(sigma_w2) if weights == "gaussian" else vn.init.orthogonal(math.sqrt(sigma_w2))
  )
  net = vn.MLP([width] * (depth + 1), activation, init, vn.init.normal(math.sqrt(sigma_b2)))
  params = net.init(jax.random.key(5), members=members)
  x = _inputs_at_fixed_point(jax.random.key(1), 1, width, mf.q_star, sigma_w2, sigma_b2)[0]
  jac = np.asarray(vn.jacobian(net, params, x), np.float64)
  eig = np.linalg.eigvalsh(jac @ np.swapaxes(jac, 1, 2))
  mean = eig.mean(axis=1)
  normalized_variance = eig.var(axis=1) / mean**2
  expected = theory.jacobian_spectrum_moments(
    activation, sigma_w2, sigma_b2, depth, weights=weights
  )
  expected_mean, expected_variance = expected.mean, expected.normalized_variance
  finite_width = 5 * depth / width  # relative O(L/N) correction to the N → ∞ limit
  se = lambda v: v.std(ddof=1) / math.sqrt(members)
  assert abs(mean.mean() - expected_mean) < 4 * se(mean) + finite_width * expected_mean
  assert abs(normalized_variance.mean() - expected_variance) < (
    4 * se(normalized_variance) + finite_width * expected_variance
  )


def test_linear_gaussian_lyapunov_spectrum_matches_newman():
  n, depth, members = 8, 2000, 16
  net = vn.MLP([n] * (depth + 1), "linear", vn.init.gaussian(1.0))
  spectrum = vn.lyapunov_spectrum(net, net.init(jax.random.key(4), members=members), jnp.ones(n))
  exponents = np.asarray(spectrum[:, -1], np.float64) / depth
  se = exponents.std(axis=0, ddof=1) / math.sqrt(members)
  np.testing.assert_array_less(np.abs(exponents.mean(0) - theory.newman_lyapunov(n)), 5 * se)


def test_at_the_critical_line_gradients_neither_vanish_nor_explode():
  # At χ1 = 1 the mean squared gradient is flat in depth; at half or twice the
  # critical σ_w² it changes by (L − 1) log χ1 = tens of nats over 30 layers.
  sigma_b2, width, depth = 0.05, 128, 30
  critical = theory.critical_sigma_w2("tanh", sigma_b2)
  assert theory.mean_field("tanh", critical, sigma_b2).chi1 == pytest.approx(1.0, abs=1e-8)
  changes = {}
  for factor in (0.5, 1.0, 2.0):
    sigma_w2 = factor * critical
    mf = theory.mean_field("tanh", sigma_w2, sigma_b2)
    net = vn.MLP(
      [width] * (depth + 1), "tanh", vn.init.gaussian(sigma_w2), vn.init.normal(math.sqrt(sigma_b2))
    )
    params = net.init(jax.random.key(3), members=8)
    x = _inputs_at_fixed_point(jax.random.key(1), 4, width, mf.q_star, sigma_w2, sigma_b2)
    squared = np.exp(2 * np.asarray(vn.log_gradient_norms(net, params, x), np.float64))
    squared = squared.reshape(-1, depth)
    changes[factor] = math.log(squared[:, 0].mean() / squared[:, -1].mean())
  assert abs(changes[1.0]) < 1.0
  assert changes[0.5] < -5 and changes[2.0] > 1


def test_relu_input_output_gradient_matches_hanin():
  # Hanin (2018): with He weights and zero biases, ‖J u‖² = Π_l (2/n_{l−1}) χ²(K_l),
  # K_l ~ Bin(n_l, ½): the death probability, E‖Ju‖² and the log-moments are exact.
  widths, members = [6, 9, 7, 10, 8, 6], 30_000
  expected = theory.relu_gradient_moments(widths)
  net = vn.MLP(widths, "relu", vn.init.he(), vn.init.zeros())
  params = net.init(jax.random.key(0), members=members)
  x = jax.random.normal(jax.random.key(1), (widths[0],))
  jac = np.asarray(vn.jacobian(net, params, x), np.float64)
  squared = np.sum(jac[:, :, 0] ** 2, axis=1)  # u = e_1
  alive = squared > 0
  dead = 1 - alive.mean()
  assert abs(dead - expected.dead_probability) < 5 * math.sqrt(dead * (1 - dead) / members)
  assert abs(squared.mean() - expected.mean) < 5 * squared.std() / math.sqrt(members)
  logs = np.log(squared[alive])
  n = logs.size
  assert abs(logs.mean() - expected.log_mean) < 5 * logs.std() / math.sqrt(n)
  fourth = np.mean((logs - logs.mean()) ** 4)
  assert abs(logs.var() - expected.log_var) < 5 * math.sqrt((fourth - logs.var() ** 2) / n)


@pytest.mark.parametrize(
  "activation, sigma_w2, sigma_b2, alpha", [("tanh", 1.5, 0.05, 0.5), ("relu", 2.0, 0.0, 0.3)]
)
def test_residual_network_matches_residual_mean_field(activation, sigma_w2, sigma_b2, alpha):
  # Yang & Schoenholz (2017): q^l = q^{l−1} + α²(σ_w² Eφ² + σ_b²) and each layer multiplies
  # E‖g‖² by 1 + α² σ_w² Eφ'² ≥ 1 — residual gradients never vanish.
  width, depth, members, batch = 128, 20, 16, 4
  net = vn.ResidualMLP(
    width,
    depth,
    activation,
    vn.init.gaussian(sigma_w2),
    vn.init.normal(math.sqrt(sigma_b2)),
    alpha=alpha,
  )
  params = net.init(jax.random.key(0), members=members)
  x = _inputs_at_fixed_point(jax.random.key(1), batch, width, 1.0, 1.0, 0.0)  # q^0 = 1
  expected = theory.residual_mean_field(
    activation, sigma_w2, sigma_b2, alpha=alpha, depth=depth, q0=1.0
  )
  states = np.asarray(vn.preactivations(net, params, x), np.float64)  # h^{l−1}: [M, B, L, n]
  q = (states**2).mean(axis=(0, 1, 3))
  relative_finite_width = 10 * depth / width / 2  # O(L/n) corrections to the n → ∞ recursion
  np.testing.assert_allclose(q, expected.q[:-1], rtol=relative_finite_width / 10 + 0.03)
  cotangent = jax.random.normal(jax.random.key(2), (batch, width))
  log_norms = np.asarray(vn.log_gradient_norms(net, params, x, cotangent), np.float64)
  squared = np.exp(2 * log_norms.reshape(-1, depth))  # α²‖g^l‖², g^l = ∂C/∂h^l

  def growth(samples):  # log E‖g^l‖² − log E‖g^L‖², l = 1..L
    log_mean = np.log(samples.mean(axis=0))
    return log_mean - log_mean[-1]

  rng = np.random.default_rng(0)
  boot = np.std(
    [growth(squared[rng.integers(0, len(squared), len(squared))]) for _ in range(200)], axis=0
  )
  predicted = np.append(expected.log_gradient_growth[1:], 0.0)
  assert np.all(np.diff(predicted) <= 0) and np.all(expected.gradient_factor >= 1)
  np.testing.assert_array_less(
    np.abs(growth(squared) - predicted), 4 * boot + 0.08 * np.abs(predicted) + 1e-9
  )
