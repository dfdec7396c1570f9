"""Streamed per-layer gradient statistics (vanish.streaming): exact, deterministic, memory-bounded.

One tiny network (zero biases: one random draw less to compile) and three compiled
chunk shapes, shared through module-scoped fixtures: blocks of 2 members on 8 devices
(one block each) and on one device (5 blocks a call), and blocks of 8 on one device.
The memory check reads XLA's accounting of the same compiled shapes (no compilation).
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import vanish as vn
from vanish import streaming

MEMBERS = 13  # prime: no block or chunk but 1 and 13 divides it
BLOCK = 2
NET = vn.MLP([8] * 7, "tanh", vn.init.gaussian(1.5))
X = np.linspace(-1.0, 1.0, 16, dtype=np.float32).reshape(2, 8)  # two inputs per member
COTANGENT = np.stack([np.ones(8), np.linspace(-1.0, 1.0, 8)]).astype(np.float32)
EPSILON = 0.3  # some layers vanish, some explode at σ_w² = 1.5
HISTOGRAM = (-4.0, 4.0, 80)
FIELDS = [
  "count", "zero", "nan", "mean", "var", "min", "max", "vanish", "explode", "ratio_count",
  "ratio_mean", "ratio_var", "ratio_min", "ratio_max", "ratio_zero", "histogram",
  "ratio_histogram",
]  # fmt: skip


def stream(**kwargs):
  kwargs = {"chunk": BLOCK, "block": BLOCK, **kwargs}
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


def call_bytes(block, blocks):
  """XLA's bytes for one device's call (the compiled shape of a run below: no compilation)."""
  return streaming.measured_call_bytes(
    NET, X, block=block, blocks=blocks, cotangent=COTANGENT, bins=HISTOGRAM[2]
  )


@pytest.fixture(scope="module")
def reference():
  """``[M·B, L]`` float64 log-norms of the whole ensemble at once."""
  params = NET.init(jax.random.key(7), members=MEMBERS)
  log_g = vn.log_gradient_norms(NET, params, jnp.asarray(X), jnp.asarray(COTANGENT))
  return np.asarray(log_g, np.float64).reshape(-1, NET.depth)


@pytest.fixture(scope="module")
def runs():
  """Blocks of 2 for chunks of 1, 2, 5 blocks and auto on 8 devices, and 5 on one device."""
  one = jax.devices()[:1]
  return {
    "8 devices, chunk 1 block": stream(chunk=2),
    "8 devices, chunk 2 blocks": stream(chunk=4),
    "8 devices, chunk 5 blocks": stream(chunk=10),
    "8 devices, auto": stream(chunk="auto", memory_limit=10**8),
    "1 device, chunk 5 blocks": stream(chunk=10, devices=one),
  }


@pytest.fixture(scope="module")
def block8():
  """Blocks of 8 on one device, two calls of one block."""
  return stream(block=8, chunk=8, devices=jax.devices()[:1])


def _histogram(values):
  low, high, bins = HISTOGRAM
  index = np.clip(np.floor((values - low) / ((high - low) / bins)), -1, bins).astype(int) + 1
  return np.stack([np.bincount(index[:, l], minlength=bins + 2) for l in range(values.shape[1])])


@pytest.mark.parametrize("which", ["block 2", "block 8"])
def test_statistics_equal_a_direct_computation(which, runs, block8, reference):
  stats = runs["1 device, chunk 5 blocks"] if which == "block 2" else block8
  assert stats.block == (2 if which == "block 2" else 8)
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


def test_bitwise_identical_for_every_chunk_and_device_count(runs):
  """Blocks of 2 members, 13 members (the last block half padding): chunks of 1, 2, 5
  blocks and auto on 8 devices (every device one block a call, most of them padding),
  and 5 blocks a call on one device (a loop over blocks; on 8 devices the loop has one
  step). Every field equal to the last bit."""
  assert len({r.block for r in runs.values()}) == 1
  first, *others = runs.values()
  for label, run in zip(list(runs)[1:], others, strict=True):
    for name in FIELDS:
      np.testing.assert_array_equal(getattr(run, name), getattr(first, name), err_msg=label)


def test_a_call_holds_one_block_and_the_model_covers_it(runs, block8):
  """XLA's own buffer accounting (argument + output + temporaries) of the compiled runs."""
  five, eight = call_bytes(BLOCK, 5), call_bytes(8, 1)
  if five < 0:
    pytest.skip("this backend has no memory analysis")
  # Five blocks of 2 members a call (10 members) take less than one block of 8: a call
  # holds one block at a time (plus per-block moments, 144 bytes a block here).
  assert five < eight
  per_member = (eight - five) / (8 - BLOCK)
  model = streaming.bytes_per_member(NET, inputs=2)
  assert per_member <= model <= 2.5 * per_member


