"""Where do gradients vanish or explode? The (σ_w², σ_b²) phase map against mean-field theory.

For one activation (tanh by default) this measures, on a grid of weight and bias
variances, the probability that an MLP's backpropagated gradient shrinks by more
than ε (vanishing), grows by more than 1/ε (exploding) or neither across its
depth — one jitted call over cells × members, common random numbers across
cells — and compares the measured boundaries (where P = 1/2) with

* the mean-field boundaries ``χ₁ = ε^{±2/(L−1)}`` and the critical line ``χ₁ = 1``
  (Schoenholz et al. 2017), and
* the same prediction corrected for finite width (``−(3κ − 1)/(2n)`` per layer)
  and for the input's length transient (``q⁰ = 1`` instead of q*),

and prints where theory and experiment disagree, in σ_w² and in grid cells.

Run:  python -m experiments.phase_map --quick   (about 30 s on 2 CPU cores)
      python -m experiments.phase_map --full    (200 × 200 × 256 members × depth 100, one GPU)
Results: results/phase_map/<config hash>/ (arrays.npz, boundaries.csv, run.json).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import jax
import numpy as np

import vanish as vn
from experiments._common import (
  add_epsilon,
  add_size_overrides,
  cached_run,
  default_ensure,
  experiment_parser,
  map_arrays,
  positive_float,
  positive_int,
  size_values,
)
from vanish import phase_map, store

SIZES = {
  "quick": {
    "width": 64,
    "depth": 30,
    "members": 32,
    "sigma_w2_points": 24,
    "sigma_b2_points": 12,
    "sigma_w2_max": 9.6,
    "sigma_b2_max": 1.1,
    "theory_stride": 2,
  },
  "full": {
    "width": 256,
    "depth": 100,
    "members": 256,
    "sigma_w2_points": 200,
    "sigma_b2_points": 200,
    "sigma_w2_max": 6.0,
    "sigma_b2_max": 2.0,
    "theory_stride": 10,
  },
}


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
  parser = experiment_parser(
    __doc__, quick_help="24 × 12 grid (CPU, CI)", full_help="200 × 200 grid (one GPU)"
  )
  parser.add_argument(
    "--activation",
    default="tanh",
    choices=vn.activations.available(),
    help="activation (default tanh)",
  )
  add_epsilon(parser, "‖δ¹‖/‖δᴸ‖")
  add_size_overrides(
    parser, SIZES["quick"], {"sigma_w2_max": positive_float, "sigma_b2_max": positive_float}
  )
  parser.add_argument("--chunk-size", type=positive_int, default=None, help="cells per chunk")
  args = parser.parse_args(argv)
  args.sizes = size_values(args, SIZES)
  if args.sizes["depth"] < 2:
    parser.error("--depth must be >= 2 (the gradient must cross at least one layer)")
  return args


def grids(sizes: dict) -> tuple[np.ndarray, np.ndarray]:
  """σ_w² from max/points to max (no zero: nothing propagates), σ_b² from 0 to max."""
  a, b = sizes["sigma_w2_points"], sizes["sigma_b2_points"]
  sigma_w2 = np.linspace(sizes["sigma_w2_max"] / a, sizes["sigma_w2_max"], a)
  sigma_b2 = np.linspace(0.0, sizes["sigma_b2_max"], b)
  return sigma_w2, sigma_b2


def theory_boundaries(args: argparse.Namespace, sigma_b2: np.ndarray):
  """Plain and finite-size mean-field boundaries on every ``theory_stride``-th σ_b² row.

  Each row costs ~1–3 s of host quadratures (depth 100), so the 200-row full grid
  thins them; the other rows are nan.
  """
  sizes = args.sizes
  rows = np.arange(0, sigma_b2.size, sizes["theory_stride"])
  common = {"depth": sizes["depth"], "epsilon": args.epsilon}
  out = []
  for extra in ({}, {"width": sizes["width"], "q0": 1.0}):
    some = phase_map.mean_field_boundaries(args.activation, sigma_b2[rows], **common, **extra)
    full = {}
    for field in ("vanish", "explode", "critical"):
      values = np.full(sigma_b2.size, np.nan)
      values[rows] = getattr(some, field)
      full[field] = values
    out.append(some._replace(sigma_b2=sigma_b2, **full))
  return out


def run(args: argparse.Namespace) -> dict:
  sizes = args.sizes
  sigma_w2, sigma_b2 = grids(sizes)
  start = time.perf_counter()
  pm = phase_map.gradient_phase_map(
    args.activation,
    sigma_w2,
    sigma_b2,
    width=sizes["width"],
    depth=sizes["depth"],
    members=sizes["members"],
    key=jax.random.key(args.seed),
    epsilon=args.epsilon,
    chunk_size=args.chunk_size,
  )
  map_seconds = time.perf_counter() - start
  empirical = phase_map.empirical_boundary(pm)
  plain, finite = theory_boundaries(args, sigma_b2)
  theory_seconds = time.perf_counter() - start - map_seconds
  d_plain = phase_map.boundary_disagreement(empirical, plain)
  d_finite = phase_map.boundary_disagreement(empirical, finite)
  arrays = {
    "sigma_w2": pm.sigma_w2,
    "sigma_b2": pm.sigma_b2,
    "empirical/vanish": empirical.vanish,
    "empirical/explode": empirical.explode,
    "mean_field/vanish": plain.vanish,
    "mean_field/explode": plain.explode,
    "mean_field/critical": plain.critical,
    "mean_field_finite/vanish": finite.vanish,
    "mean_field_finite/explode": finite.explode,
    "map_seconds": np.asarray(map_seconds),
    "theory_seconds": np.asarray(theory_seconds),
  }
  arrays |= map_arrays(pm)
  rows = []
  for i, sb2 in enumerate(sigma_b2):
    rows.append(
      {
        "sigma_b2": sb2,
        "empirical_vanish": empirical.vanish[i],
        "empirical_explode": empirical.explode[i],
        "mean_field_vanish": plain.vanish[i],
        "mean_field_explode": plain.explode[i],
        "critical": plain.critical[i],
        "finite_vanish": finite.vanish[i],
        "finite_explode": finite.explode[i],
        "vanish_diff_sigma_w2": d_plain.vanish_sigma_w2[i],
        "vanish_diff_cells": d_plain.vanish_cells[i],
        "explode_diff_sigma_w2": d_plain.explode_sigma_w2[i],
        "explode_diff_cells": d_plain.explode_cells[i],
        "finite_vanish_diff_sigma_w2": d_finite.vanish_sigma_w2[i],
        "finite_vanish_diff_cells": d_finite.vanish_cells[i],
        "finite_explode_diff_sigma_w2": d_finite.explode_sigma_w2[i],
        "finite_explode_diff_cells": d_finite.explode_cells[i],
        "critical_between": bool(d_plain.critical_between[i]),
      }
    )
  arrays["chunk_size"] = np.asarray(pm.config["chunk_size"])
  return {"arrays": arrays, "rows": rows}


def _describe(label: str, diff: np.ndarray, sigma_b2: np.ndarray, cell: float) -> str:
  ok = np.isfinite(diff)
  if not ok.any():
    return f"  {label:<38} no row where both boundaries are known"
  worst = np.nanargmax(np.abs(diff))
  beyond = int((np.abs(diff[ok]) > cell).sum())
  return (
    f"  {label:<38} mean {np.nanmean(diff):+.3f}, worst {diff[worst]:+.3f} σ_w² "
    f"({diff[worst] / cell:+.2f} cells) at σ_b² = {sigma_b2[worst]:.3g}; "
    f"rows off by > 1 cell: {beyond}/{ok.sum()}"
  )


def summarize(path, args: argparse.Namespace) -> None:
  """Prints where the measured boundaries and the theory disagree."""
  a = store.load(path).arrays
  sizes, sigma_b2 = args.sizes, a["sigma_b2"]
  cell = float(np.mean(np.diff(a["sigma_w2"]))) if a["sigma_w2"].size > 1 else float("nan")
  print(
    f"\n{args.activation}: width {sizes['width']}, depth {sizes['depth']}, {sizes['members']} "
    f"members, ε = {args.epsilon:g}; grid {a['sigma_w2'].size} σ_w² × {sigma_b2.size} σ_b² "
    f"(one cell = {cell:.3f} σ_w²); map {float(a['map_seconds']):.1f} s, "
    f"theory {float(a['theory_seconds']):.1f} s"
  )
  print("measured (P = 1/2) minus mean-field boundary, in σ_w² (positive: measured later):")
  for label, emp, theory in [
    ("vanishing vs χ₁ = ε^(2/(L−1))", "empirical/vanish", "mean_field/vanish"),
    ("exploding vs χ₁ = ε^(−2/(L−1))", "empirical/explode", "mean_field/explode"),
    ("vanishing vs finite-n, q⁰ = 1 theory", "empirical/vanish", "mean_field_finite/vanish"),
    ("exploding vs finite-n, q⁰ = 1 theory", "empirical/explode", "mean_field_finite/explode"),
  ]:
    print(_describe(label, a[emp] - a[theory], sigma_b2, cell))
  vanish, explode, critical = (
    a["empirical/vanish"],
    a["empirical/explode"],
    a["mean_field/critical"],
  )
  known = np.isfinite(vanish) & np.isfinite(explode) & np.isfinite(critical)
  between = known & (vanish < critical) & (critical < explode)
  print(
    f"  critical line χ₁ = 1 strictly between the measured boundaries in {between.sum()}/"
    f"{known.sum()} rows where all three are known"
  )


def config_of(args: argparse.Namespace) -> dict:
  return {
    "size": args.size,
    **args.sizes,
    "activation": args.activation,
    "epsilon": args.epsilon,
    "seed": args.seed,
    "precision": "highest",
  }


def cached(args: argparse.Namespace) -> Path:
  """The stored run of ``args``' config, computed first if needed."""
  return cached_run(
    args.out, "phase_map", config_of(args), lambda: run(args), table="boundaries", force=args.force
  )


ensure = default_ensure(parse_args, cached)


def main(argv: Sequence[str] | None = None) -> int:
  args = parse_args(argv)
  path = cached(args)
  summarize(path, args)
  return 0


if __name__ == "__main__":
  sys.exit(main())
