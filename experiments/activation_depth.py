"""Activations versus depth: sigmoid, ReLU, tanh(n·x) for n ∈ {0.5, 1, 2, 4} and LeCun tanh trained.

Every activation is trained on scikit-learn's bundled 8×8 digits (no download) at several
depths, from the SAME initial weights and biases per depth (one draw per depth, shared by
every activation: weights N(0, 1/n_in), biases N(0, 1), Nielsen's ch. 5 initialization),
so the activation is the only difference. Since a tanh(n·x) network with parameters α is a
tanh(x) network with parameters n·α (docs/seed_analysis.md §4), the tanh(n·x) rows are also tanh(x)
networks whose hidden-layer weights and biases start n times larger and learn with rate
η·n² (the linear readout keeps its parameters and η). Networks: 64 → 30 × depth hidden
layers → 10 (linear readout, softmax cross-entropy), mini-batch SGD (η = 0.1, batches of
10), an ensemble of members per depth.

Stored per (activation, depth): the training curves (full training and test sets: loss and
accuracy at initialization and after every epoch; the mini-batch loss per epoch), and the
per-layer speeds of learning ‖∂C/∂b^l‖ and ‖∂C/∂W^l‖_F (Nielsen ch. 5), both of the
full-training-set cost at initialization and after every epoch (``eval_*``) and the epoch
means of the mini-batch gradients SGD applied. Summarized: final test accuracy and the ratio
of the first to the last hidden layer's speed (geometric mean over members; < 1 means the
first layer learns slower), at initialization and at the end.

Run:  python -m experiments.activation_depth --quick   (sigmoid, tanh(2x) at depths 5, 20;
                                                          2 epochs; 4 nets; ~30 s CPU, nearly
                                                          all compiling 4 networks)
      python -m experiments.activation_depth --full    (all 7 activations at depths 5, 10, 15,
                                                          20; 30 epochs; 32 nets; one GPU)
Results: results/activation_depth/<config hash>/ (arrays.npz, curves.csv, run.json).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import jax
import numpy as np

import vanish as vn
from experiments._common import (
  add_size_overrides,
  cached_run,
  default_ensure,
  digits_sets,
  experiment_parser,
  first_last_ratio,
  parse_sgd_args,
  positive_int,
)
from vanish import store, training

ACTIVATIONS = {
  "sigmoid": "sigmoid",
  "relu": "relu",
  "tanh0.5x": vn.activations.scaled_tanh(0.5),
  "tanh": "tanh",
  "tanh2x": vn.activations.scaled_tanh(2.0),
  "tanh4x": vn.activations.scaled_tanh(4.0),
  "lecun_tanh": "lecun_tanh",
}
SIZES = {
  # quick: each (activation, depth) compiles its own training program (~4-5 s of CPU each),
  # so the CI size trains two contrasting activations; --activations selects more
  "quick": {"epochs": 2, "members": 4, "depths": [5, 20], "activations": ["sigmoid", "tanh2x"]},
  "full": {
    "epochs": 30,
    "members": 32,
    "depths": [5, 10, 15, 20],
    "activations": list(ACTIVATIONS),
  },
}
HIDDEN_WIDTH = 30
INIT = "weights N(0, 1/n_in), biases N(0, 1), one draw per depth shared by every activation"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
  parser = experiment_parser(__doc__, quick_help="CPU, CI (~30 s)", full_help="one GPU")
  add_size_overrides(
    parser,
    ["epochs", "members"],
    table=SIZES,
    descriptions={"epochs": "training epochs", "members": "networks in the ensemble"},
  )
  parser.add_argument(
    "--depths", type=positive_int, nargs="+", help="numbers of hidden layers (default by size)"
  )
  parser.add_argument(
    "--activations",
    nargs="+",
    choices=list(ACTIVATIONS),
    help="hidden-layer activations (default: sigmoid tanh2x for --quick, all for --full)",
  )
  return parse_sgd_args(parser, argv)


def network(activation: str, depth: int) -> vn.MLP:
  """64 → 30 × ``depth`` hidden layers of ``activation`` → 10 linear outputs.

  Example:
    >>> network("tanh2x", 5).depth   # 5 hidden layers + the readout
    6
  """
  if activation not in ACTIVATIONS:
    raise ValueError(f"activation must be one of {', '.join(ACTIVATIONS)}, got {activation!r}")
  return vn.MLP(
    [64] + [HIDDEN_WIDTH] * depth + [10],
    ACTIVATIONS[activation],
    weights=vn.init.gaussian(1.0),
    biases=vn.init.normal(1.0),
    readout="linear",
  )


def _rows(name: str, depth: int, log: training.Log) -> list[dict]:
  ratio = first_last_ratio(log.eval_bias_speed)
  mini = first_last_ratio(log.bias_speed)
  rows = []
  for epoch in range(log.train_loss.shape[1]):
    speeds = log.eval_bias_speed[:, epoch]
    rows.append(
      {
        "activation": name,
        "depth": depth,
        "epoch": epoch,
        "train_loss": float(np.mean(log.train_loss[:, epoch])),
        "train_accuracy": float(np.mean(log.train_accuracy[:, epoch])),
        "test_loss": float(np.mean(log.test_loss[:, epoch])),
        "test_accuracy": float(np.mean(log.test_accuracy[:, epoch])),
        "test_accuracy_sd": float(np.std(log.test_accuracy[:, epoch])),
        "speed_first_hidden": float(np.mean(speeds[:, 0])),
        "speed_last_hidden": float(np.mean(speeds[:, -2])),
        "speed_output": float(np.mean(speeds[:, -1])),
        "ratio_first_last": float(ratio[epoch]),
        "minibatch_ratio_first_last": float(mini[epoch - 1]) if epoch else "",
      }
    )
  return rows


def run(args: argparse.Namespace, sizes: dict, depth: int) -> dict:
  """Trains every activation at one depth from one shared draw of the parameters."""
  train_set, test_set = digits_sets(args)
  key = jax.random.key(args.seed)
  # one draw per depth; the sampler is shared by every activation (same initializers)
  params = network("sigmoid", depth).init(jax.random.fold_in(key, depth), sizes["members"])
  arrays, rows = {}, []
  for name in args.activations:
    log = training.train(
      network(name, depth),
      params,
      train_set,
      test_set,
      key=jax.random.fold_in(key, 1000 + depth),  # the same batch order for every activation
      epochs=sizes["epochs"],
      cost="cross_entropy",
      optimizer="sgd",
      learning_rate=args.learning_rate,
      batch_size=args.batch_size,
      eval_speeds=True,
    ).log
    arrays |= {f"depth{depth}/{name}/{k}": v for k, v in log.arrays().items()}
    rows += _rows(name, depth, log)
  return {"arrays": arrays, "rows": rows}


def sizes_of(args: argparse.Namespace) -> dict:
  sizes = dict(SIZES[args.size])
  keys = ("epochs", "members", "depths", "activations")
  sizes.update({k: getattr(args, k) for k in keys if getattr(args, k)})
  args.depths, args.activations = sizes["depths"], sizes["activations"]
  return sizes


def cached(args: argparse.Namespace) -> Path:
  """The stored run of ``args``' config, computed first (one chunk per depth) if needed."""
  sizes = sizes_of(args)
  config = {
    "size": args.size,
    **sizes,
    "hidden_width": HIDDEN_WIDTH,
    "init": INIT,
    "cost": "cross_entropy",
    "readout": "linear",
    "optimizer": "sgd",
    "learning_rate": args.learning_rate,
    "batch_size": args.batch_size,
    "train_size": args.train_size,
    "data": "sklearn digits 8x8, standardized, 20% test",
    "seed": args.seed,
    "precision": "highest",
  }
  return cached_run(
    args.out,
    "activation_depth",
    config,
    lambda depth: run(args, sizes, depth),
    table="curves",
    force=args.force,
    chunks=sizes["depths"],
  )


ensure = default_ensure(parse_args, cached)


def main(argv: Sequence[str] | None = None) -> int:
  args = parse_args(argv)
  sizes = sizes_of(args)
  path = cached(args)
  rows = store.load(path).tables["curves"]
  last = sizes["epochs"]
  print(
    f"\nDigits, {sizes['members']} nets per depth, {last} epochs of SGD (η = {args.learning_rate})"
    f"; speed ratio = ‖∂C/∂b^1‖ / ‖∂C/∂b^last hidden‖ (full training set, geometric mean)"
  )
  print(
    f"{'activation':<11} {'depth':>5} {'test acc':>9} {'± sd':>6} {'ratio@init':>11} "
    f"{'ratio@end':>10}"
  )
  for name in args.activations:
    for depth in args.depths:
      select = [r for r in rows if r["activation"] == name and int(r["depth"]) == depth]
      init, end = select[0], select[last]
      print(
        f"{name:<11} {depth:>5} {float(end['test_accuracy']):>9.3f} "
        f"{float(end['test_accuracy_sd']):>6.3f} {float(init['ratio_first_last']):>11.3g} "
        f"{float(end['ratio_first_last']):>10.3g}"
      )
  return 0


if __name__ == "__main__":
  sys.exit(main())
