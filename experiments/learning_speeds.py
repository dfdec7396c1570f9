"""Nielsen's learning speeds: per-layer ‖∂C/∂b^l‖ at initialization and during training.

Nielsen (*Neural Networks and Deep Learning*, ch. 5) trains sigmoid networks with 2, 3
and 4 hidden layers of 30 units (weights N(0, 1/n_in), biases N(0, 1), cross-entropy
cost, mini-batch SGD with η = 0.1 and batches of 10) and finds the first hidden layer
learning far slower than the last: on MNIST at initialization the speeds are
[0.012, 0.060], [0.012, 0.060, 0.283] and [0.003, 0.017, 0.070, 0.285].

This script repeats that on scikit-learn's bundled 8×8 digits (no download) for an
ensemble of networks per setting, with the same initialization for sigmoid, tanh, ReLU,
LeCun's 1.7159·tanh(2x/3) and tanh(2x) hidden layers (every activation starts from the
same weights and biases). The speed of layer l is measured as Nielsen does, from the
gradient of the cost averaged over the training set, at initialization and after every
epoch; the mini-batch speeds of the very gradients that SGD applies are logged too
(epoch means). Reported per setting: the speeds of the hidden layers, and the ratio of the
first to the last hidden layer's speed (geometric mean over members; < 1 means the early
layer learns slower).

Run:  python -m experiments.learning_speeds --quick   (2 and 4 hidden layers, 2 epochs, 4 nets)
      python -m experiments.learning_speeds --full    (2, 3, 4 hidden layers, 30 epochs, 32 nets)
Results: results/learning_speeds/<config hash>/ (arrays.npz, speeds.csv, run.json).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import jax

import vanish as vn
from experiments._common import (
  add_size_overrides,
  cached_run,
  default_ensure,
  digits_sets,
  experiment_parser,
  first_last_ratio,
  integer,
  parse_sgd_args,
  positive_int,
)
from vanish import store, training

ACTIVATIONS = {
  "sigmoid": "sigmoid",
  "tanh": "tanh",
  "relu": "relu",
  "lecun_tanh": "lecun_tanh",
  "tanh2x": vn.activations.scaled_tanh(2.0),
}
# Nielsen ch. 5, MNIST at initialization: speeds of the hidden layers, first to last.
NIELSEN_SIGMOID = {2: [0.012, 0.060], 3: [0.012, 0.060, 0.283], 4: [0.003, 0.017, 0.070, 0.285]}
# Small nets on CPU: the time goes into compiling one program per (activation, depth).
SIZES = {
  # quick: the other activations only at the deepest net (what F1 compares), sigmoid at all
  "quick": {"epochs": 2, "members": 4, "hidden": [2, 4], "compare_deepest_only": True},
  "full": {"epochs": 30, "members": 32, "hidden": [2, 3, 4], "compare_deepest_only": False},
}
HIDDEN_WIDTH = 30


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
  parser = experiment_parser(__doc__, quick_help="CPU, CI", full_help="as Nielsen")
  add_size_overrides(
    parser,
    ["epochs", "members"],
    {"members": integer(2)},  # >= 2: t intervals over members
    table=SIZES,
    descriptions={"epochs": "training epochs", "members": "networks in the ensemble"},
  )
  parser.add_argument(
    "--hidden",
    type=positive_int,
    nargs="+",
    help="numbers of hidden layers (default: 2 4 for --quick, 2 3 4 for --full)",
  )
  parser.add_argument(
    "--activations",
    nargs="+",
    default=list(ACTIVATIONS),
    choices=list(ACTIVATIONS),
    help="hidden-layer activations (default all)",
  )
  return parse_sgd_args(parser, argv)


def network(activation: str, hidden: int) -> vn.MLP:
  """Nielsen's network on 8×8 digits: 64 → 30 × hidden → 10 (linear readout for the cost)."""
  return vn.MLP(
    [64] + [HIDDEN_WIDTH] * hidden + [10],
    ACTIVATIONS[activation],
    weights=vn.init.gaussian(1.0),  # N(0, 1/n_in)
    biases=vn.init.normal(1.0),  # N(0, 1)
    readout="linear",  # σ(z^L) enters through the sigmoid cross-entropy
  )


def _train(args, sizes, name, hidden, params, train_set, test_set) -> training.Log:
  return training.train(
    network(name, hidden),
    params,
    train_set,
    test_set,
    key=jax.random.fold_in(jax.random.key(args.seed), 1000 + hidden),
    epochs=sizes["epochs"],
    cost="sigmoid_cross_entropy",
    optimizer="sgd",
    learning_rate=args.learning_rate,
    batch_size=args.batch_size,
    eval_speeds=True,  # Nielsen's full-set speeds at initialization and after each epoch
  ).log


