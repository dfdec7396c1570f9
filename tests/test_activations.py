"""Activations: exact derivatives against autodiff and closed forms."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from vanish import activations

GRID = np.linspace(-6.0, 6.0, 241)
DETERMINISTIC = [n for n in activations.available() if not activations.get(n).stochastic]


@pytest.mark.parametrize("name", DETERMINISTIC)
def test_derivative_matches_autodiff_in_float64(name):
  act = activations.get(name)
  with jax.enable_x64(True):
    z = jnp.asarray(GRID[np.abs(np.abs(GRID) - 1) > 1e-9])  # skip hard-tanh's kinks
    z = z[z != 0]  # and ReLU's
    auto = jax.vmap(jax.grad(act.fn))(z)
    np.testing.assert_allclose(act.derivative(z), auto, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("n", [0.5, 1.0, 2.0, 4.0])
def test_scaled_tanh_is_tanh_of_nx(n):
  act = activations.scaled_tanh(n)
  z = jnp.asarray(GRID, jnp.float32)
  np.testing.assert_allclose(act.fn(z), np.tanh(n * GRID), atol=2e-7)
  assert float(act.derivative(jnp.zeros(()))) == pytest.approx(n)  # the maximal slope is n


def test_parameterized_activations_compare_by_value():
  assert activations.scaled_tanh(2.0) == activations.scaled_tanh(2.0)
  assert hash(activations.scaled_tanh(2.0)) == hash(activations.get("scaled_tanh", n=2.0))
  assert activations.scaled_tanh(2.0) != activations.scaled_tanh(3.0)
  assert activations.get("tanh") != activations.scaled_tanh(1.0)  # different names


def test_lecun_tanh_constants():
  act = activations.lecun_tanh()
  # Efficient BackProp: f(±1) = ±1 (approximately) and maximal slope 1.7159·2/3.
  assert float(act.fn(jnp.ones(()))) == pytest.approx(1.0, abs=1e-4)
  assert float(act.derivative(jnp.zeros(()))) == pytest.approx(1.7159 * 2 / 3, rel=1e-6)


def test_sigmoid_derivative_bound_is_one_quarter():
  act = activations.sigmoid()
  slopes = act.derivative(jnp.asarray(GRID, jnp.float32))
  assert float(slopes.max()) == pytest.approx(0.25, rel=1e-6)
  assert bool(jnp.all(slopes <= 0.25))


def test_stepped_sigmoid_approaches_softplus():
  # Σ_{i≥1} σ(x − i + ½) is a midpoint rule for ∫_0^∞ σ(x − t) dt = softplus(x)
  # (Nielsen ch. 3). Euler–Maclaurin: Σ = ∫ − σ'(x)/24 + r, |r| ≤ 7·max|σ‴|/5760 ≈ 1.6e-4.
  with jax.enable_x64(True):
    x = np.linspace(-4.0, 6.0, 101)
    stepped = np.asarray(activations.stepped_sigmoid(60).fn(jnp.asarray(x)))
  sig = 1 / (1 + np.exp(-x))
  corrected = np.logaddexp(0, x) - sig * (1 - sig) / 24
  np.testing.assert_allclose(stepped, corrected, atol=2e-4)
  assert np.abs(stepped - np.logaddexp(0, x)).max() < 1 / 96 + 2e-4  # σ' ≤ 1/4


def test_noisy_relu_mean_matches_closed_form():
  # E[max(0, x + ε)] = x Φ(x/s) + s φ(x/s) for ε ~ N(0, s²).
  s, x, samples = 0.7, 0.3, 200_000
  act = activations.noisy_relu(s)
  keys = jax.random.split(jax.random.key(0), samples)
  values, slopes = jax.vmap(lambda k: act.value_and_derivative(jnp.float32(x), key=k))(keys)
  expected = x * stats.norm.cdf(x / s) + s * stats.norm.pdf(x / s)
  se = float(np.std(values)) / math.sqrt(samples)
  assert abs(float(values.mean()) - expected) < 5 * se
  # the derivative uses the same draw: 1 exactly where the value is positive
  np.testing.assert_array_equal(np.asarray(slopes), np.asarray(values > 0, np.float32))


def test_noisy_relu_requires_a_key():
  with pytest.raises(ValueError, match="key"):
    activations.noisy_relu(1.0)(jnp.zeros(3))


def test_register_custom_activation_with_autodiff_derivative():
  act = activations.register("test_cube", lambda x: x**3, overwrite=True)
  assert activations.get("test_cube") is act
  np.testing.assert_allclose(act.derivative(jnp.asarray([1.0, 2.0])), [3.0, 12.0])
  with pytest.raises(ValueError, match="already registered"):
    activations.register("test_cube", lambda x: x)


@pytest.mark.parametrize(
  "call, match",
  [
    (lambda: activations.get("tanhh"), "unknown activation 'tanhh'; known: .*tanh"),
    (lambda: activations.scaled_tanh(0.0), "n must be"),
    (lambda: activations.scaled_tanh(float("nan")), "n must be"),
    (lambda: activations.leaky_relu(1.5), "slope"),
    (lambda: activations.stepped_sigmoid(0), "steps"),
    (lambda: activations.noisy_relu(-1.0), "std"),
  ],
)
def test_bad_parameters_are_rejected(call, match):
  with pytest.raises(ValueError, match=match):
    call()


WIDE = np.concatenate([-np.logspace(3, -3, 25), [0.0], np.logspace(-3, 3, 25)])


def _mp_log_derivative(name: str, z: float) -> float:
  """``log |φ'(z)|`` to 40 digits with mpmath, from the textbook derivative."""
  import mpmath

  mpmath.mp.dps = 40
  z = mpmath.mpf(z)
  sigmoid = lambda t: 1 / (1 + mpmath.exp(-t))  # noqa: E731
  slopes = {
    "sigmoid": lambda: sigmoid(z) * sigmoid(-z),
    "tanh": lambda: mpmath.sech(z) ** 2,
    "scaled_tanh": lambda: 2 * mpmath.sech(2 * z) ** 2,
    "lecun_tanh": lambda: 1.7159 * (2 / mpmath.mpf(3)) * mpmath.sech(2 * z / 3) ** 2,
    "softplus": lambda: sigmoid(z),
    "erf": lambda: 2 / mpmath.sqrt(mpmath.pi) * mpmath.exp(-z * z),
    "stepped_sigmoid": lambda: sum(
      sigmoid(z - i + mpmath.mpf(0.5)) * sigmoid(i - mpmath.mpf(0.5) - z) for i in range(1, 21)
    ),
  }
  return float(mpmath.log(slopes[name]()))


