"""scale_map: rescaling identities, mean field against the theory module, thresholds and bounds."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import vanish as vn
from vanish import activations, phase_map, scale_map, theory

KEY = jax.random.key(7)


def test_mean_field_chi1_matches_theory_module():
  cells = {
    "tanh": [(0.5, 0.0), (1.5, 0.05), (4.0, 0.0), (40.0, 3.0), (1e3, 1e3)],
    "sigmoid": [(1.0, 0.0), (30.0, 2.0), (1e4, 0.5)],
    "softplus": [(1.5, 0.1), (3.0, 0.1), (8.0, 0.0)],  # q* = ∞ past σ_w² = 2: χ₁ its limit
  }
  for name, pairs in cells.items():
    w2, b2 = (np.array(v) for v in zip(*pairs, strict=True))
    q, chi1 = scale_map.mean_field_chi1(name, w2, b2)
    for i, (a, b) in enumerate(pairs):
      mf = theory.mean_field(name, a, b)
      np.testing.assert_allclose(q[i], mf.q_star, rtol=1e-9, atol=1e-300)
      np.testing.assert_allclose(chi1[i], mf.chi1, rtol=1e-9)


def test_gauss_expectation_entries_do_not_depend_on_their_call():
  # the quadrature runs in fixed 64-entry calls padded with q = 1: an entry's value is the
  # same alone or in the second call of a 70-entry grid (bit for bit), and none is lost
  act = activations.get("tanh")
  q = np.geomspace(1e-3, 1e3, 70)
  grid = scale_map._gauss_expectation(act, False, 0.25, q)
  assert grid.shape == (70,)
  np.testing.assert_array_equal(
    scale_map._gauss_expectation(act, False, 0.25, q[66:68]), grid[66:68]
  )
  np.testing.assert_array_equal(scale_map._gauss_expectation(act, False, 0.25, q[:0]), np.zeros(0))


def test_mean_field_rescaling_identity():
  """χ₁ of tanh(n·x) at (σ_w², σ_b²) is χ₁ of tanh at (n²σ_w², n²σ_b²) (theory module, direct)."""
  for n, w2, b2 in [(2.0, 1.0, 0.05), (0.5, 3.0, 0.2), (4.0, 0.3, 0.1)]:
    _, chi1 = scale_map.mean_field_chi1("tanh", [n * n * w2], [n * n * b2])
    direct = theory.mean_field(activations.scaled_tanh(n), w2, b2).chi1
    np.testing.assert_allclose(chi1[0], direct, rtol=1e-8)
  # σ_b² = 0: q* = 0 and χ₁ = n²σ_w² up to the critical line σ_w² = 1/n²
  for n in (0.5, 2.0, 4.0):
    chi1 = theory.mean_field(activations.scaled_tanh(n), 0.9 / n**2, 0.0).chi1
    np.testing.assert_allclose(chi1, 0.9, rtol=1e-12)
  np.testing.assert_allclose(scale_map.mean_field_chi1("tanh", [0.9], [0.0])[1], 0.9, rtol=1e-12)


def test_mean_field_phase_sits_on_the_phase_map_boundaries():
  depth, eps = 21, 1e-2
  b = phase_map.mean_field_boundaries("tanh", [0.0, 0.3], depth=depth, epsilon=eps)
  for edge, inside, outside in ((b.vanish, -1, 0), (b.explode, 0, 1)):
    below = np.array(edge) * (1 - 1e-4)
    above = np.array(edge) * (1 + 1e-4)
    _, chi_lo = scale_map.mean_field_chi1("tanh", below, b.sigma_b2)
    _, chi_hi = scale_map.mean_field_chi1("tanh", above, b.sigma_b2)
    assert scale_map.mean_field_phase(chi_lo, depth=depth, epsilon=eps).tolist() == [inside] * 2
    assert scale_map.mean_field_phase(chi_hi, depth=depth, epsilon=eps).tolist() == [outside] * 2


def test_cell_log_growth_equals_phase_map_on_a_grid():
  w2, b2 = np.array([0.5, 2.0, 8.0]), np.array([0.0, 0.4])
  common = {"width": 8, "depth": 6, "members": 4, "key": KEY}
  grid = phase_map.log_growth("tanh", w2, b2, **common)
  cells = scale_map.cell_log_growth(
    "tanh", np.broadcast_to(w2, (2, 3)), np.broadcast_to(b2[:, None], (2, 3)), **common
  )
  np.testing.assert_array_equal(np.asarray(cells), np.asarray(grid))
  # the (σ_w², σ_b²) phase map is the cell map on the outer-product cells
  pm = phase_map.gradient_phase_map("tanh", w2, b2, epsilon=0.1, **common)
  cm = scale_map.cell_phase_map(
    "tanh", *np.meshgrid(w2, b2), x=w2, y=b2, x_name="w2", y_name="b2", epsilon=0.1, **common
  )
  for name in phase_map.PhaseMap._fields[2:-1]:
    np.testing.assert_array_equal(getattr(cm, name), getattr(pm, name))
  assert pm.config == {**cm.config, "chunk_size": 6} and 0 < pm.p_stable.mean() < 1


def test_scaled_tanh_map_is_the_tanh_map_at_scaled_variances():
  """tanh(n(Wx + b)) = tanh((nW)x + nb): equal log-growth with common random numbers (float64)."""
  n, w2, b2 = np.array([0.5, 3.0]), np.array([0.4, 2.0]), 0.1
  common = {"width": 8, "depth": 6, "members": 4, "key": KEY}
  with jax.enable_x64(True):
    rays = scale_map.cell_log_growth(
      "tanh",
      n[None, :] ** 2 * w2[:, None],
      np.broadcast_to(n**2 * b2, (2, 2)),
      dtype=jnp.float64,
      **common,
    )
    for j, nj in enumerate(n):
      direct = phase_map.log_growth(
        activations.scaled_tanh(float(nj)), w2, [b2], dtype=jnp.float64, **common
      )
      np.testing.assert_allclose(np.asarray(rays[:, j]), np.asarray(direct[0]), rtol=1e-9)
  n3 = np.array([0.5, 1.0, 3.0])  # 6 cells: the shapes of the grid test above
  m = scale_map.scaled_tanh_map(n3, w2, sigma_b2=b2, epsilon=0.1, **common)
  np.testing.assert_allclose(m.sigma_w2, n3[None, :] ** 2 * w2[:, None])
  np.testing.assert_allclose(m.p_vanish + m.p_stable + m.p_explode, 1.0)
  growth = scale_map.cell_log_growth("tanh", m.sigma_w2, m.sigma_b2, **common)
  p_vanish = (np.asarray(growth) < math.log(0.1)).mean(axis=(-2, -1))
  np.testing.assert_array_equal(m.p_vanish, p_vanish)
  assert m.outcome.shape == (2, 3) and m.x_name == "n" and m.y_name == "sigma_w2"


def test_scaled_tanh_chain_equals_scalar_chain_of_tanh_nx():
  """The rescaled tanh chain plus log n is the tanh(n·x) chain itself (float64, same draws)."""
  depth, members, n = 8, 64, 2.5
  with jax.enable_x64(True):
    log_g = scale_map.scaled_tanh_chain_log_gradient(
      [n], depth=depth, members=members, key=KEY, dtype=jnp.float64
    )
    net = vn.MLP([1] * (depth + 1), "tanh", vn.init.normal(1.0), vn.init.normal(1.0))
    params = net.init(jax.random.fold_in(KEY, 0), members, dtype=jnp.float64)
    x = jax.random.normal(jax.random.fold_in(KEY, 1), (members, 1, 1), jnp.float64)
  w, b = np.asarray(params[0]["w"][:, :, 0, 0]), np.asarray(params[0]["b"][:, :, 0])
  a, log_g_direct = np.asarray(x[:, 0, 0]), []  # numpy float64: the chain of tanh(n·x) itself
  for j in range(depth):
    z = w[:, j] * a + b[:, j]
    y = np.abs(n * z)  # log tanh'(y) = log sech²(y), without 1 − tanh² cancelling
    log_sech2 = 2 * (math.log(2) - y - np.log1p(np.exp(-2 * y)))
    log_g_direct.append(math.log(n) + log_sech2 + (np.log(np.abs(w[:, j])) if j else 0.0))
    a = np.tanh(n * z)
  direct = np.cumsum(np.stack(log_g_direct, axis=1), axis=1)
  np.testing.assert_allclose(np.asarray(log_g[0, :, 0]), direct, rtol=1e-9, atol=1e-9)


def test_one_neuron_members_draw_their_own_inputs():
  """Members are independent draws of (weights, inputs): E tanh'(u·x) over u, x ~ N(0, 1).

  With one input shared by all members the member mean would be E[tanh'(u·x₀) | x₀].
  """
  members = 4096
  log_g = scale_map.one_neuron_log_gradient(
    "tanh", [1.0], [0.0], depth=1, members=members, key=KEY, inputs=1
  )
  slope = np.exp(np.asarray(log_g[0, :, 0, 0], np.float64))  # tanh'(u_m x_m)
  nodes, weights = np.polynomial.hermite_e.hermegauss(200)
  weights = weights / weights.sum()
  product = nodes[:, None] * nodes[None, :]
  expected = float(np.sum(weights[:, None] * weights[None, :] * (1 - np.tanh(product) ** 2)))
  standard_error = slope.std(ddof=1) / math.sqrt(members)
  assert abs(slope.mean() - expected) < 5 * standard_error


def test_independent_chains_have_the_same_bits_for_any_number_of_chains():
  """Chain m's values depend on (key, m, block) only: 3 chains are the first 3 of 150 (three
  calls of 64, the last one padded) bit for bit, though XLA's rounding depends on a call's
  batch size (calls of 3 and 64 chains: 1.1e-5 apart on the CPU); every column is chain m's
  own draw."""

  def sample(key):
    return scale_map.one_neuron_log_gradient(
      "tanh", [1.0, 2.0, 3.0], [1.0, 1.0, 1.0], depth=20, members=1, key=key
    )

  few = scale_map.independent_chains(sample, chains=3, key=KEY, block=64)
  many = scale_map.independent_chains(sample, chains=150, key=KEY, block=64)
  assert few.shape == (3, 3, 20) and many.shape == (3, 150, 20)
  np.testing.assert_array_equal(many[:, :3], few)
  for m in (0, 70, 149):  # first, second and last (padded) call
    alone = np.asarray(sample(jax.random.fold_in(KEY, m)))[:, 0, 0]
    np.testing.assert_allclose(many[:, m], alone, rtol=1e-5, atol=1e-5)
  assert len({tuple(column.ravel()) for column in np.moveaxis(many, 1, 0)}) == 150


def test_sigmoid_chain_obeys_the_quarter_bound_and_large_weights_vanish_faster():
  # the shapes of the tiny sigmoid_weights experiment test: compiled once for both
  depth, members, scales = 6, 256, np.array([0.5, 1.0, 3.0, 50.0])
  log_g = np.asarray(
    scale_map.one_neuron_log_gradient(
      "sigmoid", scales, np.ones(4), depth=depth, members=members, key=KEY
    ),
    np.float64,
  )[:, :, 0, :]
  net = vn.MLP([1] * (depth + 1), "sigmoid", vn.init.normal(1.0), vn.init.normal(1.0))
  u = np.asarray(net.init(jax.random.fold_in(KEY, 0), members)[0]["w"][:, :, 0, 0], np.float64)
  for i, s in enumerate(scales):
    # |g_K| ≤ (1/4)·Π_{j=2..K} |w_j|/4 for every chain (σ' ≤ 1/4, Nielsen ch. 5)
    bound = math.log(0.25) + np.concatenate(
      [np.zeros((members, 1)), np.cumsum(np.log(np.abs(s * u[:, 1:]) / 4), axis=1)], axis=1
    )
    assert np.all(log_g[i] <= bound + 1e-4 * (1 + np.abs(bound)))
  median = np.median(log_g[:, :, -1], axis=1)
  assert median[3] < median[2]  # large weights: σ'(w a + b) collapses


@pytest.mark.parametrize("n", [1.5, 2.0, 8.0])
@pytest.mark.parametrize("level", [1, 2, 10, 40])
def test_tanh_thresholds_are_the_measure_of_the_interval(n, level):
  """The fraction of x ~ U(−A, A) with n·tanh'(n·x) ≥ n^{1−K} equals t_K(n)/A."""
  t = theory.scaled_tanh_vanish_threshold(n, level)
  half, samples = 1.5 * t, 200_000
  x = np.random.default_rng(level).uniform(-half, half, samples)
  y = np.abs(n * x)
  log_factor = np.log(n) + math.log(4) - 2 * y - 2 * np.log1p(np.exp(-2 * y))
  frac = np.mean(log_factor >= (1 - level) * math.log(n))
  p = t / half
  assert abs(frac - p) < 5 * math.sqrt(p * (1 - p) / samples)


