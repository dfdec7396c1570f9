"""Large weights, centered biases (w = 100): exploding gradients at the reference, then training.

The seed's fix for vanishing sigmoid gradients (docs/seed_analysis.md §2): make every weight w = 100
and center the biases, b^1 = −W^1 x_ref and b^l = −W^l σ(0)·1, so that every pre-activation
is 0 at the reference input x_ref (here 0, the mean of the standardized digits). Networks
64 → ``width`` × depth sigmoid layers → 10 linear outputs (``vanish.init.large_centered``),
Nielsen's sigmoid cross-entropy cost on scikit-learn's 8×8 digits.

At x_ref the gradient explodes, exactly: with every z = 0, σ'(0) = 1/4 and constant
weights, δ^L = σ(0)·1 − y has sum s_L = n_L/2 − 1, and going down
δ^l = (w/4)·s_{l+1}·1_{n_l}, s_l = n_l·(w/4)·s_{l+1}, so

    ‖∂C/∂b^l‖ = √n_l · (w/4) · |s_{l+1}|,     ‖δ^1‖ / ‖δ^{L−1}‖ = (n·w/4)^{L−2}

for hidden layers of width n: a factor w/4 = 25 per layer for the one-neuron chain of
the seed (the default, width 1), n times more for width n (the constant matrix has norm n).
This is :func:`reference_speeds` versus :func:`closed_form_speeds`.

On the data, though, z^1 = w·1ᵀx is of order w·‖x‖ and every later layer sees inputs
σ(z) ∈ {0, 1} shifted by −w·n/2: the units saturate, σ'(z) ≈ 0 and the same gradients
VANISH (σ'(wa + b) depends on w). Training then runs with SGD (small η) and with Adam
(which rescales every coordinate, tiny gradients included) and records, per epoch, the
loss, the accuracy, the per-layer speeds ‖∂C/∂b^l‖ (full training set and mini-batch), and
per layer the median |z| and the fraction of (example, unit) pairs with σ'(z) > 10⁻² over
the training set. Constant weights are a symmetric initialization: units of a layer stay
identical under any gradient method, so the network trains as a one-neuron chain whatever
the width, and its ensemble members would be identical (one member per run).

Verdict per run: ``blew up`` (a non-finite loss), ``recovered`` (final training accuracy
≥ 0.5 and the first hidden layer alive: fraction with σ'(z) > 10⁻² at least 0.1), otherwise
``saturated``.

Run:  python -m experiments.large_weights --quick   (5 hidden layers, w = 100, 2 epochs; ~10 s)
      python -m experiments.large_weights --full    (2, 5, 10 hidden, w = 4 and 100, 30 epochs)
Results: results/large_weights/<config hash>/ (arrays.npz, training.csv, run.json).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import vanish as vn
from experiments._common import (
  TRAIN_SIZE,
  add_size_overrides,
  cached_run,
  check_batch_size,
  default_ensure,
  digits_sets,
  experiment_parser,
  positive_float,
  positive_int,
)
from vanish import data, store, training

SIZES = {
  "quick": {"epochs": 2, "depths": [5], "weights": [100.0]},
  "full": {"epochs": 30, "depths": [2, 5, 10], "weights": [4.0, 100.0]},
}
OPTIMIZERS = ("sgd", "adam")
ALIVE = 1e-2  # σ'(z) above this counts as an unsaturated unit (σ' ≤ 1/4)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
  parser = experiment_parser(__doc__, quick_help="CPU, CI (~10 s)", full_help="one GPU")
  add_size_overrides(parser, ["epochs"], table=SIZES, descriptions={"epochs": "training epochs"})
  parser.add_argument(
    "--depths", type=positive_int, nargs="+", help="numbers of hidden layers (default by size)"
  )
  parser.add_argument(
    "--weights", type=positive_float, nargs="+", help="weight values w (default by size)"
  )
  parser.add_argument("--width", type=positive_int, default=1, help="hidden width (default 1)")
  parser.add_argument("--sgd-lr", type=positive_float, default=1e-3, help="SGD η (default 1e-3)")
  parser.add_argument("--adam-lr", type=positive_float, default=1e-3, help="Adam η (default 1e-3)")
  parser.add_argument("--batch-size", type=positive_int, default=10, help="default 10")
  parser.add_argument(
    "--train-size", type=TRAIN_SIZE, help="use only the first N training images (tests)"
  )
  args = parser.parse_args(argv)
  check_batch_size(parser, args)
  return args


def network(depth: int, width: int = 1, weight: float = 100.0) -> vn.MLP:
  """64 → ``width`` × ``depth`` sigmoid layers → 10 linear outputs, all weights = ``weight``.

  Example:
    >>> network(5).widths
    (64, 1, 1, 1, 1, 1, 10)
  """
  weights, biases = vn.init.large_centered(weight, reference=0.0)
  return vn.MLP([64] + [width] * depth + [10], "sigmoid", weights, biases, readout="linear")


def init_params(net: vn.MLP) -> tuple[dict[str, jax.Array], ...]:
  """One member of ``net``'s centered parameters, every pre-activation 0 at x_ref = 0.

  ``net.init`` centers the linear readout with its own activation's value at 0 (0, not
  σ(0) = 1/2), so the readout bias is set here to ``−W^L σ(0)·1``.

  Example:
    >>> params = init_params(network(3, width=2, weight=100.0))
    >>> params[-1]["b"][0, 0, :3].tolist()   # −100 · 2 · 1/2
    [-100.0, -100.0, -100.0]
  """
  params = list(net.init(jax.random.key(0), 1))
  readout = params[-1]
  w = readout["w"][:, -1]  # [1, n_L, n_{L−1}]
  bias = -0.5 * jnp.sum(w, axis=-1)
  params[-1] = {"w": readout["w"], "b": readout["b"].at[:, -1].set(bias)}
  return tuple(params)


def closed_form_speeds(widths: Sequence[int], weight: float) -> np.ndarray:
  """Exact ``‖∂C/∂b^l‖``, l = 1..L, at x_ref for :func:`network` (sigmoid cross-entropy).

  Args:
    widths: ``[n_0, …, n_L]``.
    weight: w.

  Returns:
    ``[L]`` float64, independent of the label: ``‖δ^L‖ = √n_L / 2`` and, for l < L,
    ``√n_l · (w/4) · |s_{l+1}|`` with ``s_L = n_L/2 − 1`` and ``s_l = n_l (w/4) s_{l+1}``.

  Example:
    >>> closed_form_speeds([64, 1, 1, 1, 10], 100.0).tolist()   # 4·25³, 4·25², 4·25, √10/2
    [62500.0, 2500.0, 100.0, 1.5811388300841898]
  """
  n = np.asarray(widths, np.float64)
  depth = len(n) - 1
  speeds = np.empty(depth)
  speeds[-1] = np.sqrt(n[-1]) / 2
  s = n[-1] / 2 - 1
  for l in range(depth - 1, 0, -1):  # layer l (1-based) has width n[l]
    speeds[l - 1] = np.sqrt(n[l]) * weight / 4 * abs(s)
    s = n[l] * weight / 4 * s
  return speeds


def reference_speeds(net: vn.MLP, params) -> np.ndarray:
  """Measured ``‖∂C/∂b^l‖`` at x_ref = 0 (label 0) by autodiff: ``[L]``."""
  x = np.zeros((1, net.widths[0]), np.float32)
  bias, _ = training.gradient_norms(
    net, params, data.Dataset(x, np.zeros(1, np.int32)), cost="sigmoid_cross_entropy"
  )
  return np.asarray(bias[0], np.float64)


def saturation(params, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Per hidden layer, over the examples ``x`` ``[N, n_0]``: median |z| and alive fraction.

  A float64 NumPy forward pass of ONE member; "alive" = share of (example, unit) with
  σ'(z) > :data:`ALIVE`. Returns two ``[L − 1]`` arrays.
  """
  layers = [
    (np.asarray(s["w"][0, i], np.float64), np.asarray(s["b"][0, i], np.float64))
    for s in params
    for i in range(np.shape(s["w"])[1])
  ]
  h = np.asarray(x, np.float64)
  median, alive = [], []
  for w, b in layers[:-1]:
    z = h @ w.T + b[None, :]
    h = 0.5 * (1 + np.tanh(z / 2))  # σ(z), overflow-free
    median.append(np.median(np.abs(z)))
    alive.append(np.mean(h * (1 - h) > ALIVE))
  return np.asarray(median), np.asarray(alive)


