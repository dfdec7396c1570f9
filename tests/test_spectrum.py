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
from vanish import spectrum


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
  with pytest.raises(TypeError, match="refine must be True or False, got 'no'"):
    vn.lyapunov_spectrum(net, params, jnp.ones(4), refine="no")


def test_exponents_divide_by_the_depth_of_each_row():
  spectrum = jnp.array([[[-3.0, -6.0]], [[-8.0, -20.0]]])  # [M=2, D=1, k=2] at depth 4
  np.testing.assert_array_equal(
    vn.lyapunov_exponents(spectrum, depths=[4]), [[[-0.75, -1.5]], [[-2.0, -5.0]]]
  )
  with pytest.raises(ValueError, match="one entry per row"):
    vn.lyapunov_exponents(spectrum, depths=[4, 8])
  with pytest.raises(ValueError, match=r"spectrum must be a float array \[..., D, k\]"):
    vn.lyapunov_exponents(jnp.ones(3))


def _gaussian_params(width, depth, members, sigma_w2, sigma_b=0.0, seed=0, orthogonal=False):
  """``net.init``'s parameters for one square segment, sampled in NumPy (no init compile)."""
  rng = np.random.default_rng(seed)
  w = rng.normal(size=(members, depth, width, width)) * math.sqrt(sigma_w2 / width)
  if orthogonal:
    w = np.linalg.qr(w)[0]
  b = sigma_b * rng.normal(size=(members, depth, width))
  return ({"w": jnp.asarray(w, jnp.float32), "b": jnp.asarray(b, jnp.float32)},)


def _per_layer_error(got, ref, depths):
  return np.abs(np.asarray(got, np.float64) - ref) / np.asarray(depths)[:, None]


def test_refine_only_at_requested_depths_equals_full_refine():
  width, depth = 6, 20
  net = vn.MLP([width] * (depth + 1), "tanh", vn.init.gaussian(1.5), vn.init.normal(0.2))
  depths = [20, 7, 7, 1]
  x = jnp.linspace(-1.0, 1.0, width)
  params = _gaussian_params(width, depth, 2, 1.5, 0.2, seed=3)
  full = np.asarray(vn.lyapunov_spectrum(net, params, x))
  some = np.asarray(vn.lyapunov_spectrum(net, params, x, depths=depths))
  assert some.shape == (2, len(depths), width)
  # The same computation at those depths (the carried graded form is refinement-free).
  np.testing.assert_allclose(some, full[:, np.asarray(depths) - 1], rtol=0, atol=1e-6)
  benettin = vn.lyapunov_spectrum(net, params, x, refine=False)
  np.testing.assert_array_equal(
    vn.lyapunov_spectrum(net, params, x, refine=False, depths=depths),
    np.asarray(benettin)[:, np.asarray(depths) - 1],
  )
  with jax.enable_x64(True):
    p64 = jax.tree.map(lambda a: a.astype(jnp.float64), params)
    some64 = np.asarray(vn.lyapunov_spectrum(net, p64, x.astype(jnp.float64), depths=depths))
  exact = _mp_log_singular_values(_layer_jacobians(net, p64, x, member=1), digits=40)
  exact = exact[np.asarray(depths) - 1]
  assert exact.max() - exact.min() < 80  # all resolved by 40 digits (~92 nats)
  np.testing.assert_allclose(some64[1], exact, atol=1e-9)
  # float32 within its round-off of the exact values (~√L ε per layer, O(1e-5) nats here).
  np.testing.assert_allclose(some[1], exact, atol=1e-4)


@pytest.mark.parametrize("qr, width", [("householder", 32), ("shifted_cholesky_qr3", 16)])
def test_adaptive_reorthonormalization_keeps_the_smallest_exponents_at_depth_1000(qr, width):
  # tanh at σ_w² = 1: exponents from ≈ 0 down to ≈ −2 (width 16) or −2.4 (width 32) per
  # layer, a product whose condition number passes float32's range within ~8 layers.
  depth, members = 1000, 2
  net = vn.MLP([width] * (depth + 1), "tanh", vn.init.gaussian(1.0))
  params = _gaussian_params(width, depth, members, 1.0, seed=7)
  x = jax.random.normal(jax.random.key(8), (width,))
  depths = list(range(100, depth + 1, 100))
  with jax.enable_x64(True):
    p64 = jax.tree.map(lambda a: a.astype(jnp.float64), params)
    ref = np.asarray(
      vn.lyapunov_spectrum(net, p64, x.astype(jnp.float64), refine=False, depths=depths)
    )
  assert ref[:, -1, -1].max() / depth < -1.5  # a wide spectrum: the hard case
  got, counts = vn.lyapunov_spectrum(
    net,
    params,
    x,
    refine=False,
    depths=depths,
    reorthonormalize="adaptive",
    qr=qr,
    return_counts=True,
  )
  err = _per_layer_error(got, ref, depths)
  assert err.max() < 1e-3, err.max()  # every exponent, the smallest included
  assert err[..., -1].max() < 1e-3
  qrs = np.asarray(counts["qr"])  # each member's own
  assert qrs.max() < 0.7 * depth, counts  # about half the QRs of one per layer
  print(
    f"adaptive ({qr}): {qrs.tolist()} QRs for {depth} layers, "
    f"{np.asarray(counts['rollbacks']).tolist()} rollbacks, {err.max():.1e} nats/layer"
  )