@pytest.mark.parametrize("w", [4.5, 6.9, 30.0, 100.0])
def test_sigmoid_unstable_width_is_the_measure_of_the_interval(w):
  samples = 200_000
  a = np.random.default_rng(int(w)).uniform(-0.5, 0.5, samples)
  s = 1 / (1 + np.exp(-w * a))
  frac = np.mean(w * s * (1 - s) >= 1)
  p = theory.sigmoid_unstable_input_width(w)
  assert abs(frac - p) < 5 * math.sqrt(p * (1 - p) / samples)
  # never above the |w|/4 bound, reached at a = 0
  assert np.max(w * s * (1 - s)) <= theory.sigmoid_factor_bound(w)


def test_outcome_classes_and_validation():
  out = scale_map.outcome_classes([[0.5, 0.1]], [[0.2, 0.1]], [[0.3, 0.8]])
  assert out.tolist() == [[-1, 1]] and out.dtype == np.int8
  common = {"width": 4, "depth": 3, "members": 2, "key": KEY}
  with pytest.raises(ValueError, match="n must be"):
    scale_map.scaled_tanh_map([0.0, 1.0], [1.0], **common)
  with pytest.raises(ValueError, match="sigma_w2 must be a strictly increasing"):
    scale_map.scaled_tanh_map([1.0], [2.0, 1.0], **common)
  with pytest.raises(ValueError, match="sigma_b2 must be one bias variance"):
    scale_map.scaled_tanh_map([1.0], [1.0], sigma_b2=[0.1, 0.2], **common)
  with pytest.raises(ValueError, match="same shape"):
    scale_map.cell_log_growth("tanh", [1.0, 2.0], [0.0], **common)
  with pytest.raises(ValueError, match="epsilon"):
    scale_map.weight_scale_map("sigmoid", [1.0], [0.0], epsilon=2.0, **common)
  with pytest.raises(ValueError, match="deterministic"):
    scale_map.mean_field_chi1("noisy_relu", [1.0], [0.0])
  with pytest.raises(ValueError, match="depth"):
    scale_map.mean_field_phase([1.0], depth=1)
  # a NaN χ₁ (no prediction) compares False both ways: it was classified 0 ("stable")
  with pytest.raises(ValueError, match="chi1 contains NaN"):
    scale_map.mean_field_phase([0.5, np.nan], depth=10)


