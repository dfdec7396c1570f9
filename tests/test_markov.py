"""The Markov model against synthetic chains with known transition matrices and exact references."""

import math

import jax
import numpy as np
import pytest
from scipy import stats

from vanish import markov

TRUTH = np.array([[0.9, 0.1], [0.25, 0.75]])
START = np.array([0.7, 0.3])


def _replicates(key, transition, initial, replicates, members, steps):
  """``[R, M, T]`` states: R independent ensembles from one simulate call."""
  s = markov.simulate(key, transition, initial, members=replicates * members, steps=steps)
  return np.asarray(s).reshape(replicates, members, steps)


def _coverage_tolerance(replicates, level=0.95):
  """Half-width of a 4-sigma band on an observed coverage rate."""
  return 4 * math.sqrt(level * (1 - level) / replicates)


def test_counts_match_a_python_loop_reference():
  rng = np.random.default_rng(0)
  s = rng.random((7, 23)) < 0.4
  reference = np.zeros((2, 2), np.int64)
  for member in s:
    for a, b in zip(member[:-1], member[1:], strict=True):
      reference[int(a), int(b)] += 1
  np.testing.assert_array_equal(markov.transition_counts(s), reference)
  est = markov.estimate(s)
  np.testing.assert_allclose(est.matrix, reference / reference.sum(axis=1, keepdims=True))
  np.testing.assert_array_equal(est.initial_counts, [np.sum(~s[:, 0]), np.sum(s[:, 0])])
  p, q = est.matrix[0, 1], est.matrix[1, 0]
  assert est.absorption_time == pytest.approx(1 / p)
  assert est.stationary_vanished == pytest.approx(p / (p + q))


@pytest.mark.parametrize(
  "method,scipy_method", [("wilson", "wilson"), ("clopper_pearson", "exact")]
)
def test_intervals_equal_scipy(method, scipy_method):
  for k, n in [(0, 10), (3, 10), (10, 10), (17, 400), (1, 3)]:
    ci = stats.binomtest(k, n).proportion_ci(0.9, method=scipy_method)
    ours = markov.binomial_interval(k, n, 0.9, method)
    np.testing.assert_allclose(ours, [ci.low, ci.high], rtol=1e-9, atol=1e-12)
  assert np.isnan(markov.binomial_interval(0, 0)).all()


@pytest.mark.parametrize("method,exact", [("wilson", False), ("clopper_pearson", True)])
def test_transition_intervals_cover_the_known_matrix(method, exact):
  replicates, members, steps = 400, 10, 30
  s = _replicates(jax.random.key(0), TRUTH, START, replicates, members, steps)
  covered = np.zeros((replicates, 2, 2), bool)
  time_covered = np.zeros(replicates, bool)
  for r in range(replicates):
    est = markov.estimate(s[r], method=method)
    covered[r] = (est.intervals[..., 0] <= TRUTH) & (TRUTH <= est.intervals[..., 1])
    lo, hi = est.absorption_time_interval
    time_covered[r] = lo <= 1 / TRUTH[0, 1] <= hi
  coverage = covered.mean(axis=0)
  tolerance = _coverage_tolerance(replicates)
  # Wilson is approximately nominal; Clopper–Pearson is conservative (>= nominal).
  assert (coverage > 0.95 - tolerance).all(), coverage
  if not exact:
    assert (coverage < 0.95 + tolerance).all(), coverage
  assert time_covered.mean() == pytest.approx(coverage[0, 1])  # 1/p's interval is p's, inverted


def test_estimates_are_unbiased_on_a_large_chain():
  s = np.asarray(markov.simulate(jax.random.key(1), TRUTH, START, members=400, steps=400))
  est = markov.estimate(s)
  visits = est.counts.sum(axis=1)
  se = np.sqrt(TRUTH * (1 - TRUTH) / visits[:, None])
  np.testing.assert_array_less(np.abs(est.matrix - TRUTH), 5 * se)
  # the initial distribution and the stationary share of [g ≈ 0]
  assert abs(est.initial[1] - START[1]) < 5 * math.sqrt(START[1] * START[0] / 400)
  stationary = TRUTH[0, 1] / (TRUTH[0, 1] + TRUTH[1, 0])
  late = s[:, -1].mean()
  assert abs(late - stationary) < 5 * math.sqrt(stationary * (1 - stationary) / 400)


def test_first_passage_is_geometric_and_its_rate_interval_covers():
  p = 0.06
  absorbing = np.array([[1 - p, p], [0.0, 1.0]])
  replicates, members, steps = 300, 20, 25
  s = _replicates(jax.random.key(2), absorbing, [1.0, 0.0], replicates, members, steps)
  hits = []
  for r in range(replicates):
    fp = markov.first_passage(s[r])
    hits.append(fp.rate_interval[0] <= p <= fp.rate_interval[1])
  assert abs(np.mean(hits) - 0.95) < _coverage_tolerance(replicates)
  # pooled: the survival curve against (1 - p)^k, pointwise within 5 standard errors
  fp = markov.first_passage(s.reshape(-1, steps))
  k = np.arange(steps)
  truth = (1 - p) ** k
  se = np.sqrt(truth * (1 - truth) / s.shape[0] / members) + 1e-12
  np.testing.assert_array_less(np.abs(fp.survival - truth), 5 * se)
  assert abs(fp.rate - p) < 5 * math.sqrt(p * (1 - p) / fp.time.sum())
  np.testing.assert_allclose(fp.geometric_survival, (1 - fp.rate) ** k)
  # censored members are exactly those still healthy at the end
  np.testing.assert_array_equal(~fp.observed, ~s.reshape(-1, steps)[:, -1])


