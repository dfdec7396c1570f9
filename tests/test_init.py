"""Initializers: distributions, orthogonality, centering and member determinism."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import vanish as vn


def test_gaussian_variance_is_sigma_w2_over_fan_in():
  fan_out, fan_in = 400, 250
  w = np.asarray(vn.init.gaussian(1.7)(jax.random.key(0), (fan_out, fan_in)), np.float64)
  n = w.size
  # The sample variance of n normals has relative standard error √(2/n).
  assert abs(w.var() / (1.7 / fan_in) - 1) < 5 * math.sqrt(2 / n)
  assert abs(w.mean()) < 5 * math.sqrt(1.7 / fan_in / n)


@pytest.mark.parametrize("shape", [(16, 16), (24, 10), (10, 24)])
def test_orthogonal_is_scaled_orthogonal(shape):
  w = np.asarray(vn.init.orthogonal(1.3)(jax.random.key(1), shape), np.float64)
  small = min(shape)
  gram = w.T @ w if shape[0] >= shape[1] else w @ w.T
  np.testing.assert_allclose(gram, 1.69 * np.eye(small), atol=1e-5)


def test_orthogonal_is_haar_distributed():
  # Without Mezzadri's sign fix the QR diagonal convention biases Q_00 > 0.
  keys = jax.random.split(jax.random.key(2), 4000)
  first = np.asarray(jax.vmap(lambda k: vn.init.orthogonal()(k, (4, 4))[0, 0])(keys))
  assert abs(first.mean()) < 5 * first.std() / math.sqrt(first.size)
  # Haar: E[Q_00²] = 1/n.
  assert abs((first**2).mean() - 0.25) < 5 * (first**2).std() / math.sqrt(first.size)


@pytest.mark.parametrize("readout", ["activation", "linear"])
def test_centered_biases_zero_every_preactivation_at_the_reference(readout):
  reference = jnp.asarray([0.3, -0.2, 0.9])
  weights, biases = vn.init.large_centered(100.0, reference=reference)
  net = vn.MLP([3, 5, 5, 5, 2], "sigmoid", weights, biases, readout=readout)
  params = net.init(jax.random.key(0), members=2)
  pre = vn.preactivations(net, params, reference)
  assert max(float(jnp.abs(z).max()) for z in pre) < 1e-3  # the linear readout's too
  # and the seed's factor per layer is w·σ'(0) = 25: the gradient explodes.
  log_g = vn.log_gradient_norms(net, params, reference)
  assert bool(jnp.all(jnp.diff(log_g, axis=-1) < 0))  # deeper layers smaller: early ones explode


def test_member_parameters_do_not_depend_on_ensemble_size():
  net = vn.MLP([4, 6, 6, 3], "tanh", vn.init.orthogonal(), vn.init.normal(0.3))
  small = net.init(jax.random.key(7), members=3)
  large = net.init(jax.random.key(7), members=11)
  for a, b in zip(jax.tree.leaves(small), jax.tree.leaves(large), strict=True):
    np.testing.assert_array_equal(a, b[:3])


def test_bad_initializer_arguments():
  with pytest.raises(ValueError, match="sigma_w2"):
    vn.init.gaussian(-1.0)
  with pytest.raises(ValueError, match="std"):
    vn.init.normal(float("inf"))
  with pytest.raises(ValueError, match="unknown initializer 'gauss'"):
    vn.init.get("gauss")
  with pytest.raises(ValueError, match="reference"):
    vn.MLP([3, 4], "sigmoid", *vn.init.large_centered(100.0, reference=[1.0, 2.0]))