def test_default_block_and_chosen_chunk():
  paper = streaming.bytes_per_member(vn.MLP([128] * 101))
  assert streaming.default_block(10**6, paper) == 128  # 128 × 29 MB ≤ 4 GiB < 256 × 29 MB
  assert streaming.default_block(10**6, paper, "cpu") == 1
  assert streaming.default_block(10**6, 1000, "cpu") == 1024  # at most BLOCK
  assert streaming.default_block(10**6, 50_000, "cpu") == 64  # 64 × 50 kB ≤ 4 MiB < 128 × 50 kB
  assert streaming.default_block(13, 10) == 16  # no block much larger than the ensemble
  assert streaming.default_block(1, 10) == 1
  # M = 13 in blocks of 2 on 8 devices: one call of 7 blocks.
  choose = streaming.choose_chunk
  assert choose(13, 100, memory_limit=10**6, block=2, devices=[None] * 8) == 14
  # 10⁶ members in blocks of 128 on one device: 7813 blocks in calls of ≤ 64, evened.
  chunk = choose(10**6, 100, memory_limit=10**6, block=128, devices=[None])
  calls = -(-7813 // 64)
  assert chunk == -(-7813 // calls) * 128 and -(-(10**6) // chunk) == calls
  assert choose(100, 100, memory_limit=10**6, block=4, devices=[None] * 2, max_blocks=3) == 24
  assert choose(10, 100, memory_limit=400, block=4, devices=[None]) == 12  # one block fits


def test_a_limit_too_small_for_one_block_is_a_clear_error():
  need = BLOCK * streaming.bytes_per_member(NET, inputs=2)
  with pytest.raises(ValueError, match="memory_limit=.* is too small"):
    stream(chunk="auto", memory_limit=need - 1)
  with pytest.raises(ValueError, match="too small"):
    streaming.choose_chunk(10, member_bytes=100, memory_limit=399, block=4, devices=[None])


@pytest.mark.parametrize(
  ("kwargs", "error", "match"),
  [
    ({"members": 0}, ValueError, "members must be an integer >= 1"),
    ({"members": 2**32}, ValueError, "members must be < 2"),
    ({"chunk": 3, "block": 2}, ValueError, r"chunk \(3\) must be a multiple of block \(2\)"),
    ({"chunk": "big"}, ValueError, "chunk must be 'auto'"),
    ({"block": 0}, ValueError, "block must be an integer >= 1"),
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


def test_dead_layers_and_overflowed_members_are_counted_not_dropped():
  """ReLU with dead units: ratios of −inf (layer l dead, last layer alive) count as such in
  the ratio quantiles. Softplus with N(0, 20²) weights at depth 40: members whose forward pass
  overflowed are NaN, counted in ``nan``, warned about, and left out of the fractions."""
  one = jax.devices()[:1]
  relu = vn.MLP([4] * 9, "relu", vn.init.gaussian(2.0), vn.init.normal(0.1))
  x = np.array([1.0, -0.5, 0.2, 0.3], np.float32)
  kwargs = {"members": 64, "block": 64, "chunk": 64, "devices": one, "progress": False}
  stats = streaming.gradient_statistics(relu, x, key=jax.random.key(3), **kwargs)
  log_g = np.asarray(vn.log_gradient_norms(relu, relu.init(jax.random.key(3), 64), x), float)
  with np.errstate(invalid="ignore"):  # −inf − (−inf): both layers dead
    ratio = log_g - log_g[:, -1:]
  np.testing.assert_array_equal(stats.ratio_zero, (ratio == -np.inf).sum(0))
  assert (ratio == -np.inf).mean(0)[0] > 0.1  # the 0.1-quantile of layer 1 is −inf
  want = [np.quantile(r[~np.isnan(r)], 0.1, method="inverted_cdf") for r in ratio.T]
  got = stats.quantiles([0.1], ratio=True)[:, 0]
  np.testing.assert_array_equal(np.isneginf(got), np.isneginf(want))

  softplus = vn.MLP([4] * 41, "softplus", vn.init.normal(20.0))
  with pytest.warns(vn.ForwardOverflowWarning, match="counted in `nan`"):
    stats = streaming.gradient_statistics(softplus, x, key=jax.random.key(1), **kwargs)
  with pytest.warns(vn.ForwardOverflowWarning):
    log_g = np.asarray(vn.log_gradient_norms(softplus, softplus.init(jax.random.key(1), 64), x))
  nan = np.isnan(log_g)
  assert 0 < nan[:, 0].sum() < 64
  np.testing.assert_array_equal(stats.nan, nan.sum(0))
  np.testing.assert_array_equal(stats.count + stats.zero + stats.nan, stats.samples)
  defined = ~nan
  np.testing.assert_allclose(
    stats.p_vanish, ((log_g < np.log(1e-3)) & defined).sum(0) / defined.sum(0), rtol=1e-12
  )


def test_a_checkpointed_run_resumes_after_a_crash_and_equals_an_uninterrupted_one(
  tmp_path, runs, monkeypatch
):
  """A crash after the 3rd of 7 calls (chunks of one block on one device), then a rerun
  with another chunk size: bitwise the statistics of the uninterrupted runs."""
  path = tmp_path / "stats.npz"
  one = jax.devices()[:1]
  real_add, calls = streaming._Accumulator.add, []

  def crash_after_three(self, out, blocks):
    if len(calls) == 3:
      raise KeyboardInterrupt  # e.g. the job's time ran out
    calls.append(blocks)
    real_add(self, out, blocks)

  monkeypatch.setattr(streaming._Accumulator, "add", crash_after_three)
  with pytest.raises(KeyboardInterrupt):
    stream(chunk=2, devices=one, checkpoint=path)
  monkeypatch.setattr(streaming._Accumulator, "add", real_add)
  with np.load(path) as saved:
    assert int(saved["next"]) == 6  # three calls of one block of 2 members
  resumed = stream(chunk=10, devices=one, checkpoint=path)
  expected = runs["1 device, chunk 5 blocks"]
  for field in FIELDS:
    np.testing.assert_array_equal(getattr(resumed, field), getattr(expected, field), err_msg=field)
  again = stream(chunk=10, devices=one, checkpoint=path)  # finished: read back, not recomputed
  np.testing.assert_array_equal(again.histogram, expected.histogram)
  with pytest.raises(ValueError, match="written by gradient_statistics with other arguments"):
    stream(chunk=10, block=1, devices=one, checkpoint=path)
