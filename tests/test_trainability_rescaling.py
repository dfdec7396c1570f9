"""F8 trainability vs depth and F12 rescaling equivalence: the science claims and the scripts."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments import rescaling, trainability
from vanish import data, models, store, theory, training

WIDTHS = (16, 8, 8, 4)


@pytest.fixture(scope="module")
def task():
  train_set, _ = data.teacher_student(jax.random.key(0), n_train=60, n_test=1)
  batches = rescaling.step_batches(jax.random.key(1), 60, 10, 6)
  return train_set, batches


def _distance(flat_b, flat_a, n):
  return np.linalg.norm(flat_b - n * flat_a, axis=1) / np.linalg.norm(n * flat_a, axis=1)


def _run(n, params, train_set, batches, **kw):
  return rescaling.trajectory(rescaling.network(n, WIDTHS), params, train_set, batches, **kw)


def test_sgd_rescaling_holds_to_float64_rounding_and_fails_without_n_squared(task):
  train_set, batches = task
  n, rate = 3.0, 0.1
  with jax.enable_x64(True):
    alpha = rescaling.initial_params(WIDTHS, key=jax.random.key(2))
    beta = rescaling.scale_params(alpha, n)
    flat_a, cost_a = _run(n, alpha, train_set, batches, optimizer="sgd", learning_rate=rate)
    flat_b, cost_b = _run(1.0, beta, train_set, batches, optimizer="sgd", learning_rate=rate * n**2)
    flat_u, cost_u = _run(1.0, beta, train_set, batches, optimizer="sgd", learning_rate=rate)
  assert flat_a.dtype == np.float64
  assert np.linalg.norm(flat_a[-1] - flat_a[0]) > 1e-2 * np.linalg.norm(flat_a[0])  # it moves
  assert _distance(flat_b, flat_a, n).max() < 1e-12
  np.testing.assert_allclose(cost_b, cost_a, rtol=1e-12)
  assert _distance(flat_u, flat_a, n)[1:].min() > 1e-3  # unscaled rate: apart from step 1
  assert np.abs(cost_u - cost_a)[-1] > 1e-3


def test_power_of_two_slope_agrees_to_float32_rounding_step_by_step():
  """n = 2 scales exactly, but tanh(2·z) and tanh(z') are different compiled programs, so
  their sums may round differently: not bitwise (the experiment's network differs by one ulp
  after the first step), but each step agrees to K·u of the update, u = 2^-24 and K = 32 +
  64 + 32 + 32 + 10 the longest chain of sums (batch and widths of the 64-32-32-10 net)."""
  train_set, _ = data.digits()
  batches = rescaling.step_batches(jax.random.key(1), len(train_set.y), 32, 4)
  alpha = rescaling.initial_params(rescaling.WIDTHS, key=jax.random.key(0), dtype=np.float32)
  beta = rescaling.scale_params(alpha, 2.0)
  kw = dict(optimizer="sgd", train_data=train_set, batches=batches)
  flat_a, cost_a = rescaling.trajectory(rescaling.network(2.0), alpha, learning_rate=0.05, **kw)
  flat_b, cost_b = rescaling.trajectory(rescaling.network(1.0), beta, learning_rate=0.2, **kw)
  tolerance = (32 + 64 + 32 + 32 + 10) * 2.0**-24
  steps = np.linalg.norm(np.diff(flat_b, axis=0), axis=1)
  gaps = np.linalg.norm(flat_b - 2 * flat_a, axis=1)
  assert gaps[0] == 0 and np.all(np.diff(gaps) <= tolerance * steps)
  np.testing.assert_allclose(cost_b, cost_a, rtol=len(cost_a) * tolerance)


def test_adam_is_equivalent_at_rate_n_with_eps_over_n_and_not_at_rate_one(task):
  train_set, batches = task
  n, rate = 3.0, 1e-2
  with jax.enable_x64(True):
    alpha = rescaling.initial_params(WIDTHS, key=jax.random.key(4))
    beta = rescaling.scale_params(alpha, n)
    flat_a, _ = _run(n, alpha, train_set, batches, optimizer="adam", learning_rate=rate)
    exact, _ = _run(
      1.0, beta, train_set, batches, optimizer="adam", learning_rate=rate * n, eps=1e-8 / n
    )
    usual, _ = _run(1.0, beta, train_set, batches, optimizer="adam", learning_rate=rate * n)
    plain, _ = _run(1.0, beta, train_set, batches, optimizer="adam", learning_rate=rate)
  assert _distance(exact, flat_a, n).max() < 1e-12
  # the usual ε: off by O(ε / (n √v)) only; the unscaled rate: off by O(1) of the step
  assert 1e-12 < _distance(usual, flat_a, n).max() < 1e-4
  assert _distance(plain, flat_a, n)[-1] > 1e-3


def test_linear_readout_needs_its_own_unscaled_rate():
  """Derivation check: with y = W^L h + b^L (no n), scale only the hidden layers by n; SGD is
  then equivalent with rate δn² on the hidden layers and δ on the readout, not with δn² on all."""
  n, rate = 3.0, 0.05
  train_set, _ = data.teacher_student(jax.random.key(5), n_train=20, n_test=1)
  with jax.enable_x64(True):
    x, y = jnp.asarray(train_set.x, jnp.float64), jnp.asarray(train_set.y)
    net_n = rescaling.network(n, WIDTHS, readout="linear")
    net_1 = rescaling.network(1.0, WIDTHS, readout="linear")
    alpha = tuple(
      jax.tree.map(lambda a: a[0], p)
      for p in rescaling.initial_params(WIDTHS, key=jax.random.key(6))
    )
    factors = [n] * (len(alpha) - 1) + [1.0]  # one segment per layer here
    beta = tuple(jax.tree.map(lambda a, f=f: f * a, p) for p, f in zip(alpha, factors, strict=True))

    def cost(net, p):
      return training.cost("quadratic", models.apply(net, p, x, "highest"), y)

    np.testing.assert_allclose(cost(net_1, beta), cost(net_n, alpha), rtol=1e-14)

    @functools.partial(jax.jit, static_argnums=0)
    def sgd(net, p, rates):
      g = jax.grad(lambda q: cost(net, q))(p)
      return tuple(
        jax.tree.map(lambda a, d, r=r: a - r * d, pi, gi)
        for pi, gi, r in zip(p, g, rates, strict=True)
      )

    a, b_right, b_global = alpha, beta, beta
    for _ in range(3):
      a = sgd(net_n, a, jnp.asarray([rate] * len(alpha)))
      b_right = sgd(net_1, b_right, jnp.asarray([rate * f**2 for f in factors]))
      b_global = sgd(net_1, b_global, jnp.asarray([rate * n**2] * len(alpha)))
    mapped = tuple(jax.tree.map(lambda v, f=f: f * v, p) for p, f in zip(a, factors, strict=True))

    def gap(u, v):
      return max(
        float(jnp.max(jnp.abs(p - q)))
        for p, q in zip(jax.tree.leaves(u), jax.tree.leaves(v), strict=True)
      )

    assert gap(b_right, mapped) < 1e-13
    assert gap(b_global, mapped) > 1e-3


def test_trajectory_takes_the_same_steps_as_training_train(task):
  train_set, _ = task
  net = rescaling.network(2.0, WIDTHS)
  params = rescaling.initial_params(WIDTHS, key=jax.random.key(7), dtype=np.float32)
  key = jax.random.key(8)
  batches = rescaling.step_batches(key, 60, 10, 6)  # exactly one epoch
  for optimizer, rate in (("sgd", 0.1), ("adam", 1e-2)):
    flat, _ = rescaling.trajectory(
      net, params, train_set, batches, optimizer=optimizer, learning_rate=rate
    )
    result = training.train(
      net,
      params,
      train_set,
      key=key,
      cost="quadratic",
      optimizer=optimizer,
      learning_rate=rate,
      batch_size=10,
    )
    trained = np.concatenate([np.asarray(a).ravel() for a in jax.tree.leaves(result.params)])
    np.testing.assert_allclose(flat[-1], trained, rtol=1e-5, atol=1e-6)


def test_rescaling_experiment_runs_and_reports(tmp_path, capsys):
  argv = ["--quick", "--steps", "15", "--train-size", "200", "--out", str(tmp_path)]
  assert rescaling.main(argv) == 0
  assert "η·n²" in capsys.readouterr().out
  [run_dir] = (tmp_path / "rescaling").iterdir()
  run = store.load(run_dir)
  rows = {r["case"]: r for r in run.tables["differences"]}
  assert set(rows) == {c.name for c in rescaling.CASES} | {"rounding_control"}
  assert float(rows["sgd_rescaled"]["max_distance"]) < 1e-12
  assert float(rows["adam_rescaled_eps"]["max_distance"]) < 1e-12
  assert float(rows["sgd_unscaled"]["final_distance"]) > 1e-3
  assert run.arrays["n3/sgd_rescaled/distance"].shape == (16,)


def test_shallow_critical_net_trains_and_deep_ordered_net_does_not(tmp_path, capsys):
  critical = theory.critical_sigma_w2("tanh", trainability.SIGMA_B2)
  ordered = 0.5
  six_xi = 6 * trainability.mean_field_xi_c([ordered])[0]
  shallow, deep = 3, 24
  assert shallow < six_xi < deep  # the theory puts the deep ordered net beyond its bound
  argv = [
    "--quick",
    "--sigma-w2",
    str(ordered),
    str(critical),
    "--depths",
    str(shallow),
    str(deep),
    "--width",
    "16",
    "--seeds",
    "2",
    "--epochs",
    "3",
    "--train-size",
    "400",
    "--out",
    str(tmp_path),
  ]
  assert trainability.main(argv) == 0
  assert "6·ξ_c" in capsys.readouterr().out
  [run_dir] = (tmp_path / "trainability").iterdir()
  run = store.load(run_dir)
  cells = {(int(r["depth"]), float(r["sigma_w2"])): r for r in run.tables["cells"]}
  assert (
    np.isinf(float(cells[(deep, critical)]["xi_c"]))
    or float(cells[(deep, critical)]["six_xi_c"]) > 1e3
  )
  # 10 classes: chance is 0.1, with a spread of ~0.015 over 400 examples
  assert float(cells[(shallow, critical)]["train_accuracy"]) > 0.25
  assert float(cells[(deep, ordered)]["train_accuracy"]) < 0.2
  assert run.arrays[f"depth{deep}/train_accuracy"].shape == (2, 2, 4)  # σ_w², seeds, 1 + epochs
  counts = trainability.bound_agreement(run.tables["cells"])
  assert counts["trainable_above"] == 0
  assert trainability.main(argv) == 0
  assert "reusing" in capsys.readouterr().out


def test_grid_params_scale_common_draws_and_theory_grid_brackets_the_critical_point():
  net = trainability.network(8, 4)
  p = trainability.grid_params(net, [0.5, 2.0], 3, 0.05, key=jax.random.key(0))
  assert [q["w"].shape[0] for q in p] == [6, 6, 6]
  np.testing.assert_allclose(p[1]["w"][3:], 2 * p[1]["w"][:3], rtol=1e-6)
  np.testing.assert_array_equal(p[1]["b"][3:], p[1]["b"][:3])
  grid = trainability.theory_grid([0.5, 4.0], 2)
  critical = theory.critical_sigma_w2("tanh", 0.05)
  assert critical in grid and grid.min() == 0.5 and grid.max() == 4.0
  assert len(grid) == 2 + 4 + 1
