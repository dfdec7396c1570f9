"""Sharded ensembles equal single-device ones (8 fake CPU devices, tests/conftest.py)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import vanish as vn


def test_eight_devices_are_available():
  assert jax.device_count() == 8


@pytest.mark.parametrize("members", [13])  # not divisible by the 8 devices: padded
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


def test_an_ensemble_sampled_chunk_by_chunk_equals_one_sampled_at_once():
  net = vn.MLP([5, 6, 6, 3], "tanh", biases=vn.init.normal(0.5))
  key = jax.random.key(11)
  whole = net.init(key, members=12)
  chunk = vn.sharding.members_per_chunk(12, bytes_per_member=100, budget=450)
  assert chunk == 4  # the largest divisor of 12 that fits 4.5 members
  parts = [net.init(key, members=chunk, first=s) for s in range(0, 12, chunk)]
  for segment, pieces in zip(whole, zip(*parts, strict=True), strict=True):
    for name in ("w", "b"):
      np.testing.assert_array_equal(
        np.asarray(segment[name]), np.concatenate([np.asarray(p[name]) for p in pieces])
      )
  with pytest.raises(ValueError, match="members must be an integer >= 1"):
    vn.sharding.members_per_chunk(0, bytes_per_member=1)
  with pytest.raises(ValueError, match="fraction must be in"):
    vn.sharding.members_per_chunk(4, bytes_per_member=1, fraction=0)
  with pytest.raises(ValueError, match="first must be an integer >= 0"):
    net.init(key, members=2, first=-1)


def test_cpu_devices_share_the_host_memory():
  """8 fake CPU devices draw on one host: each is offered its share, not the whole."""
  from vanish.sharding import _host_available

  devices = jax.local_devices(backend="cpu")
  assert len(devices) == 8
  share, host = vn.sharding.free_memory(devices[3]), _host_available()
  assert abs(share * 8 - host) <= 0.05 * host  # MemAvailable moves a little between reads
