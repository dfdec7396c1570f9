"""Which initial weights make gradients vanish? Maps of tiny networks with GD trajectories.

The deterministic map of the seed analysis (``docs/seed_analysis.md`` §4 (ii)), for tanh:

* the tied one-neuron chain (every weight w, every bias b) of depth K: ``log|g_K|``
  on a grid of actual initial ``(w, b)`` for a set of inputs, classified as
  vanishing / stable / exploding, at depth K and at depth 10,000 (where
  ``log|g|/K`` is the attractor's log-multiplier and only the bifurcation lines of
  :func:`vanish.parameter_map.tied_tanh_critical_lines` stay stable);
* gradient-descent trajectories of ``(w, b)`` from a grid of starting points on a
  teacher–student regression (the target is the tied chain at ``(w*, b*)``),
  recording ``(w_t, b_t, loss_t, log|g_t|)``, and the table of initial → final
  outcomes and of how often each initial outcome reaches the teacher;
* width-2 and width-3 networks on the slice ``W_l = w Ŵ_l``, ``b_l = b``: P(vanish),
  P(stable), P(explode) over random ``Ŵ``, inputs and cotangents.

Run:  python -m experiments.parameter_map --quick   (about 20 s on 2 CPU cores)
      python -m experiments.parameter_map --full    (finer grids, more starts and samples, one GPU)
Results: results/parameter_map/<config hash>/ (arrays.npz, outcomes.csv, run.json).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import jax
import numpy as np

from experiments._common import (
  add_epsilon,
  add_size_overrides,
  cached_run,
  default_ensure,
  experiment_parser,
  positive_float,
  positive_int,
  size_values,
)
from vanish import parameter_map, store

SIZES = {
  "quick": {
    "w_points": 81,
    "b_points": 41,
    "inputs": 8,
    "deep": 10_000,
    "start_w_points": 9,
    "start_b_points": 5,
    "steps": 3000,
    "slice_w_points": 24,
    "slice_b_points": 12,
    "slice_samples": 128,
  },
  "full": {
    "w_points": 401,
    "b_points": 201,
    "inputs": 64,
    "deep": 10_000,
    "start_w_points": 33,
    "start_b_points": 17,
    "steps": 10_000,
    "slice_w_points": 200,
    "slice_b_points": 100,
    "slice_samples": 4096,
  },
}
W_RANGE = (-4.0, 4.0)  # the tied chain's plane
B_RANGE = (-2.0, 2.0)
SLICE_W_MAX = 8.0  # weight scale w of Ŵ ~ N(0, 1/n); the slice is symmetric in w and b
SLICE_B_MAX = 2.0
OUTCOMES = {
  parameter_map.VANISH: "vanish",
  parameter_map.STABLE: "stable",
  parameter_map.EXPLODE: "explode",
}


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
  parser = experiment_parser(
    __doc__, quick_help="coarse grids (CPU, CI)", full_help="fine grids (one GPU)"
  )
  parser.add_argument("--depth", type=positive_int, default=10, help="chain depth K (default 10)")
  add_epsilon(parser, "|g|")
  parser.add_argument("--teacher-w", type=float, default=1.1, help="teacher weight w* (1.1)")
  parser.add_argument("--teacher-b", type=float, default=0.0, help="teacher bias b* (0.0)")
  parser.add_argument("--learning-rate", type=positive_float, default=0.2, help="GD step η (0.2)")
  parser.add_argument(
    "--widths",
    type=positive_int,
    nargs="+",
    default=[2, 3],
    help="widths of the networks mapped on the (w, b) slice W_l = w·Ŵ_l, b_l = b (default 2 3)",
  )
  add_size_overrides(
    parser,
    SIZES["quick"],
    table=SIZES,
    descriptions={
      "w_points": "tied-chain map: grid points in w",
      "b_points": "tied-chain map: grid points in b",
      "inputs": "inputs of the map and the training set",
      "deep": "the deep depth of the tied-chain map (> --depth)",
      "start_w_points": "GD trajectories: starting points in w",
      "start_b_points": "GD trajectories: starting points in b",
      "steps": "GD steps per trajectory",
      "slice_w_points": "width-n slice: grid points in the weight scale w",
      "slice_b_points": "width-n slice: grid points in b",
      "slice_samples": "width-n slice: random (Ŵ, input, cotangent) samples per cell",
    },
  )
  args = parser.parse_args(argv)
  if not (np.isfinite(args.teacher_w) and np.isfinite(args.teacher_b)):
    parser.error("--teacher-w and --teacher-b must be finite")
  args.sizes = size_values(args, SIZES)
  if args.sizes["deep"] <= args.depth:
    parser.error(f"--deep must exceed --depth ({args.depth}), got {args.sizes['deep']}")
  return args


def _inputs(sizes: dict) -> np.ndarray:
  """The inputs of the map and the training set: evenly spaced in [−1, 1]."""
  return np.linspace(-1.0, 1.0, sizes["inputs"])


def run_tied(args: argparse.Namespace) -> dict:
  """The tied-chain map at depths K and ``deep`` (one jitted call)."""
  sizes = args.sizes
  w = np.linspace(*W_RANGE, sizes["w_points"])
  b = np.linspace(*B_RANGE, sizes["b_points"])
  m = parameter_map.tied_chain_map(
    "tanh", w, b, _inputs(sizes), depth=(args.depth, sizes["deep"]), epsilon=args.epsilon
  )
  arrays = {"tied/w": m.w, "tied/b": m.b, "tied/x": m.x, "tied/depths": m.depths}
  for field in ("median_log_g", "outcome", "p_vanish", "p_stable", "p_explode"):
    arrays[f"tied/{field}"] = getattr(m, field)
  low, high = parameter_map.tied_tanh_critical_lines(m.w)
  arrays["tied/critical_low"], arrays["tied/critical_high"] = low, high
  rows = []
  for d, depth in enumerate(m.depths):
    for code, name in OUTCOMES.items():
      rows.append(
        {
          "part": "tied_map",
          "depth": int(depth),
          "outcome": name,
          "fraction_of_plane": float((m.outcome[d] == code).mean()),
        }
      )
  return {"arrays": arrays, "rows": rows}


def run_trajectories(args: argparse.Namespace) -> dict:
  """GD from a grid of starts on the teacher–student task; outcome transitions."""
  sizes = args.sizes
  x = _inputs(sizes)
  y = parameter_map.tied_chain_outputs("tanh", args.teacher_w, args.teacher_b, x, depth=args.depth)
  y = np.asarray(y, np.float64)
  start_w = np.linspace(*W_RANGE, sizes["start_w_points"])
  start_b = np.linspace(*B_RANGE, sizes["start_b_points"])
  w0, b0 = (a.ravel() for a in np.meshgrid(start_w, start_b))
  t = parameter_map.tied_chain_descent(
    "tanh",
    w0,
    b0,
    x,
    y,
    depth=args.depth,
    learning_rate=args.learning_rate,
    steps=sizes["steps"],
  )
  initial = parameter_map.classify(t.log_g[:, 0], args.epsilon)
  final = parameter_map.classify(t.log_g[:, -1], args.epsilon)
  solved = t.loss[:, -1] < 1e-3 * t.loss[:, 0].clip(min=1e-12)
  arrays = {
    "trajectories/w": t.w,
    "trajectories/b": t.b,
    "trajectories/loss": t.loss,
    "trajectories/log_g": t.log_g,
    "trajectories/log_grad_norm": t.log_grad_norm,
    "trajectories/diverged": t.diverged,
    "trajectories/initial_outcome": initial,
    "trajectories/final_outcome": final,
    "trajectories/solved": solved,
    "trajectories/teacher": np.asarray([args.teacher_w, args.teacher_b]),
    "trajectories/y": y,
  }
  rows = []
  for code, name in OUTCOMES.items():
    starts = initial == code
    row = {
      "part": "trajectories",
      "depth": args.depth,
      "outcome": name,
      "starts": int(starts.sum()),
      "solved": int((starts & solved).sum()),
      "loss_decreased": int((starts & (t.loss[:, -1] < t.loss[:, 0])).sum()),
    }
    for final_code, final_name in OUTCOMES.items():
      row[f"to_{final_name}"] = int((starts & (final == final_code)).sum())
    rows.append(row)
  return {"arrays": arrays, "rows": rows}


def run_slice(args: argparse.Namespace, width: int) -> dict:
  """P(outcome) over the (weight scale, bias shift) slice for one width."""
  sizes = args.sizes
  w = np.linspace(SLICE_W_MAX / sizes["slice_w_points"], SLICE_W_MAX, sizes["slice_w_points"])
  b = np.linspace(0.0, SLICE_B_MAX, sizes["slice_b_points"])
  m = parameter_map.slice_map(
    "tanh",
    w,
    b,
    width=width,
    depth=args.depth,
    samples=sizes["slice_samples"],
    key=jax.random.fold_in(jax.random.key(args.seed), width),
    epsilon=args.epsilon,
  )
  prefix = f"slice_width{width}"
  arrays = {f"{prefix}/w": m.w, f"{prefix}/b": m.b}
  for field in ("p_vanish", "p_stable", "p_explode", "p_stable_ci", "median_log_g"):
    arrays[f"{prefix}/{field}"] = getattr(m, field)
  best = np.unravel_index(np.argmax(m.p_stable), m.p_stable.shape)
  rows = [
    {
      "part": f"slice_width{width}",
      "depth": args.depth,
      "outcome": "stable",
      "fraction_of_plane": float((m.p_stable > 0.5).mean()),
      "max_p_stable": float(m.p_stable[best]),
      "max_p_stable_w": float(m.w[best[1]]),
      "max_p_stable_b": float(m.b[best[0]]),
      "max_p_explode": float(m.p_explode.max()),
    }
  ]
  return {"arrays": arrays, "rows": rows}


def run(args: argparse.Namespace, chunk: str) -> dict:
  if chunk == "tied":
    return run_tied(args)
  if chunk == "trajectories":
    return run_trajectories(args)
  return run_slice(args, int(chunk.removeprefix("slice_width")))


def config_of(args: argparse.Namespace) -> dict:
  return {
    "size": args.size,
    **args.sizes,
    "activation": "tanh",
    "depth": args.depth,
    "epsilon": args.epsilon,
    "teacher_w": args.teacher_w,
    "teacher_b": args.teacher_b,
    "learning_rate": args.learning_rate,
    "widths": list(args.widths),
    "w_range": list(W_RANGE),
    "b_range": list(B_RANGE),
    "slice_w_max": SLICE_W_MAX,
    "slice_b_max": SLICE_B_MAX,
    "seed": args.seed,
    "precision": "highest",
  }


def cached(args: argparse.Namespace) -> Path:
  """The stored run of ``args``' config, computed first (tied map, trajectories, slices)."""
  chunks = ["tied", "trajectories", *(f"slice_width{n}" for n in args.widths)]
  return cached_run(
    args.out,
    "parameter_map",
    config_of(args),
    lambda chunk: run(args, chunk),
    table="outcomes",
    force=args.force,
    chunks=chunks,
  )


