"""Tests of vanish.theory against independent references.

"Independent" means not the module's own output: mpmath root finding and
quadrature at high precision, NumPy float64 Monte Carlo of actual random
networks, and NumPy Gauss–Hermite iterations of the maps. Monte Carlo
tolerances are 5 standard errors estimated from the sample itself (all seeds are
fixed, so the tests are deterministic); where finite width biases a Monte Carlo
estimate, the bias is removed by Richardson extrapolation in 1/width and the
tolerance says so.
"""

import math
import re

import mpmath
import numpy as np
import pytest
from scipy import integrate, special, stats

from vanish import activations, theory

SE_MULTIPLE = 5.0  # Monte Carlo tolerances: this many standard errors

# Independent NumPy implementations of the activations (not vanish.activations).
PHI = {
  "tanh": (np.tanh, lambda u: 1 - np.tanh(u) ** 2),
  "sigmoid": (special.expit, lambda u: special.expit(u) * (1 - special.expit(u))),
  "hard_tanh": (lambda u: np.clip(u, -1, 1), lambda u: (np.abs(u) < 1).astype(float)),
  "softplus": (lambda u: np.logaddexp(0, u), special.expit),
  "erf": (special.erf, lambda u: 2 / np.sqrt(np.pi) * np.exp(-u * u)),
  "relu": (lambda u: np.maximum(u, 0), lambda u: (u > 0).astype(float)),
  "linear": (lambda u: u, np.ones_like),
}

HERMITE_X, HERMITE_W = np.polynomial.hermite_e.hermegauss(300)
HERMITE_W = HERMITE_W / np.sqrt(2 * np.pi)


def mc_mean(samples):
  """Sample mean and its standard error."""
  samples = np.asarray(samples, dtype=np.float64)
  return samples.mean(), samples.std(ddof=1) / np.sqrt(samples.size)


def mc_var(samples):
  """Sample variance and its standard error sqrt((m4 − s⁴)/N)."""
  samples = np.asarray(samples, dtype=np.float64)
  centered = samples - samples.mean()
  var = np.mean(centered**2)
  return var, np.sqrt((np.mean(centered**4) - var**2) / samples.size)


def assert_within_se(value, expected, se, what=""):
  assert abs(value - expected) <= SE_MULTIPLE * se, (
    f"{what}: {value} vs {expected}, {abs(value - expected) / se:.1f} standard errors"
  )


def hermite_1d(f, q):
  """E_z f(√q z) by 300-node Gauss–Hermite (for smooth f)."""
  return np.sum(HERMITE_W * f(np.sqrt(q) * HERMITE_X))


def hermite_2d(f, g, q, c):
  """E f(u₁) g(u₂) for (u₁, u₂) ~ N(0, q[[1, c], [c, 1]]) by tensor Gauss–Hermite."""
  z1, z2 = HERMITE_X[:, None], HERMITE_X[None, :]
  weights = HERMITE_W[:, None] * HERMITE_W[None, :]
  s = np.sqrt(1 - c * c)
  return np.sum(weights * f(np.sqrt(q) * z1) * g(np.sqrt(q) * (c * z1 + s * z2)))


def hermite_q_star(f, sigma_w2, sigma_b2, q=1.0, steps=2000):
  """q* by plain fixed-point iteration of the Gauss–Hermite length map."""
  for _ in range(steps):
    q = sigma_w2 * hermite_1d(lambda u: f(u) ** 2, q) + sigma_b2
  return q


# ----------------------------------------------------------------------------
# Nielsen ch. 5: sigmoid factors.


def test_sigmoid_derivative_max_and_factor_bounds():
  z = np.linspace(-20, 20, 400001)
  assert theory.sigmoid_derivative_max() == pytest.approx(PHI["sigmoid"][1](z).max(), abs=1e-12)
  w = np.array([-3.0, 0.5, 100.0])
  bound = np.max(np.abs(w[:, None] * PHI["sigmoid"][1](z)[None, :]), axis=1)
  np.testing.assert_allclose(theory.sigmoid_factor_bound(w), bound, rtol=1e-12)
  assert theory.centered_sigmoid_factor(100.0) == 25.0


@pytest.mark.parametrize("w", [3.0, 4.5, 6.9, 20.0])
def test_sigmoid_unstable_input_width_brute_force(w):
  a = np.linspace(-2, 2, 4_000_001)
  unstable = np.abs(w * PHI["sigmoid"][1](w * a)) >= 1
  brute = unstable.sum() * (a[1] - a[0])
  assert theory.sigmoid_unstable_input_width(w) == pytest.approx(brute, abs=2e-6)
  # w σ'(w a) = (w/4) sech²(w a / 2): the same set as tanh(n x) with n = w/4.
  assert theory.sigmoid_unstable_input_width(w) == pytest.approx(
    theory.scaled_tanh_explode_threshold(w / 4), rel=1e-12, abs=1e-300
  )


