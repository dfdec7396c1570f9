"""Lyapunov spectra: exact against 90-digit arithmetic, stable at depth 10,000, Newman's law."""

import math
import time

import jax
import jax.numpy as jnp
import mpmath
import numpy as np
import pytest
from scipy import special

import vanish as vn
from tests import reference


def _mp_log_singular_values(jacobians, digits=90):
  """Log singular values of every partial product, in 90-digit arithmetic."""
  with mpmath.workdps(digits):
    product = mpmath.eye(jacobians[0].shape[1])
    out = []
    for jac in jacobians:
      product = mpmath.matrix(jac.tolist()) * product
      values = mpmath.svd_r(product, compute_uv=False)
      out.append(sorted((float(mpmath.log(v)) for v in values), reverse=True))
  return np.array(out)


def _layer_jacobians(net, params, x, member=0):
  layers = reference.layer_params(params, member)
  trace, _ = reference.forward(layers, net.activation.name, x)
  return [slope[:, None] * w for (w, _), (_, _, slope) in zip(layers, trace, strict=True)]


@pytest.mark.parametrize(
  "activation, sigma_w2, width, depth",
  [
    ("tanh", 1.5, 6, 40),
    ("tanh", 1.0, 8, 3),
    ("relu", 2.0, 6, 25),
    ("erf", 3.0, 5, 50),
    ("linear", 1.0, 7, 25),
    ("tanh", 1.5, 12, 2),
  ],
)
def test_exact_log_singular_values_at_every_depth(activation, sigma_w2, width, depth):
  net = vn.MLP([width] * (depth + 1), activation, vn.init.gaussian(sigma_w2), vn.init.normal(0.2))
  with jax.enable_x64(True):
    params = net.init(jax.random.key(3), members=1, dtype=jnp.float64)
    x = jnp.linspace(-1.0, 1.0, width)
    spectrum = np.asarray(vn.lyapunov_spectrum(net, params, x)[0])
    benettin = np.asarray(vn.lyapunov_spectrum(net, params, x, refine=False)[0])
  exact = _mp_log_singular_values(_layer_jacobians(net, params, x))
  # 90 digits resolve values within ~200 nats of the top; exact zeros (dead ReLUs) are excluded.
  resolved = exact > exact[:, :1] - 200
  np.testing.assert_allclose(spectrum[resolved], exact[resolved], atol=1e-9)
  # Benettin's Σ log diag R alone is off by O(1) nats at finite depth.
  assert np.abs(benettin - exact)[resolved].max() > 1e-3


def test_rectangular_widths_give_the_product_singular_values():
  net = vn.MLP([3, 5, 4, 6, 3], "tanh", vn.init.gaussian(1.3), vn.init.normal(0.1))
  with jax.enable_x64(True):
    params = net.init(jax.random.key(0), members=2, dtype=jnp.float64)
    x = jnp.asarray([0.2, -0.5, 0.9])
    spectrum = vn.lyapunov_spectrum(net, params, x)
    jac = vn.jacobian(net, params, x)
  for member in range(2):
    product = np.eye(3)
    for l, jac_l in enumerate(_layer_jacobians(net, params, x, member)):
      product = jac_l @ product
      expected = np.log(np.linalg.svd(product, compute_uv=False))
      np.testing.assert_allclose(spectrum[member, l], expected, atol=1e-10)
    np.testing.assert_allclose(jac[member], product, atol=1e-12)


def test_orthogonal_linear_network_is_an_exact_isometry_at_depth_10000():
  net = vn.MLP([16] * 10_001, "linear", vn.init.orthogonal(1.0))
  spectrum = vn.lyapunov_spectrum(net, net.init(jax.random.key(0), members=2), jnp.ones(16))
  # float32 round-off accumulates as a random walk: ~√L · ε per layer.
  assert float(jnp.abs(spectrum).max()) < 1e-3


def test_depth_10000_float32_is_finite_and_agrees_with_float64():
  width, depth = 16, 10_000
  net = vn.MLP([width] * (depth + 1), "tanh", vn.init.gaussian(1.5), vn.init.normal(0.1))
  params = net.init(jax.random.key(0), members=2)
  x = jnp.linspace(-1.0, 1.0, width)
  start = time.perf_counter()
  single = np.asarray(vn.lyapunov_spectrum(net, params, x))
  elapsed = time.perf_counter() - start
  with jax.enable_x64(True):
    params64 = jax.tree.map(lambda a: a.astype(jnp.float64), params)
    double = np.asarray(vn.lyapunov_spectrum(net, params64, jnp.asarray(x, jnp.float64)))
  assert np.isfinite(single).all()
  assert single[:, -1].min() < -10_000  # far below float32's range: kept in log space
  per_layer = np.abs(single - double)[:, -1] / depth
  assert per_layer.max() < 1e-4, per_layer.max()
  print(f"depth-10,000 spectrum (2 members × width 16, float32, CPU): {elapsed:.2f} s")


def test_linear_gaussian_exponents_match_newman():
  # Newman (1986): products of n×n matrices with iid N(0, σ²/n) entries have
  # λ_i = ½ [log(2σ²/n) + ψ((n − i + 1)/2)].
  n, depth, members, sigma_w2 = 6, 3000, 16, 1.3
  net = vn.MLP([n] * (depth + 1), "linear", vn.init.gaussian(sigma_w2))
  spectrum = vn.lyapunov_spectrum(net, net.init(jax.random.key(4), members=members), jnp.ones(n))
  exponents = np.asarray(spectrum[:, -1], np.float64) / depth
  newman = 0.5 * (np.log(2 * sigma_w2 / n) + special.digamma((n - np.arange(1, n + 1) + 1) / 2))
  standard_error = exponents.std(axis=0, ddof=1) / math.sqrt(members)
  np.testing.assert_array_less(np.abs(exponents.mean(axis=0) - newman), 5 * standard_error)


def test_partial_spectrum_leading_exponents_agree_with_full():
  net = vn.MLP([10] * 401, "tanh", vn.init.gaussian(2.0), vn.init.normal(0.1))
  params = net.init(jax.random.key(2), members=2)
  full = vn.lyapunov_spectrum(net, params, jnp.ones(10), refine=False)
  top3 = vn.lyapunov_spectrum(net, params, jnp.ones(10), k=3, refine=False)
  # The leading k Benettin stretches do not depend on the trailing directions.
  np.testing.assert_allclose(top3[:, -1], full[:, -1, :3], rtol=1e-4, atol=1e-3)


def test_bad_k_is_rejected():
  net = vn.MLP([4, 6, 3], "tanh")
  params = net.init(jax.random.key(0))
  with pytest.raises(ValueError, match=r"k must be an integer in \[1, min\(widths\) = 3\]"):
    vn.lyapunov_spectrum(net, params, jnp.ones(4), k=4)
