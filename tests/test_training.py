"""Models, training and data: checked against independent autodiff, theory and reruns.

* the logged learning speeds are the norms of the applied gradients, recomputed here by a
  plain-JAX network and ``jax.grad`` (Nielsen ch. 5);
* the tanh(n·x) rescaling equivalence holds step by step for SGD with learning rate δn², and
  fails measurably where theory says it must (δ not rescaled; Adam with δn²);
* an ensemble member takes the steps it takes alone, to float rounding; an interrupted run
  resumes bitwise;
* a model and the chain functions agree on the gradients at any step of training.
"""

import functools
import gzip
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import vanish as vn
from vanish import data, markov, models, training


@pytest.fixture(scope="module")
def digits():
  return data.digits()


# Shared specs, sizes and options keep the number of compilations (net.init, epochs) small.
# Nielsen's setup: weights N(0, 1/n_in), biases N(0, 1). In NET the 8 -> 8 pair is a depth-2
# segment, exercising the stacked layout.
SHALLOW = vn.MLP([64, 30, 10], "sigmoid", vn.init.gaussian(1.0), vn.init.normal(1.0), "linear")
NET = vn.MLP([64, 8, 8, 8, 10], "sigmoid", vn.init.gaussian(1.0), vn.init.normal(1.0), "linear")
ADAM = dict(optimizer="adam", learning_rate=1e-2, batch_size=10, cost="sigmoid_cross_entropy")
SGD = dict(cost="sigmoid_cross_entropy", learning_rate=0.5, batch_size=10)


@pytest.fixture(scope="module")
def subset(digits):
  train_set, _ = digits
  return data.Dataset(train_set.x[:60], train_set.y[:60])


def _leaves(params):
  return np.concatenate([np.ravel(np.asarray(a, np.float64)) for a in jax.tree.leaves(params)])


def _assert_identical(p, q):
  """Bitwise-equal pytrees of arrays."""
  a, b = jax.tree.leaves(p), jax.tree.leaves(q)
  assert len(a) == len(b)
  for x, y in zip(a, b, strict=True):
    np.testing.assert_array_equal(x, y)


def _member(params, m):
  return jax.tree.map(lambda a: a[m : m + 1], params)


def _relative(p, q):
  a, b = _leaves(p), _leaves(q)
  return float(np.linalg.norm(a - b) / np.linalg.norm(b))


# --------------------------------------------------------------------------- training


def test_costs_match_their_formulas():
  rng = np.random.default_rng(0)
  a, labels = rng.normal(size=(5, 4)).astype(np.float32), np.array([0, 3, 1, 1, 2])
  y = np.eye(4, dtype=np.float32)[labels]
  s = 1 / (1 + np.exp(-a.astype(np.float64)))
  expected = {
    "quadratic": 0.5 * np.sum((a - y) ** 2, axis=1).mean(),  # Nielsen eq. 6
    "cross_entropy": np.mean(np.log(np.exp(a).sum(axis=1)) - a[np.arange(5), labels]),
    "sigmoid_cross_entropy": -np.sum(y * np.log(s) + (1 - y) * np.log(1 - s), axis=1).mean(),
  }
  for name, value in expected.items():
    np.testing.assert_allclose(training.cost(name, jnp.asarray(a), labels), value, rtol=1e-5)


def test_training_reduces_the_loss_on_digits(digits):
  train_set, test_set = digits
  params = _member(SHALLOW.init(jax.random.key(5), members=3), 0)
  result = training.train(
    SHALLOW, params, train_set, test_set, key=jax.random.key(6), epochs=2, **ADAM
  )
  log = result.log
  assert log.train_loss.shape == (1, 3) and log.step.tolist() == [143, 286]
  # Nielsen's cross-entropy falls from 10.0 at initialization (N(0,1) biases) to 0.55
  assert log.train_loss[0, -1] < log.train_loss[0, 0] / 10
  assert log.test_accuracy[0, 0] < 0.3 and log.test_accuracy[0, -1] > 0.9
  assert np.all(np.isfinite(log.bias_speed)) and log.bias_speed.shape == (1, 2, 2)


def _plain_forward(ws, bs, x):
  """An independent network: a Python loop over layers, sigmoid hidden, linear readout."""
  h = x
  for l, (w, b) in enumerate(zip(ws, bs, strict=True)):
    z = h @ w.T + b[None, :]
    h = z if l == len(ws) - 1 else jax.nn.sigmoid(z)
  return h


def _plain_sigmoid_ce(ws, bs, x, y):
  """Nielsen's cross-entropy −Σ_j [y ln a + (1−y) ln(1−a)] with a = σ(z^L), batch mean."""
  z = _plain_forward(ws, bs, x)
  t = jax.nn.one_hot(y, z.shape[-1])
  return -jnp.mean(jnp.sum(t * jax.nn.log_sigmoid(z) + (1 - t) * jax.nn.log_sigmoid(-z), axis=-1))


def _unstack(params):
  """Segment-stacked params of member 0 -> per-layer lists (ws, bs)."""
  ws = [w for p in params for w in np.asarray(p["w"][0])]
  bs = [b for p in params for b in np.asarray(p["b"][0])]
  return ws, bs


def _norms(arrays):
  return [np.linalg.norm(np.asarray(a)) for a in arrays]


def _log_ratio(bias_grads):
  """log(‖∂C/∂b^1‖ / ‖∂C/∂b^L‖) in float64 from per-layer bias gradients."""
  first, last = (np.linalg.norm(np.asarray(bias_grads[i], np.float64)) for i in (0, -1))
  return np.log(first / last)