# ----------------------------------------------------------------------------
# docs/seed_analysis.md §4: tanh(n·x) thresholds against mpmath root finding.


def mp_vanish_threshold(n, depth):
  """Root of log n + 2 log sech(n x) = −(depth − 1) log n, in mpmath (no cancellation)."""
  with mpmath.workdps(60):
    n, depth = mpmath.mpf(n), mpmath.mpf(depth)

    def equation(x):
      return mpmath.log(n) + 2 * mpmath.log(mpmath.sech(n * x)) + (depth - 1) * mpmath.log(n)

    guess = (mpmath.log(2) + depth / 2 * mpmath.log(n)) / n
    return float(mpmath.findroot(equation, (guess * 0.5, guess * 2), solver="anderson"))


@pytest.mark.parametrize(
  "n, depth",
  [(2.0, 2), (3.0, 2), (1.5, 5), (2.0, 1), (1.01, 3), (10.0, 50), (2.0, 1000), (1.0001, 2)],
)
def test_vanish_threshold_matches_mpmath(n, depth):
  t = theory.scaled_tanh_vanish_threshold(n, depth)
  assert isinstance(t, float) and math.isfinite(t)
  assert t == pytest.approx(mp_vanish_threshold(n, depth), rel=1e-12)


def test_vanish_threshold_deep_asymptotics():
  depth = np.array([200.0, 1000.0, 1e6])
  t = theory.scaled_tanh_vanish_threshold(2.0, depth)
  np.testing.assert_allclose(t, (2 * np.log(2) + depth * np.log(2)) / 4, rtol=1e-14)


def test_vanish_threshold_vectorized_and_edges():
  n = np.array([0.3, 1.0, 1.5, 2.0, 7.0])
  t = theory.scaled_tanh_vanish_threshold(n, 3)
  assert t.shape == n.shape and t.dtype == np.float64
  np.testing.assert_allclose(t, [theory.scaled_tanh_vanish_threshold(float(m), 3) for m in n])
  assert t[0] == 0.0 and t[1] == 0.0
  # n ≤ 1: the factor is below n^{−(depth−1)} everywhere (n = 1: everywhere but x = 0).
  x = np.linspace(-5, 5, 1001)
  for m, depth in [(0.3, 1), (0.3, 3), (0.9, 2)]:
    assert np.all(m * (1 - np.tanh(m * x) ** 2) < m ** -(depth - 1))
  nonzero = x[x != 0]
  assert np.all(1 - np.tanh(nonzero) ** 2 < 1.0)
  # depth = 1 is the explode threshold.
  assert theory.scaled_tanh_vanish_threshold(3.0, 1) == theory.scaled_tanh_explode_threshold(3.0)


@pytest.mark.parametrize("n", [1.2, 2.0, 5.0, 40.0])
def test_explode_threshold_factor_is_one(n):
  t = theory.scaled_tanh_explode_threshold(n)
  with mpmath.workdps(50):
    factor = n * mpmath.sech(n * mpmath.mpf(t)) ** 2
  assert float(factor) == pytest.approx(1.0, abs=1e-13)
  inside, outside = np.linspace(-t, t, 101)[1:-1] * 0.999, np.array([-1.001, 1.001]) * t
  assert np.all(n * (1 - np.tanh(n * inside) ** 2) > 1)
  assert np.all(n * (1 - np.tanh(n * outside) ** 2) < 1)


def test_explode_threshold_empty_for_n_at_most_one():
  np.testing.assert_array_equal(theory.scaled_tanh_explode_threshold(np.array([0.5, 1.0])), 0.0)


def test_widest_good_interval():
  n = np.linspace(1.0001, 4, 300001)
  t1 = np.arctanh(np.sqrt(1 - n**-2.0)) / n
  best = theory.scaled_tanh_widest_good_n(2)
  assert best == pytest.approx(n[np.argmax(t1)], abs=2e-5)
  assert 1.80 < best < 1.82  # not 2: the seed analysis's "n = 2" is the best integer only


# ----------------------------------------------------------------------------
# Mean field: Gaussian expectations.


@pytest.mark.parametrize("name", ["tanh", "sigmoid", "hard_tanh", "softplus", "erf", "relu"])
def test_length_map_matches_monte_carlo(name):
  rng = np.random.default_rng(0)
  sigma_w2, sigma_b2, q = 1.7, 0.1, 0.8
  phi = PHI[name][0]
  samples = sigma_w2 * phi(np.sqrt(q) * rng.standard_normal(400_000)) ** 2 + sigma_b2
  mean, se = mc_mean(samples)
  assert_within_se(theory.length_map(name, sigma_w2, sigma_b2, q), mean, se, name)