def verdict(train_loss: np.ndarray, train_accuracy: float, alive_first: float) -> str:
  """``"blew up"``, ``"recovered"`` or ``"saturated"`` (thresholds in the module docstring).

  Example:
    >>> verdict(np.array([1.0, np.nan]), 0.1, 0.0), verdict(np.array([1.0]), 0.9, 0.5)
    ('blew up', 'recovered')
  """
  if not np.all(np.isfinite(train_loss)):
    return "blew up"
  return "recovered" if train_accuracy >= 0.5 and alive_first >= 0.1 else "saturated"


def run(args: argparse.Namespace, sizes: dict, chunk: tuple[int, float]) -> dict:
  """Reference gradients, then SGD and Adam training, for one (depth, w)."""
  depth, weight = chunk
  train_set, test_set = digits_sets(args)
  net = network(depth, args.width, weight)
  params = init_params(net)
  tag = f"d{depth}_w{weight:g}"
  measured = reference_speeds(net, params)
  exact = closed_form_speeds(net.widths, weight)
  arrays = {f"{tag}/reference_speed": measured, f"{tag}/reference_closed_form": exact}
  rows = []
  for name in OPTIMIZERS:
    lr = args.sgd_lr if name == "sgd" else args.adam_lr
    result = training.train(
      net,
      params,
      train_set,
      test_set,
      key=jax.random.fold_in(jax.random.key(args.seed), depth),
      epochs=sizes["epochs"],
      cost="sigmoid_cross_entropy",
      optimizer=name,
      learning_rate=lr,
      batch_size=args.batch_size,
      eval_speeds=True,
    )
    log = result.log
    arrays |= {f"{tag}/{name}/{k}": v for k, v in log.arrays().items()}
    sat0 = saturation(params, train_set.x)
    sat1 = saturation(result.params, train_set.x)
    arrays |= {
      f"{tag}/{name}/median_abs_z": np.stack([sat0[0], sat1[0]]),  # [init/end, L−1]
      f"{tag}/{name}/alive_fraction": np.stack([sat0[1], sat1[1]]),
    }
    final = verdict(log.train_loss[0], float(log.train_accuracy[0, -1]), float(sat1[1][0]))
    for epoch in range(log.train_loss.shape[1]):
      speeds = log.eval_bias_speed[0, epoch]
      rows.append(
        {
          "depth": depth,
          "weight": weight,
          "optimizer": name,
          "learning_rate": lr,
          "epoch": epoch,
          "train_loss": float(log.train_loss[0, epoch]),
          "train_accuracy": float(log.train_accuracy[0, epoch]),
          "test_accuracy": float(log.test_accuracy[0, epoch]),
          "speed_first_hidden": float(speeds[0]),
          "speed_last_hidden": float(speeds[-2]),
          "speed_output": float(speeds[-1]),
          "reference_ratio_first_last": float(measured[0] / measured[-2]),
          "closed_form_ratio_first_last": float(exact[0] / exact[-2]),
          "verdict": final,
        }
      )
  return {"arrays": arrays, "rows": rows}


