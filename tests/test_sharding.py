"""Sharded ensembles equal single-device ones (8 fake CPU devices, tests/conftest.py)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import vanish as vn


def test_eight_devices_are_available():
  assert jax.device_count() == 8


@pytest.mark.parametrize("members", [16, 13])  # divisible and not
def test_sharded_chains_equal_single_device(members):
  net = vn.MLP([6, 10, 10, 10, 10], "tanh", vn.init.gaussian(1.5), vn.init.normal(0.2))
  params = net.init(jax.random.key(0), members=members)
  x = jax.random.normal(jax.random.key(1), (3, 6))
  for chain in (vn.log_gradient_norms, vn.lyapunov_spectrum, vn.jacobian):
    single = chain(net, params, x)
    many = vn.sharding.sharded(chain, net, params, x)
    assert many.shape == single.shape
    np.testing.assert_allclose(many, single, rtol=1e-6, atol=1e-6)


def test_results_are_spread_over_all_devices():
  net = vn.MLP([4, 8, 8], "relu", vn.init.he())
  params = vn.sharding.shard_members(net.init(jax.random.key(0), members=16))
  out = vn.log_gradient_norms(net, params, jnp.ones(4))
  assert len(out.sharding.device_set) == 8


def test_noisy_members_keep_their_noise_under_sharding():
  net = vn.MLP([4, 8, 8], vn.activations.noisy_relu(0.5), vn.init.he())
  params = net.init(jax.random.key(0), members=11)
  key = jax.random.key(3)
  single = vn.log_gradient_norms(net, params, jnp.ones(4), key=key)
  many = vn.sharding.sharded(vn.log_gradient_norms, net, params, jnp.ones(4), key=key)
  np.testing.assert_allclose(many, single, rtol=1e-6, atol=1e-6)


def test_unpadded_uneven_members_are_rejected():
  params = vn.MLP([4, 8]).init(jax.random.key(0), members=5)
  with pytest.raises(ValueError, match="multiple of the mesh size"):
    vn.sharding.shard_members(params)