def test_length_map_vectorized():
  q = np.array([[0.0, 0.5], [2.0, 30.0]])
  out = theory.length_map("tanh", 1.0, 0.0, q)
  assert out.shape == q.shape
  for qi, oi in zip(q.ravel(), out.ravel(), strict=True):
    exact = integrate.quad(
      lambda z, qi=qi: np.tanh(np.sqrt(qi) * z) ** 2 * stats.norm.pdf(z), -12, 12
    )
    assert oi == pytest.approx(exact[0], rel=1e-10, abs=1e-14)


def test_noisy_relu_integrates_the_noise():
  rng = np.random.default_rng(1)
  sigma_w2, sigma_b2, q, std = 1.5, 0.2, 0.7, 0.8
  u = np.sqrt(q) * rng.standard_normal(400_000) + std * rng.standard_normal(400_000)
  mean, se = mc_mean(sigma_w2 * np.maximum(u, 0) ** 2 + sigma_b2)
  act = activations.noisy_relu(std)
  assert_within_se(theory.length_map(act, sigma_w2, sigma_b2, q), mean, se, "noisy relu")
  mf = theory.mean_field(act, sigma_w2, sigma_b2)
  assert mf.q_star == pytest.approx((sigma_w2 * std**2 / 2 + sigma_b2) / (1 - sigma_w2 / 2))
  assert mf.chi1 == pytest.approx(sigma_w2 / 2)
  assert mf.c_star < 1  # independent noise decorrelates identical inputs
  c_next = theory.correlation_map(act, sigma_w2, sigma_b2, mf.q_star, mf.c_star)
  assert c_next == pytest.approx(mf.c_star, abs=1e-12)


def test_chi1_matches_monte_carlo_at_fixed_point():
  rng = np.random.default_rng(2)
  mf = theory.mean_field("tanh", 1.5, 0.05)
  z = rng.standard_normal(400_000)
  mean, se = mc_mean(1.5 * PHI["tanh"][1](np.sqrt(mf.q_star) * z) ** 2)
  assert_within_se(mf.chi1, mean, se, "chi1")
  assert theory.length_map("tanh", 1.5, 0.05, mf.q_star) == pytest.approx(mf.q_star, rel=1e-13)
  assert mf.q_star == pytest.approx(hermite_q_star(np.tanh, 1.5, 0.05), rel=1e-10)


def test_erf_closed_forms_match_quadrature():
  q, c, sigma_w2 = 1.3, 0.4, 2.0
  phi2 = integrate.quad(lambda z: special.erf(np.sqrt(q) * z) ** 2 * stats.norm.pdf(z), -12, 12)
  assert theory.length_map("erf", 1.0, 0.0, q) == pytest.approx(phi2[0], rel=1e-11)
  # E[erf(u₁) erf(u₂)]: the inner Gaussian average of erf is erf(m/√(1 + 2v)).
  s = np.sqrt(1 - c * c)

  def outer(z):
    inner = special.erf(np.sqrt(q) * c * z / np.sqrt(1 + 2 * q * s * s))
    return special.erf(np.sqrt(q) * z) * inner * stats.norm.pdf(z)

  cross = integrate.quad(outer, -12, 12, epsabs=1e-14, epsrel=1e-13)[0]
  assert theory.correlation_map("erf", sigma_w2, 0.0, q, c) == pytest.approx(
    cross / phi2[0], rel=1e-10
  )
  mf = theory.mean_field("erf", sigma_w2, 0.1)
  chi1 = integrate.quad(
    lambda z: sigma_w2 * PHI["erf"][1](np.sqrt(mf.q_star) * z) ** 2 * stats.norm.pdf(z), -12, 12
  )[0]
  assert mf.chi1 == pytest.approx(chi1, rel=1e-10)


@pytest.mark.parametrize("q, c", [(2.0, 0.5), (2.0, 0.99), (0.5, -0.7)])
def test_hard_tanh_two_point_quadrature_matches_mpmath(q, c):
  """The 2-D quadrature with kinks against an mpmath 1-D integral with closed-form inner part."""
  act = activations.get("hard_tanh")
  sq, s = mpmath.sqrt(q), mpmath.sqrt(1 - mpmath.mpf(c) ** 2)

  def inner(z1):  # E[clip(m + v Z, −1, 1)]
    m, v = sq * c * z1, sq * s
    a, b = (-1 - m) / v, (1 - m) / v
    phi_a, phi_b = mpmath.ncdf(a), mpmath.ncdf(b)
    return -phi_a + (1 - phi_b) + m * (phi_b - phi_a) + v * (mpmath.npdf(a) - mpmath.npdf(b))

  with mpmath.workdps(20):
    cross = mpmath.quad(
      lambda z: mpmath.npdf(z) * max(-1, min(1, sq * z)) * inner(z), [-12, -1 / sq, 0, 1 / sq, 12]
    )
  phi2 = theory.length_map(act, 1.0, 0.0, q)
  assert theory.correlation_map(act, 1.0, 0.0, q, c) == pytest.approx(
    float(cross) / phi2, rel=1e-12
  )


