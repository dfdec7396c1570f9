"""Recurrent networks: gradients through time against autodiff, float64 numpy, exact cases."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from vanish import init, recurrent, theory
from vanish.recurrent import LSTMParams, RNNParams


def _perturbed_loss(params, xs, cot, kind):
  """L = cotᵀ h_T as a function of additive perturbations δ_t of every state s_t.

  ∂L/∂δ_t = ∂L/∂s_t, the quantity log_gradient_norms_through_time reports.
  """
  step = (
    (lambda s, x: recurrent.lstm_step(params, s, x))
    if kind == "lstm"
    else (lambda s, x: (recurrent.rnn_step(params, s[0], x),))
  )

  def loss(deltas, xs):
    n = params.w.shape[-1]
    s0 = tuple(jnp.zeros(n, xs.dtype) for _ in deltas)

    def body(s, inputs):
      x, d = inputs
      return tuple(a + b for a, b in zip(step(s, x), d, strict=True)), None

    s, _ = jax.lax.scan(body, s0, (xs, deltas))
    return jnp.dot(cot, s[0])

  return loss


@pytest.mark.parametrize("kind", ["rnn", "lstm"])
def test_through_time_gradients_equal_autodiff_in_float64(kind):
  with jax.enable_x64(True):
    n, d, t_len = 5, 3, 8
    key = jax.random.key(0)
    if kind == "rnn":
      model = recurrent.RNN(d, n, weights=init.gaussian(2.5), key=key, dtype=jnp.float64)
    else:
      model = recurrent.LSTM(d, n, forget_bias=1.0, key=key, dtype=jnp.float64)
    params = recurrent.to_params(model)
    xs = jax.random.normal(jax.random.key(1), (t_len, d), jnp.float64)
    cot = jax.random.normal(jax.random.key(2), (n,), jnp.float64)
    loss = _perturbed_loss(params, xs, cot, kind)
    deltas = tuple(jnp.zeros((t_len, n), jnp.float64) for _ in range(2 if kind == "lstm" else 1))
    grads_state, grad_x = jax.jit(jax.grad(loss, argnums=(0, 1)))(deltas, xs)
    expected = {
      "hidden": np.log(np.linalg.norm(grads_state[0], axis=1)),
      "state": 0.5 * np.log(sum(np.sum(np.square(g), axis=1) for g in grads_state)),
      "input": np.log(np.linalg.norm(grad_x, axis=1)),
    }
    for wrt, want in expected.items():
      got = recurrent.log_gradient_norms_through_time(model, xs, cot, wrt=wrt)
      assert got.shape == (1, t_len) and got.dtype == jnp.float64
      np.testing.assert_allclose(np.asarray(got[0]), want, rtol=0, atol=1e-12, err_msg=wrt)
    # a loss function of h_T gives the same as its gradient as cotangent
    by_loss = recurrent.log_gradient_norms_through_time(model, xs, lambda h: jnp.dot(cot, h))
    np.testing.assert_allclose(np.asarray(by_loss[0]), expected["hidden"], atol=1e-12)


def _numpy_rnn_log_norms(w, u, b, xs, cot):
  """float64 BPTT written from the equations: a_{t−1} = Wᵀ diag(1 − h_t²) a_t."""
  w, u, b, xs, cot = (np.asarray(a, np.float64) for a in (w, u, b, xs, cot))
  h = np.zeros(w.shape[0])
  hs = []
  for x in xs:
    h = np.tanh(w @ h + u @ x + b)
    hs.append(h)
  a = cot.copy()
  out = np.empty(len(xs))
  log_scale = 0.0
  for t in range(len(xs) - 1, -1, -1):
    out[t] = log_scale + np.log(np.linalg.norm(a))
    a = w.T @ ((1 - hs[t] ** 2) * a)
    norm = np.linalg.norm(a)
    log_scale += np.log(norm)
    a /= norm
  return out


def test_float32_rnn_matches_float64_numpy_reference():
  n, d, t_len, m = 16, 4, 300, 3
  make = lambda r: recurrent.RNN(  # noqa: E731
    d, n, weights=init.gaussian(1.5), input_weights=init.gaussian(0.5), rngs=r
  )
  ens = nnx.vmap(make)(nnx.Rngs(3).split(m))
  xs = jax.random.normal(jax.random.key(4), (2, t_len, d))
  cot = jax.random.normal(jax.random.key(5), (2, n))
  got = np.asarray(recurrent.log_gradient_norms_through_time(ens, xs, cot))
  assert got.shape == (m, 2, t_len)
  p = recurrent.to_params(ens)
  for k in range(m):
    for b in range(2):
      want = _numpy_rnn_log_norms(p.w[k], p.u[k], p.b[k], xs[b], cot[b])
      assert want[0] < want[-1] - 20  # it vanished by many orders of magnitude
      # float32 rounding accumulates like a random walk over the 300 steps
      np.testing.assert_allclose(got[k, b], want, rtol=0, atol=2e-3)


def test_ten_thousand_steps_stay_finite_and_follow_the_rate():
  n, t_len = 32, 10_000
  xs = jax.random.normal(jax.random.key(0), (t_len, 2))
  for sigma_w2, sign in ((0.5, -1), (4.0, 1)):
    rnn = recurrent.RNN(
      2, n, weights=init.gaussian(sigma_w2), input_weights=init.gaussian(0.1), key=jax.random.key(1)
    )
    log_g = np.asarray(recurrent.log_gradient_norms_through_time(rnn, xs)[0])
    assert np.all(np.isfinite(log_g))
    total = log_g[0] - log_g[-1]  # the change over 9,999 steps of lag, far beyond float32
    assert sign * total > 300
    rate = recurrent.rnn_mean_field(sigma_w2, input_variance=0.1).rate
    # one member at width 32: the per-step rate within an O(1/n) finite-width band
    assert abs(total / (t_len - 1) - rate) < 0.1
  lstm = recurrent.LSTM(2, 8, forget_bias=-2.0, key=jax.random.key(2))
  log_g = np.asarray(recurrent.log_gradient_norms_through_time(lstm, xs, wrt="state")[0])
  assert np.all(np.isfinite(log_g)) and log_g[0] < log_g[-1] - 300


def test_orthogonal_linear_rnn_keeps_the_norm_exactly():
  n, t_len = 24, 2000
  rnn = recurrent.RNN(
    3, n, weights=init.orthogonal(1.0), activation="linear", key=jax.random.key(0)
  )
  xs = jax.random.normal(jax.random.key(1), (t_len, 3))
  cot = jax.random.normal(jax.random.key(2), (n,))
  log_g = np.asarray(recurrent.log_gradient_norms_through_time(rnn, xs, cot)[0])
  np.testing.assert_allclose(log_g, np.log(np.linalg.norm(cot)), rtol=0, atol=2e-4)
  # gain γ: exactly (T − t) log γ
  scaled = recurrent.RNN(
    3, n, weights=init.orthogonal(0.9), activation="linear", key=jax.random.key(0)
  )
  log_g = np.asarray(recurrent.log_gradient_norms_through_time(scaled, xs, cot)[0])
  lags = np.arange(t_len)[::-1]
  np.testing.assert_allclose(
    log_g, np.log(np.linalg.norm(cot)) + lags * np.log(0.9), rtol=0, atol=5e-3
  )


def test_nnx_vmap_lstm_ensemble_equals_each_member():
  # (the RNN ensemble is checked member by member against numpy above)
  d, n, m = 3, 8, 4
  ens = nnx.vmap(lambda r: recurrent.LSTM(d, n, forget_bias=2.0, rngs=r))(nnx.Rngs(7).split(m))
  xs = jax.random.normal(jax.random.key(8), (2, 40, d))  # a batch of two sequences
  cot = jax.random.normal(jax.random.key(9), (2, n))
  got = recurrent.log_gradient_norms_through_time(ens, xs, cot, wrt="input")
  assert got.shape == (m, 2, 40)
  params = recurrent.to_params(ens)
  assert isinstance(params, LSTMParams)
  for k in range(m):
    one = jax.tree.map(lambda a, k=k: a[k], params)
    for b in range(2):
      want = recurrent.log_gradient_norms_through_time(one, xs[b], cot[b], wrt="input")
      np.testing.assert_allclose(got[k, b], want[0], rtol=0, atol=1e-4)
  # the module's forward pass maps the same way
  hs = ens(xs)
  assert hs.shape == (m, 2, 40, n)
  np.testing.assert_allclose(
    hs[1, 0], recurrent.states(jax.tree.map(lambda a: a[1], params), xs[0])[0], atol=1e-6
  )


def test_mean_field_rates_exact_cases_and_wide_network():
  # linear φ: χ₁ = σ_w² whatever q*, so the rate is ½ log σ_w²
  assert recurrent.rnn_mean_field(0.64, input_variance=0.3, activation="linear").rate == (
    pytest.approx(0.5 * np.log(0.64), abs=1e-12)
  )
  crit = theory.critical_sigma_w2("tanh", 0.1)
  mf = recurrent.rnn_mean_field(crit, input_variance=0.07, sigma_b2=0.03)
  assert abs(mf.rate) < 1e-6 and mf.mean_field.sigma_b2 == pytest.approx(0.1)
  # LSTM without recurrent or input variance: f = σ(b_f) exactly
  lmf = recurrent.lstm_mean_field(0.0, input_variance=0.0, forget_bias=2.0)
  assert lmf.rate == pytest.approx(np.log(1 / (1 + np.exp(-2.0))), abs=1e-10)
  assert lmf.q_z == 0 and lmf.q_c == 0  # g = tanh(0) = 0 writes nothing into the cell
  # a wide tanh RNN decays at ½ log χ₁ per step of lag; at width n it decays slower by an
  # O(1/n) tied-weights excess (measured −0.146, −0.172, −0.173 at n = 64, 128, 256 vs −0.186)
  n, d = 256, 64
  ens = nnx.vmap(
    lambda r: recurrent.RNN(
      d, n, weights=init.gaussian(1.0), input_weights=init.gaussian(0.1), rngs=r
    )
  )(nnx.Rngs(0).split(4))
  xs = jax.random.normal(jax.random.key(1), (2, 160, d))
  log_g = np.asarray(recurrent.log_gradient_norms_through_time(ens, xs)).reshape(-1, 160)
  slopes = (log_g[:, 19] - log_g[:, 139]) / 120  # index 19 is lag 140, index 139 lag 20
  rate = recurrent.rnn_mean_field(1.0, input_variance=0.1).rate
  assert rate - 0.005 < slopes.mean() < rate + 0.03
  # the stationary state: E h² = (q* − σ_b,eff²)/σ_w²
  hs = np.asarray(ens(xs))[:, :, 40:]
  q_star = recurrent.rnn_mean_field(1.0, input_variance=0.1).mean_field.q_star
  np.testing.assert_allclose((hs**2).mean(), q_star - 0.1, rtol=0.05)


def test_rnn_mean_field_rate_where_the_state_length_diverges():
  """q* = inf: the rate is ½ log χ₁ with χ₁ at its limit q → ∞ (was −inf: 'vanishes at once').

  A ReLU RNN at σ_w² = 3 keeps its q-independent χ₁ = 3/2: rate ½ log 1.5 > 0 (explodes);
  softplus at σ_w² = 4 is ReLU-like at √q → ∞: χ₁ → 2, rate ½ log 2.
  """
  relu = recurrent.rnn_mean_field(3.0, input_variance=0.1, activation="relu")
  assert relu.rate == pytest.approx(0.5 * math.log(1.5), rel=1e-15)
  mf = recurrent.rnn_mean_field(4.0, input_variance=0.1, activation="softplus")
  assert mf.mean_field.q_star == math.inf and mf.mean_field.chi1 == pytest.approx(2.0, rel=1e-8)
  assert mf.rate == pytest.approx(0.5 * math.log(2.0), rel=1e-8)


@pytest.mark.parametrize(
  "kwargs, parameter",
  [
    ({"sigma_b2": -5.0}, "sigma_b2"),  # was a bare 'math domain error'
    ({"iterations": 0}, "iterations"),  # was UnboundLocalError on q_c
    ({"iterations": 2.5}, "iterations"),
    ({"input_variance": "a"}, "input_variance"),  # was float()'s message, no parameter
    ({"forget_bias": float("inf")}, "forget_bias"),
  ],
)
def test_mean_field_inputs_are_validated_naming_the_parameter(kwargs, parameter):
  args = {"input_variance": 0.1} | kwargs
  with pytest.raises(ValueError, match=parameter):
    recurrent.lstm_mean_field(1.0, **args)
  if parameter in ("sigma_b2", "input_variance"):
    with pytest.raises(ValueError, match=parameter):
      recurrent.rnn_mean_field(1.0, **args)


def test_bad_input_raises_clear_errors():
  rnn = recurrent.RNN(2, 4, key=jax.random.key(0))
  xs = jnp.ones((5, 2))
  with pytest.raises(ValueError, match="wrt"):
    recurrent.log_gradient_norms_through_time(rnn, xs, wrt="bias")
  with pytest.raises(ValueError, match="xs must have shape"):
    recurrent.log_gradient_norms_through_time(rnn, jnp.ones((5, 3)))
  with pytest.raises(ValueError, match="inf or NaN"):
    recurrent.log_gradient_norms_through_time(rnn, xs.at[0, 0].set(jnp.nan))
  with pytest.raises(ValueError, match="cotangent"):
    recurrent.log_gradient_norms_through_time(rnn, xs, jnp.ones(3))
  with pytest.raises(ValueError, match="RNNParams shapes"):
    recurrent.log_gradient_norms_through_time(
      RNNParams(jnp.ones((4, 3)), jnp.ones((4, 2)), jnp.ones(4)), xs
    )
  with pytest.raises(TypeError, match="model_or_params"):
    recurrent.log_gradient_norms_through_time({"w": 1}, xs)
  with pytest.raises(ValueError, match="hidden must be"):
    recurrent.RNN(2, 0, key=jax.random.key(0))
  with pytest.raises(ValueError, match="exactly one"):
    recurrent.LSTM(2, 4)
  with pytest.raises(ValueError, match="input_variance"):
    recurrent.rnn_mean_field(1.0, input_variance=-1.0)
  with pytest.raises(ValueError, match="state0"):
    recurrent.log_gradient_norms_through_time(rnn, xs, state0=jnp.ones(3))


def test_rnn_through_time_experiment_smoke(tmp_path, capsys):
  from experiments import rnn_through_time
  from vanish import store

  argv = ["--quick", "--hidden", "16", "--members", "2", "--steps", "30", "--burn-in", "10"]
  argv += ["--settings", "ordered", "chaotic", "--out", str(tmp_path)]
  assert rnn_through_time.main(argv) == 0
  assert "½log χ₁" in capsys.readouterr().out
  [run_dir] = (tmp_path / "rnn_through_time").iterdir()
  run = store.load(run_dir)
  rows = {r["setting"]: r for r in run.tables["rates"]}
  assert set(rows) == {"ordered", "chaotic", "lstm_f1", "lstm_f5"}
  assert run.config["hidden"] == 16 and run.arrays["ordered/mean"].shape == (30,)
  assert run.arrays["ordered/mean"][0] == 0  # relative to lag 0
  # the phases show up even at width 16: vanishing (ordered) versus exploding (chaotic)
  assert (
    float(rows["ordered"]["measured_rate"]) < -0.05 < 0.05 < float(rows["chaotic"]["measured_rate"])
  )
  slopes = run.arrays["ordered/slopes"]
  np.testing.assert_allclose(float(rows["ordered"]["measured_rate"]), slopes.mean(), rtol=1e-6)
  assert rnn_through_time.main(argv) == 0 and "reusing" in capsys.readouterr().out


def test_stationary_mean_square_equals_float64_numpy_for_any_block():
  """E h² after the burn-in, reduced on the device in blocks of models (never all states at
  once), against the states' float64 mean square per model."""
  from experiments.rnn_through_time import _stationary_h2

  models, batch, steps, n, burn_in = 5, 2, 40, 6, 10
  keys = jax.random.split(jax.random.key(7), 4)
  params = RNNParams(
    w=jax.random.normal(keys[0], (models, n, n)) * 1.5 / math.sqrt(n),
    u=jax.random.normal(keys[1], (models, n, 3)),
    b=jax.random.normal(keys[2], (models, n)) * 0.1,
  )
  xs = jax.random.normal(keys[3], (batch, steps, 3))
  states = [
    [np.asarray(recurrent.states(p, x)[0], np.float64) for x in xs]
    for p in (jax.tree.map(lambda a, m=m: a[m], params) for m in range(models))
  ]
  expected = np.array([np.mean(np.square(np.stack(s)[:, burn_in:])) for s in states])
  for block in (1, 2, models):  # 2 leaves a remainder
    got = np.asarray(_stationary_h2(params, xs, burn_in=burn_in, block=block))
    np.testing.assert_allclose(got, expected, rtol=1e-5)


