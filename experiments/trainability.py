"""Which tanh networks train? Accuracy over (σ_w², depth) against the mean-field bound 6·ξ_c.

Schoenholz, Gilmer, Ganguli & Sohl-Dickstein (2017), "Deep Information Propagation",
§5 and Fig. 6: tanh networks with σ_b² = 0.05, trained for a fixed budget over a grid
of weight variances σ_w² and depths L, train only where L ≲ 6·ξ_c(σ_w²), ξ_c being the
depth scale over which the correlation of two inputs converges to its fixed point; ξ_c
diverges on the order-to-chaos line χ₁ = 1 (σ_w² ≈ 1.76 for σ_b² = 0.05), so only there
do arbitrarily deep networks train.

Here the task is scikit-learn's bundled 8×8 digits (no download; 10 classes, chance
10 %): networks 64 → n × (L − 1) → 10 with tanh hidden layers, a linear readout,
softmax cross-entropy and mini-batch SGD of fixed learning rate for a fixed number of
epochs (:func:`vanish.training.train`). Every layer, the readout included, draws
``W ~ N(0, σ_w²/fan_in)`` and ``b ~ N(0, σ_b²)``.

One compiled training call per depth trains every cell of the σ_w² axis together: the
ensemble's M = (σ_w² values) × (seeds) members share one network spec, and member
(σ_w², s) has parameters ``√σ_w² · Z_s`` (weights) and ``σ_b · Z'_s`` (biases) with
the same standard-normal draws Z_s for every σ_w² (common random numbers: cells differ
only by the weight scale). Each depth is a chunk of the stored run, so a killed run
resumes. The mean-field ξ_c comes from :func:`vanish.theory.mean_field` on the cell
grid plus points that approach the critical σ_w² from both sides.

Reported: the final training and test accuracy of every cell (mean and range over
seeds; a seed whose training diverged to inf/NaN counts as accuracy 0, and ``diverged``
counts them), and which cells are *trainable* (mean final training accuracy ≥
``--threshold``, default 0.5) above or below the curve L = 6·ξ_c.

Run:  python -m experiments.trainability --quick   (8 σ_w² × 4 depths ≤ 36, width 32, 4 epochs;
      about 20 s on 2 idle CPU cores, mostly compiling one program per depth)
      python -m experiments.trainability --full    (36 σ_w² × 20 depths ≤ 200, width 256,
      3 seeds, 20 epochs; one GPU)
Results: results/trainability/<config hash>/ (arrays.npz, cells.csv, run.json).
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
  TRAIN_SIZE,
  cached_run,
  check_batch_size,
  default_ensure,
  digits_sets,
  experiment_parser,
  positive_float,
  positive_int,
)
from vanish import store, theory, training

SIGMA_B2 = 0.05  # Schoenholz et al. (2017), Fig. 6
CHANCE = 0.1  # 10 balanced classes
SIZES = {
  "quick": {
    "sigma_w2": [0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 3.0, 4.0],
    "depths": [4, 12, 24, 36],
    "width": 32,
    "seeds": 2,
    "epochs": 4,
    "critical_refinements": 2,
  },
  "full": {
    "sigma_w2": [round(0.5 + 0.1 * i, 2) for i in range(36)],
    "depths": list(range(10, 201, 10)),
    "width": 256,
    "seeds": 3,
    "epochs": 20,
    "critical_refinements": 8,
  },
}


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
  parser = experiment_parser(
    __doc__,
    quick_help="8 σ_w² × 4 depths ≤ 36, width 32, 4 epochs (CPU, CI)",
    full_help="36 σ_w² × 20 depths up to 200, width 256, 20 epochs (one GPU)",
  )
  parser.add_argument("--sigma-w2", type=positive_float, nargs="+", help="weight variances")
  parser.add_argument("--depths", type=positive_int, nargs="+", help="depths L (layers)")
  parser.add_argument("--width", type=positive_int, help="hidden width n")
  parser.add_argument("--seeds", type=positive_int, help="networks per cell")
  parser.add_argument("--epochs", type=positive_int, help="training epochs (the fixed budget)")
  parser.add_argument("--learning-rate", type=positive_float, default=0.02, help="SGD η (0.02)")
  parser.add_argument("--batch-size", type=positive_int, default=32, help="default 32")
  parser.add_argument(
    "--train-size", type=TRAIN_SIZE, help="use only the first N training images (tests)"
  )
  parser.add_argument(
    "--threshold",
    type=float,
    default=0.5,
    help="a cell is trainable if its mean final training accuracy is at least this (0.5)",
  )
  args = parser.parse_args(argv)
  if not CHANCE < args.threshold < 1:
    parser.error(f"--threshold must lie in ({CHANCE}, 1) (above chance), got {args.threshold}")
  if args.depths and min(args.depths) < 2:
    parser.error("--depths must be >= 2 (at least one hidden layer)")
  check_batch_size(parser, args)
  return args


def sizes_of(args: argparse.Namespace) -> dict:
  """The size's values with the command-line overrides applied (sorted, duplicates removed)."""
  sizes = dict(SIZES[args.size])
  for name in ("sigma_w2", "depths", "width", "seeds", "epochs"):
    if getattr(args, name) is not None:
      sizes[name] = getattr(args, name)
  sizes["sigma_w2"] = sorted({float(s) for s in sizes["sigma_w2"]})
  sizes["depths"] = sorted({int(d) for d in sizes["depths"]})
  return sizes