def _rows(name: str, hidden: int, log: training.Log) -> list[dict]:
  full, mini = log.eval_bias_speed, log.bias_speed  # [M, T+1, L], [M, T, L]
  ratio, mini_ratio = first_last_ratio(full), first_last_ratio(mini)
  rows = []
  for epoch in range(full.shape[1]):
    mean = full[:, epoch].mean(axis=0)
    row = {"activation": name, "hidden_layers": hidden, "epoch": epoch}
    row |= {f"speed_h{l + 1}": mean[l] for l in range(hidden)}
    row["speed_output"] = mean[-1]
    row["ratio_first_last"] = ratio[epoch]
    row["minibatch_ratio_first_last"] = mini_ratio[epoch - 1] if epoch else ""
    row["train_loss"] = log.train_loss[:, epoch].mean()
    row["test_accuracy"] = log.test_accuracy[:, epoch].mean()
    rows.append(row)
  return rows


def run(args: argparse.Namespace, sizes: dict, hidden_layers: Sequence[int]) -> dict:
  """Trains every activation at each depth in ``hidden_layers`` (a chunk of ``args.hidden``)."""
  train_set, test_set = digits_sets(args)
  key = jax.random.key(args.seed)
  arrays, rows = {}, []
  for hidden in hidden_layers:
    # one draw of weights and biases per depth, shared by every activation
    params = network("sigmoid", hidden).init(jax.random.fold_in(key, hidden), sizes["members"])
    deepest = hidden == max(sizes["hidden"])
    for name in args.activations:
      if sizes["compare_deepest_only"] and not deepest and name != "sigmoid":
        continue
      log = _train(args, sizes, name, hidden, params, train_set, test_set)
      arrays |= {f"{name}/hidden{hidden}/{k}": v for k, v in log.arrays().items()}
      rows += _rows(name, hidden, log)
  return {"arrays": arrays, "rows": rows}


def sizes_of(args: argparse.Namespace) -> dict:
  sizes = dict(SIZES[args.size])
  sizes.update({k: getattr(args, k) for k in ("epochs", "members", "hidden") if getattr(args, k)})
  args.hidden = sizes["hidden"]
  return sizes


def cached(args: argparse.Namespace) -> Path:
  """The stored run of ``args``' config, computed first (one chunk per depth) if needed."""
  sizes = sizes_of(args)
  config = {
    "size": args.size,
    **sizes,
    "hidden_width": HIDDEN_WIDTH,
    "activations": args.activations,
    "init": "weights N(0, 1/n_in), biases N(0, 1)",
    "cost": "sigmoid_cross_entropy",
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
    "learning_speeds",
    config,
    lambda hidden: run(args, sizes, [hidden]),
    table="speeds",
    force=args.force,
    chunks=sizes["hidden"],
  )


ensure = default_ensure(parse_args, cached)


def main(argv: Sequence[str] | None = None) -> int:
  args = parse_args(argv)
  sizes = sizes_of(args)
  path = cached(args)
  rows = store.load(path).tables["speeds"]
  last = sizes["epochs"]
  print(f"\n‖∂C/∂b^l‖ of the hidden layers (mean of {sizes['members']} nets), first/last ratio")
  print(
    f"{'activation':<11} {'hidden':>6}  {'at initialization':<36} {'ratio':>7} {'ratio@end':>9}"
  )
  for name in args.activations:
    for hidden in args.hidden:
      select = [r for r in rows if r["activation"] == name and int(r["hidden_layers"]) == hidden]
      if not select:  # not run at this depth (--quick compares at the deepest net only)
        continue
      init, end = select[0], select[last]
      speeds = " ".join(f"{float(init[f'speed_h{l + 1}']):.3f}" for l in range(hidden))
      print(
        f"{name:<11} {hidden:>6}  {speeds:<36} {float(init['ratio_first_last']):>7.3f} "
        f"{float(end['ratio_first_last']):>9.3f}"
      )
  for hidden in args.hidden:
    reference = NIELSEN_SIGMOID.get(hidden)
    if reference and "sigmoid" in args.activations:
      print(
        f"Nielsen (MNIST) sigmoid, {hidden} hidden: {reference}, ratio "
        f"{reference[0] / reference[-1]:.3f}"
      )
  return 0


if __name__ == "__main__":
  sys.exit(main())
