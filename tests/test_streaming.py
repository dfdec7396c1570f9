"""Streamed per-layer gradient statistics (vanish.streaming): exact, deterministic, memory-bounded.

One network and few compiled chunk shapes: 8 devices (every chunk size here compiles
to the same 64-member shape) and one device (8 members).
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import vanish as vn
from vanish import streaming

MEMBERS = 13  # prime: no chunk size but 1 and 13 divides it
NET = vn.MLP([8] * 7, "tanh", vn.init.gaussian(1.5), vn.init.normal(0.3))
X = np.linspace(-1.0, 1.0, 16, dtype=np.float32).reshape(2, 8)  # two inputs per member
COTANGENT = np.stack([np.ones(8), np.linspace(-1.0, 1.0, 8)]).astype(np.float32)
EPSILON = 0.3  # some layers vanish, some explode at σ_w² = 1.5
HISTOGRAM = (-4.0, 4.0, 80)
FIELDS = [
  "count", "zero", "mean", "var", "min", "max", "vanish", "explode", "ratio_count",
  "ratio_mean", "ratio_var", "ratio_min", "ratio_max", "histogram", "ratio_histogram",
]  # fmt: skip


def stream(**kwargs):
  kwargs = {"chunk": 1, "block": 1, **kwargs}
  return streaming.gradient_statistics(
    NET,
    X,
    key=jax.random.key(7),
    members=MEMBERS,
    cotangent=COTANGENT,
    epsilon=EPSILON,
    histogram=HISTOGRAM,
    progress=False,
    **kwargs,
  )


@pytest.fixture(scope="module")
def reference():
  """``[M·B, L]`` float64 log-norms of the whole ensemble at once."""
  params = NET.init(jax.random.key(7), members=MEMBERS)
  log_g = vn.log_gradient_norms(NET, params, jnp.asarray(X), jnp.asarray(COTANGENT))
  return np.asarray(log_g, np.float64).reshape(-1, NET.depth)


@pytest.fixture(scope="module")
def by_chunk():
  return {chunk: stream(chunk=chunk) for chunk in (1, 3, 7, MEMBERS)}


def _histogram(values):
  low, high, bins = HISTOGRAM
  index = np.clip(np.floor((values - low) / ((high - low) / bins)), -1, bins).astype(int) + 1
  return np.stack([np.bincount(index[:, l], minlength=bins + 2) for l in range(values.shape[1])])


def test_statistics_equal_a_direct_computation(by_chunk, reference):
  stats = by_chunk[1]
  samples = MEMBERS * X.shape[0]
  assert (stats.members, stats.samples) == (MEMBERS, samples)
  assert np.all(np.isfinite(reference))  # tanh: no exact zeros here
  np.testing.assert_array_equal(stats.count, samples)
  np.testing.assert_array_equal(stats.zero, 0)
  # float32 log-norms (|v| ≲ 3) summed over 26 samples: 1e-6 absolute.
  np.testing.assert_allclose(stats.mean, reference.mean(0), rtol=0, atol=1e-6)
  np.testing.assert_allclose(stats.var, reference.var(0), rtol=0, atol=1e-6)
  np.testing.assert_allclose(stats.min, reference.min(0), rtol=0, atol=1e-6)
  np.testing.assert_allclose(stats.max, reference.max(0), rtol=0, atol=1e-6)
  log_eps = math.log(EPSILON)
  np.testing.assert_array_equal(stats.vanish, (reference < log_eps).sum(0))
  np.testing.assert_array_equal(stats.explode, (reference > -log_eps).sum(0))
  assert stats.vanish.sum() > 0 and stats.explode.sum() > 0  # both thresholds exercised
  np.testing.assert_allclose(stats.p_vanish, (reference < log_eps).mean(0))
  ratio = reference - reference[:, -1:]
  np.testing.assert_allclose(stats.ratio_mean, ratio.mean(0), rtol=0, atol=1e-6)
  np.testing.assert_allclose(stats.ratio_var, ratio.var(0), rtol=0, atol=1e-6)
  np.testing.assert_array_equal(stats.ratio_var[-1], 0.0)  # the last layer against itself
  np.testing.assert_array_equal(stats.histogram, _histogram(reference))
  np.testing.assert_array_equal(stats.ratio_histogram, _histogram(ratio))
  # Histogram quantiles are within one bin (0.1) of the exact inverted-CDF quantiles.
  levels = [0.1, 0.5, 0.9]
  exact = np.quantile(reference, levels, axis=0, method="inverted_cdf").T
  assert np.max(np.abs(stats.quantiles(levels) - exact)) <= 0.1 + 1e-6
  ci = stats.p_vanish_ci()
  assert ci.shape == (NET.depth, 2) and np.all(ci[:, 0] <= stats.p_vanish)


def test_bitwise_identical_across_chunks_and_devices_at_one_per_device_batch(by_chunk):
  """Chunks 1, 3, 7, 13 on 8 devices and 7 or auto on 1 device: 8 members per device each."""
  one_device = stream(chunk=7, devices=jax.devices()[:1])
  runs = [*by_chunk.values(), one_device]
  for run in runs[1:]:
    for name in FIELDS:
      np.testing.assert_array_equal(getattr(run, name), getattr(runs[0], name), err_msg=name)
  # Automatic chunking from a byte limit: 8 members per device, so 2 chunks of 8.
  limit = 8 * streaming.bytes_per_member(NET, inputs=2)
  assert streaming.choose_chunk(MEMBERS, limit // 8, memory_limit=limit, devices=[None]) == 8
  auto = stream(chunk="auto", memory_limit=limit, devices=jax.devices()[:1])
  for name in FIELDS:
    np.testing.assert_array_equal(getattr(auto, name), getattr(runs[0], name), err_msg=name)


@pytest.mark.parametrize(
  ("members", "member_bytes", "limit", "block", "devices"),
  [(13, 100, 800, 1, 1), (10**6, 16_700_000, 40 * 10**9, 16, 1), (1000, 7, 5000, 4, 8)],
)
def test_chosen_chunk_respects_the_limit(members, member_bytes, limit, block, devices):
  chunk = streaming.choose_chunk(
    members, member_bytes, memory_limit=limit, block=block, devices=[None] * devices
  )
  unit = math.lcm(block, streaming.CPU_LANES) * devices  # CPU: whole lanes per device
  compiled = -(-chunk // unit) * unit
  assert chunk % block == 0
  assert compiled // devices * member_bytes <= limit  # what one device holds fits
  largest = limit // member_bytes // (unit // devices) * unit
  assert -(-members // chunk) == max(1, -(-members // largest))  # no more chunks than needed


def test_a_limit_too_small_for_one_member_is_a_clear_error():
  need = streaming.bytes_per_member(NET, inputs=2)
  with pytest.raises(ValueError, match="memory_limit=.* is too small"):
    stream(chunk="auto", memory_limit=need - 1)
  with pytest.raises(ValueError, match="too small"):
    streaming.choose_chunk(10, member_bytes=100, memory_limit=99, devices=[None])


def test_memory_model_bounds_the_compiled_chunk():
  """bytes_per_member covers XLA's own buffer accounting (argument + output + temporaries)."""
  x = jnp.asarray(X)
  measured = streaming.measured_bytes_per_member(NET, x, sizes=(8, 16))
  model = streaming.bytes_per_member(NET, inputs=2)
  if math.isnan(measured):
    pytest.skip("this backend has no memory analysis")
  assert measured <= model <= 2.5 * measured