def network(width: int, depth: int) -> vn.MLP:
  """64 → width × (depth − 1) → 10: tanh hidden layers, linear readout (logits)."""
  return vn.MLP([64] + [width] * (depth - 1) + [10], "tanh", readout="linear")


def grid_params(
  net: vn.MLP, sigma_w2: Sequence[float], seeds: int, sigma_b2: float, *, key: jax.Array
) -> tuple[dict[str, jax.Array], ...]:
  """Parameters of every (σ_w², seed) cell member, ``net.init``'s layout with M = S × seeds.

  Member ``i · seeds + s`` has weights ``√σ_w²[i] · Z_s / √fan_in`` and biases
  ``√σ_b² · Z'_s``, with standard normals Z_s, Z'_s shared by every σ_w² (common random
  numbers). The draws come from numpy's PCG64 seeded by ``key``'s data and the segment
  index, not from ``net.init``: sampling then compiles no network-sized program per depth
  (``net.init`` took 3–9 s of compilation per network on CPU).

  Args:
    net: the network spec.
    sigma_w2: the S weight variances.
    seeds: draws per weight variance.
    sigma_b2: the bias variance.
    key: a typed key.

  Returns:
    One ``{"w": [M, L_s, fan_out, fan_in], "b": [M, L_s, fan_out]}`` per segment (float32).

  Example:
    >>> import jax, numpy as np
    >>> from experiments import trainability
    >>> net = trainability.network(8, 3)
    >>> p = trainability.grid_params(net, [1.0, 4.0], 3, 0.05, key=jax.random.key(0))
    >>> p[1]["w"].shape                                  # 2 σ_w² × 3 seeds
    (6, 1, 8, 8)
    >>> bool(np.allclose(p[1]["w"][3:], 2 * p[1]["w"][:3]))   # same draws, scaled
    True
  """
  entropy = [int(v) for v in np.asarray(jax.random.key_data(key)).ravel()]
  scale = jnp.sqrt(jnp.asarray(sigma_w2, jnp.float32))
  params = []
  for k, segment in enumerate(net.segments):
    rng = np.random.default_rng([*entropy, k])
    z = rng.standard_normal((seeds, segment.depth, segment.fan_out, segment.fan_in), np.float32)
    b = rng.standard_normal((seeds, segment.depth, segment.fan_out), np.float32)
    w, b = _scale_members(
      jnp.asarray(z / np.float32(math.sqrt(segment.fan_in))),
      jnp.asarray(np.float32(math.sqrt(sigma_b2)) * b),
      scale,
    )
    params.append({"w": w, "b": b})
  return tuple(params)


