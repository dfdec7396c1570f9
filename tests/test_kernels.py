"""Pallas kernels (vanish.kernels) against their jnp references, in the Pallas interpreter on CPU.

What a CPU can check: the kernels compute the reference's numbers (interpret mode), the
in-kernel generator is Philox4x32 (Random123's known answers, an independent uint64 NumPy
implementation), the sampled chains do not depend on the block size, their statistics equal
``vn.scalar_chain`` on ``net.init``'s parameters within Monte Carlo error, and the kernels lower
to Triton IR for CUDA. What it cannot: Triton's PTX compilation, register use, speed.
"""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import vanish as vn
from vanish import kernels
from vanish.kernels import _dispatch, fast_math, philox, small_chain
from vanish.kernels import scalar_chain as ksc

ROUNDS = philox.DEFAULT_ROUNDS
Z_MAX = 4.5  # per comparison; a handful of comparisons -> false-failure rate < 1e-4

# --------------------------------------------------------------------------- Philox


def _philox_numpy(counter, key, rounds=10):
  """Independent Philox4x32 (Salmon et al. 2011) with uint64 products."""
  c = [np.asarray(v, np.uint64) for v in counter]
  k0, k1 = (np.uint64(v) for v in key)
  mask = np.uint64(0xFFFFFFFF)
  for r in range(rounds):
    if r:
      k0, k1 = (k0 + np.uint64(philox.W0)) & mask, (k1 + np.uint64(philox.W1)) & mask
    p0, p1 = c[0] * np.uint64(philox.M0), c[2] * np.uint64(philox.M1)
    c = [(p1 >> np.uint64(32)) ^ c[1] ^ k0, p1 & mask, (p0 >> np.uint64(32)) ^ c[3] ^ k1, p0 & mask]
  return [v.astype(np.uint32) for v in c]


KAT_KEY = (0x12345678, 0x9ABCDEF0)