def test_block_schedules_on_exact_cases_and_the_fallback():
  # Orthogonal linear layers: zero spread, so adaptive blocks reach MAX_BLOCK.
  width, depth = 8, 200
  net = vn.MLP([width] * (depth + 1), "linear", vn.init.orthogonal(1.0))
  params = _gaussian_params(width, depth, 2, 1.0, orthogonal=True)
  x = jnp.ones((3, width))  # a batch of inputs: one schedule for members × inputs
  spec, counts = vn.lyapunov_spectrum(
    net, params, x, depths=[depth], reorthonormalize="adaptive", return_counts=True
  )
  assert spec.shape == (2, 3, 1, width) and float(jnp.abs(spec).max()) < 1e-4
  expected = 1 + math.ceil((depth - 1) / spectrum.MAX_BLOCK)  # first: 1 layer, no estimate yet
  np.testing.assert_array_equal(counts["qr"], expected)
  # A fixed block length: a QR every 8 layers and at each requested depth.
  _, counts = vn.lyapunov_spectrum(
    net, params, x[0], depths=[50, 200], reorthonormalize=8, return_counts=True
  )
  np.testing.assert_array_equal(counts["qr"], math.ceil(50 / 8) + math.ceil(150 / 8))
  # Dead ReLU units make exactly rank-deficient layers: adaptive falls back to one QR
  # per layer and returns what "every" returns.
  relu = vn.MLP([8] * 31, "relu", vn.init.gaussian(2.0))
  params = _gaussian_params(8, 30, 3, 2.0, seed=1)
  x = jax.random.normal(jax.random.key(2), (8,))
  every = vn.lyapunov_spectrum(relu, params, x, depths=[10, 30])
  got, counts = vn.lyapunov_spectrum(
    relu, params, x, depths=[10, 30], reorthonormalize="adaptive", return_counts=True
  )
  np.testing.assert_array_equal(counts["qr"], 30)
  np.testing.assert_allclose(got[..., :3], every[..., :3], atol=1e-5)
  # A fixed block through the saturated (rank-deficient) layers: the guard rolls back.
  _, counts = vn.lyapunov_spectrum(
    relu, params, x, depths=[30], reorthonormalize=16, return_counts=True
  )
  assert int(counts["rollbacks"][0]) > 0


@pytest.mark.parametrize("reorthonormalize", ["every", 4])
def test_saturated_sigmoid_layers_keep_the_leading_exponent(reorthonormalize):
  """Layers with every σ'(z) = 0 in float32 (w ~ N(0, 100²)): log ‖J_L ⋯ J_1 e_1‖ stays
  exact, one QR per layer or per block (the slope scales are summed in log space), against
  a float64 reference that carries the slopes in log space."""
  net = vn.MLP([4] * 13, "sigmoid", vn.init.normal(1.0), vn.init.normal(1.0))
  params = [dict(p, w=100 * p["w"]) for p in net.init(jax.random.key(3), members=6)]
  x = jnp.asarray([0.3, -0.2, 0.5, 0.1])
  got = vn.lyapunov_spectrum(net, params, x, k=1, depths=[6, 12], reorthonormalize=reorthonormalize)
  z = np.asarray(vn.preactivations(net, params, x), np.float64)  # [M, L, 4]
  w = np.asarray(params[0]["w"], np.float64)  # [M, L, 4, 4]
  assert np.all(np.abs(z) > 104, axis=-1).any()  # some layer has every σ' = 0 in float32
  log_slope = -np.logaddexp(0, z) - np.logaddexp(0, -z)
  for m in range(6):
    v, log_norm, want = np.eye(4)[:, 0], 0.0, []
    for layer in range(12):
      top = log_slope[m, layer].max()
      v = np.exp(log_slope[m, layer] - top) * (w[m, layer] @ v)
      log_norm += top + np.log(np.linalg.norm(v))
      v /= np.linalg.norm(v)
      want.append(log_norm)
    np.testing.assert_allclose(got[m, :, 0], [want[5], want[11]], rtol=1e-4)


