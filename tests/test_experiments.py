"""Experiment scripts run end to end at tiny size and leave complete, reusable results."""

import json

import numpy as np
import pytest

from experiments import probabilistic_model
from vanish import store


def test_probabilistic_model_writes_a_complete_reusable_run(tmp_path, capsys):
  argv = ["--quick", "--depth", "6", "--activations", "sigmoid", "relu", "--out", str(tmp_path)]
  assert probabilistic_model.main(argv) == 0
  assert "wrote" in capsys.readouterr().out
  [run_dir] = (tmp_path / "probabilistic_model").iterdir()
  run = store.load(run_dir)
  record = json.loads((run_dir / "run.json").read_text())
  assert record["metadata"]["precision"] == "highest"
  assert record["metadata"]["versions"]["jax"]
  assert run.config["depth"] == 6 and run.config["activations"] == ["sigmoid", "relu"]
  rows = run.tables["summary"]
  assert len(rows) == 2 * 2 * 6  # activations × chains × depths
  # the CSV and the arrays say the same thing
  p = np.array(
    [float(r["p_vanish"]) for r in rows if r["activation"] == "sigmoid" and r["chain"] == "scalar"]
  )
  np.testing.assert_allclose(p, run.arrays["sigmoid/scalar/p_vanish"])
  assert ((0 <= p) & (p <= 1)).all() and np.all(np.diff(p) >= -0.05)  # vanishing accumulates
  # a rerun with the same config reuses the stored result
  assert probabilistic_model.main(argv) == 0
  assert "reusing" in capsys.readouterr().out
  assert len(list((tmp_path / "probabilistic_model").iterdir())) == 1


def test_probabilistic_model_chains_are_independent_samples_of_the_seed_chain():
  """Every row is its own chain (own w, b ~ N(0, 1) and x ~ N(0, 1)), matching a float64
  numpy forward pass; rows are uncorrelated, as the Wilson intervals assume. (Four inputs
  per network made neighbouring rows correlated: design effect ≈ 3 on P(|g_5| < ε).)"""
  import jax

  import vanish as vn

  key, members, depth = jax.random.key(3), 2000, 6
  log_f, pre, weights = probabilistic_model.chain_samples("tanh", depth, members, key)
  net = vn.MLP([1] * (depth + 1), "tanh", vn.init.normal(1.0), vn.init.normal(1.0))
  [p] = net.init(jax.random.fold_in(key, 0), members=members)
  w, b = np.asarray(p["w"][..., 0, 0], np.float64), np.asarray(p["b"][..., 0], np.float64)
  x = np.asarray(jax.random.normal(jax.random.fold_in(key, 1), (members,)), np.float64)
  a, z_ref, f_ref = x, [], []
  for j in range(depth):
    z = w[:, j] * a + b[:, j]
    a = np.tanh(z)
    z_ref.append(z)
    f_ref.append(-2 * np.log(np.cosh(z)) + (np.log(np.abs(w[:, j])) if j else 0.0))
  np.testing.assert_allclose(pre, np.stack(z_ref, axis=1), atol=1e-5)  # float32 forward
  np.testing.assert_allclose(log_f, np.stack(f_ref, axis=1), atol=1e-4)
  np.testing.assert_array_equal(weights, w)
  # (z_1 above used each chain's own x_m), and neighbouring rows are uncorrelated:
  # |r| < 4/√M, 4 standard errors (4 inputs per network gave r ≈ 0.63)
  log_g = np.cumsum(log_f, axis=1)[:, -1]
  assert abs(np.corrcoef(log_g[:-1], log_g[1:])[0, 1]) < 4 / np.sqrt(members)


def test_rnn_through_time_intervals_treat_members_not_sequences_as_independent():
  """Sequences of one member share its weights: the rate interval is Student-t over the
  members' mean slopes. Duplicating every member's curve (perfectly correlated sequences)
  must not narrow it; counting the 3 copies as independent (the old 1.96·sd/√(M·S)) gave
  an interval 0.32× as wide as the t interval of 4 members."""
  from scipy import stats

  from experiments import rnn_through_time

  rng = np.random.default_rng(0)
  members, sequences, steps = 4, 3, 40
  slopes = rng.normal(-0.1, 0.02, members)
  lags = np.arange(steps)
  one = slopes[:, None] * lags + rng.normal(0, 1e-3, (members, steps))
  curves = np.repeat(one, sequences, axis=0)  # member-major, identical sequences
  arrays, rate, lo, hi = rnn_through_time._summarize("x", curves, members)
  fit = lags >= steps // 10
  x = lags[fit] - lags[fit].mean()
  fitted = (one[:, fit] - one[:, fit].mean(1, keepdims=True)) @ x / (x @ x)
  half = stats.t.ppf(0.975, members - 1) * fitted.std(ddof=1) / np.sqrt(members)
  assert rate == pytest.approx(fitted.mean(), rel=1e-12)
  assert (hi - lo) / 2 == pytest.approx(half, rel=1e-9)
  curve_half = stats.t.ppf(0.975, members - 1) * one.std(0, ddof=1) / np.sqrt(members)
  np.testing.assert_allclose(arrays["x/hi"] - arrays["x/mean"], curve_half, rtol=1e-9)
  with pytest.raises(ValueError, match="members"):
    rnn_through_time._summarize("x", curves, 5)