def test_logged_learning_speeds_are_the_applied_gradients(subset, tmp_path):
  params = NET.init(jax.random.key(3))
  key, eta = jax.random.key(4), 0.5
  kw = dict(key=key, epochs=1, **SGD)
  stepwise = training.train(NET, params, subset, log="step", eval_speeds=True, **kw)
  log = stepwise.log
  assert log.bias_speed.shape == (1, 6, 4) and log.step.tolist() == [1, 2, 3, 4, 5, 6]
  # the full sets are evaluated at initialization and at the epoch's end only (cheap steps) ...
  assert log.eval_bias_speed.shape == (1, 2, 4) and log.eval_step.tolist() == [0, 6]
  # ... or also after every evaluate_every-th step
  every4 = training.train(NET, params, subset, log="step", eval_speeds=True, evaluate_every=4, **kw)
  assert every4.log.eval_step.tolist() == [0, 4, 6] and every4.log.train_loss.shape == (1, 3)
  _assert_identical(every4.params, stepwise.params)
  # evaluated steps count across epochs, and a resumed run restores them bitwise
  path, kw2 = tmp_path / "every4.npz", {**kw, "epochs": 2}
  options = dict(log="step", eval_speeds=True, evaluate_every=4, checkpoint=path)
  training.train(NET, params, subset, **options, **kw)  # epoch 1, checkpointed
  resumed = training.train(NET, params, subset, **options, **kw2).log
  straight = training.train(NET, params, subset, **{**options, "checkpoint": None}, **kw2).log
  assert straight.eval_step.tolist() == [0, 4, 6, 8, 12]
  for name, value in straight.arrays().items():
    np.testing.assert_array_equal(getattr(resumed, name), value, err_msg=name)

  ws, bs = _unstack(params)
  loss_and_grad = jax.jit(jax.value_and_grad(_plain_sigmoid_ce, argnums=(0, 1)))
  x, y = subset.x, subset.y
  for t, batch in enumerate(np.asarray(training.epoch_batches(key, 0, 60, 10))):
    if t == 0:  # Nielsen's measurement at initialization: the full set's gradient
      _, (_, gb) = loss_and_grad(ws, bs, x, y)
      np.testing.assert_allclose(log.eval_bias_speed[0, 0], _norms(gb), rtol=1e-5)
      np.testing.assert_allclose(log.eval_log_g[0, 0], _log_ratio(gb), rtol=0, atol=1e-5)
    if t == 4:  # the evaluation after step 4 (evaluate_every=4): the full set at those params
      full, (_, gb) = loss_and_grad(ws, bs, x, y)
      np.testing.assert_allclose(every4.log.eval_bias_speed[0, 1], _norms(gb), rtol=1e-5)
      np.testing.assert_allclose(every4.log.train_loss[0, 1], full, rtol=1e-5)
      np.testing.assert_allclose(every4.log.eval_log_g[0, 1], _log_ratio(gb), rtol=0, atol=1e-5)
    loss, (gw, gb) = loss_and_grad(ws, bs, x[batch], y[batch])
    np.testing.assert_allclose(log.loss[0, t], loss, rtol=1e-5)
    np.testing.assert_allclose(log.bias_speed[0, t], _norms(gb), rtol=1e-5)
    np.testing.assert_allclose(log.weight_speed[0, t], _norms(gw), rtol=1e-5)
    # the Markov model's gradient-product state: log ‖∂C/∂b^1‖/‖∂C/∂b^L‖ of the same step
    np.testing.assert_allclose(log.log_g[0, t], _log_ratio(gb), rtol=0, atol=1e-5)
    ws = [w - eta * np.asarray(g) for w, g in zip(ws, gw, strict=True)]
    bs = [b - eta * np.asarray(g) for b, g in zip(bs, gb, strict=True)]
  assert _relative(_unstack(stepwise.params), (ws, bs)) < 1e-5
  full, (_, gb) = loss_and_grad(ws, bs, x, y)
  for run in (log, every4.log):  # the epoch's end
    np.testing.assert_allclose(run.eval_bias_speed[0, -1], _norms(gb), rtol=1e-5)
    np.testing.assert_allclose(run.train_loss[0, -1], full, rtol=1e-5)

  # per-epoch logging: the epoch means of the same rows, and the same end state
  per_epoch = training.train(NET, params, subset, log="epoch", **kw)
  np.testing.assert_allclose(per_epoch.log.bias_speed[:, 0], log.bias_speed.mean(axis=1), 1e-5)
  np.testing.assert_allclose(per_epoch.log.loss[:, 0], log.loss.mean(axis=1), 1e-5)
  np.testing.assert_allclose(per_epoch.log.log_g[:, 0], log.log_g.mean(axis=1), atol=1e-5)
  np.testing.assert_allclose(per_epoch.log.train_loss[:, -1], log.train_loss[:, -1], 1e-6)
  assert _relative(per_epoch.params, stepwise.params) < 1e-6


def test_ensemble_training_equals_each_member_alone(digits):
  train_set, test_set = digits
  params = SHALLOW.init(jax.random.key(5), members=3)
  kw = dict(key=jax.random.key(6), epochs=2, **ADAM)
  together = training.train(SHALLOW, params, train_set, test_set, **kw)
  for m in range(3):
    alone = training.train(SHALLOW, _member(params, m), train_set, test_set, **kw)
    assert _relative(alone.params, _member(together.params, m)) < 1e-6
    for name, value in alone.log.arrays().items():
      expected = value if value.ndim == 1 else getattr(together.log, name)[m : m + 1]
      np.testing.assert_allclose(value, expected, rtol=1e-5, atol=1e-7, err_msg=name)


def test_an_nnx_vmap_ensemble_of_64_trains_in_one_compiled_epoch_as_its_members_alone(subset):
  """Issue 4: 64 models made by ``nnx.vmap`` train together in place, one compiled epoch
  program for all 64, and member m ends where member m trained alone ends."""
  ensemble = nnx.vmap(lambda rngs: models.MLPModel(NET, rngs=rngs))(nnx.Rngs(0).split(64))
  assert models.members(ensemble) == 64
  start = models.to_params(ensemble)
  kw = dict(key=jax.random.key(8), epochs=2, **SGD)
  compiled = training._run_epoch._cache_size()
  log = training.fit(ensemble, subset, **kw)
  assert training._run_epoch._cache_size() == compiled + 1  # both epochs, all 64 members
  assert log.loss.shape == (64, 2) and np.isfinite(log.bias_speed).all()
  trained = models.to_params(ensemble)
  assert not np.array_equal(trained[0]["w"], start[0]["w"])  # fit replaced them in place
  for m in (0, 37, 63):
    alone = models.from_params(NET, start, member=m)
    alone_log = training.fit(alone, subset, **kw)
    assert _relative(models.to_params(alone), _member(trained, m)) < 1e-6
    np.testing.assert_allclose(alone_log.bias_speed[0], log.bias_speed[m], rtol=1e-5)


def test_resume_after_interruption_is_bitwise_identical(digits, tmp_path, monkeypatch):
  subset, test_set = digits  # the full training set
  net, params = SHALLOW, SHALLOW.init(jax.random.key(5), members=3)
  kw = dict(key=jax.random.key(7), epochs=4, **ADAM)  # Adam: a state to restore as well
  reference = training.train(net, params, subset, test_set, **kw)

  path = tmp_path / "run" / "checkpoint.npz"
  real_epoch, calls = training._run_epoch, []

  def crashing_epoch(*args, **kwargs):
    if len(calls) == 3:
      raise KeyboardInterrupt("simulated crash during epoch 4")
    calls.append(1)
    return real_epoch(*args, **kwargs)

  monkeypatch.setattr(training, "_run_epoch", crashing_epoch)
  with pytest.raises(KeyboardInterrupt):
    training.train(net, params, subset, test_set, checkpoint=path, checkpoint_every=2, **kw)
  assert sorted(p.name for p in path.parent.iterdir()) == ["checkpoint.npz"]  # no temp files
  with np.load(path) as saved:
    assert int(saved["epoch"]) == 2  # written after epoch 2; epoch 3 was lost with the crash
  monkeypatch.setattr(training, "_run_epoch", real_epoch)

  resumed = training.train(net, params, subset, test_set, checkpoint=path, **kw)
  _assert_identical(resumed.params, reference.params)
  _assert_identical(resumed.opt_state, reference.opt_state)
  for name, value in reference.log.arrays().items():
    np.testing.assert_array_equal(getattr(resumed.log, name), value, err_msg=name)

  # a finished checkpoint is reused without training; a different run refuses it
  monkeypatch.setattr(training, "_run_epoch", None)
  again = training.train(net, params, subset, test_set, checkpoint=path, **kw)
  np.testing.assert_array_equal(again.params[0]["w"], reference.params[0]["w"])
  with pytest.raises(ValueError, match="checkpoint"):
    training.train(net, params, subset, test_set, checkpoint=path, **{**kw, "learning_rate": 0.1})