def test_first_passage_exact_small_case():
  fp = markov.first_passage([[0, 1, 0, 0], [0, 0, 0, 1], [0, 0, 0, 0], [1, 0, 0, 0]])
  np.testing.assert_array_equal(fp.time, [1, 3, 3])
  np.testing.assert_array_equal(fp.observed, [True, True, False])
  assert fp.rate == pytest.approx(2 / 7)
  np.testing.assert_allclose(fp.survival, [1.0, 2 / 3, 2 / 3, 1 / 3])


def test_one_way_street_test_is_the_exact_binomial_test():
  counts = np.array([[500, 20], [4, 196]])
  for q0 in (0.0, 0.005, 0.02, 0.1):
    result = markov.one_way_street_test(counts=counts, q0=q0)
    expected = stats.binomtest(4, 200, q0, alternative="greater").pvalue if q0 else 0.0
    assert result.p_value == pytest.approx(expected, rel=1e-9, abs=1e-300)
    assert result.rejected == (expected < 0.05)
  ci = stats.binomtest(4, 200, alternative="less").proportion_ci(0.95, method="exact")
  assert markov.one_way_street_test(counts=counts).upper_bound == pytest.approx(ci.high, rel=1e-9)
  # no escape in n trials: the rule of three, and never rejected
  none = markov.one_way_street_test(counts=np.array([[50, 5], [0, 300]]), q0=0.0)
  assert none.upper_bound == pytest.approx(1 - 0.05 ** (1 / 300))
  assert not none.rejected and none.p_value == 1.0


def test_one_way_street_test_reads_a_small_0_1_array_as_the_keyword_says():
  """[[1, 1], [1, 0]] is a 2-member, 2-step record or a count matrix (it was read as states)."""
  as_counts = markov.one_way_street_test(counts=[[1, 1], [1, 0]])
  assert (as_counts.escapes, as_counts.trials) == (1, 1)  # row [≈]: 1 escape, 0 stays
  as_states = markov.one_way_street_test([[1, 1], [1, 0]])
  assert (as_states.escapes, as_states.trials) == (1, 2)  # ≈→≈ and ≈→≉


def test_one_way_street_test_has_its_level_and_power():
  replicates, members, steps, q0 = 400, 10, 40, 0.05
  boundary = np.array([[0.8, 0.2], [q0, 1 - q0]])  # H0 true at its boundary
  s = _replicates(jax.random.key(3), boundary, [0.5, 0.5], replicates, members, steps)
  rejected = [markov.one_way_street_test(s[r], q0=q0).rejected for r in range(replicates)]
  assert np.mean(rejected) < 0.05 + _coverage_tolerance(replicates)
  leaky = np.array([[0.8, 0.2], [0.15, 0.85]])
  s = _replicates(jax.random.key(4), leaky, [0.5, 0.5], 50, members, steps)
  assert all(markov.one_way_street_test(s[r], q0=q0).rejected for r in range(50))


def test_homogeneity_test_level_and_power():
  replicates = 200
  s = _replicates(jax.random.key(5), TRUTH, START, replicates, 10, 41)
  p_values = np.array([markov.homogeneity_test(s[r], windows=2).p_value for r in range(replicates)])
  assert abs(np.mean(p_values < 0.05) - 0.05) < _coverage_tolerance(replicates, 0.05) + 0.01
  # a chain whose escape probability drops from 0.5 to 0 halfway: detected
  early = np.asarray(
    markov.simulate(jax.random.key(6), [[0.5, 0.5], [0.5, 0.5]], START, members=10, steps=21)
  )
  late = np.asarray(
    markov.simulate(jax.random.key(7), [[0.9, 0.1], [0.0, 1.0]], [0.0, 1.0], members=10, steps=20)
  )
  result = markov.homogeneity_test(np.concatenate([early, late], axis=1), windows=2)
  assert result.p_value < 1e-3 and result.dof == 2
  assert result.window_counts.sum() == 10 * 40


def test_homogeneity_test_on_a_one_way_street_has_uniform_p_values():
  """The absorbing row (no escape ever) has no free entry: dof = windows − 1, not 2(windows − 1).

  Under H0 the p-values are uniform: their mean over R replicates is 1/2 within 5 standard
  errors 5/√(12 R) (0.072 for R = 400). Counting the absorbing row gave dof 6 and a mean of 0.78.
  """
  replicates, windows = 400, 4
  truth = np.array([[0.9, 0.1], [0.0, 1.0]])
  s = np.asarray(
    markov.simulate(jax.random.key(11), truth, START, members=50 * replicates, steps=20)
  )
  results = [markov.homogeneity_test(g, windows=windows) for g in s.reshape(replicates, 50, 20)]
  assert {r.dof for r in results} == {windows - 1}
  assert all(r.window_counts[:, 1, 0].sum() == 0 for r in results)  # the test's premise
  mean_p = np.mean([r.p_value for r in results])
  assert abs(mean_p - 0.5) < 5 / math.sqrt(12 * replicates), mean_p


