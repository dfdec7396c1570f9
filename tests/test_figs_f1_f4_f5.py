"""The data derivations behind figures F1, F4 and F5, against exact cases and closed forms."""

import math

import numpy as np
import pytest
from scipy import stats

from experiments import probabilistic_model
from paper_figs import f1_learning_speeds, f4_log_g_distribution
from vanish import theory


def test_geometric_mean_ci_matches_a_t_interval_in_log_space():
  rng = np.random.default_rng(0)
  logs = rng.normal(-2.0, 0.7, size=(6, 3))
  mean, lo, hi = f1_learning_speeds.geometric_mean_ci(np.exp(logs))
  half = stats.t.ppf(0.975, 5) * logs.std(axis=0, ddof=1) / math.sqrt(6)
  np.testing.assert_allclose(np.log(mean), logs.mean(axis=0), rtol=1e-12)
  np.testing.assert_allclose(np.log(hi) - np.log(mean), half, rtol=1e-12)
  np.testing.assert_allclose(np.log(mean) - np.log(lo), half, rtol=1e-12)
  with pytest.raises(ValueError, match="at least 2 members"):
    f1_learning_speeds.geometric_mean_ci(np.ones((1, 3)))


def test_inside_t1_conditional_obeys_the_seed_bound_for_tanh2x():
  # Π φ'(z_j) < 2^{2k−L} with k of L pre-activations inside [−t1, t1] (docs/seed_analysis.md §4).
  rng = np.random.default_rng(1)
  pre = rng.normal(0.0, 0.8, size=(20000, 12))
  slope = 2.0 * (1.0 - np.tanh(2.0 * pre) ** 2)
  log_g = np.log(slope).sum(axis=1) + np.log(np.abs(rng.normal(size=20000)))
  t1 = theory.scaled_tanh_vanish_threshold(2.0)
  out = probabilistic_model.inside_t1_conditional(
    pre, np.log(slope), log_g, half_width=t1, epsilon=1e-3
  )
  inside = (np.abs(pre) <= t1).sum(axis=1)
  np.testing.assert_array_equal(out["trials"], np.bincount(inside, minlength=13))
  assert out["trials"].sum() == 20000
  rate = np.log(slope).mean(axis=1)
  for k in range(13):
    chosen = inside == k
    assert out["slope_product_at_least_1"][k] == (rate[chosen] >= 0).sum()
    assert out["vanished"][k] == (log_g[chosen] < math.log(1e-3)).sum()
    if chosen.any():
      assert rate[chosen].max() < (2 * k / 12 - 1) * math.log(2) + 1e-12  # the bound
      np.testing.assert_allclose(
        out["slope_rate_quantiles"][k, 1], np.quantile(rate[chosen], 0.5, method="inverted_cdf")
      )
    else:
      assert np.isnan(out["slope_rate_quantiles"][k]).all()
  # fewer than half inside: the slope product can never reach 1
  assert out["slope_product_at_least_1"][:6].sum() == 0
  assert out["slope_product_at_least_1"][6:].sum() > 0  # but it can with half or more


def test_conditional_log_g_equals_a_direct_group_mean():
  rng = np.random.default_rng(2)
  values = rng.normal(size=(3000, 5))
  log_g = 2.0 * values[:, 2] + rng.normal(size=3000)
  log_g[:10] = -np.inf  # exact zeros are dropped
  out = probabilistic_model.conditional_log_g(values, log_g)
  v, g = values[10:].ravel(), np.repeat(log_g[10:], 5)
  keep = (v >= -4) & (v < 4)
  v, g = v[keep], g[keep]
  which = np.digitize(v, out["edges"]) - 1
  for b in (10, 16, 20):
    group = g[which == b]
    assert out["count"][b] == group.size
    np.testing.assert_allclose(out["shift"][b], group.mean() - g.mean(), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(out["sem"][b], group.std(ddof=1) / math.sqrt(group.size), rtol=1e-6)
  # only layer 3 drives log_g: its slope 2 shows up pooled over 5 layers as about 2/5
  centers = 0.5 * (out["edges"][1:] + out["edges"][:-1])
  ok = out["count"] > 200
  slope = np.polyfit(centers[ok], out["shift"][ok], 1)[0]
  assert abs(slope - 2.0 / 5) < 0.1


def test_mean_field_growth_and_hanin_law_for_the_f4_overlays():
  assert f4_log_g_distribution.init_variances("tanh2x") == (1.0, 0.0)
  np.testing.assert_allclose(f4_log_g_distribution.mean_field_log_growth("tanh", 4), 0.0)
  sigmoid = f4_log_g_distribution.mean_field_log_growth("sigmoid", 5)
  chi1 = theory.mean_field("sigmoid", 1.0, 1.0).chi1
  assert chi1 < 1 / 16  # σ' ≤ 1/4
  np.testing.assert_allclose(sigmoid, 0.5 * math.log(chi1) * np.arange(5))
  mean, std = f4_log_g_distribution.hanin_relu_law(256, 30)
  # Hanin 2018 at large width: per layer, mean −5/(4n) and variance 5/(4n) of log‖·‖
  np.testing.assert_allclose(mean[-1], -29 * 5 / (4 * 256), rtol=0.05)
  np.testing.assert_allclose(std[-1] ** 2, 29 * 5 / (4 * 256), rtol=0.05)