def mp_box_probability(q, c):
  """P(|u₁| < 1, |u₂| < 1) = E[φ'(u₁)φ'(u₂)] for hard tanh, by mpmath."""
  with mpmath.workdps(20):
    sq, s = mpmath.sqrt(q), mpmath.sqrt(1 - mpmath.mpf(c) ** 2)
    return float(
      mpmath.quad(
        lambda z: (
          mpmath.npdf(z) * (mpmath.ncdf((1 / sq - c * z) / s) - mpmath.ncdf((-1 / sq - c * z) / s))
        ),
        [-1 / sq, 0, 1 / sq],
      )
    )


def test_hard_tanh_chaotic_mean_field_matches_mpmath():
  sigma_w2, sigma_b2 = 2.5, 0.05
  mf = theory.mean_field("hard_tanh", sigma_w2, sigma_b2)
  assert mf.chi1 == pytest.approx(sigma_w2 * special.erf(1 / np.sqrt(2 * mf.q_star)), rel=1e-13)
  assert mf.chi1 > 1 and 0 < mf.c_star < 1
  c_next = theory.correlation_map("hard_tanh", sigma_w2, sigma_b2, mf.q_star, mf.c_star)
  assert c_next == pytest.approx(mf.c_star, abs=1e-13)
  expected = sigma_w2 * mp_box_probability(mf.q_star, mf.c_star)
  assert mf.chi_c == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("name", ["relu", "linear", "erf"])
def test_closed_forms_agree_with_generic_quadrature(name):
  """Renaming an activation forces the quadrature path; it must reproduce the closed form."""
  base = activations.get(name)
  renamed = activations.Activation(f"{name}_by_quadrature", (), base.fn, base.derivative)
  for q, c in [(0.7, 0.3), (2.5, -0.6)]:
    assert theory.length_map(renamed, 1.3, 0.1, q) == pytest.approx(
      theory.length_map(base, 1.3, 0.1, q), rel=1e-12
    )
    assert theory.correlation_map(renamed, 1.3, 0.1, q, c) == pytest.approx(
      theory.correlation_map(base, 1.3, 0.1, q, c), rel=1e-12
    )


def test_relu_mean_field_closed_form_and_edges():
  mf = theory.mean_field("relu", 1.5, 0.3)
  assert mf.q_star == pytest.approx(0.3 / (1 - 0.75))
  assert mf.chi1 == pytest.approx(0.75) and mf.chi_c == pytest.approx(0.75)
  assert mf.xi_grad == pytest.approx(-1 / math.log(0.75))
  zero = theory.mean_field("relu", 1.5, 0.0)
  assert zero.q_star == 0.0 and zero.chi1 == pytest.approx(0.75) and zero.xi_c == math.inf
  assert theory.mean_field("relu", 2.5, 0.1).q_star == math.inf
  critical = theory.mean_field("relu", 2.0, 0.0)
  assert math.isnan(critical.q_star) and critical.chi1 == 1.0 and critical.xi_grad == math.inf
  # Arc-cosine kernel at q = 1, c = 0 against Monte Carlo.
  rng = np.random.default_rng(3)
  z = rng.standard_normal((2, 400_000))
  mean, se = mc_mean(2.0 * np.maximum(z[0], 0) * np.maximum(z[1], 0))
  assert_within_se(theory.correlation_map("relu", 2.0, 0.0, 1.0, 0.0), mean, se, "relu c-map")


def test_critical_sigma_w2_known_values():
  assert theory.critical_sigma_w2("tanh", 0.0) == 1.0
  assert theory.critical_sigma_w2("erf", 0.0) == pytest.approx(math.pi / 4, rel=1e-14)
  assert theory.critical_sigma_w2("relu", 0.7) == 2.0
  assert theory.critical_sigma_w2("linear", 0.7) == 1.0


@pytest.mark.parametrize("n", [5.0, 10.0])
def test_critical_sigma_w2_of_steep_scaled_tanh_follows_the_rescaling(n):
  """tanh(n·x) at (σ_w², σ_b²) is tanh at n²(σ_w², σ_b²): its critical σ_w² is below 2⁻⁴ for n ≥ 5.

  Both sides are Brent roots to ~1e-14 relative of χ₁ − 1, whose slope in σ_w² is O(1/σ_w²),
  so they agree to ~1e-12; at σ_b² = 0 the answer is the corner 1/n² (q* = 0, χ₁ = n²σ_w²).
  (This raised "chi1 > 1 already at sigma_w2 = 0.0625" before.)
  """
  act = activations.scaled_tanh(n)
  assert theory.critical_sigma_w2(act, 0.0) == pytest.approx(1 / n**2, rel=1e-14)
  expected = theory.critical_sigma_w2("tanh", 0.05 * n * n) / n**2
  assert theory.critical_sigma_w2(act, 0.05) == pytest.approx(expected, rel=1e-11)