def test_model_call_broadcasts_or_validates_the_initial_state():
  """``rnn(xs, h0)`` takes h0 ``(n,)`` (shared by the batch) or ``(batch, n)``, like
  :func:`log_gradient_norms_through_time`; anything else is a ValueError naming h0."""
  rnn = recurrent.RNN(2, 4, key=jax.random.key(0))
  xs = jax.random.normal(jax.random.key(1), (3, 5, 2))
  h0 = jnp.array([0.5, -1.0, 0.25, 2.0])
  shared = rnn(xs, h0)
  assert shared.shape == (3, 5, 4)
  np.testing.assert_array_equal(shared, rnn(xs, jnp.broadcast_to(h0, (3, 4))))
  # one sequence alone: another compiled program, so equal to float32 rounding of 5 steps of
  # sums of n + d = 6 terms bounded by ~3 (|error| ≲ 5 · 6 · 3 · 2^-24 ≈ 5e-6)
  tol = dict(rtol=0, atol=1e-5)
  np.testing.assert_allclose(shared[1], rnn(xs[1], h0), **tol)
  for bad in (jnp.zeros((2, 4)), jnp.zeros(3), jnp.zeros((3, 5))):
    with pytest.raises(ValueError, match="h0 must have shape"):
      rnn(xs, bad)
  lstm = recurrent.LSTM(2, 4, key=jax.random.key(0))
  state = (h0, -h0)
  np.testing.assert_allclose(lstm(xs, state)[2], lstm(xs[2], state), **tol)
  with pytest.raises(ValueError, match="state0 must have shape"):
    lstm(xs, (h0, jnp.zeros((2, 4))))
  with pytest.raises(TypeError, match="forget_bias"):
    recurrent.LSTM(2, 4, key=jax.random.key(0), forget_bias="x")