@pytest.mark.parametrize(
  ("kwargs", "error", "match"),
  [
    ({"members": 0}, ValueError, "members must be an integer >= 1"),
    ({"members": 2**32}, ValueError, "members must be < 2"),
    ({"chunk": 3, "block": 2}, ValueError, r"chunk \(3\) must be a multiple of block \(2\)"),
    ({"chunk": "big"}, ValueError, "chunk must be 'auto'"),
    ({"epsilon": 1.0}, ValueError, "epsilon must be in"),
    ({"histogram": (1.0, 1.0, 10)}, ValueError, "histogram range"),
    ({"x": np.ones(5)}, ValueError, "x must have shape"),
    ({"x": np.full(8, np.nan)}, ValueError, "x contains inf or NaN"),
    ({"key": 0}, TypeError, "key must be a typed PRNG key"),
    ({"wrt": "input"}, ValueError, "wrt must be"),
    ({"net": "mlp"}, TypeError, "net must be a vanish network"),
    ({"cotangent": np.ones(3)}, ValueError, "cotangent must have shape"),
  ],
)
def test_bad_input_is_rejected_before_compiling(kwargs, error, match):
  args = {
    "net": NET,
    "x": X[0],
    "key": jax.random.key(0),
    "members": 4,
    "progress": False,
    **kwargs,
  }
  net, x = args.pop("net"), args.pop("x")
  with pytest.raises(error, match=match):
    streaming.gradient_statistics(net, x, **args)


def test_stochastic_activations_need_a_noise_key():
  noisy = vn.MLP([4, 4], vn.activations.noisy_relu(0.5))
  with pytest.raises(ValueError, match="noise_key"):
    streaming.gradient_statistics(noisy, np.ones(4), key=jax.random.key(0), members=2)