@pytest.mark.parametrize("sigma_b2", [0.05, 0.3])
def test_critical_sigma_w2_gives_chi1_one(sigma_b2):
  sigma_w2 = theory.critical_sigma_w2("tanh", sigma_b2)
  q = hermite_q_star(np.tanh, sigma_w2, sigma_b2)
  chi1 = sigma_w2 * hermite_1d(lambda u: PHI["tanh"][1](u) ** 2, q)
  assert chi1 == pytest.approx(1.0, abs=1e-10)
  if sigma_b2 == 0.05:
    assert sigma_w2 == pytest.approx(1.7610, abs=1e-4)


def test_correlation_depth_scale_chaotic_phase():
  """c* and χ_c from an independent Gauss–Hermite iteration of the correlation map."""
  sigma_w2, sigma_b2 = 3.0, 0.05
  mf = theory.mean_field("tanh", sigma_w2, sigma_b2)
  assert mf.chi1 > 1 and mf.xi_grad < 0

  def c_map(c):
    return (sigma_w2 * hermite_2d(np.tanh, np.tanh, mf.q_star, c) + sigma_b2) / mf.q_star

  c = 0.99
  for _ in range(300):
    c = c_map(c)
  assert mf.c_star == pytest.approx(c, abs=1e-10)
  h = 1e-5
  slope = (c_map(mf.c_star + h) - c_map(mf.c_star - h)) / (2 * h)
  assert mf.chi_c == pytest.approx(slope, rel=1e-8)
  assert mf.xi_c == pytest.approx(-1 / math.log(slope), rel=1e-7)


def test_correlation_and_length_depth_scales_ordered_phase():
  sigma_w2, sigma_b2 = 1.2, 0.05
  mf = theory.mean_field("tanh", sigma_w2, sigma_b2)
  q = mf.q_star
  # Iterate 1 − c directly (no cancellation): 1 − c' = σ_w² E[φ(u₁)(φ(u₁) − φ(u₂))]/q*.
  z1, z2 = HERMITE_X[:, None], HERMITE_X[None, :]
  weights = HERMITE_W[:, None] * HERMITE_W[None, :]
  gap = 0.01
  for _ in range(80):  # down to 1 − c ≈ 1e-8, before round-off dominates
    previous = gap
    c = 1 - gap
    u1 = np.sqrt(q) * z1
    u2 = np.sqrt(q) * (c * z1 + np.sqrt(gap * (2 - gap)) * z2)
    gap = sigma_w2 * np.sum(weights * np.tanh(u1) * (np.tanh(u1) - np.tanh(u2))) / q
  assert mf.c_star == 1.0
  assert gap / previous == pytest.approx(mf.chi_c, rel=1e-5)
  # Length map: (q_{l+1} − q*)/(q_l − q*) → ∂L/∂q = e^{−1/ξ_q}.
  ql, ratios = 2 * q, []
  for _ in range(25):
    nxt = sigma_w2 * hermite_1d(lambda u: np.tanh(u) ** 2, ql) + sigma_b2
    ratios.append((nxt - q) / (ql - q))
    ql = nxt
  assert ratios[-1] == pytest.approx(math.exp(-1 / mf.xi_q), rel=1e-5)


def test_zero_length_fixed_point_is_neutral_for_correlations():
  mf = theory.mean_field("tanh", 0.8, 0.0)
  assert mf.q_star == 0.0
  assert mf.chi1 == pytest.approx(0.8) and mf.q_map_slope == pytest.approx(0.8)
  assert mf.chi_c == 1.0 and mf.xi_c == math.inf


# ----------------------------------------------------------------------------
# Dynamical isometry: Jacobian spectra of actual random networks.


def random_orthogonal(rng, batch, n):
  """Haar orthogonal matrices: Gram–Schmidt (twice, CGS2) of Gaussian matrices.

  This is the Q of the QR decomposition with diag(R) > 0, which is Haar
  distributed; einsum keeps it off multithreaded LAPACK, which is slow on busy
  CI machines.
  """
  a = rng.standard_normal((batch, n, n))
  q = np.empty_like(a)
  for k in range(n):
    v = a[:, :, k]
    for _ in range(2):
      v = v - np.einsum("bik,bk->bi", q[:, :, :k], np.einsum("bik,bi->bk", q[:, :, :k], v))
    q[:, :, k] = v / np.linalg.norm(v, axis=1, keepdims=True)
  return q