def _hard_tanh_mean_field(sigma_w2, sigma_b2):
  """q* and χ₁ of hard-tanh from its closed-form Gaussian moments, q* by float64 bisection.

  E[clip(u)²] = q(2Φ(a) − 1 − 2aϕ(a)) + 2(1 − Φ(a)) and E[1(|u| < 1)] = erf(a/√2), a = 1/√q.
  """
  from scipy import special

  def length(q):
    a = 1 / math.sqrt(q)
    inner = q * (2 * special.ndtr(a) - 1 - 2 * a * math.exp(-a * a / 2) / math.sqrt(2 * math.pi))
    return sigma_w2 * (inner + 2 * special.ndtr(-a)) + sigma_b2

  lo, hi = 1e-12, 1e3  # length(q) − q changes sign once: q* is the stable fixed point
  for _ in range(200):
    mid = math.sqrt(lo * hi)
    lo, hi = (mid, hi) if length(mid) > mid else (lo, mid)
  q = math.sqrt(lo * hi)
  return q, sigma_w2 * math.erf(1 / math.sqrt(2 * q))


def test_mean_field_chi1_of_hard_tanh_resolves_its_kinks():
  """The kinks of hard-tanh at u = ±1 are panel edges (χ₁ was 0.5 % off, 1.1451 for 1.1394).

  Bisection gives q* to ~1e-15 relative and the closed forms are exact to rounding; the
  quadrature of the piecewise-smooth integrands is exact to ~1e-14, so 1e-11 is generous.
  """
  cells = [(1.5, 0.05), (3.0, 0.3), (4.0, 0.0), (0.5, 0.1)]
  w2, b2 = (np.array(v) for v in zip(*cells, strict=True))
  q, chi1 = scale_map.mean_field_chi1("hard_tanh", w2, b2)
  for i, cell in enumerate(cells):
    q_ref, chi1_ref = _hard_tanh_mean_field(*cell)
    np.testing.assert_allclose(q[i], q_ref, rtol=1e-11)
    np.testing.assert_allclose(chi1[i], chi1_ref, rtol=1e-11)