# --------------------------------------------------------------------------- models


def test_models_round_trip_and_share_gradients_with_the_chains(digits, subset):
  train_set, _ = digits
  net, key = NET, jax.random.key(3)
  model = models.MLPModel(net, key=key)
  _assert_identical(models.to_params(model), net.init(key))  # sampled with the spec's init

  # at a step of training, the chain functions on converted params see the model's gradients
  log = training.fit(model, subset, key=jax.random.key(9), epochs=2, **SGD)
  assert log.loss.shape == (1, 2) and log.step.tolist() == [6, 12]
  params = models.to_params(model)
  x, target = jnp.asarray(train_set.x[0]), jax.nn.one_hot(train_set.y[0], 10)

  def loss(out):
    return 0.5 * jnp.sum((out - target) ** 2)

  grads = nnx.grad(lambda m: loss(m(x)))(model)
  per_segment = [grads["segments"][i] for i in range(len(net.segments))]
  bias = jnp.concatenate([jnp.linalg.norm(s["b"][...], axis=-1) for s in per_segment])
  weight = jnp.concatenate([jnp.linalg.norm(s["w"][...], axis=(-2, -1)) for s in per_segment])
  np.testing.assert_allclose(
    vn.log_gradient_norms(net, params, x, loss)[0], jnp.log(bias), atol=1e-5
  )
  np.testing.assert_allclose(
    vn.log_gradient_norms(net, params, x, loss, wrt="weight")[0], jnp.log(weight), atol=1e-5
  )
  np.testing.assert_allclose(vn.outputs(net, params, x)[0], model(x), rtol=1e-6, atol=1e-6)

  # round trips: single model, an ensemble from net.init, an ensemble built by nnx.vmap
  again = models.from_params(net, params, member=0)
  _assert_identical(models.to_params(again), params)
  stacked = SHALLOW.init(jax.random.key(5), members=3)
  ensemble = models.from_params(SHALLOW, stacked)
  assert models.members(ensemble) == 3 and ensemble(train_set.x[:3]).shape == (3, 3, 10)
  _assert_identical(models.to_params(ensemble), stacked)
  by_nnx_vmap = nnx.vmap(lambda m, x: m(x), in_axes=(0, None))(ensemble, train_set.x[:3])
  np.testing.assert_allclose(by_nnx_vmap, ensemble(train_set.x[:3]), rtol=1e-6)
  third = models.from_params(SHALLOW, stacked, member=2)
  np.testing.assert_allclose(third(train_set.x[:3]), ensemble(train_set.x[:3])[2], rtol=1e-6)
  vmapped = nnx.vmap(lambda r: models.MLPModel(net, rngs=r))(nnx.Rngs(0).split(4))
  converted = models.to_params(vmapped)
  assert converted[1]["w"].shape == (4, 2, 8, 8)
  outs = nnx.vmap(lambda m, x: m(x), in_axes=(0, None))(vmapped, train_set.x[:3])
  np.testing.assert_allclose(vn.outputs(net, converted, train_set.x[:3]), outs, atol=1e-6)


# --------------------------------------------------------------------------- rescaling


def test_tanh_nx_rescaling_equivalence(subset, tmp_path):
  """Seed analysis (docs/seed_analysis.md §4): tanh(n·x), params α, rate δ ≡ tanh(x), nα, δn².

  Mini-batch SGD, 21 steps in float64: the trajectories agree to 1e-10 (measured ~1e-15);
  the violations differ by 0.04 (δ not rescaled) and 0.6 (Adam with δn²), while Adam with δn,
  scale-free up to its ε, agrees to 2e-5.
  """
  n, delta = 3.0, 0.01
  net_n = vn.MLP([64, 30, 10], vn.activations.scaled_tanh(n))  # tanh(n·) at every layer
  net_1 = vn.MLP([64, 30, 10], "tanh")
  kw = dict(key=jax.random.key(12), cost="quadratic", batch_size=20, log="step")

  def trajectory(net, params, name, **options):
    """Params after every epoch (3 steps each), by extending one checkpointed run."""
    path, out = tmp_path / f"{name}.npz", []
    for epochs in range(1, 8):
      out.append(training.train(net, params, subset, epochs=epochs, checkpoint=path, **options))
    return out

  def scaled(params):
    return jax.tree.map(lambda p: n * p, params)

  with jax.enable_x64(True):
    alpha = jax.tree.map(lambda a: a.astype(jnp.float64), SHALLOW.init(jax.random.key(11)))
    beta = scaled(alpha)
    tanh_n = trajectory(net_n, alpha, "alpha", learning_rate=delta, **kw)
    tanh_1 = trajectory(net_1, beta, "beta", learning_rate=delta * n**2, **kw)
    for a, b in zip(tanh_n, tanh_1, strict=True):  # n·α_t = β_t after every epoch
      assert _relative(scaled(a.params), b.params) < 1e-10
    log_n, log_1 = tanh_n[-1].log, tanh_1[-1].log
    assert log_n.loss.shape == (1, 21)
    np.testing.assert_allclose(log_n.loss, log_1.loss, rtol=1e-10)  # same function at every step
    np.testing.assert_allclose(log_n.bias_speed, n * log_1.bias_speed, rtol=1e-10)  # ∂C/∂α = n∂C/∂β
    assert _relative(tanh_1[-1].params, beta) > 0.03  # and training moved the parameters

    def final_gap(lr_beta, **options):
      a = training.train(net_n, alpha, subset, epochs=7, learning_rate=delta, **kw, **options)
      b = training.train(net_1, beta, subset, epochs=7, learning_rate=lr_beta, **kw, **options)
      return _relative(scaled(a.params), b.params)

    gaps = {
      "sgd, δ": final_gap(delta),
      "adam, δn²": final_gap(delta * n**2, optimizer="adam"),
      "adam, δn": final_gap(delta * n, optimizer="adam"),
    }
    assert gaps["sgd, δ"] > 0.02  # rate not rescaled: another trajectory
    assert gaps["adam, δn²"] > 0.2  # Adam breaks the δn² rule;
    assert gaps["adam, δn"] < 1e-3  # it is scale-free: δn matches, up to its ε


