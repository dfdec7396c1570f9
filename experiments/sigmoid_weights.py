"""Why large weights don't help sigmoid: the factor w·σ'(w·a + b), centered biases, scale maps.

Nielsen ch. 5 (docs/seed_analysis.md §2): σ' ≤ 1/4, so every factor of the backpropagated
product is at most |w|/4, and σ'(w·a + b) itself depends on w. This computes

* the one-neuron factor |w·σ'(w·a)| on a (w, a) grid, and the width of the inputs
  a where it is ≥ 1 (``vanish.theory.sigmoid_unstable_input_width``: empty for
  |w| ≤ 4, at most 0.45) with Monte Carlo estimates (fraction of a ~ U(−A, A), times 2A);
* one-neuron chains of depth K: log|g_K| versus depth for Nielsen's N(0, 1) weights and
  biases (under the σ' ≤ 1/4 bound), for the "large weights, centered biases" scheme
  (``vanish.init.large_centered``: w = 100, every z = 0 at the reference input, factor 25
  per layer) at the reference and at inputs a distance δ away (the chain explodes, then
  collapses once the perturbation, amplified 25× per layer, saturates σ), and for
  w ~ N(0, 100²) with centered biases (E log|g_K| = log ¼ + (K − 1)(log 25 − (γ + log 2)/2));
* the one-neuron chain's P(vanish at depth K) versus the weight scale s (w ~ N(0, s²));
* the (weight scale, σ_b²) map of full-width sigmoid nets (weights N(0, s²/width)):
  P(vanish), P(stable), P(explode) at depth K in one jitted call (``vanish.scale_map``),
  with mean-field χ₁ on a fine grid for the critical line and the finite-depth boundaries.

Run:  python -m experiments.sigmoid_weights --quick   (about 20 s on 2 CPU cores)
      python -m experiments.sigmoid_weights --full    (paper scale, one GPU)
Results: results/sigmoid_weights/<config hash>/ (arrays.npz, summary.csv, run.json).
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Sequence
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import vanish as vn
from experiments._common import (
  add_epsilon,
  add_size_overrides,
  cached_parts,
  default_ensure,
  experiment_parser,
  integer,
  map_arrays,
  size_values,
)
from vanish import scale_map, store, theory
from vanish.probability import wilson_interval

SIZES = {
  "quick": {
    "depth": 24,
    "chain_members": 2048,
    "chain_block": scale_map.CHAIN_BLOCK,  # chains per call (float rounding)
    "scale_points": 13,
    "width_samples": 100_000,
    "width": 24,
    "members": 16,
    "map_scale_points": 12,
    "map_sigma_b2_points": 5,
    "theory_points": 40,
  },
  "full": {
    "depth": 50,
    "chain_members": 65536,
    "chain_block": scale_map.CHAIN_BLOCK,  # chains per call (float rounding)
    "scale_points": 41,
    "width_samples": 10_000_000,
    "width": 256,
    "members": 256,
    "map_scale_points": 64,
    "map_sigma_b2_points": 33,
    "theory_points": 160,
  },
}
SCALE_RANGE = (0.25, 128.0)  # weight scales s (σ_w = s), geometric
SIGMA_B2_MAX = 2.0
LARGE_WEIGHT = 100.0
DELTAS = (1e-6, 1e-4, 1e-2)  # input distances from the centered reference (float32-resolvable)
WIDTH_W = (4.5, 5.0, 6.0, 6.9, 8.0, 10.0, 20.0, 50.0, 100.0)
EULER_GAMMA = 0.5772156649015329
E_LOG_ABS_NORMAL = -(EULER_GAMMA + math.log(2.0)) / 2  # E log|Z|, Z ~ N(0, 1)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
  parser = experiment_parser(
    __doc__, quick_help="small ensembles (CPU, CI)", full_help="paper-scale ensembles (one GPU)"
  )
  add_epsilon(parser, "|g|")
  # intervals over the chains (and F2(f)'s over the map's members) need two of them
  at_least_two = {"chain_members": integer(2), "members": integer(2)}
  add_size_overrides(parser, SIZES["quick"], at_least_two, table=SIZES)
  args = parser.parse_args(argv)
  args.sizes = size_values(args, SIZES)
  if args.sizes["depth"] < 2:
    parser.error("--depth must be >= 2")
  return args


def log_factor(w: np.ndarray, a: np.ndarray, b: float | np.ndarray = 0.0) -> np.ndarray:
  """log|w·σ'(w·a + b)| = log|w| − |z| − 2 log1p(e^{−|z|}), stable for any z."""
  z = np.abs(w * a + b)
  return np.log(np.abs(w)) - z - 2 * np.log1p(np.exp(-z))


