"""Phase maps: measured (σ_w², σ_b²) boundaries against mean-field theory; the vectorization.

References are independent of the code under test: the mean-field boundaries come
from the theory module's quadratures, and the per-cell log-growth from
``vn.log_gradient_norms`` on explicitly scaled parameters.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import vanish as vn
from vanish import phase_map, theory

KEY = jax.random.key(0)


# --------------------------------------------------------------------------- theory vs experiment


@pytest.fixture(scope="module")
def tanh_map():
  """tanh at width 128, depth 30, ε = 0.01 on a 0.25-spaced σ_w² grid; 64 members per cell."""
  sigma_w2 = np.arange(1, 27) * 0.25  # 0.25 … 6.5
  sigma_b2 = np.array([0.0, 0.3])
  common = {"depth": 30, "epsilon": 1e-2}
  pm = phase_map.gradient_phase_map(
    "tanh", sigma_w2, sigma_b2, width=128, members=64, key=KEY, **common
  )
  plain = phase_map.mean_field_boundaries("tanh", sigma_b2, **common)
  finite = phase_map.mean_field_boundaries("tanh", sigma_b2, width=128, q0=1.0, **common)
  return pm, plain, finite


def test_empirical_boundaries_match_mean_field_within_grid_resolution(tanh_map):
  pm, plain, finite = tanh_map
  empirical = phase_map.empirical_boundary(pm)
  cell = 0.25
  assert np.all(np.isfinite(empirical.vanish)) and np.all(np.isfinite(empirical.explode))
  # The finite-size prediction (first order in 1/n, lengths started at q⁰ = 1 as the
  # inputs are) is what a width-128 network measures: within one grid cell.
  corrected = phase_map.boundary_disagreement(empirical, finite)
  assert np.all(np.abs(corrected.vanish_cells) <= 1), corrected
  assert np.all(np.abs(corrected.explode_cells) <= 1), corrected
  # The infinite-width, q = q* boundaries χ₁ = ε^{±2/(L−1)}: within one cell plus the
  # finite-size shift that theory itself predicts (the allowance is not fitted). At
  # width 128 it is small for vanishing (φ' nearly constant, κ ≈ 1) and ~0.4 σ_w²
  # for exploding, where saturated tanh units make φ'² heavy-tailed (κ ≫ 1).
  allowance_vanish = np.abs(finite.vanish - plain.vanish)
  allowance_explode = np.abs(finite.explode - plain.explode)
  assert np.all(allowance_vanish < cell) and np.all(allowance_explode < 2.5 * cell)
  assert np.all(np.abs(empirical.vanish - plain.vanish) <= cell + allowance_vanish)
  assert np.all(np.abs(empirical.explode - plain.explode) <= cell + allowance_explode)
  # Finite width shifts both boundaries to larger σ_w² (E log ‖·‖ < ½ log E‖·‖²).
  assert np.all(empirical.explode - plain.explode > 0)
  # The L → ∞ critical line lies between the finite-depth boundaries.
  assert np.all(phase_map.boundary_disagreement(empirical, plain).critical_between)
  assert np.all((empirical.vanish < plain.critical) & (plain.critical < empirical.explode))


def test_mean_log_growth_follows_mean_field_theory():
  """Mean log-growth: ((L − 1)/2) log χ₁, up to the finite-size terms that theory predicts."""
  sigma_w2, sigma_b2, width, depth = [0.5, 1.0, 4.0], [0.0, 0.3], 256, 21
  pm = phase_map.gradient_phase_map(
    "tanh", sigma_w2, sigma_b2, width=width, depth=depth, members=16, key=KEY
  )
  errors_plain, errors_finite = [], []
  for b, sb2 in enumerate(sigma_b2):
    for a, sw2 in enumerate(sigma_w2):
      plain = phase_map.mean_field_log_growth("tanh", sw2, sb2, depth=depth)
      finite = phase_map.mean_field_log_growth("tanh", sw2, sb2, depth=depth, width=width, q0=1.0)
      measured, standard_error = pm.mean_log_growth[b, a], pm.std_log_growth[b, a] / 4
      # second-order terms (e.g. O(1/n) fluctuations of q^l) are ≲ 0.1 here
      assert abs(measured - finite) < 0.1 + 3 * standard_error, (sw2, sb2, measured, finite)
      errors_plain.append(abs(measured - plain))
      errors_finite.append(abs(measured - finite))
  # the plain prediction misses the transient from q⁰ = 1 (largest at the critical
  # point σ_w² = 1, σ_b² = 0, where q^l → 0 only like 1/l) and the 1/n drift
  assert np.mean(errors_finite) < 0.25 * np.mean(errors_plain)
  assert phase_map.mean_field_log_growth("tanh", 1.5, 0.3, depth=depth) == pytest.approx(
    10 * math.log(theory.mean_field("tanh", 1.5, 0.3).chi1)
  )


def test_mean_field_boundaries_are_the_chi1_level_lines():
  depth, epsilon = 30, 1e-2
  b = phase_map.mean_field_boundaries("tanh", [0.0, 0.3], depth=depth, epsilon=epsilon)
  level = epsilon ** (2 / (depth - 1))
  assert b.chi1_vanish == pytest.approx(level) and b.chi1_explode == pytest.approx(1 / level)
  # σ_b² = 0: q* = 0 and χ₁ = σ_w² below the critical point 1.
  assert b.vanish[0] == pytest.approx(level, rel=1e-8)
  assert b.critical[0] == pytest.approx(1.0)
  # the public mean-field χ₁ at the roots is the level (independent of the private path)
  assert theory.mean_field("tanh", b.vanish[1], 0.3).chi1 == pytest.approx(level, rel=1e-7)
  assert theory.mean_field("tanh", b.explode[1], 0.3).chi1 == pytest.approx(1 / level, rel=1e-7)
  assert b.critical[1] == pytest.approx(theory.critical_sigma_w2("tanh", 0.3))
  # deeper networks: the boundaries close in on the critical line
  deep = phase_map.mean_field_boundaries("tanh", [0.3], depth=10_000, epsilon=epsilon)
  assert deep.vanish[0] < deep.critical[0] < deep.explode[0]
  assert deep.explode[0] - deep.vanish[0] < 0.05 * (b.explode[1] - b.vanish[1])
  # no root in range: nan
  none = phase_map.mean_field_boundaries(
    "tanh", [0.3], depth=depth, epsilon=epsilon, sigma_w2_range=(10.0, 20.0)
  )
  assert np.isnan(none.vanish[0]) and np.isnan(none.explode[0])


@pytest.mark.parametrize("activation", ["tanh", "erf", "sigmoid"])
def test_chi1_increases_with_sigma_w2(activation):
  """The premise of the root finding: χ₁ is increasing in σ_w², so each boundary is unique."""
  act = vn.activations.get(activation)
  sigma_w2 = 2.0 ** np.arange(-4.0, 6.01, 0.5)
  for sigma_b2 in (0.0, 0.5):
    chi1 = [theory._chi1(act, s, theory._q_star(act, s, sigma_b2)) for s in sigma_w2]
    assert np.all(np.diff(chi1) > 0), (activation, sigma_b2, chi1)


def test_finite_width_correction_vanishes_as_width_grows():
  common = {"depth": 30, "epsilon": 1e-2, "q0": None}
  plain = phase_map.mean_field_boundaries("tanh", [0.3], depth=30, epsilon=1e-2)
  shifts = [
    phase_map.mean_field_boundaries("tanh", [0.3], width=n, **common).explode[0] - plain.explode[0]
    for n in (64, 128, 10**6)
  ]
  assert shifts[0] > shifts[1] > shifts[2] > 0
  assert shifts[0] / shifts[1] == pytest.approx(2, rel=0.2) and shifts[2] < 1e-3


# --------------------------------------------------------------------------- the vectorization


SMALL = ("tanh", np.array([0.5, 1.5, 4.0]), np.array([0.0, 0.7]))
SMALL_SIZES = {"width": 16, "depth": 12, "members": 5, "inputs": 2, "key": KEY}


@pytest.mark.parametrize("x64", [False, True])
def test_map_equals_direct_per_cell_computation(x64):
  """Each cell is vn.log_gradient_norms on the standard-normal draws scaled by (√σ_w², √σ_b²)."""
  _, sigma_w2, sigma_b2 = SMALL
  with jax.enable_x64(x64):
    dtype = jnp.float64 if x64 else jnp.float32
    growth = np.asarray(phase_map.log_growth(*SMALL, dtype=dtype, chunk_size=4, **SMALL_SIZES))
    assert growth.shape == (2, 3, 5, 2)
    crn = phase_map.common_random_numbers("tanh", dtype=dtype, **SMALL_SIZES)
    for b, a in [(0, 0), (1, 1), (1, 2)]:
      scaled = tuple(
        {"w": p["w"] * math.sqrt(sigma_w2[a]), "b": p["b"] * math.sqrt(sigma_b2[b])}
        for p in crn.params
      )
      log_norms = vn.log_gradient_norms(crn.net, scaled, crn.x, crn.cotangent)  # [M, inputs, L]
      direct = np.asarray(log_norms[..., 0] - log_norms[..., -1])
      # float32: the scale multiplies W h instead of W (a last-bit difference)
      np.testing.assert_allclose(growth[b, a], direct, rtol=0, atol=1e-12 if x64 else 1e-4)


def test_chunk_size_does_not_change_results():
  whole = np.asarray(phase_map.log_growth(*SMALL, **SMALL_SIZES))  # one chunk of 6 cells
  for chunk in (1, 4):  # 4: two balanced chunks of 3
    np.testing.assert_allclose(
      phase_map.log_growth(*SMALL, chunk_size=chunk, **SMALL_SIZES), whole, rtol=0, atol=1e-5
    )
  five = np.asarray(phase_map.log_growth(*SMALL, chunk_size=5, **SMALL_SIZES))  # 3 + 3, padded
  np.testing.assert_allclose(five, whole, rtol=0, atol=1e-5)


def test_default_chunk_size_respects_the_memory_budget():
  per_cell = 3 * 256 * 256 * 100 * 4
  chunk = phase_map.default_chunk_size(40_000, width=256, depth=100, members=256)
  assert chunk == (1 << 30) // per_cell  # CPU: 1 GiB of traces
  assert phase_map.default_chunk_size(3, width=4, depth=2, members=2) == 3


# --------------------------------------------------------------------------- probabilities


def test_probabilities_sum_to_one_and_intervals_contain_them(tanh_map):
  pm, _, _ = tanh_map
  total = pm.p_vanish + pm.p_stable + pm.p_explode
  np.testing.assert_allclose(total, 1.0, atol=1e-12)
  for name in ("vanish", "stable", "explode"):
    p, ci = getattr(pm, f"p_{name}"), getattr(pm, f"p_{name}_ci")
    assert p.shape == (2, 26) and ci.shape == (2, 26, 2)
    assert np.all((ci[..., 0] <= p + 1e-15) & (p <= ci[..., 1]))  # (lower is ~1e-17 at p = 0)
    assert np.all((0 <= ci) & (ci <= 1))
    inner = (p > 0) & (p < 1)
    assert np.all(ci[..., 1][inner] - ci[..., 0][inner] > 0.05)  # 64 trials: not degenerate
  # every phase appears: vanishing on the left, stable around χ₁ = 1, exploding on the right
  assert np.all(pm.p_vanish[:, 0] == 1) and np.all(pm.p_explode[:, -1] > 0.9)
  assert np.all(pm.p_stable.max(axis=1) == 1)
  assert pm.config["trials"] == 64 and pm.config["width"] == 128


def test_moments_are_those_of_the_log_growth_samples():
  pm = phase_map.gradient_phase_map(*SMALL, **SMALL_SIZES)
  growth = np.asarray(phase_map.log_growth(*SMALL, **SMALL_SIZES)).reshape(2, 3, -1)
  np.testing.assert_allclose(pm.mean_log_growth, growth.mean(-1), rtol=1e-6)
  np.testing.assert_allclose(pm.std_log_growth, growth.std(-1, ddof=1), rtol=1e-5)
  np.testing.assert_array_equal(pm.p_vanish, (growth < math.log(1e-3)).mean(-1))
  assert pm.config["trials"] == 10  # members × inputs


def test_summarize_growth_counts_exact_zeros_as_vanished():
  s = phase_map.summarize_growth(np.array([[-np.inf, 0.0, 8.0]]), epsilon=1e-3)
  assert s["p_vanish"].tolist() == [1 / 3] and s["p_explode"].tolist() == [1 / 3]
  assert s["mean_log_growth"].tolist() == [4.0]  # over the finite samples
  assert s["n_finite"].tolist() == [2]


def test_empirical_boundary_interpolates_on_uneven_grids():
  grid = np.array([0.5, 1.0, 3.0, 4.0])
  pm = phase_map.PhaseMap(
    grid,
    np.array([0.0, 1.0]),
    np.array([[1.0, 0.8, 0.2, 0.0], [0.4, 0.0, 0.0, 0.0]]),
    None,
    np.array([[0.0, 0.0, 0.25, 0.75], [0.0, 0.0, 0.0, 0.1]]),
    *([None] * 6),
    {},
  )
  b = phase_map.empirical_boundary(pm)
  np.testing.assert_allclose(b.vanish, [2.0, np.nan])  # row 2 starts below 1/2
  np.testing.assert_allclose(b.explode, [3.5, np.nan])  # row 2 never reaches 1/2
  mf = phase_map.MeanFieldBoundaries(
    b.sigma_b2, np.array([1.0, 1.0]), np.array([4.5, 4.0]), np.array([2.5, 2.5]), 0.1, 10, 5, 0.1
  )
  d = phase_map.boundary_disagreement(b, mf)
  np.testing.assert_allclose(d.vanish_sigma_w2, [1.0, np.nan])
  np.testing.assert_allclose(d.vanish_cells, [0.5, np.nan])  # 2.0 is half way from 1 to 3
  np.testing.assert_allclose(d.explode_cells, [-1.0, np.nan])  # 4.5 extrapolates to index 3.5
  assert d.critical_between.tolist() == [True, False]


# --------------------------------------------------------------------------- bad input

GOOD = {"width": 4, "depth": 3, "members": 2, "key": KEY}


@pytest.mark.parametrize(
  ("change", "name"),
  [
    ({"sigma_w2": [-1.0, 1.0]}, "sigma_w2"),
    ({"sigma_b2": [-0.1]}, "sigma_b2"),
    ({"sigma_w2": []}, "sigma_w2"),
    ({"sigma_b2": np.zeros((2, 2))}, "sigma_b2"),
    ({"sigma_w2": [1.0, np.nan]}, "sigma_w2"),
    ({"sigma_w2": [2.0, 1.0]}, "sigma_w2"),
    ({"epsilon": 0.0}, "epsilon"),
    ({"epsilon": 1.0}, "epsilon"),
    ({"epsilon": -0.5}, "epsilon"),
    ({"width": 0}, "width"),
    ({"depth": 0}, "depth"),
    ({"members": 0}, "members"),
    ({"inputs": 0}, "inputs"),
    ({"chunk_size": 0}, "chunk_size"),
    ({"members": 2.5}, "members"),
  ],
)
def test_bad_inputs_raise_naming_the_parameter(change, name):
  kwargs = {"sigma_w2": [1.0], "sigma_b2": [0.0], **GOOD, **change}
  with pytest.raises(ValueError, match=name):
    phase_map.gradient_phase_map("tanh", **kwargs)


@pytest.mark.parametrize(
  ("kwargs", "name"),
  [
    ({"sigma_b2": [-1.0], "depth": 5}, "sigma_b2"),
    ({"sigma_b2": [0.0], "depth": 1}, "depth"),
    ({"sigma_b2": [0.0], "depth": 5, "epsilon": 2.0}, "epsilon"),
    ({"sigma_b2": [0.0], "depth": 5, "width": 0}, "width"),
    ({"sigma_b2": [0.0], "depth": 5, "q0": -1.0}, "q0"),
    ({"sigma_b2": [0.0], "depth": 5, "sigma_w2_range": (2.0, 1.0)}, "sigma_w2_range"),
  ],
)
def test_bad_theory_inputs_raise_naming_the_parameter(kwargs, name):
  with pytest.raises(ValueError, match=name):
    phase_map.mean_field_boundaries("tanh", **kwargs)


def test_bad_level_raises():
  pm = phase_map.PhaseMap(np.array([1.0]), np.array([0.0]), *([np.zeros((1, 1))] * 9), {})
  with pytest.raises(ValueError, match="level"):
    phase_map.empirical_boundary(pm, level=1.0)