# --------------------------------------------------------------------------- bad inputs


@pytest.mark.parametrize(
  ("override", "name"),
  [
    ({"cost": "hinge"}, "cost"),
    ({"optimizer": "rmsprop"}, "optimizer"),
    ({"learning_rate": 0.0}, "learning_rate"),
    ({"learning_rate": float("nan")}, "learning_rate"),
    ({"momentum": 1.0}, "momentum"),
    ({"batch_size": 0}, "batch_size"),
    ({"batch_size": 1000}, "batch_size"),
    ({"epochs": -1}, "epochs"),
    ({"epochs": 1.5}, "epochs"),
    ({"log": "batch"}, "log"),
    ({"log": "step", "evaluate_every": 0}, "evaluate_every"),
    ({"log": "step", "evaluate_every": 2.0}, "evaluate_every"),
    ({"evaluate_every": 2}, "evaluate_every"),  # log="epoch" evaluates at epoch ends
    ({"checkpoint_every": 0}, "checkpoint_every"),
    ({"precision": "fastest"}, "precision"),
  ],
)
def test_bad_arguments_raise_value_error_naming_the_parameter(override, name):
  x = np.zeros((20, 64), np.float32)
  kw = {"key": jax.random.key(0), **override}
  with pytest.raises(ValueError, match=name):
    training.train(NET, NET.init(jax.random.key(3)), data.Dataset(x, np.zeros(20, int)), **kw)


def test_bad_data_and_params_raise_value_error():
  net, params, key = NET, NET.init(jax.random.key(3)), jax.random.key(1)
  x, y = np.zeros((20, 64), np.float32), np.zeros(20, np.int32)
  cases = [
    (data.Dataset(x, y + 10), "train_data.y"),  # labels beyond the output width
    (data.Dataset(x[:, :3], y), "train_data.x"),
    (data.Dataset(x, y.astype(np.float32)), "train_data.y"),
    (data.Dataset(np.full_like(x, np.nan), y), "train_data.x"),
  ]
  for dataset, name in cases:
    with pytest.raises(ValueError, match=name):
      training.train(net, params, dataset, key=key)
  with pytest.raises(ValueError, match="test_data"):
    training.train(net, params, data.Dataset(x, y), data.Dataset(x, y - 1), key=key)
  with pytest.raises(ValueError, match="params"):
    training.train(SHALLOW, params, data.Dataset(x, y), key=key)
  noisy = vn.MLP([64, 8, 8, 8, 10], "noisy_relu", readout="linear")
  with pytest.raises(ValueError, match="deterministic activations only: .* fresh noise"):
    training.train(noisy, params, data.Dataset(x, y), key=key)
  with pytest.raises(ValueError, match="member"):
    models.from_params(net, params, member=1)
  with pytest.raises(ValueError, match="key=, rngs= or params="):
    models.MLPModel(net)


# --------------------------------------------------------------------------- data


def test_digits_are_deterministic_standardized_and_need_no_network(digits, monkeypatch):
  train_set, test_set = digits
  again, _ = data.digits()
  np.testing.assert_array_equal(train_set.x, again.x)
  assert train_set.x.shape == (1438, 64) and test_set.x.shape == (359, 64)
  assert set(np.unique(train_set.y)) == set(range(10))
  varying = train_set.x.std(axis=0) > 0
  np.testing.assert_allclose(train_set.x.mean(axis=0), 0, atol=1e-5)
  np.testing.assert_allclose(train_set.x.std(axis=0)[varying], 1, atol=1e-4)
  monkeypatch.setitem(sys.modules, "sklearn.datasets", None)  # as if not installed
  with pytest.raises(ImportError, match=r"pip install vanish\[data\]"):
    data.digits()


def test_teacher_student_is_deterministic_and_labelled_by_the_teacher():
  key = jax.random.key(0)
  teacher = vn.MLP([64, 32, 4], "tanh", vn.init.gaussian(2.0), readout="linear")  # zero biases
  a, test_a = data.teacher_student(key, teacher=teacher, n_train=300, n_test=10)
  b, _ = data.teacher_student(key, teacher=teacher, n_train=300, n_test=10)
  np.testing.assert_array_equal(a.x, b.x)
  np.testing.assert_array_equal(a.y, b.y)
  assert a.x.shape == (300, 64) and test_a.x.shape == (10, 64) and len(np.unique(a.y)) > 3
  params = teacher.init(jax.random.fold_in(key, 0))
  np.testing.assert_array_equal(a.y, vn.outputs(teacher, params, a.x)[0].argmax(-1))
  with pytest.raises(ValueError, match="n_train"):
    data.teacher_student(jax.random.key(0), n_train=0)


def _idx(array):
  header = bytes([0, 0, 0x08, array.ndim]) + np.asarray(array.shape, ">u4").tobytes()
  return header + array.astype(np.uint8).tobytes()


def test_mnist_reads_local_idx_and_npz_files_only(tmp_path):
  rng = np.random.default_rng(0)
  images = {"train": rng.integers(0, 256, (6, 28, 28)), "t10k": rng.integers(0, 256, (3, 28, 28))}
  labels = {"train": rng.integers(0, 10, 6), "t10k": rng.integers(0, 10, 3)}
  folder = tmp_path / "idx"
  folder.mkdir()
  for split in ("train", "t10k"):
    (folder / f"{split}-images-idx3-ubyte").write_bytes(_idx(images[split]))
    with gzip.open(folder / f"{split}-labels-idx1-ubyte.gz", "wb") as handle:
      handle.write(_idx(labels[split]))
  train_set, test_set = data.mnist(folder)
  assert train_set.x.shape == (6, 784) and test_set.y.tolist() == labels["t10k"].tolist()
  np.testing.assert_allclose(train_set.x * 255, images["train"].reshape(6, -1), atol=1e-4)

  archive = tmp_path / "mnist.npz"
  np.savez(
    archive,
    x_train=images["train"].astype(np.uint8),
    y_train=labels["train"],
    x_test=images["t10k"].astype(np.uint8),
    y_test=labels["t10k"],
  )
  from_npz, _ = data.mnist(archive)
  np.testing.assert_array_equal(from_npz.x, train_set.x)
  with pytest.raises(FileNotFoundError, match="never downloads"):
    data.mnist(tmp_path / "missing")
  (folder / "t10k-images-idx3-ubyte").unlink()
  with pytest.raises(FileNotFoundError, match="t10k-images"):
    data.mnist(folder)


