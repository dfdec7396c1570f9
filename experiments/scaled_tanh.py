"""Does tanh(n·x) fix vanishing gradients? Thresholds, one-neuron chains and the (n, σ_w²) map.

The seed analysis (docs/seed_analysis.md §4): the factor n·tanh'(n·x) reaches n, but it is
above 1 only for |x| < t_explode(n) = artanh(√(1 − 1/n))/n, and one factor cancels
K − 1 maximal ones for |x| > t_K(n) = artanh(√(1 − n^{−K}))/n. This computes

* the derivative curves n·tanh'(n·x) and the thresholds t_explode, t₁ = t_2 and
  t_K versus n (``vanish.theory``), with Monte Carlo estimates of each threshold:
  the fraction of x ~ U(−A, A) whose factor passes the level, times A;
* the probability that the one-neuron chain (w, b, x ~ N(0, 1)) has vanished
  (|g_K| < ε) or exploded (|g_K| > 1/ε) at depth K, versus n, with Wilson intervals;
* the (n, σ_w²) map of full-width tanh(n·x) nets at fixed σ_b²: P(vanish), P(stable),
  P(explode) of the gradient's growth across depth K — one jitted call over all cells
  through the rescaling tanh(n(Wx + b)) = tanh((nW)x + nb) (``vanish.scale_map``) —
  and mean-field χ₁ on a fine grid for the critical line and the finite-depth boundaries.

Run:  python -m experiments.scaled_tanh --quick   (about 20 s on 2 CPU cores)
      python -m experiments.scaled_tanh --full    (paper scale, one GPU)
Results: results/scaled_tanh/<config hash>/ (arrays.npz, summary.csv, run.json).
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Sequence
from pathlib import Path

import jax
import numpy as np

from experiments._common import (
  add_epsilon,
  add_size_overrides,
  cached_parts,
  default_ensure,
  experiment_parser,
  map_arrays,
  size_values,
)
from vanish import scale_map, store, theory
from vanish.probability import wilson_interval

SIZES = {
  "quick": {
    "depth": 24,
    "chain_members": 4096,
    "chain_block": scale_map.CHAIN_BLOCK,  # chains per call (float rounding)
    "chain_n_points": 12,
    "threshold_samples": 100_000,
    "width": 24,
    "members": 16,
    "map_n_points": 12,
    "map_sigma_w2_points": 9,
    "theory_points": 40,
  },
  "full": {
    "depth": 50,
    "chain_members": 1_048_576,
    "chain_block": scale_map.CHAIN_BLOCK,  # chains per call (float rounding)
    "chain_n_points": 40,
    "threshold_samples": 10_000_000,
    "width": 256,
    "members": 256,
    "map_n_points": 64,
    "map_sigma_w2_points": 49,
    "theory_points": 160,
  },
}
N_RANGE = (0.25, 16.0)  # the map's and the chains' slopes
SIGMA_W2_RANGE = (1 / 16, 16.0)  # the map's weight variances (geometric, centred on 1)
DERIVATIVE_N = (1.0, 2.0, 4.0, 8.0)
THRESHOLD_N = (1.25, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0, 12.0, 16.0)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
  parser = experiment_parser(
    __doc__, quick_help="small ensembles (CPU, CI)", full_help="paper-scale ensembles (one GPU)"
  )
  add_epsilon(parser, "|g|")
  parser.add_argument(
    "--sigma-b2", type=float, default=0.05, help="the map's fixed bias variance (default 0.05)"
  )
  add_size_overrides(parser, SIZES["quick"], table=SIZES)
  args = parser.parse_args(argv)
  if not (math.isfinite(args.sigma_b2) and args.sigma_b2 >= 0):
    parser.error(f"--sigma-b2 must be a finite number >= 0, got {args.sigma_b2}")
  args.sizes = size_values(args, SIZES)
  if args.sizes["depth"] < 2:
    parser.error("--depth must be >= 2")
  return args


def grids(sizes: dict) -> dict[str, np.ndarray]:
  """The n and σ_w² grids (geometric; the map's σ_w² grid contains 1 when its size is odd)."""
  return {
    "chain_n": np.geomspace(*N_RANGE, sizes["chain_n_points"]),
    "map_n": np.geomspace(*N_RANGE, sizes["map_n_points"]),
    "map_sigma_w2": np.geomspace(*SIGMA_W2_RANGE, sizes["map_sigma_w2_points"]),
    "theory_n": np.geomspace(*N_RANGE, sizes["theory_points"]),
    "theory_sigma_w2": np.geomspace(*SIGMA_W2_RANGE, sizes["theory_points"]),
  }


def log_factor(n: np.ndarray, x: np.ndarray) -> np.ndarray:
  """log(n·tanh'(n·x)) = log n + log 4 − 2|nx| − 2 log1p(e^{−2|nx|}), stable for any x."""
  y = np.abs(n * x)
  return np.log(n) + math.log(4.0) - 2 * y - 2 * np.log1p(np.exp(-2 * y))


def thresholds(args: argparse.Namespace) -> dict:
  """Theory curves and Monte Carlo estimates of t_explode, t₁ and t_K."""
  sizes = args.sizes
  depth = sizes["depth"]
  rng = np.random.default_rng(args.seed)
  n_curve = np.geomspace(1.01, 20.0, 200)
  x = np.linspace(-2.0, 2.0, 801)
  arrays = {
    "thresholds/n": n_curve,
    "thresholds/explode": theory.scaled_tanh_explode_threshold(n_curve),
    "thresholds/t1": theory.scaled_tanh_vanish_threshold(n_curve, 2),
    "thresholds/t10": theory.scaled_tanh_vanish_threshold(n_curve, 10),
    "thresholds/tK": theory.scaled_tanh_vanish_threshold(n_curve, depth),
    "thresholds/widest_good_n": np.asarray(theory.scaled_tanh_widest_good_n(2)),
    "derivative/x": x,
    "derivative/n": np.asarray(DERIVATIVE_N),
    "derivative/value": np.exp(log_factor(np.asarray(DERIVATIVE_N)[:, None], x[None, :])),
  }
  rows = []
  samples = sizes["threshold_samples"]
  mc_n = np.asarray(THRESHOLD_N)
  levels = {"explode": 1, "t1": 2, "t10": 10, "tK": depth}  # a factor below n^{1−K} cancels
  for name, k in levels.items():
    estimate, ci = np.empty(mc_n.size), np.empty((mc_n.size, 2))
    for i, n in enumerate(mc_n):
      exact = theory.scaled_tanh_vanish_threshold(n, k)
      half = 1.5 * exact  # sample U(−A, A) with A = 1.5 t: the interval is 2/3 of the range
      x = rng.uniform(-half, half, samples)
      inside = int(np.sum(log_factor(n, x) >= (1 - k) * math.log(n)))
      estimate[i] = half * inside / samples
      ci[i] = half * wilson_interval(np.asarray(inside), samples)
      rows.append(
        {
          "part": "threshold",
          "what": name,
          "n": n,
          "theory": exact,
          "monte_carlo": estimate[i],
          "lo": ci[i, 0],
          "hi": ci[i, 1],
        }
      )
    arrays[f"thresholds_mc/{name}"] = estimate
    arrays[f"thresholds_mc/{name}_ci"] = ci
  arrays["thresholds_mc/n"] = mc_n
  return {"arrays": arrays, "rows": rows}


def chain_log_gradient(
  n: np.ndarray, *, depth: int, chains: int, key: jax.Array, block: int = scale_map.CHAIN_BLOCK
) -> np.ndarray:
  """``[S, chains, depth]`` log |g_K| of independent tanh(n·x) one-neuron chains.

  Chain m draws its own w, b ~ N(0, 1) and its own input x ~ N(0, 1) from
  ``fold_in(key, m)`` (:func:`vanish.scale_map.scaled_tanh_chain_log_gradient` with one
  member and one input, through :func:`vanish.scale_map.independent_chains`), so the chains
  are iid, as the Wilson intervals assume, and x is a fresh draw per chain rather than a few
  values shared by every chain.

  Example:
    >>> g = chain_log_gradient(np.array([1.0, 2.0]), depth=3, chains=5, key=jax.random.key(0))
    >>> g.shape
    (2, 5, 3)
  """
  return scale_map.independent_chains(
    lambda k: scale_map.scaled_tanh_chain_log_gradient(n, depth=depth, members=1, key=k),
    chains=chains,
    key=key,
    block=block,
  )


def chain(args: argparse.Namespace) -> dict:
  """P(vanish) and P(explode) of the one-neuron tanh(n·x) chain at depth K, versus n."""
  sizes = args.sizes
  n = grids(sizes)["chain_n"]
  log_g = chain_log_gradient(
    n,
    depth=sizes["depth"],
    chains=sizes["chain_members"],
    key=jax.random.fold_in(jax.random.key(args.seed), 1),
    block=sizes["chain_block"],
  )
  # [n, trials, K] float32; −inf where a factor underflowed to 0 (vanished, |g| < 1e-38).
  # One slope at a time: at --full size log_g is 8.4 GB and a temporary of its size would
  # double that.
  trials = log_g.shape[1]
  log_eps = math.log(args.epsilon)
  vanish = np.stack([(g < log_eps).sum(axis=0) for g in log_g])  # [n, K]
  explode = np.stack([(g > -log_eps).sum(axis=0) for g in log_g])
  quartiles = np.stack(
    [np.quantile(g, [0.25, 0.5, 0.75], axis=0, method="nearest") for g in log_g], axis=1
  )  # [3, n, K]
  arrays = {
    "chain/n": n,
    "chain/p_vanish": vanish / trials,
    "chain/p_vanish_ci": wilson_interval(vanish, trials),
    "chain/p_explode": explode / trials,
    "chain/p_explode_ci": wilson_interval(explode, trials),
    "chain/quartiles_log_g": quartiles.astype(np.float64),
  }
  vanish, explode = vanish[:, -1], explode[:, -1]
  rows = [
    {
      "part": "chain",
      "what": "p_vanish",
      "n": n[i],
      "monte_carlo": vanish[i] / trials,
      "lo": arrays["chain/p_vanish_ci"][i, -1, 0],
      "hi": arrays["chain/p_vanish_ci"][i, -1, 1],
      "p_explode": explode[i] / trials,
    }
    for i in range(n.size)
  ]
  return {"arrays": arrays, "rows": rows}


def tanh_map(args: argparse.Namespace) -> dict:
  """The (n, σ_w²) map of full-width tanh(n·x) nets and its mean-field χ₁."""
  sizes = args.sizes
  g = grids(sizes)
  m = scale_map.scaled_tanh_map(
    g["map_n"],
    g["map_sigma_w2"],
    sigma_b2=args.sigma_b2,
    width=sizes["width"],
    depth=sizes["depth"],
    members=sizes["members"],
    key=jax.random.fold_in(jax.random.key(args.seed), 2),
    epsilon=args.epsilon,
  )
  arrays = {"map/n": m.x, "map/sigma_w2": m.y, "map/outcome": m.outcome, **map_arrays(m)}
  # mean field on a fine grid: χ₁ of the tanh net at (n²σ_w², n²σ_b²)
  n2 = g["theory_n"][None, :] ** 2
  _, chi1 = scale_map.mean_field_chi1(
    "tanh",
    n2 * g["theory_sigma_w2"][:, None],
    np.broadcast_to(n2 * args.sigma_b2, (g["theory_sigma_w2"].size, n2.size)),
  )
  arrays["theory/n"], arrays["theory/sigma_w2"], arrays["theory/chi1"] = (
    g["theory_n"],
    g["theory_sigma_w2"],
    chi1,
  )
  arrays["theory/phase"] = scale_map.mean_field_phase(
    chi1, depth=sizes["depth"], epsilon=args.epsilon
  )
  # the σ_w² = 1 row: P(vanish), P(explode) of full-width nets vs n, and mean-field growth
  _, chi1_row = scale_map.mean_field_chi1("tanh", n2[0], n2[0] * args.sigma_b2)
  arrays["theory/row_log_growth"] = 0.5 * (sizes["depth"] - 1) * np.log(chi1_row)
  _, chi1_cells = scale_map.mean_field_chi1("tanh", m.sigma_w2, m.sigma_b2)
  arrays["map/mean_field_chi1"] = chi1_cells
  arrays["map/mean_field_phase"] = scale_map.mean_field_phase(
    chi1_cells, depth=sizes["depth"], epsilon=args.epsilon
  )
  rows = []
  one = int(np.argmin(np.abs(np.log(m.y))))
  for j, n in enumerate(m.x):
    rows.append(
      {
        "part": "map_row",
        "what": f"sigma_w2={m.y[one]:.4g}",
        "n": n,
        "monte_carlo": m.p_vanish[one, j],
        "lo": m.p_vanish_ci[one, j, 0],
        "hi": m.p_vanish_ci[one, j, 1],
        "p_explode": m.p_explode[one, j],
      }
    )
  return {"arrays": arrays, "rows": rows}


PARTS = {"thresholds": thresholds, "chain": chain, "map": tanh_map}


def config_of(args: argparse.Namespace) -> dict:
  return {
    "size": args.size,
    **args.sizes,
    "epsilon": args.epsilon,
    "sigma_b2": args.sigma_b2,
    "n_range": list(N_RANGE),
    "sigma_w2_range": list(SIGMA_W2_RANGE),
    "seed": args.seed,
    "precision": "highest",
  }


def cached(args: argparse.Namespace) -> Path:
  """The stored run of ``args``' config, computed first (one chunk per part) if needed."""
  return cached_parts(args, "scaled_tanh", config_of(args), PARTS, table="summary")


ensure = default_ensure(parse_args, cached)


def main(argv: Sequence[str] | None = None) -> int:
  args = parse_args(argv)
  path = cached(args)
  a = store.load(path).arrays
  depth = args.sizes["depth"]
  print(f"\ntanh(n·x), depth K = {depth}, ε = {args.epsilon:g}")
  print(
    f"widest good interval |x| ≤ t₁(n) at n = {float(a['thresholds/widest_good_n']):.4f}; "
    f"t₁(2) = {theory.scaled_tanh_vanish_threshold(2.0):.4f}"
  )
  print("threshold  n     theory   Monte Carlo [95% CI]")
  for name in ("explode", "t1", "tK"):
    for i in (2, 6):
      n = a["thresholds_mc/n"][i]
      lo, hi = a[f"thresholds_mc/{name}_ci"][i]
      exact = theory.scaled_tanh_vanish_threshold(n, {"explode": 1, "t1": 2, "tK": depth}[name])
      print(
        f"{name:<9} {n:4.1f}  {exact:8.4f}  {a[f'thresholds_mc/{name}'][i]:.4f} "
        f"[{lo:.4f}, {hi:.4f}]"
      )
  print("one-neuron chain (w, b, x ~ N(0, 1)): P(vanish) at depth 5 and K, P(explode) at 5 and K")
  for i, n in enumerate(a["chain/n"]):
    pv, pe = a["chain/p_vanish"][i], a["chain/p_explode"][i]
    print(f"  n = {n:6.3f}: {pv[4]:.3f} {pv[-1]:.3f}   {pe[4]:.3f} {pe[-1]:.3f}")
  outcome = a["map/outcome"]
  agree = float(np.mean(outcome == a["map/mean_field_phase"]))
  print(
    f"(n, σ_w²) map at σ_b² = {args.sigma_b2:g}: {outcome.size} cells, most probable outcome "
    f"vanish/stable/explode = {(outcome == -1).sum()}/{(outcome == 0).sum()}/"
    f"{(outcome == 1).sum()}; agrees with the mean-field phase in {100 * agree:.0f}% of cells"
  )
  return 0


if __name__ == "__main__":
  sys.exit(main())