def factor(args: argparse.Namespace) -> dict:
  """The factor on a (w, a) grid, and the unstable width: theory and Monte Carlo."""
  rng = np.random.default_rng(args.seed)
  w = np.geomspace(0.1, 200.0, 240)
  a = np.linspace(-1.0, 1.0, 401)
  arrays = {
    "factor/w": w,
    "factor/a": a,
    "factor/log10": log_factor(w[None, :], a[:, None]) / math.log(10),  # [a, w]
    "factor/bound": theory.sigmoid_factor_bound(w),
    "factor/width": theory.sigmoid_unstable_input_width(w),
  }
  samples, half = args.sizes["width_samples"], 0.5
  ws = np.asarray(WIDTH_W)
  counts = np.array([np.sum(log_factor(v, rng.uniform(-half, half, samples)) >= 0) for v in ws])
  arrays["width_mc/w"] = ws
  arrays["width_mc/width"] = 2 * half * counts / samples
  arrays["width_mc/width_ci"] = 2 * half * wilson_interval(counts, samples)
  rows = [
    {
      "part": "unstable_width",
      "x": v,
      "theory": theory.sigmoid_unstable_input_width(v),
      "monte_carlo": arrays["width_mc/width"][i],
      "lo": arrays["width_mc/width_ci"][i, 0],
      "hi": arrays["width_mc/width_ci"][i, 1],
    }
    for i, v in enumerate(ws)
  ]
  return {"arrays": arrays, "rows": rows}


