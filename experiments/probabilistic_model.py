"""How likely is vanishing? The probabilistic model at the usual initializations.

For sigmoid, tanh, tanh(2x), ReLU and LeCun's tanh this samples

* the one-neuron chain of the seed analysis (Nielsen ch. 5: w, b ~ N(0, 1), inputs
  x ~ N(0, 1)) and its per-layer log-factors, and
* full-width networks at their usual initialization, recording the backpropagated
  ``log ‖δ^l‖`` relative to the last layer,

and writes, per depth: moments, quantiles, ``P(|g| < ε)`` and ``P(|g| > 1/ε)``
with 95 % Wilson intervals, the CLT (independent-layer) prediction and its
correlation excess, the joint density of a layer's pre-activation and weight
with the final product, and the fraction of tanh(2x) pre-activations inside
``[−t1, t1]``.

Run:  python -m experiments.probabilistic_model --quick   (about 30 s on 2 CPU cores)
Results: results/probabilistic_model/<config hash>/ (arrays.npz, summary.csv, run.json).
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
from experiments._common import cached_run, experiment_parser, positive_int
from vanish import probability, store, theory

# name -> (activation, full-width weights, full-width biases): the usual initializations.
ACTIVATIONS = {
  "sigmoid": ("sigmoid", vn.init.gaussian(1.0), vn.init.normal(1.0)),  # Nielsen ch. 3
  "tanh": ("tanh", vn.init.gaussian(1.0), vn.init.zeros()),  # LeCun
  "tanh2x": (vn.activations.scaled_tanh(2.0), vn.init.gaussian(1.0), vn.init.zeros()),
  "relu": ("relu", vn.init.he(), vn.init.zeros()),  # He
  "lecun_tanh": ("lecun_tanh", vn.init.gaussian(1.0), vn.init.zeros()),  # Efficient BackProp
}
SIZES = {
  "quick": {"chain_members": 4096, "chain_inputs": 4, "width": 64, "members": 64, "inputs": 4},
  # full: 128 × 50 × 256² weights = 1.7 GB (512 members OOMs a 24 GB host: no chunking yet, issue 7)
  "full": {"chain_members": 65536, "chain_inputs": 16, "width": 256, "members": 128, "inputs": 16},
}


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
  parser = experiment_parser(
    __doc__, quick_help="small ensembles (CPU, CI)", full_help="paper-scale ensembles (one GPU)"
  )
  parser.add_argument("--depth", type=positive_int, default=50, help="chain depth L (default 50)")
  parser.add_argument(
    "--epsilon",
    type=float,
    default=1e-3,
    help="vanished if |g| < ε, exploded if |g| > 1/ε (default 1e-3)",
  )
  parser.add_argument(
    "--activations",
    nargs="+",
    default=list(ACTIVATIONS),
    choices=list(ACTIVATIONS),
    help="which activations (default all)",
  )
  args = parser.parse_args(argv)
  if not 0 < args.epsilon < 1:
    parser.error(f"--epsilon must be in (0, 1), got {args.epsilon}")
  return args


def _chain_samples(name, depth, sizes, key):
  activation, _, _ = ACTIVATIONS[name]
  net = vn.MLP([1] * (depth + 1), activation, vn.init.normal(1.0), vn.init.normal(1.0))
  params = net.init(jax.random.fold_in(key, 0), members=sizes["chain_members"])
  x = jax.random.normal(jax.random.fold_in(key, 1), (sizes["chain_inputs"], 1))
  log_f, pre, weights = probability.scalar_chain_log_factors(net, params, x)
  weights = jnp.broadcast_to(weights, pre.shape)
  return [np.asarray(a, np.float64).reshape(-1, depth) for a in (log_f, pre, weights)]


def _layer_samples(name, depth, sizes, key):
  activation, weights, biases = ACTIVATIONS[name]
  width = sizes["width"]
  net = vn.MLP([width] * (depth + 1), activation, weights, biases)
  params = net.init(jax.random.fold_in(key, 2), members=sizes["members"])
  x = jax.random.normal(jax.random.fold_in(key, 3), (sizes["inputs"], width))
  cotangent = jax.random.normal(jax.random.fold_in(key, 4), (sizes["inputs"], width))
  log_norms = np.asarray(vn.log_gradient_norms(net, params, x, cotangent), np.float64)
  log_norms = log_norms.reshape(-1, depth)
  # depth K = number of layers the gradient crossed: layer L−K+1 relative to layer L.
  return (log_norms - log_norms[:, -1:])[:, ::-1]


def run(args: argparse.Namespace, names: Sequence[str]) -> dict:
  """Samples and summarizes the activations ``names`` (a chunk of ``args.activations``)."""
  sizes = SIZES[args.size]
  depth, key = args.depth, jax.random.key(args.seed)
  t1 = theory.scaled_tanh_vanish_threshold(2.0, depth=2)
  arrays, rows = {}, []
  for name in names:
    member_key = jax.random.fold_in(key, args.activations.index(name))
    log_f, pre, weights = _chain_samples(name, depth, sizes, member_key)
    log_g = np.cumsum(log_f, axis=1)
    for chain, samples in (
      ("scalar", log_g),
      ("layers", _layer_samples(name, depth, sizes, member_key)),
    ):
      summary = probability.summarize(samples, epsilon=args.epsilon)
      for field in (
        "mean",
        "std",
        "quantiles",
        "p_vanish",
        "p_vanish_ci",
        "p_explode",
        "p_explode_ci",
        "p_zero",
        "histogram",
        "density",
        "bin_edges",
        "density_grid",
      ):
        arrays[f"{name}/{chain}/{field}"] = getattr(summary, field)
      for k in range(depth):
        rows.append(
          {
            "activation": name,
            "chain": chain,
            "depth": k + 1,
            "mean_log_g": summary.mean[k],
            "std_log_g": summary.std[k],
            "p_vanish": summary.p_vanish[k],
            "p_vanish_lo": summary.p_vanish_ci[k, 0],
            "p_vanish_hi": summary.p_vanish_ci[k, 1],
            "p_explode": summary.p_explode[k],
            "p_explode_lo": summary.p_explode_ci[k, 0],
            "p_explode_hi": summary.p_explode_ci[k, 1],
          }
        )
    finite = np.isfinite(log_f).all(axis=1)
    if finite.sum() > 2:
      clt = probability.clt_prediction(log_f[finite], epsilon=args.epsilon)
      for field in ("mean", "var_independent", "var_observed", "correlation_excess", "p_vanish"):
        arrays[f"{name}/clt/{field}"] = getattr(clt, field)
    middle = depth // 2
    for label, values in (("preactivation", pre[:, middle]), ("weight", weights[:, middle])):
      if np.isfinite(log_g[:, -1]).sum() > 10:
        density, x_edges, g_edges = probability.joint_histogram(values, log_g[:, -1], bins=50)
        arrays[f"{name}/joint_{label}/density"] = density
        arrays[f"{name}/joint_{label}/x_edges"] = x_edges
        arrays[f"{name}/joint_{label}/log_g_edges"] = g_edges
    arrays[f"{name}/inside_t1_fraction"] = probability.inside_fraction(pre, t1)
    arrays[f"{name}/t1_tanh2x"] = np.asarray(t1)
  return {"arrays": arrays, "rows": rows}


def cached(args: argparse.Namespace) -> Path:
  """The stored run of ``args``' config, computed first (one chunk per activation) if needed."""
  config = {
    "size": args.size,
    **SIZES[args.size],
    "depth": args.depth,
    "epsilon": args.epsilon,
    "activations": args.activations,
    "seed": args.seed,
    "precision": "highest",
  }
  return cached_run(
    args.out,
    "probabilistic_model",
    config,
    lambda name: run(args, [name]),
    table="summary",
    force=args.force,
    chunks=args.activations,
  )


def ensure(size: str = "quick", out: str | Path = "results", *, force: bool = False) -> Path:
  """Runs (or finds) the ``size`` configuration with default options; returns its folder."""
  return cached(parse_args([f"--{size}", "--out", str(out), *(["--force"] if force else [])]))


def main(argv: Sequence[str] | None = None) -> int:
  args = parse_args(argv)
  path = cached(args)
  rows = store.load(path).tables["summary"]
  print(f"\nP(|g| < {args.epsilon:g}) at depth {args.depth} (95% Wilson interval)")
  print(f"{'activation':<12} {'one-neuron chain':>26} {'full width (rel. last layer)':>32}")
  for name in args.activations:
    cells = []
    for chain in ("scalar", "layers"):
      row = next(
        r
        for r in rows
        if r["activation"] == name and r["chain"] == chain and int(r["depth"]) == args.depth
      )
      cells.append(
        f"{float(row['p_vanish']):.4f} [{float(row['p_vanish_lo']):.4f}, "
        f"{float(row['p_vanish_hi']):.4f}]"
      )
    print(f"{name:<12} {cells[0]:>26} {cells[1]:>32}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