@jax.jit
def _scale_members(z: jax.Array, b: jax.Array, scale: jax.Array) -> tuple[jax.Array, jax.Array]:
  """``[seeds, ...]`` draws → ``[S · seeds, ...]`` members: weights times ``scale[i]``."""
  count, seeds = scale.shape[0], z.shape[0]
  w = scale[:, None, None, None, None] * z[None]
  b = jnp.broadcast_to(b[None], (count, *b.shape))
  return w.reshape(count * seeds, *z.shape[1:]), b.reshape(count * seeds, *b.shape[2:])


def theory_grid(sigma_w2: Sequence[float], refinements: int) -> np.ndarray:
  """The σ_w² where 6·ξ_c is evaluated: the cells, ``σ_c(1 ± 2^{-k})`` (k = 1..refinements)
  inside their range, and ``σ_c`` itself, where ξ_c = ∞."""
  critical = theory.critical_sigma_w2("tanh", SIGMA_B2)
  low, high = min(sigma_w2), max(sigma_w2)
  near = [critical * (1 + sign * 2.0**-k) for k in range(1, refinements + 1) for sign in (-1, 1)]
  points = [s for s in [*sigma_w2, *near, critical] if low <= s <= high]
  return np.unique(np.asarray(points, np.float64))


def mean_field_xi_c(sigma_w2: Sequence[float]) -> np.ndarray:
  """ξ_c(σ_w²) of tanh at σ_b² = 0.05 (Schoenholz et al. 2017, §3); inf on the critical line."""
  return np.asarray([theory.mean_field("tanh", s, SIGMA_B2).xi_c for s in sigma_w2], np.float64)


def run_depth(args: argparse.Namespace, sizes: dict, depth: int) -> dict:
  """Trains every (σ_w², seed) cell at one depth in one :func:`vanish.training.train` call."""
  train_set, test_set = digits_sets(args)
  s2, seeds = sizes["sigma_w2"], sizes["seeds"]
  net = network(sizes["width"], depth)
  key = jax.random.fold_in(jax.random.key(args.seed), depth)
  params = grid_params(net, s2, seeds, SIGMA_B2, key=jax.random.fold_in(key, 0))
  log = training.train(
    net,
    params,
    train_set,
    test_set,
    key=jax.random.fold_in(key, 1),
    epochs=sizes["epochs"],
    cost="cross_entropy",
    optimizer="sgd",
    learning_rate=args.learning_rate,
    batch_size=args.batch_size,
  ).log
  shape = (len(s2), seeds, -1)  # [S, seeds, 1 + epochs]
  curves = {
    name: getattr(log, name).reshape(shape)
    for name in ("train_accuracy", "test_accuracy", "train_loss")
  }
  xi_c = mean_field_xi_c(s2)
  rows = []
  for i, s in enumerate(s2):
    loss = curves["train_loss"][i, :, -1]
    # A diverged seed (inf/NaN outputs, accuracy NaN) predicts no class: it counts as 0.
    final = np.nan_to_num(curves["train_accuracy"][i, :, -1], nan=0.0)
    test = np.nan_to_num(curves["test_accuracy"][i, :, -1], nan=0.0)
    rows.append(
      {
        "depth": depth,
        "sigma_w2": s,
        "train_accuracy": float(final.mean()),
        "train_accuracy_min": float(final.min()),
        "train_accuracy_max": float(final.max()),
        "test_accuracy": float(test.mean()),
        "train_loss": float(loss.mean()),
        "diverged": int((~np.isfinite(loss)).sum()),
        "xi_c": float(xi_c[i]),
        "six_xi_c": float(6 * xi_c[i]),
        "trainable": int(final.mean() >= args.threshold),
      }
    )
  return {"arrays": {f"depth{depth}/{k}": v for k, v in curves.items()}, "rows": rows}