def test_philox_known_answers_and_independent_reference():
  # Random123's kat_vectors for philox4x32_10.
  cases = [
    ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    ((0xFFFFFFFF,) * 4, (0xFFFFFFFF,) * 2, (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
    (
      (0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344),
      (0xA4093822, 0x299F31D0),
      (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1),
    ),
  ]
  for counter, key, expected in cases:
    c = [jnp.full((1,), v, jnp.uint32) for v in counter]
    got = philox.philox4x32(c, [jnp.uint32(v) for v in key])
    assert [int(v[0]) for v in got] == list(expected)
  rng = np.random.default_rng(0)
  counter = [rng.integers(0, 2**32, 257, dtype=np.uint64).astype(np.uint32) for _ in range(4)]
  counter[0][:2] = [0, 0xFFFFFFFF]  # the extremes of the 16-bit-halves emulation
  for rounds, unroll in [(1, True), (7, False), (10, True), (10, False)]:
    run = jax.jit(lambda c, r=rounds, u=unroll: philox.philox4x32(c, KAT_KEY, rounds=r, unroll=u))
    got = run([jnp.asarray(v) for v in counter])
    want = _philox_numpy(counter, KAT_KEY, rounds)
    for g, w in zip(got, want, strict=True):
      np.testing.assert_array_equal(np.asarray(g), w)


def test_box_muller_normals_are_standard_normal():
  n = 2**15
  counter = (
    jnp.arange(n, dtype=jnp.uint32),
    jnp.zeros(n, jnp.uint32),
    *(jnp.zeros(n, jnp.uint32),) * 2,
  )
  normals = jax.jit(lambda c: philox.normals4(c, (7, 11), unroll=False))(counter)
  z = np.concatenate([np.asarray(v, np.float64) for v in normals])
  m = z.size
  assert abs(z.mean()) < Z_MAX / math.sqrt(m)
  assert abs(z.var() - 1) < Z_MAX * math.sqrt(2 / m)
  inside = np.mean(np.abs(z) < 1)  # P(|Z| < 1) = erf(1/sqrt 2)
  p = math.erf(1 / math.sqrt(2))
  assert abs(inside - p) < Z_MAX * math.sqrt(p * (1 - p) / m)
  assert np.all(np.isfinite(z)) and np.abs(z).max() < 7


def test_uniforms_stay_inside_the_open_interval_so_no_normal_is_exactly_zero():
  # The extreme bit patterns: the 24-bit midpoint formula rounded the top one to exactly 1,
  # a Box–Muller radius of 0 (one weight in 2^24 exactly 0 on the H100; log|w| = -inf).
  extremes = np.array([0, 1, 511, 512, 2**32 - 513, 2**32 - 512, 2**32 - 2, 2**32 - 1], np.uint64)
  u = np.asarray(philox.uniform(jnp.asarray(extremes.astype(np.uint32))), np.float64)
  k = (extremes >> 9).astype(np.float64)  # the float64 reference: (k + 1/2) / 2^23, exact
  np.testing.assert_array_equal(u, (k + 0.5) / 2.0**23)
  assert u.min() > 0 and u.max() < 1
  np.testing.assert_array_equal(u + u[::-1], 1.0)  # symmetric about 1/2
  top = jnp.full(4, 2**32 - 1, jnp.uint32)
  radius_zero_before = philox.box_muller(philox.uniform(top), philox.uniform(top * 0))[0]
  assert np.all(np.abs(np.asarray(radius_zero_before)) > 1e-4)


# --------------------------------------------------------------------------- one-neuron chain

SIGMOID6 = vn.MLP(
  widths=[1] * 7, activation="sigmoid", weights=vn.init.normal(1.0), biases=vn.init.normal(1.0)
)
TANH5 = vn.MLP(widths=[1] * 6, activation="tanh", weights=vn.init.gaussian(2.0))  # zero biases
KEY = jax.random.key(42)
CHAINS = 200  # not a multiple of the blocks: the last block is partly padding


@pytest.fixture(scope="module")
def sigmoid_runs():
  run = lambda **kw: ksc.monte_carlo(SIGMOID6, KEY, CHAINS, 0.7, rounds=ROUNDS, **kw)
  return {
    "ref": run(output="all", use_kernel="reference"),
    "all64": run(output="all", use_kernel="interpret", block=64),
    "final32": run(output="final", use_kernel="interpret", block=32),
    "moments64": run(output="moments", use_kernel="interpret", block=64),
  }


def test_scalar_kernel_equals_reference(sigmoid_runs):
  ref, got = sigmoid_runs["ref"], sigmoid_runs["all64"]
  assert (ref.path, got.path) == ("reference", "pallas_interpret")
  assert got.log_abs_g.shape == (6, CHAINS) and got.sign.dtype == jnp.int8
  np.testing.assert_allclose(got.log_abs_g, ref.log_abs_g, rtol=2e-6, atol=2e-6)
  np.testing.assert_array_equal(got.sign, ref.sign)
  assert set(np.unique(np.asarray(got.sign))) == {-1, 1}  # both signs occur: the test can fail


def test_reference_is_vn_scalar_chain_on_the_sampled_parameters(sigmoid_runs):
  params = ksc.sample_parameters(SIGMOID6, KEY, CHAINS, rounds=ROUNDS)
  log_g, sign = vn.scalar_chain(SIGMOID6, params, jnp.full((1,), 0.7))
  np.testing.assert_array_equal(sigmoid_runs["ref"].log_abs_g, log_g.T)
  # The first factor is σ'(z_1) = σ(z)(1 − σ(z)) for z = w_1·0.7 + b_1, computed in float64.
  w = np.asarray(params[0]["w"][:, 0, 0, 0], np.float64)
  b = np.asarray(params[0]["b"][:, 0, 0], np.float64)
  s = 1 / (1 + np.exp(-(0.7 * w + b)))
  np.testing.assert_allclose(log_g[:, 0], np.log(s * (1 - s)), rtol=1e-5)
  assert sign.shape == (CHAINS, 6)


def test_scalar_kernel_block_size_independence_and_moments(sigmoid_runs):
  all64, final32 = sigmoid_runs["all64"], sigmoid_runs["final32"]
  np.testing.assert_allclose(final32.log_abs_g, all64.log_abs_g[-1], rtol=1e-6, atol=1e-6)
  np.testing.assert_array_equal(final32.sign, all64.sign[-1])
  values = np.asarray(sigmoid_runs["ref"].log_abs_g, np.float64)  # [L, M]
  moments = sigmoid_runs["moments64"]
  np.testing.assert_allclose(moments.mean, values.mean(axis=1), rtol=1e-5)
  np.testing.assert_allclose(moments.var, values.var(axis=1), rtol=1e-4)


def test_scalar_kernel_odd_depth_tanh_zero_biases():
  run = lambda **kw: ksc.monte_carlo(TANH5, KEY, 100, -0.3, output="final", rounds=ROUNDS, **kw)
  got, ref = run(use_kernel="interpret", block=32), run(use_kernel="reference")
  np.testing.assert_allclose(got.log_abs_g, ref.log_abs_g, rtol=2e-6, atol=2e-6)
  np.testing.assert_array_equal(got.sign, ref.sign)
  (p,) = ksc.sample_parameters(TANH5, KEY, 100, rounds=ROUNDS)
  assert float(jnp.abs(p["b"]).max()) == 0.0
  assert abs(float(jnp.std(p["w"])) - math.sqrt(2.0)) < 0.2  # σ_w² = 2 at fan-in 1


def test_sampled_statistics_equal_vn_scalar_chain_on_net_init():
  """Different random numbers (Philox vs net.init's threefry), same distribution of log|g|."""
  net = vn.MLP(
    widths=[1] * 11, activation="sigmoid", weights=vn.init.normal(1.0), biases=vn.init.normal(1.0)
  )
  m = 2**14
  ours = ksc.monte_carlo(net, jax.random.key(1), m, 1.0, output="all", use_kernel="reference")
  theirs, _ = vn.scalar_chain(net, net.init(jax.random.key(2), m), jnp.ones(1))
  a = np.asarray(ours.log_abs_g, np.float64)  # [L, M]
  b = np.asarray(theirs, np.float64).T
  for depth in (1, 4, 10):
    x, y = a[depth - 1], b[depth - 1]
    z_mean = abs(x.mean() - y.mean()) / math.sqrt(x.var() / m + y.var() / m)
    # Var(s²) ≈ (μ₄ − σ⁴)/m, estimated from each sample.
    se_var = lambda v: math.sqrt((np.mean((v - v.mean()) ** 4) - v.var() ** 2) / m)
    z_var = abs(x.var() - y.var()) / math.hypot(se_var(x), se_var(y))
    assert z_mean < Z_MAX and z_var < Z_MAX, (depth, z_mean, z_var)
  # Sensitivity: one layer more (about −1.5 nats) is detected (the test can fail).
  x, y = a[-1], b[-2]
  assert abs(x.mean() - y.mean()) / math.sqrt(x.var() / m + y.var() / m) > Z_MAX


def test_fast_math_forms_are_the_activations_closed_forms():
  """The fast path's formulas, run with accurate jnp functions, against each activation's own
  φ, φ' and log|φ'| (float32 rounding), and its Box–Muller against philox.box_muller."""
  z = jnp.concatenate([jnp.linspace(-100.0, 100.0, 2001), jnp.array([0.0, 1e-30, -3e-8])])
  for name in ("sigmoid", "tanh", "scaled_tanh", "lecun_tanh"):
    act = vn.activations.get(name)
    value, slope, log_slope = fast_math.activation_form(act)(z, fast_math.ACCURATE)
    ref_value, ref_slope = act.value_and_derivative(z)
    np.testing.assert_allclose(value, ref_value, rtol=2e-6, atol=1e-7, err_msg=name)
    # e^{−|z|} as exp2(−|z|·log₂e): the product's rounding is a relative error |z|·log₂e·u
    np.testing.assert_allclose(slope, ref_slope, rtol=100 * 1.5 * 6e-8, atol=1e-38, err_msg=name)
    ref_log = act.log_abs_derivative(z)
    np.testing.assert_allclose(log_slope, ref_log, rtol=1e-6, atol=1e-6, err_msg=name)
    assert bool(jnp.all(jnp.isfinite(log_slope))), name  # where φ' itself underflows too
  for name in ("relu", "softplus", "linear"):
    assert fast_math.activation_form(vn.activations.get(name)) is None
  u = philox.uniform(jnp.arange(0, 2**32, 2**16 + 7, dtype=jnp.uint32))
  n0, n1 = fast_math.box_muller(u, u[::-1], fast_math.ACCURATE)
  r0, r1 = philox.box_muller(u, u[::-1])
  # the angle is rounded as 2π(u − ½) instead of 2πu: ~|angle|·2⁻²⁴ apart, times the radius
  np.testing.assert_allclose(n0, r0, atol=5e-6)
  np.testing.assert_allclose(n1, r1, atol=5e-6)


def test_fast_math_kernel_has_the_reference_statistics():
  """``fast_math=True`` in the interpreter (the fast formulas in accurate jnp): not the same
  bits (log|w| of a weight near 0 is sensitive to the angle's rounding), the same statistics."""
  run = lambda **kw: ksc.monte_carlo(SIGMOID6, KEY, 4096, 0.7, **kw)
  ref = run(output="all", use_kernel="reference")
  got = run(output="all", use_kernel="interpret", fast_math=True)
  diff = np.abs(np.asarray(got.log_abs_g) - np.asarray(ref.log_abs_g))
  assert np.mean(diff > 1e-4) < 0.01 and diff.max() < 0.05
  np.testing.assert_array_equal(got.sign, ref.sign)
  moments = run(output="moments", use_kernel="interpret", fast_math=True, block=512)
  np.testing.assert_allclose(moments.mean, np.mean(ref.log_abs_g, axis=1), rtol=0, atol=1e-4)
  np.testing.assert_allclose(moments.var, np.var(ref.log_abs_g, axis=1), rtol=1e-4)
  accurate = run(output="all", use_kernel="interpret")
  assert not np.array_equal(got.log_abs_g, accurate.log_abs_g)  # the fast formulas did run
  assert (got.fast_math, accurate.fast_math) == (True, False)  # and the result says so
  assert not run(output="final", use_kernel="reference", fast_math=True).fast_math
  # tanh, odd depth, a partly padded block; tiny and zero σ_w (no absolute |w| floor)
  for net in (
    TANH5,
    vn.MLP(widths=[1] * 4, activation="sigmoid", weights=vn.init.normal(1e-32)),
    vn.MLP(widths=[1] * 4, activation="lecun_tanh", weights=vn.init.normal(0.0)),
  ):
    ref = ksc.monte_carlo(net, KEY, 200, 0.7, output="final", use_kernel="reference")
    got = ksc.monte_carlo(net, KEY, 200, 0.7, output="final", use_kernel="interpret", block=64,
                          fast_math=True)  # fmt: skip
    np.testing.assert_array_equal(got.sign, ref.sign)
    finite = np.isfinite(np.asarray(ref.log_abs_g))
    np.testing.assert_array_equal(np.isfinite(np.asarray(got.log_abs_g)), finite)
    diff = np.abs(np.asarray(got.log_abs_g)[finite] - np.asarray(ref.log_abs_g)[finite])
    assert diff.size == 0 or np.median(diff) < 1e-4, net
  with pytest.raises(ValueError, match="fast_math=True needs sigmoid"):
    ksc.monte_carlo(vn.MLP(widths=[1, 1], activation="relu"), KEY, 4, fast_math=True)
  with pytest.raises(TypeError, match="fast_math must be True or False"):
    ksc.monte_carlo(SIGMOID6, KEY, 4, fast_math=1)


# --------------------------------------------------------------------------- small widths


SMALL = vn.MLP(widths=[32] * 7, activation="tanh", weights=vn.init.gaussian(1.5))


@pytest.fixture(scope="module")
def small_params():
  """``net.init``'s layout without its compilation: w ~ N(0, 1.5/N), b ~ N(0, 0.3²)."""
  rng = np.random.default_rng(0)
  w = rng.standard_normal((3, 6, 32, 32)) * math.sqrt(1.5 / 32)
  b = 0.3 * rng.standard_normal((3, 6, 32))
  return ({"w": jnp.asarray(w, jnp.float32), "b": jnp.asarray(b, jnp.float32)},)


def test_small_chain_kernel_equals_vn_jacobian(small_params):
  x = jax.random.normal(jax.random.key(1), (32,))
  got = small_chain.jacobian(SMALL, small_params, x, use_kernel="interpret")
  ref = small_chain.jacobian(SMALL, small_params, x, use_kernel="reference")
  assert (got.path, ref.path) == ("pallas_interpret", "reference")
  np.testing.assert_array_equal(ref.jacobian, vn.jacobian(SMALL, small_params, x))
  assert got.jacobian.shape == (3, 32, 32)
  scale = float(jnp.abs(ref.jacobian).max())
  np.testing.assert_allclose(got.jacobian, ref.jacobian, rtol=1e-5, atol=1e-5 * scale)
  # Independent float64 NumPy chain for member 0.
  w = np.asarray(small_params[0]["w"][0], np.float64)
  b = np.asarray(small_params[0]["b"][0], np.float64)
  h, jac = np.asarray(x, np.float64), np.eye(32)
  for l in range(6):
    h = np.tanh(w[l] @ h + b[l])
    jac = (1 - h**2)[:, None] * (w[l] @ jac)
  np.testing.assert_allclose(got.jacobian[0], jac, rtol=1e-4, atol=1e-5 * scale)


def test_small_chain_rejects_what_the_kernel_cannot_do(small_params):
  x = jnp.ones(32)
  reasons = [
    (vn.MLP(widths=[8] * 3), x[:8], "highest", "width 8 is not one of"),
    (vn.MLP(widths=[32, 16, 16]), x, "highest", "widths are not constant"),
    (vn.MLP(widths=[32] * 3, readout="linear"), x, "highest", "readout"),
    (SMALL, jnp.ones((2, 32)), "highest", "batched"),
    (SMALL, x, "F32_F32_F32", "precision"),
    (SMALL, x, "BF16_BF16_F32_X3", "precision"),  # Pallas Triton would run one bf16 product
  ]
  for net, xx, precision, match in reasons:
    assert match in small_chain.kernel_unsupported_reason(net, xx, precision)
  with pytest.raises(ValueError, match="width 8 is not one of"):
    small_chain.jacobian(vn.MLP(widths=[8] * 3), None, x[:8], use_kernel="interpret")
  with pytest.raises(ValueError, match="precision must be"):
    small_chain.jacobian(SMALL, small_params, x, precision="fast")
  for bad in ({"num_warps": 3}, {"num_warps": True}, {"num_stages": 0}, {"num_stages": 2.5}):
    for fn in (small_chain.jacobian, small_chain.lyapunov_spectrum):
      with pytest.raises(ValueError, match=next(iter(bad))):  # before the reference path runs
        fn(SMALL, small_params, x, use_kernel="reference", **bad)
  with pytest.raises(ValueError, match="width 8 is not one of"):
    small_chain.lyapunov_spectrum(vn.MLP(widths=[8] * 3), None, x[:8], use_kernel="interpret")
  for depths in ([0], [7], [2.0]):
    with pytest.raises(ValueError, match="depths must"):
      small_chain.lyapunov_spectrum(SMALL, small_params, x, depths=depths, use_kernel="interpret")
  # Unsupported under "auto": the reference, its own errors included (a batched input is fine).
  batched = small_chain.lyapunov_spectrum(SMALL, small_params, jnp.ones((2, 32)), depths=[3])
  assert batched.path == "reference" and batched.spectrum.shape == (3, 2, 1, 32)


def _benettin_float64(w, b, x, activation):
  """Independent Benettin sums in float64 NumPy (``np.linalg.qr`` per layer) for one member:
  ``([L, N] descending, [L] units with φ' ≠ 0)``. tanh' uses its log form, scaled by the
  layer's largest slope like the library (units saturated past float64's range stay exact)."""
  w, b = np.asarray(w, np.float64), np.asarray(b, np.float64)
  h, q, total, out, live = np.asarray(x, np.float64), np.eye(w.shape[-1]), 0.0, [], []
  for w_l, b_l in zip(w, b, strict=True):
    z = w_l @ h + b_l
    if activation == "relu":
      h, log_scale, slope = np.maximum(z, 0.0), 0.0, (z > 0).astype(np.float64)
    else:
      h, a = np.tanh(z), np.abs(z)
      log_slope = np.log(4.0) - 2.0 * a - 2.0 * np.log1p(np.exp(-2.0 * a))
      log_scale = log_slope.max()
      slope = np.exp(log_slope - log_scale)
    q, r = np.linalg.qr(slope[:, None] * (w_l @ q))
    total = total + np.log(np.maximum(np.abs(np.diag(r)), 1e-300)) + log_scale
    out.append(np.sort(total)[::-1])
    live.append(int(np.count_nonzero(slope)))
  return np.asarray(out), np.asarray(live)


def test_small_spectrum_kernel_equals_the_reference_and_float64(small_params):
  x = jax.random.normal(jax.random.key(1), (32,))
  got = small_chain.lyapunov_spectrum(SMALL, small_params, x, use_kernel="interpret")
  ref = small_chain.lyapunov_spectrum(SMALL, small_params, x, use_kernel="reference")
  assert (got.path, ref.path) == ("pallas_interpret", "reference")
  np.testing.assert_array_equal(
    ref.spectrum, vn.lyapunov_spectrum(SMALL, small_params, x, refine=False)
  )
  assert got.spectrum.shape == (3, 6, 32)
  assert np.all(np.diff(np.asarray(got.spectrum), axis=-1) <= 0)  # descending
  # Rounding: the k-th value of a layer is off by about u·σ_1/σ_k of its Z (u = 6e-8, σ_1/σ_k
  # up to ~10³ for these 32×32 layers), so up to ~1e-4 on either float32 path (measured: the
  # kernel 1.4-2.8e-5 from float64, the reference's QR 0.5-10e-5).
  np.testing.assert_allclose(got.spectrum, ref.spectrum, rtol=0, atol=2e-4)
  for m in range(3):
    w, b = small_params[0]["w"][m], small_params[0]["b"][m]
    np.testing.assert_allclose(got.spectrum[m], _benettin_float64(w, b, x, "tanh")[0], atol=1e-4)
  some = small_chain.lyapunov_spectrum(
    SMALL, small_params, x, depths=[6, 2, 6], use_kernel="interpret"
  )
  np.testing.assert_array_equal(some.spectrum, got.spectrum[:, [5, 1, 5]])


def test_small_spectrum_at_depth_1000_every_exponent_within_float32_of_float64():
  """Issue 6.2's accuracy: every exponent, the smallest included (the product is numerically
  rank-deficient: its smallest singular values are e^-2000 below its largest), within 1e-3
  per layer of float64; measured 4-10e-6, so the test asks 1e-4."""
  depth = 1000
  net = vn.MLP(widths=[16] * (depth + 1), activation="tanh", biases=vn.init.gaussian(0.05))
  params = net.init(jax.random.key(0), members=2)
  x = jax.random.normal(jax.random.key(1), (16,))
  got = small_chain.lyapunov_spectrum(net, params, x, depths=[depth], use_kernel="interpret")
  for m in range(2):
    w, b = params[0]["w"][m], params[0]["b"][m]
    exact = _benettin_float64(w, b, x, "tanh")[0][-1]
    assert exact[-1] - exact[0] < -1500  # the smallest exponents are far below the largest
    assert np.abs(np.asarray(got.spectrum[m, 0]) - exact).max() / depth < 1e-4


def test_small_spectrum_with_dead_and_saturated_units():
  """Dead ReLU units make Z exactly rank-deficient; biases of 60 saturate every tanh unit, so
  every φ' underflows float32 (e^-120) and only the scaled slope keeps the layer exact."""
  depth = 20
  relu = vn.MLP(widths=[16] * (depth + 1), activation="relu", weights=vn.init.gaussian(2.0))
  saturated = vn.MLP(widths=[16] * (depth + 1), activation="tanh", biases=vn.init.constant(60.0))
  x = jax.random.normal(jax.random.key(1), (16,))
  for net, name in ((relu, "relu"), (saturated, "tanh")):
    params = net.init(jax.random.key(3), members=2)
    got = np.asarray(small_chain.lyapunov_spectrum(net, params, x, use_kernel="interpret").spectrum)
    assert np.isfinite(got).all(), name
    for m in range(2):
      w, b = params[0]["w"][m], params[0]["b"][m]
      exact, live = _benettin_float64(w, b, x, name)
      # The product has rank <= the fewest live units of any layer; directions past that
      # rank are roundoff in either precision (vn.lyapunov_spectrum's docstring), so they
      # are not compared.
      rank = live.min()
      assert 0 < rank < 16 if name == "relu" else rank == 16, name
      if name == "tanh":
        assert exact[-1, 0] < -100 * depth  # every layer's slopes are below float32's range
      np.testing.assert_allclose(got[m, :, :rank], exact[:, :rank], rtol=1e-5, atol=1e-4)


def test_small_spectrum_at_width_64_and_through_a_zero_layer():
  net = vn.MLP(widths=[64] * 5, activation="tanh", biases=vn.init.gaussian(0.05))
  (p,) = net.init(jax.random.key(5), members=2)
  x = jax.random.normal(jax.random.key(1), (64,))
  got = small_chain.lyapunov_spectrum(net, (p,), x, use_kernel="interpret").spectrum
  # u·σ_1/σ_k per layer: a 64×64 layer's σ_1/σ_64 reaches 10³-10⁴ (measured 2e-4 here)
  for m in range(2):
    np.testing.assert_allclose(
      got[m], _benettin_float64(p["w"][m], p["b"][m], x, "tanh")[0], atol=1e-3
    )
  # An all-zero layer: every R_kk of it is 0, floored at log(tiny) (as the reference does).
  zero = ({**p, "w": p["w"].at[:, 2].set(0.0)},)
  got = np.asarray(small_chain.lyapunov_spectrum(net, zero, x, use_kernel="interpret").spectrum)
  ref = np.asarray(vn.lyapunov_spectrum(net, zero, x, refine=False))
  assert np.isfinite(got).all()
  floor = np.log(np.finfo(np.float32).tiny)
  np.testing.assert_allclose(got[:, 2] - np.sort(got[:, 1])[..., ::-1], floor, atol=1e-3)
  np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-3)


# --------------------------------------------------------------------------- dispatch, inputs


def test_dispatch_on_cpu():
  if kernels.available():
    pytest.skip("a supported GPU is present")
  assert not kernels.available()
  assert "not a GPU" in kernels.unavailable_reason()
  assert kernels.resolve("auto") == "reference"
  assert (
    kernels.resolve(False) == "reference" and kernels.resolve("interpret") == "pallas_interpret"
  )
  with pytest.raises(RuntimeError, match="cannot run here"):
    kernels.resolve("pallas")
  with pytest.raises(ValueError, match="use_kernel must be"):
    kernels.resolve("fast")


def test_auto_takes_the_kernels_where_the_h100_timed_them_faster(monkeypatch):
  # As on a supported GPU: "auto" resolves to the compiled kernel (stubbed: no GPU here).
  monkeypatch.setattr(_dispatch, "resolve", lambda choice: _dispatch.KERNEL)

  class KernelRan(Exception):
    pass

  def compiled_kernel(*args, **kwargs):
    raise KernelRan

  monkeypatch.setattr(small_chain, "_pallas", compiled_kernel)
  net = vn.MLP(widths=[64] * 3, activation="tanh")
  params = net.init(jax.random.key(0), members=2)
  x = jnp.ones(64)
  # N = 64 at "highest": 12× slower than the plain chain at session 10's launch, 1.63× faster
  # at the table's (8 warps), but that launch's result is not yet checked on a GPU: "auto"
  # leaves it to the reference (AUTO_SLOWER); "default" and an explicit "pallas" run it.
  for precision, use_kernel in (("default", "auto"), ("highest", "pallas")):
    with pytest.raises(KernelRan):
      small_chain.jacobian(net, params, x, precision=precision, use_kernel=use_kernel)
  assert set(small_chain.AUTO_SLOWER) == {(64, "highest")}
  out = small_chain.jacobian(net, params, x, precision="highest")
  assert out.path == "reference"
  np.testing.assert_array_equal(out.jacobian, vn.jacobian(net, params, x, precision="highest"))
  # Not yet timed at the table's launch: tf32x3 for the chain, any precision but "highest"
  # for the spectrum.
  refusal = small_chain._jacobian_auto_refusal  # (XLA:CPU cannot run the tf32x3 reference)
  tf32x3 = small_chain._choose_path(net, params, x, "TF32_TF32_F32_X3", "auto", refusal)
  assert tf32x3 == "reference"
  monkeypatch.setattr(small_chain, "_spectrum_pallas", compiled_kernel)
  out = small_chain.lyapunov_spectrum(net, params, x, precision="default")
  assert out.path == "reference"
  np.testing.assert_array_equal(
    out.spectrum, vn.lyapunov_spectrum(net, params, x, refine=False, precision="default")
  )
  refusal = small_chain._spectrum_auto_refusal
  assert small_chain._choose_path(net, params, x, "TF32_TF32_F32_X3", "auto", refusal) == (
    "reference"
  )
  # The spectrum kernel at "highest": timed faster than the reference at N = 16, 32 and 64.
  assert small_chain.SPECTRUM_AUTO_WIDTHS == (16, 32, 64)
  for width in small_chain.SPECTRUM_AUTO_WIDTHS:
    net_n = vn.MLP(widths=[width] * 3, activation="tanh")
    params_n = net_n.init(jax.random.key(0), members=2)
    assert small_chain._choose_path(net_n, params_n, x[:width], "highest", "auto", refusal) == (
      "pallas_triton"
    )
  with pytest.raises(KernelRan):
    small_chain.lyapunov_spectrum(net, params, x)
  with pytest.raises(KernelRan):
    small_chain.lyapunov_spectrum(net, params, x, precision="default", use_kernel="pallas")
  monkeypatch.setattr(small_chain, "SPECTRUM_AUTO_WIDTHS", (16, 32))  # a width not timed
  assert small_chain.lyapunov_spectrum(net, params, x).path == "reference"
  # float64 parameters (x64): "auto" takes the reference; an explicit kernel says why not.
  with jax.enable_x64(True):
    p64 = jax.tree.map(lambda a: a.astype(jnp.float64), params)
    assert small_chain.lyapunov_spectrum(net, p64, x.astype(jnp.float64)).path == "reference"
    assert small_chain.jacobian(net, p64, x.astype(jnp.float64)).path == "reference"
    with pytest.raises(ValueError, match="not float32"):
      small_chain.jacobian(net, p64, x.astype(jnp.float64), use_kernel="pallas")


def test_launch_table_gives_the_h100_choices_and_explicit_arguments_override_it(monkeypatch):
  launch = small_chain._launch
  # benchmarks/results/kernels_h100.json: the fastest (num_warps, num_stages) of the sweep
  measured = {
    (16, "highest"): (2, 3),
    (16, "default"): (1, 3),
    (32, "highest"): (2, 1),
    (32, "default"): (1, 1),
    (64, "highest"): (8, 1),
    (64, "default"): (2, 1),
  }
  for (width, precision), want in measured.items():
    assert launch("jacobian", width, precision) == want, (width, precision)
  # tf32x3 was not swept: "highest"'s launch. A width between buckets: the next one up.
  assert launch("jacobian", 64, "TF32_TF32_F32_X3") == (8, 1)
  assert launch("jacobian", 24, "default") == (1, 1)
  assert launch("jacobian", 8, "highest") == (2, 3)
  assert launch("jacobian", 128, "highest") == (8, 1)  # past the last bucket: the last
  # spectrum_kernel_h100.json: 1 warp at N ≤ 32, 4 at N = 64 (2 warps there: 900 ms)
  for width, want in ((16, (1, 2)), (32, (1, 2)), (64, (4, 2)), (48, (4, 2))):
    for precision in small_chain.PRECISIONS:
      assert launch("spectrum", width, precision) == want, (width, precision)
  # Explicit arguments override each value on its own.
  assert launch("jacobian", 64, "highest", num_warps=2) == (2, 1)
  assert launch("jacobian", 64, "highest", num_stages=3) == (8, 3)
  assert launch("spectrum", 64, "highest", 1, 1) == (1, 1)
  # The public functions pass the table's launch, or the arguments, to the kernel.
  launches = []

  def recorder(*args, num_warps, num_stages, **kwargs):
    launches.append((num_warps, num_stages))
    return None

  monkeypatch.setattr(small_chain, "_pallas", recorder)
  monkeypatch.setattr(small_chain, "_spectrum_pallas", recorder)
  net = vn.MLP(widths=[64] * 3, activation="tanh")
  params, x = net.init(jax.random.key(0), members=2), jnp.ones(64)
  for fn in (small_chain.jacobian, small_chain.lyapunov_spectrum):
    for kw in ({}, {"num_warps": 4}, {"num_stages": 3}, {"num_warps": 1, "num_stages": 1}):
      fn(net, params, x, use_kernel="interpret", **kw)
  assert launches == [(8, 1), (4, 1), (8, 3), (1, 1), (4, 2), (4, 2), (4, 3), (1, 1)]


def test_the_kernels_build_for_every_activation_they_accept():
  """An activation the kernels accept must lower to Triton (else "auto" would crash on a GPU
  instead of taking the reference); the others are refused with a reason."""
  pytest.importorskip("jax.experimental.pallas.triton", reason="this jax has no Pallas Triton")
  S = jax.ShapeDtypeStruct
  shapes = (S((4, 3, 16, 16), jnp.float32), S((4, 3, 16), jnp.float32), S((16,), jnp.float32))
  accepted = []
  for name in vn.activations.available():
    act = vn.activations.get(name)
    net = vn.MLP(widths=[16] * 4, activation=act)
    if small_chain.kernel_unsupported_reason(net, jnp.ones(16), "highest") is not None:
      continue
    accepted.append(name)
    for kernel in (small_chain._pallas, small_chain._spectrum_pallas):
      extra = {"depths": None} if kernel is small_chain._spectrum_pallas else {}
      fn = lambda w, b, x, kernel=kernel, act=act, extra=extra: kernel(
        w, b, x, act=act, precision="highest", num_warps=1, num_stages=2, interpret=False, **extra
      )
      try:
        _dispatch.lower_for_cuda(fn, *shapes)
      except RuntimeError as error:  # jax 0.11 asks Triton's lowering for a real GPU's info
        if "No supported GPU devices" not in str(error):
          raise
        pytest.skip(f"jax {jax.__version__} lowers Pallas Triton only with a GPU present")
  assert set(accepted) == set(small_chain.ACTIVATIONS)
  for name in ("erf", "stepped_sigmoid"):  # no Triton erf; a captured constant table
    net = vn.MLP(widths=[16] * 4, activation=name)
    assert "is not one of" in small_chain.kernel_unsupported_reason(net, jnp.ones(16), "highest")


def test_scalar_chain_bad_inputs():
  with pytest.raises(ValueError, match="chains must be an integer >= 1"):
    ksc.monte_carlo(SIGMOID6, KEY, 0)
  with pytest.raises(ValueError, match="output must be one of"):
    ksc.monte_carlo(SIGMOID6, KEY, 4, output="mean")
  with pytest.raises(ValueError, match="block must be a power of 2"):
    ksc.monte_carlo(SIGMOID6, KEY, 4, block=48)
  with pytest.raises(ValueError, match="every width equal to 1"):
    ksc.monte_carlo(vn.MLP(widths=[2, 2]), KEY, 4)
  with pytest.raises(ValueError, match="net.weights must be"):
    ksc.monte_carlo(vn.MLP(widths=[1, 1], weights=vn.init.uniform(-1, 1)), KEY, 4)
  with pytest.raises(ValueError, match="x must be a finite"):
    ksc.monte_carlo(SIGMOID6, KEY, 4, float("nan"))
  with pytest.raises(TypeError, match="typed PRNG key"):
    ksc.monte_carlo(SIGMOID6, 0, 4)


def test_chain_counts_beyond_the_counter_and_index_ranges_are_refused():
  """Chain m's numbers are Philox(counter = m): a slice past 2³² wrapped to chains 0, 1, …
  (silently repeating them), and the kernel's int32 chain index overflowed at M ≥ 2³¹."""
  with pytest.raises(ValueError, match="first \\+ chains must be <= 2\\*\\*32"):
    ksc.sample_parameters(SIGMOID6, KEY, 4, first=2**32 - 2)
  (last,) = ksc.sample_parameters(SIGMOID6, KEY, 2, first=2**32 - 2)  # the last two: allowed
  (head,) = ksc.sample_parameters(SIGMOID6, KEY, 2)
  assert not np.any(np.asarray(last["w"]) == np.asarray(head["w"]))
  with pytest.raises(ValueError, match="chains must be < 2\\*\\*31"):
    ksc.monte_carlo(SIGMOID6, KEY, 2**31 + 7, output="moments", use_kernel="interpret")


# --------------------------------------------------------------------------- GPU lowering


def test_kernels_lower_to_triton_for_cuda():
  """The paper-size kernels lower (Pallas → Triton IR) for CUDA on this CPU-only machine."""
  pytest.importorskip("jax.experimental.pallas.triton", reason="this jax has no Pallas Triton")
  S = jax.ShapeDtypeStruct
  act = vn.activations.get("sigmoid")
  for output, fast in [(output, fast) for output in ksc.OUTPUTS for fast in (False, True)]:
    fn = lambda x, k, output=output, fast=fast: ksc._pallas(
      x,
      k,
      chains=2**20,
      depth=50,
      sigma_w=1.0,
      sigma_b=1.0,
      act=act,
      output=output,
      block=ksc.DEFAULT_BLOCK,
      num_warps=ksc.DEFAULT_NUM_WARPS,
      rounds=10,
      interpret=False,
      fast=fast,
    )
    try:
      text = _dispatch.lower_for_cuda(fn, S((1,), jnp.float32), S((2,), jnp.uint32))
    except RuntimeError as error:  # jax 0.11 asks Triton's lowering for a real GPU's info
      if "No supported GPU devices" not in str(error):
        raise
      pytest.skip(f"jax {jax.__version__} lowers Pallas Triton only with a GPU present")
    assert text.count(_dispatch.TRITON_CUSTOM_CALL) == 1, output
    # fast: PTX's approximations replace libdevice's accurate log (in the serialized IR)
    assert ("lg2.approx.ftz.f32" in text) == fast and ("__nv_logf" in text) != fast, output
  tanh = vn.activations.get("tanh")
  shapes = (
    S((16384, 50, 32, 32), jnp.float32),
    S((16384, 50, 32), jnp.float32),
    S((32,), jnp.float32),
  )
  for precision in small_chain.PRECISIONS:  # at the launch table's choices for N = 32
    for kernel in (small_chain._pallas, small_chain._spectrum_pallas):
      spectrum = kernel is small_chain._spectrum_pallas
      warps, stages = small_chain._launch("spectrum" if spectrum else "jacobian", 32, precision)
      fn = functools.partial(
        kernel, act=tanh, precision=precision, num_warps=warps, num_stages=stages,
        interpret=False, **({"depths": None} if spectrum else {}),
      )  # fmt: skip
      text = _dispatch.lower_for_cuda(fn, *shapes)
      assert text.count(_dispatch.TRITON_CUSTOM_CALL) == 1 and "grid_x = 16384" in text
      assert f"num_stages = {stages} : i32, num_warps = {warps} : i32" in text


@pytest.mark.skipif(
  not kernels.available(), reason=f"no supported GPU: {_dispatch.unavailable_reason()}"
)
def test_compiled_kernels_on_gpu(small_params):
  """On a GPU (run with JAX_PLATFORMS=cuda): the compiled kernels equal their references."""
  for output in ksc.OUTPUTS:
    got = ksc.monte_carlo(SIGMOID6, KEY, CHAINS, 0.7, output=output, use_kernel="pallas")
    ref = ksc.monte_carlo(SIGMOID6, KEY, CHAINS, 0.7, output=output, use_kernel="reference")
    assert got.path == "pallas_triton"
    for name in ("log_abs_g", "mean", "var"):
      if getattr(ref, name) is not None:  # libdevice vs XLA transcendental rounding
        np.testing.assert_allclose(getattr(got, name), getattr(ref, name), rtol=1e-4, atol=1e-4)
    if ref.sign is not None:
      np.testing.assert_array_equal(got.sign, ref.sign)
  # PTX approximations: the reference's statistics on the same draws (about 1e-6 per log)
  many = 1 << 16
  fast = ksc.monte_carlo(SIGMOID6, KEY, many, 0.7, output="moments", fast_math=True)
  ref = ksc.monte_carlo(SIGMOID6, KEY, many, 0.7, output="moments", use_kernel="reference")
  assert fast.path == "pallas_triton"
  np.testing.assert_allclose(fast.mean, ref.mean, rtol=0, atol=1e-3)
  np.testing.assert_allclose(fast.var, ref.var, rtol=1e-3)
  x = jnp.ones(32)
  precisions = (("highest", 1e-4), ("default", 3e-2), ("TF32_TF32_F32_X3", 1e-4))  # default: TF32
  for precision, rtol in precisions:
    got = small_chain.jacobian(SMALL, small_params, x, precision=precision, use_kernel="pallas")
    ref = vn.jacobian(SMALL, small_params, x, precision="highest")
    scale = float(jnp.abs(ref).max())
    np.testing.assert_allclose(got.jacobian, ref, rtol=rtol, atol=rtol * scale)
  ref = small_chain.lyapunov_spectrum(SMALL, small_params, x, use_kernel="reference")
  for precision in ("highest", "TF32_TF32_F32_X3"):
    got = small_chain.lyapunov_spectrum(
      SMALL, small_params, x, precision=precision, use_kernel="pallas"
    )
    assert got.path == "pallas_triton"
    np.testing.assert_allclose(got.spectrum, ref.spectrum, rtol=0, atol=2e-4)
