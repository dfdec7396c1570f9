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

and prints where theory and experiment disagree, in σ_w² and in grid cells. The grid is
computed in blocks of σ_b² rows (``--rows-per-chunk``), each saved when done, so a killed
``--full`` run resumes from its last finished block.

Run:  python -m experiments.phase_map --quick   (about 16 s on 2 CPU cores)
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
  MAP_FIELDS,
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

# σ_b² rows per saved chunk (not part of the config: the blocking does not change the results).
ROWS_PER_CHUNK = {"quick": 4, "full": 10}


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
    parser,
    SIZES["quick"],
    {"sigma_w2_max": positive_float, "sigma_b2_max": positive_float},
    table=SIZES,
    descriptions={
      "width": "layer width n",
      "depth": "number of layers L (>= 2)",
      "members": "networks per cell",
      "sigma_w2_points": "σ_w² grid points (from max/points to max)",
      "sigma_b2_points": "σ_b² grid points (from 0 to max)",
      "sigma_w2_max": "largest σ_w²",
      "sigma_b2_max": "largest σ_b²",
      "theory_stride": "solve the mean-field theory on every k-th σ_b² row",
    },
  )
  parser.add_argument(
    "--rows-per-chunk",
    type=positive_int,
    default=None,
    help="σ_b² rows per saved chunk: a killed run resumes from its last finished chunk "
    "(default: 4 quick, 10 full; rounded down to a divisor of the rows)",
  )
  parser.add_argument(
    "--chunk-size",
    type=positive_int,
    default=None,
    help="cells per vmapped batch, a memory/speed knob (default: as many as fit the device, "
    "up to one chunk's cells); results change only by float32 rounding",
  )
  args = parser.parse_args(argv)
  args.sizes = size_values(args, SIZES)
  if args.rows_per_chunk is None:
    args.rows_per_chunk = ROWS_PER_CHUNK[args.size]
  if args.sizes["depth"] < 2:
    parser.error("--depth must be >= 2 (the gradient must cross at least one layer)")
  return args


def grids(sizes: dict) -> tuple[np.ndarray, np.ndarray]:
  """σ_w² from max/points to max (no zero: nothing propagates), σ_b² from 0 to max."""
  a, b = sizes["sigma_w2_points"], sizes["sigma_b2_points"]
  sigma_w2 = np.linspace(sizes["sigma_w2_max"] / a, sizes["sigma_w2_max"], a)
  sigma_b2 = np.linspace(0.0, sizes["sigma_b2_max"], b)
  return sigma_w2, sigma_b2


def theory_boundaries(args: argparse.Namespace, sigma_b2: np.ndarray, rows: slice):
  """Plain and finite-size mean-field boundaries of σ_b² rows ``rows``, computed on every
  ``theory_stride``-th row of the whole grid (nan on the others).

  Each row costs ~1–3 s of host quadratures (depth 100), so the 200-row full grid
  thins them; each row is solved on its own, so a block of rows gives the same numbers
  as the whole grid.
  """
  sizes = args.sizes
  index = np.arange(sigma_b2.size)[rows]
  computed = index % sizes["theory_stride"] == 0
  common = {"depth": sizes["depth"], "epsilon": args.epsilon}
  out = []
  for extra in ({}, {"width": sizes["width"], "q0": 1.0}):
    full = {field: np.full(index.size, np.nan) for field in ("vanish", "explode", "critical")}
    if computed.any():
      some = phase_map.mean_field_boundaries(
        args.activation, sigma_b2[index[computed]], **common, **extra
      )
      for field in full:
        full[field][computed] = getattr(some, field)
    level = args.epsilon ** (2 / (sizes["depth"] - 1))
    out.append(
      phase_map.MeanFieldBoundaries(
        sigma_b2[rows], **full, chi1_vanish=level, chi1_explode=1 / level, **common, **extra
      )
    )
  return out


def row_blocks(rows: int, rows_per_chunk: int) -> list[list[int]]:
  """``[start, stop)`` σ_b² row blocks of equal size: the largest divisor of ``rows`` that is at
  most ``rows_per_chunk`` (equal shapes compile once).

  Example:
    >>> row_blocks(12, 4), row_blocks(7, 4)
    ([[0, 4], [4, 8], [8, 12]], [[0, 1], [1, 2], [2, 3], [3, 4], [4, 5], [5, 6], [6, 7]])
  """
  size = max(d for d in range(1, min(rows, rows_per_chunk) + 1) if rows % d == 0)
  return [[start, start + size] for start in range(0, rows, size)]