def test_simulate_deterministic_chains():
  stay = markov.simulate(jax.random.key(8), np.eye(2), [1.0, 0.0], members=3, steps=5)
  assert not np.asarray(stay).any()
  flip = np.asarray(
    markov.simulate(jax.random.key(9), [[0, 1], [1, 0]], [0.0, 1.0], members=2, steps=4)
  )
  np.testing.assert_array_equal(flip, [[True, False, True, False]] * 2)


def test_states_and_speeds():
  speeds = np.array([[[1e-5, 1.0], [1e-1, 1.0], [1e-5, 1e-5], [0.0, 0.0], [1.0, 0.0]]])
  first = markov.log_first_layer_speed(speeds)
  ratio = markov.log_first_layer_speed(speeds, relative_to_last=True)
  with np.errstate(divide="ignore"):
    np.testing.assert_allclose(first, np.log([[1e-5, 1e-1, 1e-5, 0.0, 1.0]]))
    np.testing.assert_allclose(ratio, np.log([[1e-5, 1e-1, 1.0, 0.0, np.inf]]))
  expected_first = [[True, False, True, True, False]]
  assert markov.states(first, math.log(1e-3)).tolist() == expected_first
  assert markov.states(ratio, math.log(1e-3)).tolist() == [[True, False, False, True, False]]


@pytest.mark.parametrize(
  "call,match",
  [
    (lambda: markov.states(np.array([[np.nan, 1.0]]), 0.0), "log_g contains NaN"),
    (lambda: markov.states(np.zeros((2, 3)), math.inf), "threshold"),
    (lambda: markov.estimate(np.zeros((3, 1), bool)), "T >= 2"),
    (lambda: markov.estimate([[0, 2]]), "states must be boolean"),
    (lambda: markov.estimate([[0, 1]], confidence=1.0), "confidence"),
    (lambda: markov.estimate([[0, 1]], method="exact"), "method"),
    (lambda: markov.one_way_street_test([[0, 1, 1]], q0=1.0), "q0"),
    (lambda: markov.one_way_street_test(), "exactly one of states"),
    (lambda: markov.one_way_street_test([[0, 1]], counts=[[1, 0], [0, 1]]), "exactly one"),
    (lambda: markov.one_way_street_test(counts=[[1, 2, 3]]), r"\[2, 2\] array"),
    (lambda: markov.one_way_street_test(counts=[[1, -1], [0, 2]]), "whole numbers >= 0"),
    (lambda: markov.one_way_street_test(counts=[[1, 0.5], [0, 2]]), "whole numbers >= 0"),
    (lambda: markov.homogeneity_test([[0, 1, 1]], windows=3), "windows"),
    (
      lambda: markov.simulate(jax.random.key(0), [[0.5, 0.6], [0, 1]], [1, 0], members=1, steps=2),
      "rows must sum to 1",
    ),
    (lambda: markov.simulate(jax.random.key(0), np.eye(2), [1, 0], members=0, steps=2), "members"),
    (lambda: markov.log_first_layer_speed(-np.ones((1, 2, 2))), "bias_speed"),
  ],
)
def test_bad_input_raises(call, match):
  with pytest.raises(ValueError, match=match):
    call()


def test_markov_experiment_smoke_and_dead_relu_layers_never_revive(tmp_path):
  """Tiny run of experiments.markov: complete table, consistent counts, exact absorption."""
  from experiments import markov as experiment
  from vanish import store

  argv = ["--members", "16", "--epochs", "4", "--n-train", "64", "--out", str(tmp_path)]
  argv += ["--settings", "relu_sgd_lr1", "--thresholds", "1e-3", "1e-6"]
  run = store.load(experiment.cached(experiment.parse_args(argv)))
  rows = run.tables["markov"]
  assert len(rows) == len(experiment.SIGNALS) * 2
  steps = 4 * 64 // experiment.BATCH_SIZE
  for r in rows:  # every member's transitions are counted once (full set: T + 1 evaluations)
    t = steps + 1 if r["signal"].startswith("full") else steps
    members = 16 - int(r["diverged_members"])
    assert int(r["n_healthy"]) + int(r["n_vanished"]) == members * (t - 1)
  speed = run.arrays["relu_sgd_lr1/eval_bias_speed"][:, :, 0]  # [M, T + 1] first layer, full set
  dead = speed == 0
  assert dead[:, :-2].any()  # seed 0: a member dies early (not vacuous)
  # SGD cannot revive a layer that outputs 0 on every input: zero stays zero
  assert not (dead[:, :-1] & ~dead[:, 1:]).any()
  with pytest.raises(SystemExit):
    experiment.parse_args(["--n-train", "4"])