def jacobian_moments_mc(name, sigma_w2, sigma_b2, depth, weights, width, nets, rng):
  """Per-network tr(JJᵀ)/N and tr((JJᵀ)²)/N / m₁² − 1 for a batch of random nets."""
  phi, dphi = PHI[name]
  q = theory.mean_field(name, sigma_w2, sigma_b2).q_star if name != "linear" else 1.0
  x = phi(np.sqrt(q) * rng.standard_normal((nets, width)))  # pre-activations at q*
  jac = np.broadcast_to(np.eye(width), (nets, width, width))
  for _ in range(depth):
    if weights == "gaussian":
      w = rng.standard_normal((nets, width, width)) * np.sqrt(sigma_w2 / width)
    else:
      w = np.sqrt(sigma_w2) * random_orthogonal(rng, nets, width)
    h = np.einsum("bij,bj->bi", w, x) + np.sqrt(sigma_b2) * rng.standard_normal((nets, width))
    x = phi(h)
    jac = dphi(h)[:, :, None] * (w @ jac)
  jjt = jac @ np.swapaxes(jac, 1, 2)
  m1 = np.trace(jjt, axis1=1, axis2=2) / width
  m2 = np.sum(jjt * jjt, axis=(1, 2)) / width
  return m1, m2 / m1**2 - 1


@pytest.mark.parametrize(
  "name, sigma_w2, sigma_b2, weights",
  [
    ("linear", 1.0, 0.0, "gaussian"),
    ("tanh", 1.5, 0.05, "gaussian"),
    ("tanh", 1.5, 0.05, "orthogonal"),
  ],
)
def test_jacobian_spectrum_moments_match_random_networks(name, sigma_w2, sigma_b2, weights):
  """Monte Carlo at widths 64 and 128, Richardson-extrapolated to infinite width.

  Finite width biases both moments by O(depth/width) (≈ 3% at width 64 here);
  2·m(128) − m(64) removes the O(1/width) term, and the tolerance is 5 standard
  errors of that combination, sqrt(4·se₁₂₈² + se₆₄²).
  """
  depth = 3
  rng = np.random.default_rng(4)
  small = jacobian_moments_mc(name, sigma_w2, sigma_b2, depth, weights, 64, 160, rng)
  large = jacobian_moments_mc(name, sigma_w2, sigma_b2, depth, weights, 128, 80, rng)
  theory_moments = theory.jacobian_spectrum_moments(name, sigma_w2, sigma_b2, depth, weights)
  for index, label in enumerate(["mean", "normalized_variance"]):
    m_small, se_small = mc_mean(small[index])
    m_large, se_large = mc_mean(large[index])
    extrapolated = 2 * m_large - m_small
    se = np.sqrt(4 * se_large**2 + se_small**2)
    expected = getattr(theory_moments, label)
    assert_within_se(extrapolated, expected, se, f"{name} {weights} {label}")


def test_jacobian_spectrum_moments_formula_cases():
  linear = theory.jacobian_spectrum_moments("linear", 1.0, 0.0, 7, "orthogonal")
  assert linear == (0.0, 0.0) and linear.mean == 1.0
  log_mean, variance = theory.jacobian_spectrum_moments("relu", 2.0, 0.0, 5, "orthogonal")
  assert log_mean == 0.0 and variance == pytest.approx(5.0)  # μ₁ = μ₂ = 1/2: L(2 − 1)
  _, variance = theory.jacobian_spectrum_moments("relu", 2.0, 0.0, 5, "gaussian")
  assert variance == pytest.approx(10.0)


def test_jacobian_spectrum_moments_stay_finite_at_depth_10000():
  """χ₁ = σ_w²·E φ'(√q* z)² > 1 (chaotic tanh): m₁ = χ₁^L overflows float64, log m₁ does not."""
  chi1 = theory.mean_field("tanh", 4.0, 0.05).chi1
  moments = theory.jacobian_spectrum_moments("tanh", 4.0, 0.05, 10_000)
  assert moments.log_mean == pytest.approx(10_000 * math.log(chi1), rel=1e-12)
  assert moments.log_mean > 710 and math.isfinite(moments.normalized_variance)
  with pytest.raises(OverflowError, match="log_mean"):
    _ = moments.mean
  small = theory.jacobian_spectrum_moments("tanh", 4.0, 0.05, 3)
  assert small.mean == pytest.approx(chi1**3, rel=1e-12)


# ----------------------------------------------------------------------------
# Finite-width ReLU nets (Hanin 2018; Hanin & Nica 2020).