def test_learning_speeds_of_tiny_gradients_do_not_underflow():
  """A gradient of ~1e-30 logs its norm (float64 numpy reference), an exactly zero one logs 0.

  In float32 a plain ``sqrt(Σ g²)`` of such a gradient underflows to 0 (Σ g² ~ 1e-60), so a
  logged 0 could not tell a dead layer from a merely tiny gradient.
  """
  net = vn.MLP([3, 5, 2], "linear", readout="linear")  # two segments: 3 -> 5, 5 -> 2
  params = net.init(jax.random.key(0), members=3)
  scales = jnp.array([1e-30, 1e-33, 0.0])[:, None, None, None]  # member 2: exactly zero
  params = (params[0], {"w": params[1]["w"] * scales, "b": params[1]["b"] + 0.5})
  rng = np.random.default_rng(0)
  train_set = data.Dataset(rng.normal(size=(8, 3)).astype(np.float32), rng.integers(0, 2, 8))

  def reference(m):  # float64 backprop of the mean softmax cross-entropy, by hand
    w1, b1 = (np.asarray(params[0][k][m, 0], np.float64) for k in ("w", "b"))
    w2, b2 = (np.asarray(params[1][k][m, 0], np.float64) for k in ("w", "b"))
    x = np.asarray(train_set.x, np.float64)
    h1 = x @ w1.T + b1
    out = h1 @ w2.T + b2
    p = np.exp(out - out.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    d_out = (p - np.eye(2)[train_set.y]) / len(x)
    d_h1 = d_out @ w2
    bias = [np.linalg.norm(d_h1.sum(0)), np.linalg.norm(d_out.sum(0))]
    weight = [np.linalg.norm(d_h1.T @ x), np.linalg.norm(d_out.T @ h1)]
    return np.array(bias), np.array(weight)

  expected = [np.stack(a) for a in zip(*(reference(m) for m in range(3)), strict=True)]
  assert 1e-33 < expected[0][0, 0] < 1e-27 and 1e-36 < expected[0][1, 0] < 1e-30
  # the plain float32 formula loses member 0's first-layer speed entirely
  d_h1 = np.float32(expected[0][0, 0] / np.sqrt(5)) * np.ones(5, np.float32)
  assert np.sqrt(np.sum(d_h1**2)) == 0
  bias, weight = training.gradient_norms(net, params, train_set)
  result = training.train(
    net, params, train_set, key=jax.random.key(1), batch_size=8, log="step", eval_speeds=True
  )
  for logged_bias, logged_weight in [
    (bias, weight),
    (result.log.bias_speed[:, 0], result.log.weight_speed[:, 0]),  # the applied gradient
    (result.log.eval_bias_speed[:, 0], result.log.eval_weight_speed[:, 0]),
  ]:
    np.testing.assert_allclose(logged_bias[:2], expected[0][:2], rtol=1e-5)
    np.testing.assert_allclose(logged_weight[:2], expected[1][:2], rtol=1e-5)
    assert logged_bias[2, 0] == 0 and logged_weight[2, 0] == 0  # exactly zero stays exactly 0
    np.testing.assert_allclose(logged_bias[2, 1], expected[0][2, 1], rtol=1e-5)
  # the gradient-product state: finite down to 1e-30, -inf only for the exactly zero one
  want = np.log(expected[0][:2, 0] / expected[0][:2, 1])
  for log_g in (result.log.log_g[:, 0], result.log.eval_log_g[:, 0]):
    np.testing.assert_allclose(log_g[:2], want, rtol=1e-6)
    assert log_g[2] == -np.inf
  np.testing.assert_allclose(
    result.log.log_g,
    markov.log_first_layer_speed(result.log.bias_speed, relative_to_last=True),
    rtol=1e-6,
  )


def test_compiled_step_has_no_conditional_and_the_norms_agree_with_the_scaled_path():
  """The step logs the plain norms and an exactness flag, with no conditional (on a GPU each
  copies its predicate to the host every step); the scaled variant is another compilation,
  and both agree on ordinary gradients. The full-set evaluation keeps one ``lax.cond``
  shared by all members (``pmin``): once per epoch by default, in the step only with
  ``log="step"`` and ``evaluate_every``."""
  params = tuple(  # traced only: shapes suffice, no net.init compilation
    {"w": jnp.zeros((2, s.depth, s.fan_out, s.fan_in)), "b": jnp.zeros((2, s.depth, s.fan_out))}
    for s in SHALLOW.segments
  )
  x = jnp.zeros((20, 64), jnp.float32)
  y = jnp.zeros((20,), jnp.int32)
  config = training._static(training.Config())
  opt_state = jax.vmap(training._optimizer(config).init)(params)
  rates = (jnp.float32(0.1), jnp.float32(0.0))
  batches = training.epoch_batches(jax.random.key(1), 0, 20, 10)

  def jaxpr(config, scaled=False):
    epoch = functools.partial(training._run_epoch, scaled=scaled)
    return str(
      jax.make_jaxpr(epoch, static_argnums=(0, 1))(
        SHALLOW, config, rates, params, opt_state, x, y, None, None, batches
      )
    )

  for scaled in (False, True):
    assert "cond[" not in jaxpr(config, scaled) and "pmin" not in jaxpr(config, scaled)
  assert jaxpr(config, True).count(" div ") > jaxpr(config).count(" div ")  # g / max |g|
  evaluation = str(
    jax.make_jaxpr(training._evaluate_members, static_argnums=(0, 1))(
      SHALLOW, training._eval_static(training.Config(eval_speeds=True)), params, x, y, x, y
    )
  )
  assert "cond[" in evaluation and "pmin" in evaluation
  # per-step logging costs what the step costs: the step's own gradients, no full-set pass
  # (the matmuls of one step's forward and backward, as for log="epoch")
  dots = {
    every: jaxpr(training._static(training.Config(log="step", evaluate_every=every))).count(
      "dot_general"
    )
    for every in (None, 1, 3)
  }
  assert dots[None] == jaxpr(config).count("dot_general")
  assert dots[1] > dots[None] and dots[3] == dots[1]  # evaluating steps: + the full-set pass
  # the logged loss passes one optimization_barrier (no value changes; on a GPU it keeps the
  # cross-entropy out of the log vector's kernel, see training._packed_log), in every variant
  for variant in (config, training._static(training.Config(log="step"))):
    for scaled in (False, True):
      assert jaxpr(variant, scaled).count("optimization_barrier") == 1
  grads = ({"w": jnp.full((1, 3, 4), 0.5), "b": jnp.arange(3.0)[None]},)
  *plain, exact = jax.jit(training._plain_layer_norms)(grads)
  assert bool(exact)  # sums of squares in the safe range
  np.testing.assert_allclose(plain, training._scaled_layer_norms(grads), rtol=1e-6)
  np.testing.assert_allclose(plain, ([5**0.5], [12**0.5 * 0.5]), rtol=1e-6)
  np.testing.assert_allclose(jax.jit(training._layer_norms)(grads), plain, rtol=0)
  tiny = jax.tree.map(lambda g: g * 1e-30, grads)
  assert not bool(training._plain_layer_norms(tiny)[2])  # Σ g² ~ 1e-60 underflows: not exact


def test_layer_norms_equal_float64_norms_across_segments_of_very_different_sizes():
  """Per-layer norms of segment-stacked gradients (a 2-layer segment among 1-layer ones, 3 to
  200·64 entries a layer) against float64 numpy. Bounds (u = 2⁻²⁴, n the layer's entries):
  plain ``sqrt(Σ g²)`` (n/2 + 1)·u (n − 1 roundings of the sum, one per square, halved by the
  square root, plus its own); scaled (n + 5)/2·u (also the division by max |g| and the
  product). A layer of 1e-30 underflows the plain sums, which say so (not exact), and the
  scaled norm gets it right. A zero layer is exactly 0 in both, inf and NaN propagate, but
  the plain sums flag them too: without ``max |g|`` a sum of 0 or inf is ambiguous."""
  u = 2.0**-24
  rng = np.random.default_rng(0)
  shapes = [(1, 200, 64), (2, 30, 200), (1, 3, 30)]  # (layers, fan_out, fan_in) per segment
  grads = [{"w": rng.standard_normal(s), "b": rng.standard_normal(s[:2])} for s in shapes]
  grads = [{k: v.astype(np.float32) for k, v in g.items()} for g in grads]

  def per_layer(name, fn):
    return np.array([fn(layer) for g in grads for layer in g[name]])

  def assert_close(got, want, rtol):
    got, regular = np.asarray(got), np.isfinite(want) & (want > 0)
    assert np.array_equal(got[~regular], want[~regular], equal_nan=True)  # 0, inf, NaN
    error = np.abs(got[regular] - want[regular]) / want[regular]
    assert np.all(error <= rtol[regular]), (error, rtol[regular])

  def check(plain_exact):
    bias, weight, exact = jax.jit(training._plain_layer_norms)(grads)
    scaled = jax.jit(training._scaled_layer_norms)(grads)
    assert bool(exact) == plain_exact
    for name, plain, scaled_norm in zip("bw", (bias, weight), scaled, strict=True):
      want = per_layer(name, lambda a: np.linalg.norm(a.astype(np.float64)))
      n = per_layer(name, np.size)
      assert_close(scaled_norm, want, (n + 5) / 2 * u)
      if plain_exact:
        assert_close(plain, want, (n / 2 + 1) * u)
    return bias, weight

  check(plain_exact=True)
  regular = [dict(g) for g in grads]
  grads[1]["w"] = grads[1]["w"].copy()
  grads[1]["w"][1] *= np.float32(1e-30)  # layer 3's weights: Σ g² ~ 1e-58 underflows float32
  _, weight = check(plain_exact=False)
  assert weight[2] < 1e-25  # the plain norm lost it (flushed to 0); the scaled one did not
  grads = regular
  grads[1]["b"][0] = 0  # layer 2's bias: exactly zero
  grads[2]["w"][0, 1, 2] = np.inf  # layer 4's weights: inf (scaling cannot change it)
  grads[0]["b"][0, 5] = np.nan  # layer 1's bias: NaN
  bias, weight = check(plain_exact=False)  # flagged, although the plain values are right
  assert bias[1] == 0 and weight[3] == np.inf and np.isnan(bias[0])


def test_packed_step_logs_unpack_exactly_and_their_sums_give_the_epoch_means():
  """A step's log is one vector (one write, or one add to the carry, per scanned step). It
  unpacks bitwise, and T summed vectors over T are the fields' means: within T·u of float64
  means for positive values (T − 1 float32 additions and a division, u = 2⁻²⁴), −inf, inf
  and NaN propagating as in a mean, and the inexact count nonzero iff a step was inexact."""
  u, steps, depth = 2.0**-24, 7, 3
  rng = np.random.default_rng(0)
  loss = rng.uniform(0.1, 3, steps).astype(np.float32)
  bias = rng.uniform(1e-3, 1, (steps, depth)).astype(np.float32)
  weight = rng.uniform(1e-3, 1, (steps, depth)).astype(np.float32)
  exact = np.ones(steps, bool)

  def pack(loss, bias, weight, exact):
    rows = zip(loss, bias, weight, exact, strict=True)
    return jnp.stack([training._packed_log(*row) for row in rows])

  def epoch_mean(packed):  # the carry's float32 sums, in step order
    means, inexact = training._unpacked_log(functools.reduce(jnp.add, packed)[None])
    return {k: np.asarray(v[0] / steps) for k, v in means.items()}, float(inexact[0])

  packed = pack(loss, bias, weight, exact)
  fields, inexact = training._unpacked_log(packed)
  expected = {"loss": loss, "bias_speed": bias, "weight_speed": weight}
  expected["log_g"] = np.asarray(training._log_g(jnp.asarray(bias)))
  for name, value in expected.items():
    np.testing.assert_array_equal(fields[name], value, err_msg=name)
  assert np.all(np.asarray(inexact) == 0)
  means, count = epoch_mean(packed)
  assert count == 0
  for name in ("loss", "bias_speed", "weight_speed"):
    want = expected[name].astype(np.float64).mean(axis=0)
    np.testing.assert_allclose(means[name], want, rtol=steps * u, err_msg=name)
  log_g = expected["log_g"].astype(np.float64)
  np.testing.assert_allclose(
    means["log_g"], log_g.mean(), rtol=0, atol=steps * u * abs(log_g).max()
  )

  exact[4] = False  # one inexact step
  bias[2, 0] = 0  # a dead first layer in step 2: log_g = -inf, and so is the mean
  loss[5] = np.nan
  weight[1, 2], weight[3, 2] = np.inf, 1.0
  means, count = epoch_mean(pack(loss, bias, weight, exact))
  assert count == 1 and means["log_g"] == -np.inf and np.isnan(means["loss"])
  assert means["weight_speed"][2] == np.inf and np.isfinite(means["weight_speed"][:2]).all()


def test_bfloat16_epoch_means_are_accumulated_in_float32():
  """A bfloat16 sum of 300 steps' logs stops growing (its 8-bit significand: adding a
  value below half an ulp of the sum changes nothing), so log="epoch" sums in float32 and
  rounds the means to bfloat16 once: within its unit roundoff (2⁻⁸ relative) plus the
  float32 sum's T·2⁻²⁴ of the float64 means of the log="step" rows."""
  net = vn.MLP([64, 30, 10], "sigmoid", readout="linear")
  train_set, _ = data.digits(seed=0)
  subset = data.Dataset(train_set.x[:300], train_set.y[:300])
  params = net.init(jax.random.key(0), members=2, dtype=jnp.bfloat16)
  kw = dict(key=jax.random.key(1), epochs=1, batch_size=1, learning_rate=1e-4)
  epoch = training.train(net, params, subset, log="epoch", **kw).log
  step = training.train(net, params, subset, log="step", **kw).log
  assert epoch.loss.dtype == jnp.bfloat16
  for name in ("loss", "bias_speed", "weight_speed"):
    want = np.asarray(getattr(step, name), np.float64).mean(axis=1)
    got = np.asarray(getattr(epoch, name), np.float64)[:, 0]
    np.testing.assert_allclose(got, want, rtol=2.0**-8 + 300 * 2.0**-24, err_msg=name)


@pytest.mark.parametrize("log", ["step", "epoch"])
def test_an_epoch_whose_norms_underflow_is_rerun_scaled_and_so_are_later_epochs(
  monkeypatch, tmp_path, log
):
  """Ordinary gradients: one plain compiled epoch each. A dead layer's exactly zero ones:
  the plain sums cannot tell 0 from an underflow, so the first epoch runs again scaled, the
  later ones scaled at once, and the zeros are logged as exactly 0. Gradients of ~1e-30 in
  one member: that epoch runs again with the scaled norms, which log them (a plain Σ g²
  underflows to 0), and the later epochs run scaled at once, also after a resume from a
  checkpoint (the variant is saved with it). With ``log="epoch"`` the steps'
  inexact flags are summed in the scan's carry, like the logged values."""
  net = vn.MLP([64, 30, 10], "relu", readout="linear")
  train_set, _ = data.digits(seed=0)
  subset = data.Dataset(train_set.x[:40], train_set.y[:40])
  params = net.init(jax.random.key(0), 2)
  real_epoch, calls = training._run_epoch, []

  def counting(*args, scaled=False, **kwargs):
    calls.append(scaled)
    return real_epoch(*args, scaled=scaled, **kwargs)

  monkeypatch.setattr(training, "_run_epoch", counting)
  kw = dict(key=jax.random.key(1), batch_size=10, learning_rate=0.1, log=log)
  ordinary = training.train(net, params, subset, epochs=3, **kw)
  dead = tuple(dict(p) for p in params)
  dead[0]["b"] = dead[0]["b"].at[1].set(-1e3)  # member 1's hidden ReLUs all dead: ∂C/∂b¹ = 0
  dead_run = training.train(net, dead, subset, epochs=3, **kw)
  assert calls == [False] * 3 + [False, True, True, True]
  assert np.all(dead_run.log.bias_speed[1, :, 0] == 0)  # exactly zero, logged as 0
  assert np.all(dead_run.log.log_g[1] == -np.inf)  # also as the mean over an epoch's steps
  calls.clear()
  with pytest.warns(RuntimeWarning, match="training diverged"):
    diverged = training.train(net, params, subset, epochs=3, **{**kw, "learning_rate": 1e12})
  assert calls == [False, True, True, True]  # inf/NaN sums: one rerun, like an underflow
  assert not np.isfinite(diverged.log.loss[:, -1]).any()
  calls.clear()
  tiny = tuple(dict(p) for p in params)
  tiny[-1]["w"] = tiny[-1]["w"].at[1].multiply(1e-30)  # member 1's hidden gradients ~1e-30
  rerun = training.train(net, tiny, subset, epochs=3, **kw)
  assert calls == [False, True, True, True]
  if log == "step":
    assert 0 < rerun.log.bias_speed[1, 0, 0] < 1e-25  # logged, not underflowed to 0
  else:  # the means of the step rows (the plain ones are the same program but for the log)
    steps = training.train(net, tiny, subset, epochs=3, **{**kw, "log": "step"}).log
    assert calls == [False, True, True, True, False, True, True, True]
    per_epoch = steps.bias_speed.astype(np.float64).reshape(2, 3, -1, 2).mean(axis=2)
    # T = 4 float32 additions per mean, ~1 ulp of difference per step between the two
    # compilations compounding over the 12 steps: 16 ulp
    np.testing.assert_allclose(rerun.log.bias_speed, per_epoch, rtol=16 * 2.0**-24)
  # member 0 is unaffected (to rounding: the scaled norms are another compilation)
  np.testing.assert_allclose(rerun.log.bias_speed[0], ordinary.log.bias_speed[0], rtol=1e-6)
  for a, b in zip(jax.tree.leaves(rerun.params), jax.tree.leaves(ordinary.params), strict=True):
    np.testing.assert_allclose(a[0], b[0], rtol=1e-6, atol=1e-7)
  calls.clear()
  path = tmp_path / "ckpt.npz"
  training.train(net, tiny, subset, epochs=1, checkpoint=path, **kw)  # interrupted after 1
  resumed = training.train(net, tiny, subset, epochs=3, checkpoint=path, **kw)
  assert calls == [False, True, True, True]  # epochs 2 and 3 scaled at once after the resume
  _assert_identical(resumed.params, rerun.params)
  for name, value in rerun.log.arrays().items():
    np.testing.assert_array_equal(getattr(resumed.log, name), value, err_msg=name)


def test_rates_given_as_zero_dimensional_arrays_are_accepted():
  for rate in (np.array(0.1), jnp.asarray(0.1), np.float32(0.1), 0.1):
    config = training.Config(learning_rate=rate, momentum=np.array(0.5))
    assert config.learning_rate == float(rate) and config.momentum == 0.5
  for bad in (np.array([0.1]), jnp.asarray(True), np.array("0.1"), jnp.zeros(())):
    with pytest.raises(ValueError, match="learning_rate"):
      training.Config(learning_rate=bad)


def test_float64_training_uses_the_data_unrounded():
  """Under ``jax.enable_x64`` float64 params train on float64 data, not data rounded to float32.

  The two inputs differ by 1e-12, far below float32's resolution (6e-8 at 1) but far above
  float64's (2e-16); float32 rounding of x changes the gradient by ~1e-8 relative, while a
  float64 computation of this 3-4-2 net agrees with float64 autodiff to a few ulp (< 1e-12).
  """
  net = vn.MLP([3, 4, 2], "tanh", readout="linear")
  x = np.array([[1 + 1e-12, 0.1, 0.3], [1.0, 0.1, 0.3], [0.2, -0.7, 1 / 3]])
  y = np.array([0, 1, 1])
  with jax.enable_x64(True):
    params = jax.tree.map(lambda a: a.astype(jnp.float64), net.init(jax.random.key(0), 1))

    def loss(p):
      out = models.apply(net, jax.tree.map(lambda a: a[0], p), jnp.asarray(x), "highest")
      return training.cost("cross_entropy", out, jnp.asarray(y))

    grads = jax.grad(loss)(params)
    result = training.train(
      net,
      params,
      data.Dataset(x, y),
      key=jax.random.key(1),
      batch_size=3,
      learning_rate=0.5,
      eval_speeds=True,  # the full set's speeds at initialization: gradient_norms' computation
    )
    bias = result.log.eval_bias_speed[0, 0]
    assert bias.dtype == np.float64
    np.testing.assert_allclose(bias, _norms([g["b"][0, 0] for g in grads]), rtol=1e-12)
    expected = jax.tree.map(lambda p, g: p - 0.5 * g, params, grads)  # one full-batch SGD step
    assert _relative(result.params, expected) < 1e-12


def test_mnist_scales_only_integer_pixels_and_rejects_malformed_arrays(tmp_path):
  rng = np.random.default_rng(1)
  pixels = rng.integers(0, 256, (4, 28, 28)).astype(np.uint8)
  labels = np.array([0, 9, 3, 3])

  def save(name, **arrays):
    path = tmp_path / name
    np.savez(
      path, **({"x_train": pixels, "y_train": labels, "x_test": pixels, "y_test": labels} | arrays)
    )
    return path

  as_float = pixels.astype(np.float32) / 255  # already in [0, 1]: kept, not divided again
  loaded, _ = data.mnist(save("float.npz", x_train=as_float))
  np.testing.assert_array_equal(loaded.x, as_float.reshape(4, -1))
  from_uint8, _ = data.mnist(save("uint8.npz"))
  np.testing.assert_allclose(from_uint8.x, loaded.x, rtol=1e-7)
  cases = {
    "x_train": save("float255.npz", x_train=pixels.astype(np.float32)),  # 0..255 floats
    "x_test": save("negative.npz", x_test=pixels.astype(np.int16) - 1),
    "one-hot": save("onehot.npz", y_train=np.eye(10)[labels]),
    "y_test": save("class10.npz", y_test=labels + 1),  # 10 is not an MNIST class
  }
  for name, path in cases.items():
    with pytest.raises(ValueError, match=name):
      data.mnist(path)
  junk = tmp_path / "notes.txt"
  junk.write_text("not an archive")
  with pytest.raises(ValueError, match="notes.txt is neither an .npz") as error:
    data.mnist(junk)
  assert "pickle" not in str(error.value)


def test_dataset_sizes_and_fractions_are_validated_naming_the_parameter():
  key = jax.random.key(0)
  with pytest.raises(TypeError, match="n_train"):
    data.teacher_student(key, n_train=100.0)
  with pytest.raises(TypeError, match="n_test"):
    data.teacher_student(key, n_test="5")
  with pytest.raises(TypeError, match="test_fraction"):
    data.digits(test_fraction="0.2")
  with pytest.raises(ValueError, match="test_fraction.*training split empty"):
    data.digits(test_fraction=0.9999)  # rounds to all 1797 images held out
  with pytest.raises(ValueError, match="seed"):
    data.digits(seed=-1)


def test_a_diverged_member_has_nan_accuracy_and_is_named_in_a_warning(subset):
  params = NET.init(jax.random.key(3), members=3)
  broken = params[0]["w"].at[1, 0, 0, 0].set(jnp.nan)  # member 1: NaN outputs from the start
  params = ({"w": broken, "b": params[0]["b"]}, *params[1:])
  kw = {**SGD, "batch_size": 60}  # the programs of the ensemble test below
  with pytest.warns(RuntimeWarning, match=r"1 of 3 members .*: members 1$"):
    log = training.train(NET, params, subset, key=jax.random.key(1), **kw).log
  # argmax of NaN outputs is class 0, which would have read as a chance-level accuracy
  assert np.isnan(log.train_accuracy[1]).all() and np.isfinite(log.train_accuracy[[0, 2]]).all()


def test_each_step_of_an_ensemble_member_equals_its_step_alone_to_rounding(subset):
  """Member m of an M-member run and the same network trained alone take the same step up to
  float32 rounding: the compiled programs differ (M = 1 has no batched matmuls), so their sums
  round in another order. A priori |Δg| ≤ γ_K Σ|terms| with γ_K ≈ K·u for sums of K terms
  (u = 2^-24); the longest chain here sums K ≤ 60 (batch) + 64 + 8 + 8 + 8 terms, so each
  update agrees to K·u ≈ 9e-6 relative (measured ~1e-6). Chaotic training (a tanh(3x)
  64-16-16-10 net, η = 0.05) amplifies such differences step after step (16–22 % after 50
  steps), which is why the claim is per step."""
  net, params = NET, NET.init(jax.random.key(0), members=3)
  kw = dict(key=jax.random.key(1), **{**SGD, "batch_size": 60})
  tolerance = (60 + 64 + 8 + 8 + 8) * 2.0**-24
  for _ in range(3):  # three full-batch steps, each from the ensemble's current params
    together = training.train(net, params, subset, **kw)
    for m in range(3):
      alone = training.train(net, _member(params, m), subset, **kw)
      update = _leaves(alone.params) - _leaves(_member(params, m))
      gap = _leaves(_member(together.params, m)) - _leaves(alone.params)
      assert np.linalg.norm(gap) <= tolerance * np.linalg.norm(update)
      np.testing.assert_allclose(together.log.loss[m], alone.log.loss[0], rtol=tolerance)
    params = together.params


def test_a_full_disk_while_checkpointing_keeps_the_previous_checkpoint(
  subset, tmp_path, monkeypatch
):
  """``ENOSPC`` in the middle of writing the epoch-2 checkpoint: the error reaches the caller,
  the epoch-1 checkpoint survives intact (no torn file, no temp file), and a rerun resumes from
  it (2 epochs trained, not 3) to the same result as an uninterrupted run, bitwise."""
  import errno

  params, kw = NET.init(jax.random.key(3)), dict(key=jax.random.key(4), epochs=3, **SGD)
  reference = training.train(NET, params, subset, **kw)
  path, real_savez, calls = tmp_path / "ckpt.npz", np.savez, []

  def savez_filling_the_disk(handle, **arrays):
    calls.append(1)
    if len(calls) == 2:
      handle.write(b"PK\x03\x04 torn")
      raise OSError(errno.ENOSPC, "No space left on device")
    return real_savez(handle, **arrays)

  monkeypatch.setattr(np, "savez", savez_filling_the_disk)
  with pytest.raises(OSError) as error:
    training.train(NET, params, subset, checkpoint=path, **kw)
  assert error.value.errno == errno.ENOSPC
  monkeypatch.setattr(np, "savez", real_savez)
  assert [p.name for p in tmp_path.iterdir()] == ["ckpt.npz"]
  with np.load(path) as saved:
    assert int(saved["epoch"]) == 1

  real_epoch, epochs_run = training._run_epoch, []
  monkeypatch.setattr(
    training, "_run_epoch", lambda *a, **k: epochs_run.append(1) or real_epoch(*a, **k)
  )
  resumed = training.train(NET, params, subset, checkpoint=path, **kw)
  assert len(epochs_run) == 2
  _assert_identical(resumed.params, reference.params)
  for name, value in reference.log.arrays().items():
    np.testing.assert_array_equal(getattr(resumed.log, name), value, err_msg=name)
