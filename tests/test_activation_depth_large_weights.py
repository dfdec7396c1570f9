"""The activation-vs-depth and large-weights experiments against independent references.

* large weights: the autodiff learning speeds at the reference input equal the exact
  closed form of the centered constant-weight chain (every z = 0, σ'(0) = 1/4), whose
  first/last hidden ratio is (n·w/4)^{L−2}; on the data the same network saturates.
* activation depth: what the store holds at initialization equals a float64 NumPy
  backpropagation of the shared initial parameters; the summary rows equal the arrays.
"""

import math

import jax
import numpy as np
import pytest

from experiments import _common, activation_depth, large_weights
from vanish import data, store


@pytest.mark.parametrize(("depth", "width", "weight"), [(4, 1, 100.0), (3, 2, 100.0), (3, 1, 4.0)])
def test_reference_speeds_equal_closed_form(depth, width, weight):
  net = large_weights.network(depth, width, weight)
  params = large_weights.init_params(net)
  # every pre-activation is 0 at the reference input x_ref = 0
  median, alive = large_weights.saturation(params, np.zeros((1, 64), np.float32))
  assert np.all(median == 0) and np.all(alive == 1)
  measured = large_weights.reference_speeds(net, params)
  exact = large_weights.closed_form_speeds(net.widths, weight)
  np.testing.assert_allclose(measured, exact, rtol=2e-6)
  # hidden layers: ‖δ^1‖/‖δ^{L−1}‖ = (n·w/4)^{L−2} with L − 1 = depth hidden layers
  assert exact[0] / exact[depth - 1] == pytest.approx((width * weight / 4) ** (depth - 1))
  # the seed's one-neuron chain: ‖δ^l‖ = |s_L| (w/4)^{L−l}, s_L = n_L/2 − 1 = 4
  if width == 1:
    expected = [4 * (weight / 4) ** (depth + 1 - l) for l in range(1, depth + 1)] + [
      math.sqrt(10) / 2
    ]
    np.testing.assert_allclose(exact, expected, rtol=1e-12)


def test_large_weights_smoke(tmp_path):
  argv = ["--quick", "--out", str(tmp_path), "--epochs", "1", "--depths", "3"]
  argv += ["--train-size", "200"]
  assert large_weights.main(argv) == 0
  run = store.load(large_weights.cached(large_weights.parse_args(argv)))
  np.testing.assert_allclose(
    run.arrays["d3_w100/reference_speed"], run.arrays["d3_w100/reference_closed_form"], rtol=2e-6
  )
  rows = run.tables["training"]
  assert len(rows) == 2 * 2  # SGD and Adam, at initialization and after the epoch
  assert {r["optimizer"] for r in rows} == {"sgd", "adam"}
  for name in ("sgd", "adam"):
    log_speed = run.arrays[f"d3_w100/{name}/eval_bias_speed"]  # [1, 2, L]
    assert log_speed.shape == (1, 2, 4)
    alive = run.arrays[f"d3_w100/{name}/alive_fraction"]
    assert alive.shape == (2, 3) and np.all((alive >= 0) & (alive <= 1))
    # on the data the exploding chain saturates: few live units, speeds far below x_ref's
    assert alive[0, 0] < 0.1
    assert log_speed[0, 0, 0] < 1e-6 * run.arrays["d3_w100/reference_speed"][0]
  assert {r["verdict"] for r in rows} <= {"blew up", "saturated", "recovered"}


def _numpy_bias_speeds(params, member, n, x, y):
  """float64 backprop of ``mean softmax-CE`` for a tanh(n·x) MLP with a linear readout."""
  layers = [
    (np.asarray(s["w"][member, i], np.float64), np.asarray(s["b"][member, i], np.float64))
    for s in params
    for i in range(np.shape(s["w"])[1])
  ]
  h, zs, hs = np.asarray(x, np.float64), [], []
  for l, (w, b) in enumerate(layers):
    hs.append(h)
    z = h @ w.T + b
    zs.append(z)
    h = np.tanh(n * z) if l < len(layers) - 1 else z
  p = np.exp(h - h.max(axis=1, keepdims=True))
  p /= p.sum(axis=1, keepdims=True)
  delta = (p - np.eye(h.shape[1])[y]) / len(y)
  speeds = [np.linalg.norm(delta.sum(axis=0))]
  for l in range(len(layers) - 2, -1, -1):
    delta = (delta @ layers[l + 1][0]) * n * (1 - np.tanh(n * zs[l]) ** 2)
    speeds.append(np.linalg.norm(delta.sum(axis=0)))
  return np.asarray(speeds[::-1])


def test_activation_depth_stores_what_it_says(tmp_path):
  depth, members, train_size = 3, 2, 150
  argv = ["--quick", "--out", str(tmp_path), "--epochs", "1", "--depths", str(depth)]
  argv += ["--members", str(members), "--train-size", str(train_size)]
  argv += ["--activations", "tanh2x"]  # n = 2: the factor n of tanh(n·x)' is checked too
  assert activation_depth.main(argv) == 0
  args = activation_depth.parse_args(argv)
  run = store.load(activation_depth.cached(args))
  assert run.config["activations"] == ["tanh2x"]
  rows = run.tables["curves"]
  assert len(rows) == 2  # at initialization and after one epoch
  # the shared initial draw, rebuilt independently, and a float64 numpy backprop of it
  params = activation_depth.network("relu", depth).init(
    jax.random.fold_in(jax.random.key(0), depth), members
  )
  train_set, _ = data.digits(seed=0)
  x, y = train_set.x[:train_size], train_set.y[:train_size]
  for name, n in (("tanh2x", 2.0),):
    prefix = f"depth{depth}/{name}/"
    speeds = run.arrays[prefix + "eval_bias_speed"]
    assert speeds.shape == (members, 2, depth + 1)
    assert run.arrays[prefix + "bias_speed"].shape == (members, 1, depth + 1)
    assert run.arrays[prefix + "test_accuracy"].shape == (members, 2)
    for m in range(members):
      np.testing.assert_allclose(
        speeds[m, 0], _numpy_bias_speeds(params, m, n, x, y), rtol=2e-4, atol=1e-7
      )
    select = [r for r in rows if r["activation"] == name]
    ratio = _common.first_last_ratio(speeds)
    for r in select:
      epoch = int(r["epoch"])
      assert float(r["ratio_first_last"]) == pytest.approx(ratio[epoch], rel=1e-6)
      mean_acc = run.arrays[prefix + "test_accuracy"][:, epoch].mean()
      assert float(r["test_accuracy"]) == pytest.approx(mean_acc, rel=1e-6)
  # one epoch of SGD lowers the training loss of every member
  loss = run.arrays[f"depth{depth}/tanh2x/train_loss"]
  assert np.all(loss[:, 1] < loss[:, 0])


def test_bad_arguments_are_rejected():
  with pytest.raises(SystemExit):
    large_weights.parse_args(["--sgd-lr", "0"])
  with pytest.raises(SystemExit):
    activation_depth.parse_args(["--activations", "swish"])
  with pytest.raises(ValueError, match="activation"):
    activation_depth.network("swish", 3)
