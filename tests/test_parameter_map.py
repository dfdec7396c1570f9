"""Parameter-space maps of tiny networks against closed forms and independent float64 references."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import special

import vanish as vn
from experiments import parameter_map as experiment
from tests import reference
from vanish import parameter_map as pm
from vanish import store

PHI = {
  "sigmoid": (special.expit, lambda z: special.expit(z) * (1 - special.expit(z))),
  "tanh": (np.tanh, lambda z: 1 - np.tanh(z) ** 2),
}


def numpy_tied_log_g(name, w, b, x, depth):
  """|g_K| = φ'(z_1) Π_{j≥2} |w φ'(z_j)|, z_j = w a_{j−1} + b, by a float64 Python loop."""
  phi, dphi = PHI[name]
  a, log_g = x, 0.0
  for j in range(depth):
    z = w * a + b
    log_g += math.log(abs(dphi(z))) + (math.log(abs(w)) if j else 0.0)
    a = phi(z)
  return log_g


POINTS = [(-2.5, 0.7, 0.3), (0.8, -0.4, -1.2), (3.0, -1.5, 0.5), (1.1, 0.0, 0.9)]


@pytest.mark.parametrize("name", ["sigmoid", "tanh"])
def test_tied_chain_matches_float64_closed_form(name):
  w, b, x = (np.array(v) for v in zip(*POINTS, strict=True))
  depths = (1, 5, 30)
  with jax.enable_x64(True):
    got = np.asarray(pm.tied_chain_log_gradient(name, w, b, x, depths=depths, dtype=jnp.float64))
  want = np.array([[numpy_tied_log_g(name, *p, d) for p in POINTS] for d in depths])
  np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
  # float32: a per-layer rounding of ~1e-7 relative in each of ≤ 30 log-factors
  f32 = np.asarray(pm.tied_chain_log_gradient(name, w, b, x, depths=depths))
  np.testing.assert_allclose(f32, want, rtol=1e-5, atol=1e-4)


def test_tied_chain_equals_the_engines_scalar_chain_with_tied_parameters():
  depth, w, b = 12, np.array([-1.7, 0.6, 2.2]), np.array([0.3, -0.8, 0.1])
  net = vn.MLP([1] * (depth + 1), "tanh", vn.init.normal(1.0), vn.init.normal(1.0))
  params = ({"w": jnp.asarray(np.broadcast_to(w[:, None, None, None], (3, depth, 1, 1))),
             "b": jnp.asarray(np.broadcast_to(b[:, None, None], (3, depth, 1)))},)  # fmt: skip
  log_g, _ = vn.scalar_chain(net, params, jnp.array([0.4]))
  ours = pm.tied_chain_log_gradient("tanh", w, b, 0.4, depths=(4, depth))
  np.testing.assert_allclose(np.asarray(ours).T, np.asarray(log_g)[:, [3, depth - 1]], rtol=2e-5)


def test_depth_ten_thousand_does_not_overflow_nielsens_exploding_chain():
  # w = 100, b = −50, x = 1/2 keeps z = 0: |g_K| = σ'(0) (100 σ'(0))^{K−1} = 25^{K−1}/4
  want = np.array([9, 9999]) * math.log(25) - math.log(4)
  with jax.enable_x64(True):
    log_g = pm.tied_chain_log_gradient(
      "sigmoid", 100.0, -50.0, 0.5, depths=(10, 10_000), dtype=jnp.float64
    )
    np.testing.assert_allclose(np.asarray(log_g), want, rtol=1e-12)
  # float32: 10^4 additions of 3.2 to a running sum ≤ 3.2e4, each rounded by ≤ 2^-24 of the sum
  log_g = pm.tied_chain_log_gradient("sigmoid", 100.0, -50.0, 0.5, depths=(10, 10_000))
  np.testing.assert_allclose(np.asarray(log_g), want, rtol=1e4 * 2**-24)
  # saturated: σ'(z) underflows in float32, its log does not
  deep = pm.tied_chain_log_gradient("sigmoid", 100.0, 50.0, 0.5, depths=10_000)
  assert np.isfinite(np.asarray(deep)).all() and float(deep[0]) < -1e5


def test_deep_rate_is_the_attractors_log_multiplier_and_vanishes_off_the_critical_lines():
  w = np.array([-3.0, -2.0, 0.5, 2.0, 3.0])
  b = np.array([0.4, -0.3, 0.2, 1.0, -2.0])
  # float64 reference: iterate the map to its attractor, then average log|w φ'| over 2 steps
  rates = []
  for wi, bi in zip(w, b, strict=True):
    a = 0.3
    for _ in range(20_000):
      a = np.tanh(wi * a + bi)
    z1 = wi * a + bi
    z2 = wi * np.tanh(z1) + bi
    rates.append(
      0.5 * (np.log(abs(wi * (1 - np.tanh(z1) ** 2))) + np.log(abs(wi * (1 - np.tanh(z2) ** 2))))
    )
  depth = 10_000
  got = np.asarray(pm.tied_chain_log_gradient("tanh", w, b, 0.3, depths=depth))[0] / depth
  np.testing.assert_allclose(got, rates, rtol=2e-3, atol=2e-4)  # transient / K ≲ 1e-3
  assert (got < -0.05).all()
  # on the flip lines (w < −1) the attractor is marginal: polynomial, not exponential, decay
  w_line = np.array([-3.0, -2.0, -1.5])
  _, high = pm.tied_tanh_critical_lines(w_line)
  on_line = np.asarray(pm.tied_chain_log_gradient("tanh", w_line, high, 0.3, depths=depth))[0]
  assert (np.abs(on_line / depth) < 3e-3).all()


def test_log_abs_derivative_matches_numpy_and_survives_saturation():
  z = np.linspace(-30, 30, 41)

  def log_sech2(u):  # log(1 − tanh² u), without the cancellation of 1 − tanh² at large u
    return -2 * np.log(np.cosh(u))

  exact = {
    "sigmoid": special.log_expit(z) + special.log_expit(-z),
    "tanh": log_sech2(z),
    vn.activations.scaled_tanh(2.0): np.log(2.0) + log_sech2(2 * z),
    "lecun_tanh": np.log(1.7159 * 2 / 3) + log_sech2(2 / 3 * z),
  }
  for activation, want in exact.items():
    got = np.asarray(pm.log_abs_derivative(activation, z))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
  assert float(pm.log_abs_derivative("tanh", 500.0)) == pytest.approx(math.log(4) - 1000)
  assert np.isneginf(float(pm.log_abs_derivative("relu", -1.0)))


def test_classify_thresholds():
  eps = 1e-2
  log_eps = math.log(eps)
  values = [log_eps - 1e-9, log_eps, 0.0, -log_eps, -log_eps + 1e-9, -np.inf]
  assert pm.classify(values, eps).tolist() == [-1, 0, 0, 0, 1, -1]
  m = pm.tied_chain_map("tanh", [0.1, 1.0], [0.0], [0.0, 0.5], depth=3, epsilon=0.5)
  np.testing.assert_allclose(m.p_vanish + m.p_stable + m.p_explode, 1)
  np.testing.assert_array_equal(m.outcome, pm.classify(m.median_log_g, 0.5))
  with pytest.raises(ValueError, match="NaN"):
    pm.classify([np.nan])
  with pytest.raises(ValueError, match="epsilon"):
    pm.classify([0.0], epsilon=1.0)


def test_slice_matches_a_float64_reference_in_chunks():
  rng = np.random.default_rng(0)
  samples, depth, n = 3, 6, 3
  weights = rng.normal(size=(samples, depth, n, n)) / np.sqrt(n)
  biases = rng.normal(size=(samples, depth, n))
  x, u = rng.normal(size=(samples, n)), rng.normal(size=(samples, n))
  w, b, s_b = np.array([0.7, 1.5, 4.0]), np.array([-0.5, 0.3]), 0.4
  with jax.enable_x64(True):
    got = np.asarray(
      pm.slice_log_gradient("tanh", w, b, weights, biases, x, u, bias_std=s_b, dtype=jnp.float64)
    )
  assert got.shape == (2, 3, samples)
  for i, bi in enumerate(b):
    for j, wj in enumerate(w):
      for s in range(samples):
        layers = list(zip(wj * weights[s], bi + s_b * biases[s], strict=True))
        trace, _ = reference.forward(layers, "tanh", x[s])
        bias_norms, _ = reference.backprop(layers, trace, u[s], "tanh")
        assert got[i, j, s] == pytest.approx(np.log(bias_norms[0]), rel=1e-10, abs=1e-10)
  # float32, in chunks of 4 cells: chunking changes nothing but memory
  f32 = pm.slice_log_gradient("tanh", w, b, weights, biases, x, u, bias_std=s_b, chunk_size=4)
  np.testing.assert_allclose(np.asarray(f32), got, rtol=1e-4, atol=1e-4)


def test_slice_map_probabilities():
  # the doctest's shapes (one compilation for both)
  m = pm.slice_map(
    "tanh", [0.05, 1.0, 8.0], [0.0], width=2, depth=10, samples=16, key=jax.random.key(3),
    epsilon=1e-2,
  )  # fmt: skip
  np.testing.assert_allclose(m.p_vanish + m.p_stable + m.p_explode, 1)
  # w = 0.05: |factor| ≤ 0.05 ‖Ŵ‖ per layer, far below ε over 10 layers
  assert m.p_vanish[0, 0] == 1.0
  lo, hi = m.p_stable_ci[..., 0], m.p_stable_ci[..., 1]
  assert (lo <= m.p_stable).all() and (m.p_stable <= hi).all()
  np.testing.assert_array_equal(m.median_log_g, np.median(m.log_g, axis=-1))


def numpy_tied_gd(name, w, b, x, y, depth, lr, steps):
  """Plain GD on the tied chain by hand-written backprop (Nielsen BP1–BP4), float64."""
  phi, dphi = PHI[name]
  path = [(w, b)]
  for _ in range(steps):
    a, zs, acts = np.asarray(x, float), [], []
    for _ in range(depth):
      acts.append(a)
      z = w * a + b
      zs.append(z)
      a = phi(z)
    delta = (a - y) / x.size * dphi(zs[-1])
    grad_w, grad_b = 0.0, 0.0
    for j in reversed(range(depth)):
      grad_w += np.sum(delta * acts[j])
      grad_b += np.sum(delta)
      if j:
        delta = delta * w * dphi(zs[j - 1])
    w, b = w - lr * grad_w, b - lr * grad_b
    path.append((w, b))
  return np.array(path)


def test_descent_matches_numpy_gd_and_decreases_the_loss():
  x = np.linspace(-1, 1, 6)
  y = np.tanh(0.9 * np.tanh(0.9 * np.tanh(0.9 * x + 0.2) + 0.2) + 0.2)
  starts_w, starts_b = np.array([1.4, 0.3]), np.array([-0.3, 0.5])
  with jax.enable_x64(True):
    t = pm.tied_chain_descent(
      "tanh", starts_w, starts_b, x, y, depth=3, learning_rate=0.3, steps=5, dtype=jnp.float64
    )
  for s in range(2):
    ref = numpy_tied_gd("tanh", starts_w[s], starts_b[s], x, y, 3, 0.3, 5)
    np.testing.assert_allclose(np.stack([t.w[s], t.b[s]], axis=1), ref, rtol=1e-10, atol=1e-12)
  long = pm.tied_chain_descent(
    "tanh", starts_w, starts_b, x, y, depth=3, learning_rate=0.3, steps=500
  )
  assert long.w.shape == (2, 501) and not long.diverged.any()
  assert (long.loss[:, -1] < 1e-2 * long.loss[:, 0]).all()
  # the recorded log|g_t| is the map's quantity at (w_t, b_t)
  direct = pm.tied_chain_log_gradient(
    "tanh", long.w[:, -1, None], long.b[:, -1, None], x[None, :], depths=3
  )
  np.testing.assert_allclose(
    long.log_g[:, -1], np.median(np.asarray(direct)[0], axis=-1), rtol=1e-4
  )


def test_bad_input_raises_clear_errors():
  with pytest.raises(ValueError, match="stochastic"):
    pm.tied_chain_log_gradient("noisy_relu", 1.0, 0.0, 0.0, depths=3)
  with pytest.raises(ValueError, match="depths must be strictly increasing"):
    pm.tied_chain_log_gradient("tanh", 1.0, 0.0, 0.0, depths=(5, 5))
  with pytest.raises(ValueError, match="depth must be an integer >= 1"):
    pm.tied_chain_log_gradient("tanh", 1.0, 0.0, 0.0, depths=0)
  with pytest.raises(ValueError, match="w must be finite"):
    pm.tied_chain_log_gradient("tanh", np.nan, 0.0, 0.0, depths=3)
  with pytest.raises(ValueError, match="broadcast"):
    pm.tied_chain_log_gradient("tanh", [1.0, 2.0], [0.0, 1.0, 2.0], 0.0, depths=3)
  with pytest.raises(ValueError, match="b must be strictly increasing"):
    pm.tied_chain_map("tanh", [1.0, 2.0], [1.0, 0.0], [0.0], depth=3)
  with pytest.raises(ValueError, match="epsilon"):
    pm.tied_chain_map("tanh", [1.0], [0.0], [0.0], depth=3, epsilon=0.0)
  with pytest.raises(ValueError, match="biases must have shape"):
    pm.slice_log_gradient(
      "tanh",
      [1.0],
      [0.0],
      np.ones((2, 3, 2, 2)),
      np.ones((2, 3, 1)),
      np.ones((2, 2)),
      np.ones((2, 2)),
    )
  with pytest.raises(ValueError, match="bias_std"):
    pm.slice_log_gradient(
      "tanh",
      [1.0],
      [0.0],
      np.ones((1, 2, 1, 1)),
      np.ones((1, 2, 1)),
      np.ones((1, 1)),
      np.ones((1, 1)),
      bias_std=-1.0,
    )
  with pytest.raises(TypeError, match="typed PRNG key"):
    pm.slice_map("tanh", [1.0], [0.0], width=2, depth=3, samples=4, key=0)
  with pytest.raises(ValueError, match="learning_rate"):
    pm.tied_chain_descent("tanh", [1.0], [0.0], [0.0], [0.0], depth=2, learning_rate=0.0, steps=3)
  with pytest.raises(ValueError, match="w0 and b0"):
    pm.tied_chain_descent(
      "tanh", [1.0, 2.0], [0.0], [0.0], [0.0], depth=2, learning_rate=0.1, steps=3
    )
  with pytest.raises(ValueError, match="y must be real numbers"):  # not coerced to 1.0
    pm.tied_chain_descent("tanh", [1.0], [0.0], [0.0], [True], depth=2, learning_rate=0.1, steps=3)
  with pytest.raises(ValueError, match="x must be finite"):
    pm.tied_chain_map("tanh", [1.0], [0.0], [np.inf], depth=3)
  with pytest.raises(SystemExit):
    experiment.parse_args(["--epsilon", "2"])


TINY = ["--quick", "--w-points", "9", "--b-points", "5", "--inputs", "4", "--deep", "200",
        "--start-w-points", "3", "--start-b-points", "2", "--steps", "20",
        "--slice-w-points", "4", "--slice-b-points", "3", "--slice-samples", "8",
        "--widths", "2", "--depth", "6"]  # fmt: skip


def test_experiment_writes_a_complete_reusable_run(tmp_path, capsys):
  argv = [*TINY, "--out", str(tmp_path)]
  assert experiment.main(argv) == 0
  out = capsys.readouterr().out
  assert "wrote" in out and "gradient descent to the teacher" in out and "slice_width2" in out
  [run_dir] = (tmp_path / "parameter_map").iterdir()
  run = store.load(run_dir)
  a = run.arrays
  assert a["tied/median_log_g"].shape == (2, 5, 9)
  np.testing.assert_array_equal(a["tied/depths"], [6, 200])
  assert a["trajectories/w"].shape == (6, 21)
  assert a["slice_width2/p_stable"].shape == (3, 4)
  # the stored map is what the library computes
  again = pm.tied_chain_map("tanh", a["tied/w"], a["tied/b"], a["tied/x"], depth=(6, 200))
  np.testing.assert_allclose(a["tied/median_log_g"], again.median_log_g)
  # the transition table counts every start once
  rows = [r for r in run.tables["outcomes"] if r["part"] == "trajectories"]
  assert sum(int(r["starts"]) for r in rows) == 6
  assert sum(int(r[f"to_{k}"]) for r in rows for k in ("vanish", "stable", "explode")) == 6
  assert experiment.main(argv) == 0
  assert "reusing" in capsys.readouterr().out
