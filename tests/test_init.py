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


# The counter-based draws (vn.init.sample, net.init) reproduce jax.random bit for bit.
# vn.init.fold_in against jax.random.fold_in: tests/test_fold_in.py.


_NORMAL = (vn.init.normal(0.7), lambda k, s, d: 0.7 * jax.random.normal(k, s, d))
_UNIFORM = (vn.init.uniform(-0.5, 2.0), lambda k, s, d: jax.random.uniform(k, s, d, -0.5, 2.0))
_GLOROT = (vn.init.glorot(), lambda k, s, d: math.sqrt(2.0 / sum(s)) * jax.random.normal(k, s, d))


@pytest.mark.parametrize(
  ("initializer", "reference", "dtype"),
  [(*_NORMAL, d) for d in ("float32", "bfloat16", "float64")]
  + [(*_UNIFORM, d) for d in ("float32", "bfloat16", "float64")]
  + [(*_GLOROT, "float32")],
  ids=lambda v: v if isinstance(v, str) else getattr(v, "name", ""),
)
def test_sample_equals_jax_random_bit_for_bit(initializer, reference, dtype):
  with jax.enable_x64(dtype == "float64"):
    keys = jax.random.split(jax.random.key(4), 3)
    shape = (5, 7)
    ours = vn.init.sample(initializer, keys, shape, jnp.dtype(dtype))
    # jitted like ours: XLA folds std · √2 and forms FMAs only within one computation
    theirs = jax.jit(jax.vmap(lambda k: reference(k, shape, jnp.dtype(dtype))))(keys)
    assert ours.shape == (3, *shape) and ours.dtype == jnp.dtype(dtype)
    np.testing.assert_array_equal(np.asarray(ours, np.float64), np.asarray(theirs, np.float64))
    # a single key: the initializer's own call
    np.testing.assert_array_equal(initializer(keys[1], shape, jnp.dtype(dtype)), theirs[1])


@pytest.mark.parametrize(("dtype", "shapes"), [("float32", [(3, 4, 5)]), ("float64", [(4, 5)])])
def test_single_key_call_equals_unbatched_jax_random(dtype, shapes):
  # The library and experiments draw jax.random.normal's bits with init.normal(1.0)(key, ...):
  # the direct, un-vmapped, un-jitted jax.random call, at the default (canonical) dtype too.
  with jax.enable_x64(dtype == "float64"):
    key = jax.random.key(11)
    for shape in shapes:
      np.testing.assert_array_equal(
        vn.init.normal(1.0)(key, shape, jax.dtypes.canonicalize_dtype(float)),
        jax.random.normal(key, shape),
      )
      np.testing.assert_array_equal(
        vn.init.uniform(-0.5, 2.0)(key, shape, jnp.dtype(dtype)),
        jax.random.uniform(key, shape, jnp.dtype(dtype), -0.5, 2.0),
      )


def test_sample_of_orthogonal_and_of_other_callables_and_key_implementations():
  keys = jax.random.split(jax.random.key(5), 4).reshape(2, 2)
  orth = vn.init.sample(vn.init.orthogonal(1.5), keys, (3, 6))
  assert orth.shape == (2, 2, 3, 6)
  q = np.asarray(orth[1, 0], np.float64)  # numpy: a GPU's default matmul would be TF32
  np.testing.assert_allclose(q @ q.T, 2.25 * np.eye(3), atol=1e-5)
  lecun = jax.nn.initializers.lecun_normal()
  sampled, alone = vn.init.sample(lecun, keys, (3, 6))[0, 1], lecun(keys[0, 1], (3, 6))
  if jax.default_backend() == "cpu":
    np.testing.assert_array_equal(sampled, alone)
  else:  # an eager call fuses multiply-adds differently (measured on an H100: 7 ulp)
    np.testing.assert_array_max_ulp(sampled, alone, maxulp=64)
  rbg = jax.random.key(0, impl="rbg")  # not threefry: jax.random draws
  np.testing.assert_array_equal(
    vn.init.gaussian(2.0)(rbg, (4, 8)), 0.5 * jax.random.normal(rbg, (4, 8))
  )
  with pytest.raises(TypeError, match="threefry2x32"):
    vn.MLP([2, 3]).init(rbg)


def test_member_m_layer_i_draws_from_its_fold_in_key():
  # The documented layout: member m, layer i: initializer(fold_in(fold_in(key_m, stream), i)).
  net = vn.MLP([3, 4, 4, 4, 2], "tanh", vn.init.gaussian(1.5), vn.init.normal(0.3))
  key = jax.random.key(8)
  params = net.init(key, members=2, first=5)
  member = jax.random.fold_in(key, 6)  # params index 1
  streams = [jax.random.fold_in(member, s) for s in (0, 1)]
  layer = 0
  for segment, p in zip(net.segments, params, strict=True):
    for d in range(segment.depth):
      w_key, b_key = (jax.random.fold_in(s, layer) for s in streams)
      w = net.weights(w_key, (segment.fan_out, segment.fan_in))
      np.testing.assert_array_equal(p["w"][1, d], w)
      np.testing.assert_array_equal(p["b"][1, d], net.biases(b_key, (segment.fan_out,)))
      layer += 1
  # the sampler is straight-line code: no while loop (jax.random's CPU threefry lowering
  # is a loop whose compilation took seconds per vmapped draw)
  lowered = vn.networks._init_members.lower(
    vn.networks._Sampler.of(net), key, 2, jnp.dtype(jnp.float32), jnp.uint32(0)
  )
  assert "while" not in lowered.as_text()