def test_bad_depths_and_schedules_are_rejected():
  net = vn.MLP([4] * 6, "tanh")
  params = _gaussian_params(4, 5, 1, 1.0)
  for depths in ([0], [6], [], 3, [2.5], [True]):
    with pytest.raises(ValueError, match="depths must"):
      vn.lyapunov_spectrum(net, params, jnp.ones(4), depths=depths)
  for schedule in ("sometimes", 0, True, spectrum.MAX_BLOCK + 1):
    with pytest.raises(ValueError, match="reorthonormalize must be"):
      vn.lyapunov_spectrum(net, params, jnp.ones(4), reorthonormalize=schedule)


@pytest.mark.parametrize("reorthonormalize", ["adaptive", 8])
def test_block_schedules_do_not_depend_on_which_members_are_computed_together(reorthonormalize):
  """Issue 7.3: a member's spectrum is its own, whatever members share its call (its block
  lengths, guard and rollbacks are its own decisions). Three tame tanh members next to a
  saturated one (σ_w² = 8, whose blocks are rolled back and whose spread forces adaptive
  blocks of one layer). Before, the block decisions were the ensemble's: the ensemble and
  the members one by one differed by 4.3·10⁻³ nats (adaptive) and 1.1·10⁻² nats (blocks
  of 8): 22 and 56 times the tolerance below."""
  width, depth, sigma_w2 = 8, 100, np.array([1.0, 1.0, 1.5, 8.0])
  net = vn.MLP([width] * (depth + 1), "tanh", vn.init.gaussian(1.0))
  rng = np.random.default_rng(2)
  w = rng.normal(size=(4, depth, width, width)) * np.sqrt(sigma_w2 / width)[:, None, None, None]
  params = ({"w": jnp.asarray(w, jnp.float32), "b": jnp.zeros((4, depth, width), jnp.float32)},)
  x = jnp.asarray(rng.normal(size=width), jnp.float32)
  options = {"depths": [50, depth], "refine": False, "return_counts": True}
  options["reorthonormalize"] = reorthonormalize

  def call(indices):
    """The spectra and counts of ``indices`` computed in one call of 4 members: padded with
    copies of the last, so that every call has the whole ensemble's batch size (a GPU's
    batched sums may depend on it)."""
    padded = list(indices) + [indices[-1]] * (4 - len(indices))
    spectra, counts = vn.lyapunov_spectrum(
      net, jax.tree.map(lambda a: a[np.asarray(padded)], params), x, **options
    )
    keep = slice(0, len(indices))
    return spectra[keep], {k: np.asarray(v)[keep] for k, v in counts.items()}

  whole, counts = vn.lyapunov_spectrum(net, params, x, **options)
  one_by_one = [call([m]) for m in range(4)]
  chunks = [call([0, 1, 2]), call([3])]
  sharded = vn.sharding.sharded(vn.lyapunov_spectrum, net, params, x, **options)  # 8 devices
  # The same operations on each member's numbers, so equal up to float rounding: XLA may sum a
  # batched product in another order for another batch size (hence the padding), ≲ 10⁻⁷
  # relative per operation, grown by ~√L = 10 over L layers. On the CPU they come out bitwise
  # equal. (Rounding that reaches a block's smallest directions grows by up to its condition
  # number, ≤ 2·10⁴ by the guard: on an H100, calls of other batch sizes differed by up to
  # 6.4·10⁻³ nats in the smallest exponents, beyond this bound.)
  whole = np.asarray(whole)
  tol = np.broadcast_to(1e-6 * np.abs(whole).max(axis=(1, 2))[:, None, None], whole.shape)
  for got in (one_by_one, chunks, [sharded]):
    spectra = np.concatenate([np.asarray(s) for s, _ in got])
    np.testing.assert_array_less(np.abs(spectra - whole), tol)
    for name in ("qr", "rollbacks"):  # each member's own counts
      np.testing.assert_array_equal(np.concatenate([c[name] for _, c in got]), counts[name])
  qrs, rollbacks = np.asarray(counts["qr"]), np.asarray(counts["rollbacks"])
  if reorthonormalize == "adaptive":  # the saturated member factors at every layer, alone
    assert qrs[3] == depth and qrs[:3].max() < 0.6 * depth, qrs
  else:  # every member rolls blocks back, the saturated one most
    assert rollbacks[3] > rollbacks[:3].max() and rollbacks[:3].min() > 0, rollbacks
