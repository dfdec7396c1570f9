"""vanish.init.fold_in and the experiments' samplers built on it: jax.random's bits."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import vanish as vn
from experiments import finite_width, lyapunov_depth

_DATA = np.array([0, 1, 2**31 - 1, 2**32 - 1, 123456789], np.uint32)


def _reference(keys, data):
  """``jax.random.fold_in`` per element: one vmap per broadcast axis."""
  shape = np.broadcast_shapes(keys.shape, data.shape)
  keys, data = jnp.broadcast_to(keys, shape).reshape(-1), jnp.broadcast_to(data, shape).reshape(-1)
  return jax.random.key_data(jax.vmap(jax.random.fold_in)(keys, data)).reshape(*shape, 2)


@pytest.mark.parametrize(
  ("key_shape", "data_shape"),
  [((), ()), ((3,), (3,)), ((2, 3, 1), (5,))],
)
def test_fold_in_equals_jax_random_fold_in(key_shape, data_shape):
  keys = jax.random.split(jax.random.key(3), max(1, int(np.prod(key_shape)))).reshape(key_shape)
  data = jnp.asarray(np.resize(_DATA, data_shape))
  ours = vn.init.fold_in(keys, data)
  assert ours.shape == np.broadcast_shapes(key_shape, data_shape)
  np.testing.assert_array_equal(jax.random.key_data(ours), _reference(keys, data))


def test_fold_in_takes_data_as_jax_random_fold_in_does():
  key = jax.random.key(1)
  for data in (2**32 - 1, np.int64(2**33 + 5), jnp.int32(-1), np.uint8(200)):
    np.testing.assert_array_equal(
      jax.random.key_data(vn.init.fold_in(key, data)),
      jax.random.key_data(jax.random.fold_in(key, data)),
    )


def test_fold_in_rejects_bad_keys_and_data():
  key = jax.random.key(0)
  with pytest.raises(TypeError, match="keys must be typed PRNG keys"):
    vn.init.fold_in(jax.random.PRNGKey(0), 1)
  with pytest.raises(TypeError, match="keys must use the threefry2x32"):
    vn.init.fold_in(jax.random.key(0, impl="rbg"), 1)
  for data in (1.5, True, jnp.ones(2), "3", [1, 2]):
    with pytest.raises(TypeError, match="data must be integers"):
      vn.init.fold_in(key, data)
  for data in (-1, 2**32):
    with pytest.raises(ValueError, match=r"data must be in \[0, 2\*\*32 - 1\]"):
      vn.init.fold_in(key, data)


# The experiments' samplers draw the bits of their former vmapped jax.random code (below),
# so their stored results did not change.
@functools.partial(jax.jit, static_argnums=(1, 3, 4))
def _vmapped_unit_normals(key, members, first, depth, width):
  def product(m):
    k = jax.random.fold_in(key, m)
    w = jax.random.normal(jax.random.fold_in(k, 0), (depth, width, width))
    return w, jax.random.normal(jax.random.fold_in(k, 1), (depth, width))

  return jax.vmap(product)(first + jnp.arange(members, dtype=jnp.uint32))


@functools.partial(jax.jit, static_argnums=(1, 2, 4, 5))
def _vmapped_draw(key, profiles, members, first, depth, width):
  def network(p, m):
    k = jax.random.fold_in(jax.random.fold_in(key, p), m)
    hidden = jax.random.normal(jax.random.fold_in(k, 0), (depth - 1, width, width))
    return jax.random.normal(jax.random.fold_in(k, 1), (1, width, 1)), hidden

  index = first + jnp.arange(members, dtype=jnp.uint32)
  per_profile = jax.vmap(network, in_axes=(None, 0))
  return jax.vmap(per_profile, in_axes=(0, None))(jnp.arange(profiles, dtype=jnp.uint32), index)


def _assert_same(ours, theirs):
  for a, b in zip(ours, theirs, strict=True):
    assert a.shape == b.shape and a.dtype == b.dtype
    np.testing.assert_array_equal(a, b)


def test_lyapunov_depth_unit_normals_are_jax_random_normal():
  key, first = jax.random.key(7), jnp.uint32(2**32 - 2)  # member indices wrap, as before
  args = (key, 3, first, 4, 5)
  _assert_same(lyapunov_depth._unit_normals(*args), _vmapped_unit_normals(*args))


def test_finite_width_draw_is_jax_random_normal():
  args = (jax.random.key(8), 2, 3, jnp.uint32(4), 3, 5)
  _assert_same(finite_width._draw(*args), _vmapped_draw(*args))


def test_noisy_activation_noise_is_jax_random_normal():
  act = vn.activations.noisy_relu(0.5)
  z = jnp.linspace(-1.0, 1.0, 12).reshape(3, 4)
  keys = vn.init.fold_in(jax.random.key(3), jnp.arange(2, dtype=jnp.uint32))
  ours = jax.jit(jax.vmap(lambda k: act(z, key=k)))(keys)  # vmapped over members, as in chains
  theirs = jax.jit(jax.vmap(lambda k: jax.nn.relu(z + 0.5 * jax.random.normal(k, z.shape))))(keys)
  np.testing.assert_array_equal(ours, theirs)
  legacy = jax.random.PRNGKey(4)  # raw uint32 keys still work
  np.testing.assert_array_equal(
    act(z, key=legacy), jax.nn.relu(z + 0.5 * jax.random.normal(legacy, z.shape))
  )