def relu_net_gradients(widths, samples, rng):
  """‖Ju‖² for a fixed-per-sample unit u and ‖Jᵀc‖² for a uniform unit c, batched over nets."""
  a = rng.standard_normal((samples, widths[0]))
  v = rng.standard_normal((samples, widths[0]))
  v /= np.linalg.norm(v, axis=1, keepdims=True)
  masks, weights = [], []
  for fan_in, fan_out in zip(widths[:-1], widths[1:], strict=True):
    w = rng.standard_normal((samples, fan_out, fan_in)) * np.sqrt(2.0 / fan_in)
    h = np.einsum("sij,sj->si", w, a)
    mask = (h > 0).astype(np.float64)
    a, v = h * mask, mask * np.einsum("sij,sj->si", w, v)
    masks.append(mask)
    weights.append(w)
  c = rng.standard_normal((samples, widths[-1]))
  c /= np.linalg.norm(c, axis=1, keepdims=True)
  for w, mask in zip(weights[::-1], masks[::-1], strict=True):
    c = np.einsum("sij,si->sj", w, mask * c)
  return np.sum(v * v, axis=1), np.sum(c * c, axis=1)


def test_relu_gradient_log_moments_match_random_networks():
  widths = [6, 8, 5, 12, 7, 9, 6, 10, 8, 5, 7]
  forward, backward = relu_net_gradients(widths, 30_000, np.random.default_rng(5))
  moments = theory.relu_gradient_moments(widths)
  alive = forward > 0
  dead = 1 - alive.mean()
  assert_within_se(dead, moments.dead_probability, np.sqrt(dead * (1 - dead) / alive.size), "dead")
  assert np.array_equal(alive, backward > 0)
  mean, se = mc_mean(forward)
  assert_within_se(mean, moments.mean, se, "E|Ju|^2")
  for samples, log_mean, log_var, label in [
    (forward, moments.log_mean, moments.log_var, "forward"),
    (backward, moments.backward_log_mean, moments.backward_log_var, "backward"),
  ]:
    logs = np.log(samples[alive])
    mean, se = mc_mean(logs)
    assert_within_se(mean, log_mean, se, f"{label} log mean")
    var, se = mc_var(logs)
    assert_within_se(var, log_var, se, f"{label} log var")


def test_relu_gradient_second_moment_matches_random_networks():
  widths = [20, 30, 25]
  forward, _ = relu_net_gradients(widths, 30_000, np.random.default_rng(6))
  moments = theory.relu_gradient_moments(widths)
  mean, se = mc_mean(forward)
  assert_within_se(mean, moments.mean, se, "E|Ju|^2")
  mean, se = mc_mean(forward**2)
  assert_within_se(mean, moments.second_moment, se, "E|Ju|^4")


def test_relu_gradient_leading_order():
  moments = theory.relu_gradient_moments([400] * 31)
  assert moments.log_var == pytest.approx(moments.log_var_leading, rel=0.02)
  assert moments.log_mean == pytest.approx(moments.log_mean_leading, abs=0.02)
  assert moments.second_moment == pytest.approx((1 + 5 / 400) ** 30, rel=1e-12)


def test_softplus_without_a_fixed_point_takes_the_limit_of_large_q():
  """σ_w² > 2: q* = ∞ and softplus' = sigmoid(√q z) → step, so χ₁ → σ_w²/2 (as for ReLU)."""
  mf = theory.mean_field("softplus", 3.0, 0.1)
  assert mf.q_star == math.inf and mf.chi1 == pytest.approx(1.5, rel=1e-8)
  assert (mf.c_star, mf.chi_c) == (1.0, 1.0)
  moments = theory.jacobian_spectrum_moments("softplus", 3.0, 0.1, 10_000)
  relu = theory.jacobian_spectrum_moments("relu", 3.0, 0.1, 10_000)
  assert moments.log_mean == pytest.approx(relu.log_mean, rel=1e-8)
  assert moments.normalized_variance == pytest.approx(relu.normalized_variance, rel=1e-8)
  assert theory.critical_sigma_w2("softplus", 0.1) == pytest.approx(2.0, rel=1e-8)


def test_residual_relu_lengths_grow_past_float64_in_log_space():
  """ReLU: q^l = a q^{l−1} + c with a = 1 + α²σ_w²/2, c = α²σ_b²: q^L ≈ a^L (q0 + c/(a − 1))."""
  sigma_w2, sigma_b2, alpha, depth, q0 = 3.0, 0.1, 1.0, 10_000, 1.0
  r = theory.residual_mean_field("relu", sigma_w2, sigma_b2, alpha=alpha, depth=depth, q0=q0)
  a, c = 1 + alpha**2 * sigma_w2 / 2, alpha**2 * sigma_b2
  expected = depth * math.log(a) + math.log(q0 + c / (a - 1))
  assert r.log_q[-1] == pytest.approx(expected, rel=1e-12) and np.isfinite(r.log_q).all()
  assert r.log_gradient_growth[0] == pytest.approx(depth * math.log(1 + alpha**2 * sigma_w2 / 2))
  with pytest.raises(OverflowError, match="log_q"):
    _ = r.q