def sizes_of(args: argparse.Namespace) -> dict:
  sizes = dict(SIZES[args.size])
  sizes.update({k: getattr(args, k) for k in ("epochs", "depths", "weights") if getattr(args, k)})
  args.depths, args.weights = sizes["depths"], [float(w) for w in sizes["weights"]]
  return sizes


def cached(args: argparse.Namespace) -> Path:
  """The stored run of ``args``' config, computed first (one chunk per (depth, w)) if needed."""
  sizes = sizes_of(args)
  config = {
    "size": args.size,
    **sizes,
    "width": args.width,
    "init": "large_centered(w, reference=0): W = w, z = 0 at x_ref (readout re-centered)",
    "cost": "sigmoid_cross_entropy",
    "optimizers": {"sgd": args.sgd_lr, "adam": args.adam_lr},
    "batch_size": args.batch_size,
    "train_size": args.train_size,
    "members": 1,
    "alive_threshold": ALIVE,
    "data": "sklearn digits 8x8, standardized, 20% test",
    "seed": args.seed,
    "precision": "highest",
  }
  chunks = [(d, w) for d in sizes["depths"] for w in args.weights]
  return cached_run(
    args.out,
    "large_weights",
    config,
    lambda chunk: run(args, sizes, chunk),
    table="training",
    force=args.force,
    chunks=chunks,
  )


ensure = default_ensure(parse_args, cached)


def main(argv: Sequence[str] | None = None) -> int:
  args = parse_args(argv)
  sizes = sizes_of(args)
  path = cached(args)
  run_ = store.load(path)
  rows = run_.tables["training"]
  last = sizes["epochs"]
  print(f"\nSigmoid, width {args.width}, all weights w, biases centered at x_ref = 0 (digits)")
  for depth in args.depths:
    for weight in args.weights:
      tag = f"d{depth}_w{weight:g}"
      measured = run_.arrays[f"{tag}/reference_speed"]
      exact = run_.arrays[f"{tag}/reference_closed_form"]
      print(
        f"\n{depth} hidden, w = {weight:g}: at x_ref ‖δ^1‖/‖δ^last hidden‖ = "
        f"{measured[0] / measured[-2]:.4g} (closed form {exact[0] / exact[-2]:.4g}; "
        f"max rel. error {np.max(np.abs(measured / exact - 1)):.1e})"
      )
      for name in OPTIMIZERS:
        select = [
          r
          for r in rows
          if int(r["depth"]) == depth and float(r["weight"]) == weight and r["optimizer"] == name
        ]
        init, end = select[0], select[last]
        alive = run_.arrays[f"{tag}/{name}/alive_fraction"]
        print(
          f"  {name:<4} η={float(init['learning_rate']):g}: train acc "
          f"{float(init['train_accuracy']):.3f} → {float(end['train_accuracy']):.3f}, "
          f"‖∂C/∂b^1‖ on data {float(init['speed_first_hidden']):.3g} → "
          f"{float(end['speed_first_hidden']):.3g}, alive layer 1 {alive[0, 0]:.3f} → "
          f"{alive[1, 0]:.3f}: {end['verdict']}"
        )
  return 0


if __name__ == "__main__":
  sys.exit(main())