def _mean_ci(samples: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Mean over axis 0 and its 95 % normal interval ``[K, 2]`` (in float64)."""
  samples = np.asarray(samples, np.float64)
  mean = samples.mean(axis=0)
  half = 1.96 * samples.std(axis=0, ddof=1) / math.sqrt(samples.shape[0])
  return mean, np.stack([mean - half, mean + half], axis=-1)


def chain_log_gradient(
  weight_scale: np.ndarray,
  *,
  depth: int,
  chains: int,
  key: jax.Array,
  block: int = scale_map.CHAIN_BLOCK,
) -> np.ndarray:
  """``[S, chains, depth]`` log |g_K| of independent sigmoid one-neuron chains.

  Nielsen's chain with w ~ N(0, s²), b ~ N(0, 1) and input x ~ N(0, 1), for every weight
  scale s (common random numbers across s). Chain m draws its own w, b and x from
  ``fold_in(key, m)`` (:func:`vanish.scale_map.one_neuron_log_gradient` with one member
  and one input, through :func:`vanish.scale_map.independent_chains`): with one input
  shared by every chain the estimates were conditional on that x (x = −1.34 for the stored
  seed: P(|g_2| < 10⁻³) at s = 3.4 read 0.28 against 0.14 for x ~ N(0, 1)).

  Example:
    >>> chain_log_gradient(np.array([1.0, 2.0]), depth=3, chains=5, key=jax.random.key(0)).shape
    (2, 5, 3)
  """
  weight_scale = np.asarray(weight_scale, np.float64)
  return scale_map.independent_chains(
    lambda k: scale_map.one_neuron_log_gradient(
      "sigmoid", weight_scale, np.ones_like(weight_scale), depth=depth, members=1, key=k
    ),
    chains=chains,
    key=key,
    block=block,
  )


def chains(args: argparse.Namespace) -> dict:
  """One-neuron chains: Nielsen's init, w = 100 centered (at and near the reference), N(0, 100²)."""
  sizes = args.sizes
  depth, members = sizes["depth"], sizes["chain_members"]
  key = jax.random.fold_in(jax.random.key(args.seed), 1)
  k = np.arange(1, depth + 1)
  arrays = {"chains/depth": k}
  # Nielsen: w, b ~ N(0, 1), x ~ N(0, 1); and the sweep over the weight scale s
  scales = np.geomspace(*SCALE_RANGE, sizes["scale_points"])
  scales = np.unique(np.append(scales, 1.0))
  log_g = chain_log_gradient(
    scales, depth=depth, chains=members, key=key, block=sizes["chain_block"]
  )  # [s, M, K]
  usual = log_g[int(np.flatnonzero(scales == 1.0)[0])]
  arrays["chains/usual_mean"], arrays["chains/usual_mean_ci"] = _mean_ci(usual)
  # the σ' ≤ 1/4 bound on E log|g_K|: log ¼ + (K − 1)(E log|w| − log 4)
  arrays["chains/usual_bound"] = math.log(0.25) + (k - 1) * (E_LOG_ABS_NORMAL - math.log(4))
  log_eps = math.log(args.epsilon)
  vanish = (log_g < log_eps).sum(axis=1)  # [s, K]; −inf (a float32 σ' of 0) counts as vanished
  arrays["scale_sweep/scale"] = scales
  arrays["scale_sweep/p_vanish"] = vanish / members
  arrays["scale_sweep/p_vanish_ci"] = wilson_interval(vanish, members)
  arrays["scale_sweep/median_log_g"] = np.quantile(log_g, 0.5, axis=1, method="nearest")
  # the σ' ≤ 1/4 bound per layer, averaged: E log|w σ'| ≤ log s + E log|Z| − log 4
  arrays["scale_sweep/bound"] = np.log(scales) + E_LOG_ABS_NORMAL - math.log(4)
  # w = 100, centered at the reference 0: z = 0 in every layer, factor exactly 25
  weights, biases = vn.init.large_centered(LARGE_WEIGHT, reference=0.0)
  net = vn.MLP([1] * (depth + 1), "sigmoid", weights, biases)
  params = net.init(jax.random.fold_in(key, 2), 1)
  # jax.random.normal's bits; init's straight-line threefry compiles in a fraction of the time
  u = vn.init.normal(1.0)(
    jax.random.fold_in(key, 3), (members, 1), jax.dtypes.canonicalize_dtype(float)
  )
  x = jnp.concatenate([jnp.zeros((1, 1)), *(d * u for d in DELTAS)])
  log_c, _ = vn.scalar_chain(net, params, x)
  log_c = np.asarray(log_c, np.float64)[0]  # [1 + len(DELTAS)·M, K]
  arrays["chains/centered_reference"] = log_c[0]
  arrays["chains/centered_theory"] = math.log(0.25) + (k - 1) * math.log(LARGE_WEIGHT / 4)
  arrays["chains/deltas"] = np.asarray(DELTAS)
  near = log_c[1:].reshape(len(DELTAS), members, depth)
  arrays["chains/near_quartiles"] = np.quantile(near, [0.25, 0.5, 0.75], axis=1, method="nearest")
  arrays["chains/near_p_explode"] = (near > -log_eps).mean(axis=1)
  arrays["chains/near_p_vanish"] = (near < log_eps).mean(axis=1)
  # w ~ N(0, 100²), centered: factors w_j/4 with random w
  net_g = vn.MLP([1] * (depth + 1), "sigmoid", vn.init.normal(LARGE_WEIGHT), vn.init.centered(0.0))
  params_g = net_g.init(jax.random.fold_in(key, 4), members)
  log_n, _ = vn.scalar_chain(net, params_g, jnp.zeros((1, 1)))
  log_n = np.asarray(log_n, np.float64)[:, 0]
  arrays["chains/gaussian_centered_mean"], arrays["chains/gaussian_centered_mean_ci"] = _mean_ci(
    log_n
  )
  arrays["chains/gaussian_centered_theory"] = math.log(0.25) + (k - 1) * (
    math.log(LARGE_WEIGHT / 4) + E_LOG_ABS_NORMAL
  )
  rows = []
  for name, mean, ci, exact in (
    ("usual_vs_bound", "chains/usual_mean", "chains/usual_mean_ci", "chains/usual_bound"),
    (
      "gaussian_centered",
      "chains/gaussian_centered_mean",
      "chains/gaussian_centered_mean_ci",
      "chains/gaussian_centered_theory",
    ),
  ):
    for i in (0, depth // 2, depth - 1):
      rows.append(
        {
          "part": name,
          "x": int(k[i]),
          "theory": arrays[exact][i],
          "monte_carlo": arrays[mean][i],
          "lo": arrays[ci][i, 0],
          "hi": arrays[ci][i, 1],
        }
      )
  return {"arrays": arrays, "rows": rows}


def sigmoid_map(args: argparse.Namespace) -> dict:
  """The (weight scale, σ_b²) map of full-width sigmoid nets and its mean-field χ₁."""
  sizes = args.sizes
  scales = np.geomspace(*SCALE_RANGE, sizes["map_scale_points"])
  sigma_b2 = np.linspace(0.0, SIGMA_B2_MAX, sizes["map_sigma_b2_points"])
  m = scale_map.weight_scale_map(
    "sigmoid",
    scales,
    sigma_b2,
    width=sizes["width"],
    depth=sizes["depth"],
    members=sizes["members"],
    key=jax.random.fold_in(jax.random.key(args.seed), 2),
    epsilon=args.epsilon,
  )
  arrays = {"map/scale": m.x, "map/sigma_b2": m.y, "map/outcome": m.outcome}
  fields = ("p_vanish", "p_stable", "p_explode", "p_vanish_ci", "p_explode_ci")
  arrays |= map_arrays(m, (*fields, "mean_log_growth", "std_log_growth", "n_finite"))
  _, chi1_cells = scale_map.mean_field_chi1("sigmoid", m.sigma_w2, m.sigma_b2)
  arrays["map/mean_field_phase"] = scale_map.mean_field_phase(
    chi1_cells, depth=sizes["depth"], epsilon=args.epsilon
  )
  t_scale = np.geomspace(*SCALE_RANGE, sizes["theory_points"])
  t_b2 = np.linspace(0.0, SIGMA_B2_MAX, sizes["theory_points"])
  shape = (t_b2.size, t_scale.size)
  _, chi1 = scale_map.mean_field_chi1(
    "sigmoid", np.broadcast_to(t_scale**2, shape), np.broadcast_to(t_b2[:, None], shape)
  )
  arrays["theory/scale"], arrays["theory/sigma_b2"], arrays["theory/chi1"] = t_scale, t_b2, chi1
  rows = [
    {
      "part": "map",
      "x": m.x[j],
      "sigma_b2": m.y[i],
      "p_vanish": m.p_vanish[i, j],
      "p_explode": m.p_explode[i, j],
      "outcome": int(m.outcome[i, j]),
      "mean_field_phase": int(arrays["map/mean_field_phase"][i, j]),
    }
    for i in range(m.y.size)
    for j in range(m.x.size)
  ]
  return {"arrays": arrays, "rows": rows}


PARTS = {"factor": factor, "chains": chains, "map": sigmoid_map}


def config_of(args: argparse.Namespace) -> dict:
  return {
    "size": args.size,
    **args.sizes,
    "epsilon": args.epsilon,
    "scale_range": list(SCALE_RANGE),
    "sigma_b2_max": SIGMA_B2_MAX,
    "large_weight": LARGE_WEIGHT,
    "deltas": list(DELTAS),
    "chains": "independent: own w, b and x ~ N(0, 1) per chain",
    "seed": args.seed,
    "precision": "highest",
  }


def cached(args: argparse.Namespace) -> Path:
  """The stored run of ``args``' config, computed first (one chunk per part) if needed."""
  return cached_parts(args, "sigmoid_weights", config_of(args), PARTS, table="summary")


ensure = default_ensure(parse_args, cached)


def main(argv: Sequence[str] | None = None) -> int:
  args = parse_args(argv)
  path = cached(args)
  a = store.load(path).arrays
  depth = args.sizes["depth"]
  print(f"\nsigmoid, depth K = {depth}, ε = {args.epsilon:g}")
  print("width of {a : |w σ'(w a)| ≥ 1}:  w   theory   Monte Carlo [95% CI]")
  for i, w in enumerate(a["width_mc/w"]):
    lo, hi = a["width_mc/width_ci"][i]
    print(
      f"  {w:6.1f}  {theory.sigmoid_unstable_input_width(w):.4f}  "
      f"{a['width_mc/width'][i]:.4f} [{lo:.4f}, {hi:.4f}]"
    )
  print(
    f"one-neuron chain, w, b ~ N(0, 1): E log|g_K| = {a['chains/usual_mean'][-1]:.2f} "
    f"(σ' ≤ 1/4 bound {a['chains/usual_bound'][-1]:.2f})"
  )
  print(
    f"w = 100, centered, at the reference: log|g_K| = {a['chains/centered_reference'][-1]:.3f} "
    f"(exact {a['chains/centered_theory'][-1]:.3f})"
  )
  for d, med, pv in zip(
    a["chains/deltas"], a["chains/near_quartiles"][1], a["chains/near_p_vanish"], strict=True
  ):
    print(
      f"  inputs δ = {d:g} away: median log|g_K| peaks at {np.max(med):.1f} (K = "
      f"{int(np.argmax(med)) + 1}), ends at {med[-1]:.3g}; P(vanish at K) = {pv[-1]:.3f}"
    )
  print(
    f"w ~ N(0, 100²), centered: E log|g_K| = {a['chains/gaussian_centered_mean'][-1]:.2f} "
    f"(theory {a['chains/gaussian_centered_theory'][-1]:.2f})"
  )
  print("one-neuron chain (w ~ N(0, s²), b ~ N(0, 1)): P(vanish) at depth 2, 5, K vs s")
  for s, p in zip(a["scale_sweep/scale"], a["scale_sweep/p_vanish"], strict=True):
    print(f"  s = {s:8.3f}: {p[1]:.3f} {p[4]:.3f} {p[-1]:.3f}")
  outcome = a["map/outcome"]
  agree = float(np.mean(outcome == a["map/mean_field_phase"]))
  print(
    f"(s, σ_b²) map: {outcome.size} cells, vanish/stable/explode = {(outcome == -1).sum()}/"
    f"{(outcome == 0).sum()}/{(outcome == 1).sum()}; agrees with the mean-field phase in "
    f"{100 * agree:.0f}% of cells"
  )
  return 0


if __name__ == "__main__":
  sys.exit(main())
