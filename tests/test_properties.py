"""Property-based tests (hypothesis): invariances that must hold for every input, not one.

Each property is a fact of the mathematics or of the store's contract:

* a linear network's log-gradients shift by exactly ``(L − l)·log c`` when every weight
  is multiplied by ``c`` (homogeneity of the Jacobian product), at any scale, in log space;
* a bias-free ReLU network's gradient does not change when its input is scaled by
  ``c > 0`` (the activation pattern is scale invariant);
* Wilson intervals contain the point estimate and lie in [0, 1];
* the store returns exactly what was saved and the config hash ignores key order;
* a Markov chain's transition counts add up to ``M·(T − 1)``.
"""

from __future__ import annotations

import math

import hypothesis.extra.numpy as hnp
import jax
import jax.numpy as jnp
import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import vanish as vn
from vanish import markov, probability, store

PROPERTY = settings(
  max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)

DEPTH, WIDTH, MEMBERS = 12, 6, 4
LINEAR = vn.MLP([WIDTH] * (DEPTH + 1), "linear")
RELU = vn.MLP([WIDTH] * (DEPTH + 1), "relu", weights=vn.init.he())
LINEAR_PARAMS = LINEAR.init(jax.random.key(0), MEMBERS)
RELU_PARAMS = RELU.init(jax.random.key(1), MEMBERS)
X = jax.random.normal(jax.random.key(2), (WIDTH,))


@PROPERTY
@given(log_c=st.floats(-30.0, 30.0))
def test_linear_network_log_gradients_are_homogeneous_in_the_weight_scale(log_c):
  """δ^l = W^{l+1}ᵀ⋯W^Lᵀ u, so scaling every W by c adds (L − l)·log c — also for c = e^±30."""
  c = math.exp(log_c)
  # scale in float64 logs: c**DEPTH would overflow float32, the chain must not
  scaled = tuple({"w": p["w"] * jnp.float32(c), "b": p["b"]} for p in LINEAR_PARAMS)
  base = np.asarray(vn.log_gradient_norms(LINEAR, LINEAR_PARAMS, X), np.float64)
  got = np.asarray(vn.log_gradient_norms(LINEAR, scaled, X), np.float64)
  layers_above = DEPTH - 1 - np.arange(DEPTH)  # layer l (0-based) is crossed by L − 1 − l
  expected = base + layers_above * math.log(np.float32(c))
  np.testing.assert_allclose(got, expected, atol=1e-3 * (1 + abs(log_c)))


@PROPERTY
@given(log_c=st.floats(-20.0, 20.0))
def test_bias_free_relu_gradients_ignore_the_input_scale(log_c):
  scale = jnp.float32(math.exp(log_c))
  base = vn.log_gradient_norms(RELU, RELU_PARAMS, X)
  scaled = vn.log_gradient_norms(RELU, RELU_PARAMS, X * scale)
  np.testing.assert_allclose(np.asarray(scaled), np.asarray(base), atol=1e-4)


@PROPERTY
@given(
  trials=st.integers(1, 10_000),
  fraction=st.floats(0.0, 1.0),
  confidence=st.floats(0.5, 0.999),
)
def test_wilson_interval_contains_the_estimate_and_lies_in_the_unit_interval(
  trials, fraction, confidence
):
  successes = round(fraction * trials)
  lo, hi = probability.wilson_interval(np.array(successes), trials, confidence)
  p = successes / trials
  assert 0.0 <= lo <= p + 1e-12 and p - 1e-12 <= hi <= 1.0
  assert (successes == 0) == (lo == 0.0) and (successes == trials) == (hi == 1.0)


@PROPERTY
@given(
  arrays=st.dictionaries(
    st.from_regex(r"[a-z][a-z0-9_/]{0,12}", fullmatch=True),
    hnp.arrays(
      dtype=st.sampled_from([np.float32, np.float64, np.int64, np.bool_]),
      shape=hnp.array_shapes(min_dims=0, max_dims=3, max_side=4),
    ),
    min_size=1,
    max_size=4,
  ),
  config=st.dictionaries(
    st.from_regex(r"[a-z]{1,8}", fullmatch=True),
    st.one_of(st.integers(-1000, 1000), st.floats(-1e6, 1e6), st.text(max_size=8)),
    max_size=5,
  ),
)
def test_store_round_trips_every_array_exactly(tmp_path_factory, arrays, config):
  root = tmp_path_factory.mktemp("store")
  path = store.save(root, "prop", config, arrays=arrays, precision="highest")
  loaded = store.load(path)
  assert loaded.arrays.keys() == arrays.keys()
  for name, value in arrays.items():
    assert loaded.arrays[name].dtype == value.dtype
    np.testing.assert_array_equal(loaded.arrays[name], value)
  reordered = dict(reversed(list(config.items())))
  assert store.config_hash("prop", reordered) == store.config_hash("prop", config)
  assert store.find(root, "prop", reordered) == path


@PROPERTY
@given(
  states=hnp.arrays(np.bool_, hnp.array_shapes(min_dims=2, max_dims=2, min_side=2, max_side=9))
)
def test_markov_transition_counts_add_up(states):
  counts = markov.transition_counts(states)
  members, steps = states.shape
  assert counts.sum() == members * (steps - 1)
  # leaving [g≈0] plus staying equals the visits to [g≈0] before the last step
  assert counts[1].sum() == states[:, :-1].sum()