def compute_batch(args: argparse.Namespace) -> int:
  """Cells per vmapped batch in every block: ``--chunk-size`` (else the memory-limited
  default for one block), balanced so that the batches split a block evenly.

  Every cell uses the same draws whatever block it is in; only the batch size changes the
  float32 rounding (by ~1e-7 in the log-growth moments). So a resumed run equals an
  uninterrupted one bitwise, and so do two blockings whose batches are equal (a one-block
  and a three-block run with ``--chunk-size`` = one row: tests/test_phase_map_experiment.py).
  """
  sizes = args.sizes
  (start, stop), *_ = row_blocks(sizes["sigma_b2_points"], args.rows_per_chunk)
  cells = (stop - start) * sizes["sigma_w2_points"]
  limit = args.chunk_size or phase_map.default_chunk_size(
    cells, width=sizes["width"], depth=sizes["depth"], members=sizes["members"]
  )
  batches = -(-cells // min(limit, cells))
  return -(-cells // batches)


# The per-row results a block stores (``rows<start>/<name>``) and the run concatenates.
ROW_ARRAYS = (
  *(f"map/{field}" for field in MAP_FIELDS),
  *("empirical/vanish", "empirical/explode"),
  *("mean_field/vanish", "mean_field/explode", "mean_field/critical"),
  *("mean_field_finite/vanish", "mean_field_finite/explode"),
  *(
    f"{theory}/{key}_{unit}"
    for theory in ("diff", "diff_finite")
    for key in ("vanish", "explode")
    for unit in ("sigma_w2", "cells")
  ),
  "critical_between",
)


def run_block(args: argparse.Namespace, block: Sequence[int]) -> dict:
  """The map, its measured boundaries and the theory for σ_b² rows ``block = [start, stop)``.

  Every cell's draws are the common random numbers of ``jax.random.key(args.seed)``
  (:func:`vanish.phase_map.common_random_numbers`), whatever block it is in.
  """
  sizes = args.sizes
  start_row, stop_row = block
  sigma_w2, sigma_b2 = grids(sizes)
  rows = slice(start_row, stop_row)
  start = time.perf_counter()
  pm = phase_map.gradient_phase_map(
    args.activation,
    sigma_w2,
    sigma_b2[rows],
    width=sizes["width"],
    depth=sizes["depth"],
    members=sizes["members"],
    key=jax.random.key(args.seed),
    epsilon=args.epsilon,
    chunk_size=compute_batch(args),
  )
  map_seconds = time.perf_counter() - start
  empirical = phase_map.empirical_boundary(pm)
  plain, finite = theory_boundaries(args, sigma_b2, rows)
  theory_seconds = time.perf_counter() - start - map_seconds
  arrays = map_arrays(pm) | {
    "empirical/vanish": empirical.vanish,
    "empirical/explode": empirical.explode,
    "mean_field/vanish": plain.vanish,
    "mean_field/explode": plain.explode,
    "mean_field/critical": plain.critical,
    "mean_field_finite/vanish": finite.vanish,
    "mean_field_finite/explode": finite.explode,
  }
  for name, theory in (("diff", plain), ("diff_finite", finite)):
    d = phase_map.boundary_disagreement(empirical, theory)
    arrays |= {
      f"{name}/vanish_sigma_w2": d.vanish_sigma_w2,
      f"{name}/vanish_cells": d.vanish_cells,
      f"{name}/explode_sigma_w2": d.explode_sigma_w2,
      f"{name}/explode_cells": d.explode_cells,
    }
    if name == "diff":
      arrays["critical_between"] = d.critical_between
  prefix = f"rows{start_row}"
  out = {f"{prefix}/{name}": arrays[name] for name in ROW_ARRAYS}
  out[f"{prefix}/map_seconds"] = np.asarray(map_seconds)
  out[f"{prefix}/theory_seconds"] = np.asarray(theory_seconds)
  out[f"{prefix}/chunk_size"] = np.asarray(pm.config["chunk_size"])
  return {"arrays": out, "rows": [{"start": start_row, "stop": stop_row}]}


def assemble(args: argparse.Namespace, blocks: Sequence[Sequence[int]], parts: dict) -> dict:
  """The run's arrays and ``boundaries`` rows from the row blocks' arrays ``parts``."""
  sigma_w2, sigma_b2 = grids(args.sizes)
  prefixes = [f"rows{start}" for start, _ in blocks]
  rows_of = {name: np.concatenate([parts[f"{p}/{name}"] for p in prefixes]) for name in ROW_ARRAYS}
  arrays = {
    "sigma_w2": sigma_w2,
    "sigma_b2": sigma_b2,
    **{name: rows_of[name] for name in ROW_ARRAYS if not name.startswith(("diff", "critical_b"))},
    "map_seconds": np.asarray(sum(float(parts[f"{p}/map_seconds"]) for p in prefixes)),
    "theory_seconds": np.asarray(sum(float(parts[f"{p}/theory_seconds"]) for p in prefixes)),
    "chunk_size": parts[f"{prefixes[0]}/chunk_size"],
  }
  rows = []
  for i, sb2 in enumerate(sigma_b2):
    row = {
      "sigma_b2": sb2,
      "empirical_vanish": rows_of["empirical/vanish"][i],
      "empirical_explode": rows_of["empirical/explode"][i],
      "mean_field_vanish": rows_of["mean_field/vanish"][i],
      "mean_field_explode": rows_of["mean_field/explode"][i],
      "critical": rows_of["mean_field/critical"][i],
      "finite_vanish": rows_of["mean_field_finite/vanish"][i],
      "finite_explode": rows_of["mean_field_finite/explode"][i],
    }
    for name, column in (("diff", ""), ("diff_finite", "finite_")):
      for key in ("vanish", "explode"):
        row[f"{column}{key}_diff_sigma_w2"] = rows_of[f"{name}/{key}_sigma_w2"][i]
        row[f"{column}{key}_diff_cells"] = rows_of[f"{name}/{key}_cells"][i]
    row["critical_between"] = bool(rows_of["critical_between"][i])
    rows.append(row)
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
  """The stored run of ``args``' config, computed first if needed, block of σ_b² rows by block.

  Each block is a saved chunk, so a killed run resumes from its last finished block; the
  run joins the blocks' rows into whole arrays (:func:`assemble`).
  """
  blocks = row_blocks(args.sizes["sigma_b2_points"], args.rows_per_chunk)

  def combine(results: list) -> dict:
    return assemble(args, blocks, {k: v for r in results for k, v in r["arrays"].items()})

  return cached_run(
    args.out,
    "phase_map",
    config_of(args),
    lambda block: run_block(args, block),
    table="boundaries",
    force=args.force,
    chunks=blocks,
    combine=combine,
  )


ensure = default_ensure(parse_args, cached)


def main(argv: Sequence[str] | None = None) -> int:
  args = parse_args(argv)
  path = cached(args)
  summarize(path, args)
  return 0


if __name__ == "__main__":
  sys.exit(main())