def test_mean_field_chi1_of_the_piecewise_linear_family_is_the_closed_form():
  """q* = σ_b²/(1 − χ₁) and χ₁ = σ_w²(1 + s²)/2, as theory.mean_field reports.

  ReLU at σ_w² = 2, σ_b² = 0.1 has L(q) = q + 0.1 > q: q* = inf. The quadrature found a spurious
  crossing at q ≈ 7.5e8 (a 0.1 gap is 1e-10 of q there), and χ₁ was nan wherever q* = inf.
  """
  w2, b2 = np.array([1.0, 1.5, 2.0, 3.0, 2.0]), np.array([0.0, 0.1, 0.1, 0.0, 0.0])
  q, chi1 = scale_map.mean_field_chi1("relu", w2, b2)
  np.testing.assert_array_equal(q[:4], [0.0, 0.1 / 0.25, np.inf, np.inf])
  assert np.isnan(q[4])  # the identity map: every q is fixed, as in theory.mean_field
  np.testing.assert_array_equal(chi1, w2 / 2)
  for i in range(5):
    mf = theory.mean_field("relu", w2[i], b2[i])
    np.testing.assert_array_equal([q[i], chi1[i]], [mf.q_star, mf.chi1])
  q, chi1 = scale_map.mean_field_chi1(activations.leaky_relu(0.1), [1.0], [0.2])
  np.testing.assert_allclose(chi1, 1.01 / 2, rtol=1e-15)
  np.testing.assert_allclose(q, 0.2 / (1 - 1.01 / 2), rtol=1e-15)