@pytest.mark.parametrize(
  "name", ["sigmoid", "tanh", "scaled_tanh", "lecun_tanh", "softplus", "erf", "stepped_sigmoid"]
)
def test_log_abs_derivative_is_exact_where_the_derivative_underflows(name):
  """|z| up to 1000: φ'(z) is 0 in float32 there, its log is finite and right to float32."""
  act = activations.get(name)
  z = WIDE[np.abs(WIDE) <= (30.0 if name == "erf" else 1e3)]  # erf: −z² stays in range
  got = np.asarray(act.log_abs_derivative(jnp.asarray(z, jnp.float32)), np.float64)
  want = np.array([_mp_log_derivative(name, float(np.float32(v))) for v in z])
  np.testing.assert_allclose(got, want, rtol=2e-6, atol=2e-6)
  assert float(act.derivative(jnp.float32(z[np.argmin(want)]))) == 0.0  # φ' itself underflowed


@pytest.mark.parametrize(
  "name", ["sigmoid", "tanh", "scaled_tanh", "lecun_tanh", "softplus", "erf", "stepped_sigmoid"]
)
def test_derivative_keeps_its_relative_accuracy_where_the_unit_saturates(name):
  """φ'(z) in float32 to 1e-5 relative down to 1e-30 (XLA's float32 exp loses digits below).

  σ(1 − σ) and 1 − tanh² lost it from |z| ≈ 9 (σ' at z = 16.5: 75 % off) and were 0
  from z ≈ 17 and |z| ≈ 9; a few float32 roundings of e^{−|z|} and the sums give ~1e-6.
  """
  act = activations.get(name)
  z = np.linspace(-100, 100, 801, dtype=np.float32)
  want = np.exp([_mp_log_derivative(name, float(v)) for v in z])
  got = np.asarray(act.derivative(jnp.asarray(z)), np.float64)
  normal = want >= 1e-30
  assert (want[normal] < 1e-20).any(), name  # the test reaches deep into saturation
  np.testing.assert_allclose(got[normal], want[normal], rtol=1e-5, err_msg=name)
  assert np.all(np.abs(got[~normal]) <= 2e-30)  # no garbage beyond: tiny or 0


def test_log_abs_derivative_without_a_closed_form_is_log_of_the_derivative():
  relu = activations.get("relu")
  z = jnp.array([-2.0, 0.0, 3.0])
  np.testing.assert_array_equal(relu.log_abs_derivative(z), [-np.inf, -np.inf, 0.0])
  swish = activations.register("swish_log_demo", lambda x: x * jax.nn.sigmoid(x), overwrite=True)
  np.testing.assert_allclose(
    swish.log_abs_derivative(z), np.log(np.abs(swish.derivative(z))), rtol=1e-6
  )


def test_a_registered_log_derivative_keeps_the_sign_of_a_negative_derivative():
  """swish' < 0 for z < −1.28: the log-space slope must keep that sign (Jacobian and the
  one-neuron chain's sign equal the float64 product of w·φ'(z))."""
  import vanish as vn

  def swish(z):
    return z * jax.nn.sigmoid(z)

  def swish_slope(z):
    return jax.nn.sigmoid(z) * (1 + z * (1 - jax.nn.sigmoid(z)))

  act = activations.register(
    "swish_signed_test",
    swish,
    swish_slope,
    log_derivative=lambda z: jnp.log(jnp.abs(swish_slope(z))),
    overwrite=True,
  )
  net = vn.MLP([3] * 4, act, vn.init.gaussian(1.0), vn.init.constant(-3.0))
  params = net.init(jax.random.key(0), members=2)
  x = np.array([-3.0, -2.5, 0.5], np.float32)
  sig = lambda z: 1 / (1 + np.exp(-z))  # noqa: E731
  for m in range(2):
    h, want = x.astype(np.float64), np.eye(3)
    weights = np.concatenate([np.asarray(s["w"][m], np.float64) for s in params])  # [L, 3, 3]
    biases = np.concatenate([np.asarray(s["b"][m], np.float64) for s in params])
    for w, b in zip(weights, biases, strict=True):
      z = w @ h + b
      want = (sig(z) * (1 + z * (1 - sig(z))))[:, None] * (w @ want)
      h = z * sig(z)
    np.testing.assert_allclose(vn.jacobian(net, params, x)[m], want, rtol=1e-5, atol=1e-7)
  chain = vn.MLP([1] * 4, act, vn.init.constant(1.0), vn.init.constant(-3.0))
  _, sign = vn.scalar_chain(chain, chain.init(jax.random.key(0), 1), np.ones(1, np.float32))
  z1 = 1.0 - 3.0  # φ'(−2) < 0, then z = swish(−2) − 3 < −1.28 twice more: signs −, +, −
  assert swish_slope(z1) < 0
  np.testing.assert_array_equal(sign[0], [-1.0, 1.0, -1.0])