def run_theory(sizes: dict) -> dict:
  """6·ξ_c on :func:`theory_grid`, the critical σ_w², and the cell grid's ξ_c."""
  grid = theory_grid(sizes["sigma_w2"], sizes["critical_refinements"])
  return {
    "arrays": {
      "theory/sigma_w2": grid,
      "theory/xi_c": mean_field_xi_c(grid),
      "theory/critical_sigma_w2": np.asarray(theory.critical_sigma_w2("tanh", SIGMA_B2)),
      "sigma_w2": np.asarray(sizes["sigma_w2"], np.float64),
      "depths": np.asarray(sizes["depths"], np.int64),
    },
    "rows": [],
  }


def config_of(args: argparse.Namespace) -> dict:
  return {
    "size": args.size,
    **sizes_of(args),
    "sigma_b2": SIGMA_B2,
    "activation": "tanh",
    "data": "digits",
    "train_size": args.train_size,
    "optimizer": "sgd",
    "cost": "cross_entropy",
    "learning_rate": args.learning_rate,
    "batch_size": args.batch_size,
    "threshold": args.threshold,
    "seed": args.seed,
    "precision": "highest",
  }


def cached(args: argparse.Namespace) -> Path:
  """The stored run of ``args``' config; computed first (theory, then one chunk per depth)."""
  sizes = sizes_of(args)

  def compute(chunk):
    return run_theory(sizes) if chunk == "theory" else run_depth(args, sizes, int(chunk))

  return cached_run(
    args.out,
    "trainability",
    config_of(args),
    compute,
    table="cells",
    force=args.force,
    chunks=["theory", *sizes["depths"]],
  )


ensure = default_ensure(parse_args, cached)


def bound_agreement(rows: Sequence[dict]) -> dict[str, int]:
  """Counts of trainable / untrainable cells below (L ≤ 6ξ_c) and above the bound."""
  counts = {"trainable_below": 0, "trainable_above": 0, "untrainable_below": 0}
  counts["untrainable_above"] = 0
  for row in rows:
    below = float(row["depth"]) <= float(row["six_xi_c"])
    kind = "trainable" if int(row["trainable"]) else "untrainable"
    counts[f"{kind}_{'below' if below else 'above'}"] += 1
  return counts


def main(argv: Sequence[str] | None = None) -> int:
  args = parse_args(argv)
  path = cached(args)
  run = store.load(path)
  rows = run.tables["cells"]
  s2 = [float(s) for s in run.arrays["sigma_w2"]]
  depths = [int(d) for d in run.arrays["depths"]]
  print(
    f"\nfinal training accuracy, tanh, σ_b² = {SIGMA_B2}, width {run.config['width']}, "
    f"{run.config['epochs']} epochs of SGD (η = {args.learning_rate}); chance {CHANCE:.0%}"
  )
  print(f"σ_c² = {float(run.arrays['theory/critical_sigma_w2']):.3f} (ξ_c = ∞)")
  header = "L / σ_w²"
  print(f"{header:>9}" + "".join(f"{s:>7.2f}" for s in s2))
  print(f"{'6·ξ_c':>9}" + "".join(f"{6 * x:>7.1f}" for x in mean_field_xi_c(s2)))
  table = {(int(r["depth"]), float(r["sigma_w2"])): r for r in rows}
  for depth in depths:
    cells = []
    for s in s2:
      row = table[(depth, s)]
      mark = "*" if depth > float(row["six_xi_c"]) else " "
      cells.append(f"{float(row['train_accuracy']):>6.2f}{mark}")
    print(f"{depth:>9}" + "".join(cells))
  counts = bound_agreement(rows)
  print("(* : L > 6·ξ_c)")
  print(
    f"trainable (accuracy ≥ {args.threshold:g}): {counts['trainable_below']} cells with "
    f"L ≤ 6·ξ_c, {counts['trainable_above']} with L > 6·ξ_c; untrainable: "
    f"{counts['untrainable_below']} below, {counts['untrainable_above']} above"
  )
  return 0


if __name__ == "__main__":
  sys.exit(main())