def test_relu_gradient_moments_stay_finite_at_depth_10000():
  moments = theory.relu_gradient_moments([8] * 10_001)
  assert moments.log_second_moment == pytest.approx(10_000 * math.log(1 + 5 / 8), rel=1e-12)
  assert all(math.isfinite(v) for v in moments)
  with pytest.raises(OverflowError, match="log_second_moment"):
    _ = moments.second_moment


# ----------------------------------------------------------------------------
# Lyapunov exponents (Newman 1986) against Benettin's repeated QR.


@pytest.mark.parametrize("n, sigma_w2", [(4, 1.0), (7, 2.5)])
def test_newman_lyapunov_matches_benettin(n, sigma_w2):
  steps = 4000
  rng = np.random.default_rng(7)
  q = np.eye(n)
  log_r = np.zeros(n)
  for _ in range(steps):
    q, r = np.linalg.qr(rng.standard_normal((n, n)) * np.sqrt(sigma_w2 / n) @ q)
    log_r += np.log(np.abs(np.diag(r)))
  estimate = log_r / steps
  # log R_ii are iid over steps with variance ψ'((n − i + 1)/2)/4 (Bartlett decomposition).
  se = 0.5 * np.sqrt(special.polygamma(1, np.arange(n, 0, -1) / 2) / steps)
  exponents = theory.newman_lyapunov(n, sigma_w2)
  assert exponents.shape == (n,) and exponents.dtype == np.float64
  assert np.all(np.diff(exponents) < 0)
  assert np.all(np.abs(estimate - exponents) <= SE_MULTIPLE * se), (estimate, exponents)


# ----------------------------------------------------------------------------
# Input validation.


@pytest.mark.parametrize(
  "call, parameter",
  [
    (lambda: theory.scaled_tanh_vanish_threshold(-1.0), "n"),
    (lambda: theory.scaled_tanh_vanish_threshold(2.0, depth=0.5), "depth"),
    (lambda: theory.scaled_tanh_vanish_threshold(np.array([2.0, np.nan])), "n"),
    (lambda: theory.scaled_tanh_explode_threshold(0.0), "n"),
    (lambda: theory.mean_field("tanh", True, 0.0), "sigma_w2"),  # float() would take these
    (lambda: theory.mean_field("tanh", 1.5, "0.05"), "sigma_b2"),
    (lambda: theory.sigmoid_factor_bound(["1.0", "2.0"]), "w"),
    (lambda: theory.sigmoid_factor_bound(np.array([True, False])), "w"),
    (lambda: theory.length_map("tanh", -1.0, 0.0, 1.0), "sigma_w2"),
    (lambda: theory.length_map("tanh", 1.0, -0.1, 1.0), "sigma_b2"),
    (lambda: theory.length_map("tanh", 1.0, 0.0, -1.0), "q"),
    (lambda: theory.correlation_map("tanh", 1.0, 0.0, 1.0, 1.5), "c"),
    (lambda: theory.correlation_map("tanh", 1.0, 0.0, math.inf, 0.5), "q_star"),
    (lambda: theory.mean_field("tanh", 0.0, 0.0), "sigma_w2"),
    (lambda: theory.mean_field("tanh", 1.0, math.nan), "sigma_b2"),
    (lambda: theory.critical_sigma_w2("tanh", -1.0), "sigma_b2"),
    (lambda: theory.jacobian_spectrum_moments("tanh", 1.0, 0.0, 0), "depth"),
    (lambda: theory.jacobian_spectrum_moments("tanh", 1.0, 0.0, 2, "uniform"), "weights"),
    (lambda: theory.relu_gradient_moments([10]), "widths"),
    (lambda: theory.relu_gradient_moments([10, 0, 5]), "widths[1]"),
    (lambda: theory.newman_lyapunov(0), "n"),
    (lambda: theory.newman_lyapunov(3, sigma_w2=-2.0), "sigma_w2"),
  ],
)
def test_bad_input_raises_value_error_naming_parameter(call, parameter):
  with pytest.raises(ValueError, match=rf"\b{re.escape(parameter)}"):
    call()


def test_unknown_activation_and_unsupported_noise():
  with pytest.raises(ValueError, match="unknown activation"):
    theory.mean_field("nope", 1.0, 0.0)
  noisy = activations.Activation("noisy_tanh", (), np.tanh, np.tanh, noise_std=0.5)
  with pytest.raises(ValueError, match="stochastic"):
    theory.length_map(noisy, 1.0, 0.0, 1.0)