ensure = default_ensure(parse_args, cached)


def summarize(path: Path, args: argparse.Namespace) -> None:
  """Prints the fractions of the plane per outcome and the GD outcome transitions."""
  rows = store.load(path).tables["outcomes"]
  print(f"\ntied tanh chain, (w, b) in {W_RANGE} × {B_RANGE}, ε = {args.epsilon:g}:")
  for row in (r for r in rows if r["part"] == "tied_map"):
    print(
      f"  depth {int(row['depth']):>6}: {row['outcome']:<8} "
      f"{float(row['fraction_of_plane']):6.1%} of the plane (median over inputs)"
    )
  print(
    f"gradient descent to the teacher (w*, b*) = ({args.teacher_w}, {args.teacher_b}), "
    f"depth {args.depth}, η = {args.learning_rate}, {args.sizes['steps']} steps:"
  )
  print(f"  {'initially':<10} {'starts':>6} {'solved':>7}  → vanish / stable / explode at the end")
  for row in (r for r in rows if r["part"] == "trajectories"):
    print(
      f"  {row['outcome']:<10} {row['starts']:>6} {row['solved']:>7}  → "
      f"{row['to_vanish']} / {row['to_stable']} / {row['to_explode']}"
    )
  for row in (r for r in rows if r["part"].startswith("slice_width")):
    print(
      f"{row['part']}: P(stable) > 1/2 on {float(row['fraction_of_plane']):.1%} of the slice; "
      f"max P(stable) = {float(row['max_p_stable']):.2f} at w = {float(row['max_p_stable_w']):.2f}"
      f", b = {float(row['max_p_stable_b']):.2f}; max P(explode) = "
      f"{float(row['max_p_explode']):.2f}"
    )


def main(argv: Sequence[str] | None = None) -> int:
  args = parse_args(argv)
  path = cached(args)
  summarize(path, args)
  return 0


if __name__ == "__main__":
  sys.exit(main())
