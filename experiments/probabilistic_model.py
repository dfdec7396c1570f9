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
``[−t1, t1]`` — with, per number k of the L pre-activations inside, how the
product of the activation slopes ``Π φ'(z_j)`` and ``|g_L|`` come out (the seed's
claim that about half of them must be inside for the product not to shrink), and
the mean of ``log |g_L|`` given one layer's pre-activation or weight.

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
from experiments._common import (
  add_epsilon,
  cached_run,
  default_ensure,
  experiment_parser,
  positive_int,
)
from vanish import probability, store, theory

# name -> (activation, full-width weights, full-width biases): the usual initializations.
ACTIVATIONS = {
  "sigmoid": ("sigmoid", vn.init.gaussian(1.0), vn.init.normal(1.0)),  # Nielsen ch. 3
  "tanh": ("tanh", vn.init.gaussian(1.0), vn.init.zeros()),  # LeCun
  "tanh2x": (vn.activations.scaled_tanh(2.0), vn.init.gaussian(1.0), vn.init.zeros()),
  "relu": ("relu", vn.init.he(), vn.init.zeros()),  # He
  "lecun_tanh": ("lecun_tanh", vn.init.gaussian(1.0), vn.init.zeros()),  # Efficient BackProp
}
# One input per network ("chain_inputs" and "inputs" = 1): every sample is an independent
# network, as the Wilson intervals assume. (With 4 inputs sharing one network's weights the
# one-neuron samples were correlated — design effect ≈ 3 on P(|g_5| < ε), so the "95 %"
# intervals covered about 75 %.) The chain draws its own input x_m ~ N(0, 1) per member.
SIZES = {
  "quick": {"chain_members": 16384, "chain_inputs": 1, "width": 64, "members": 256, "inputs": 1},
  # full: members are chunked to a quarter of the free memory (vanish.sharding.members_per_chunk)
  "full": {"chain_members": 1048576, "chain_inputs": 1, "width": 256, "members": 4096, "inputs": 1},
}


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
  parser = experiment_parser(
    __doc__, quick_help="small ensembles (CPU, CI)", full_help="paper-scale ensembles (one GPU)"
  )
  parser.add_argument("--depth", type=positive_int, default=50, help="chain depth L (default 50)")
  add_epsilon(parser, "|g|")
  parser.add_argument(
    "--activations",
    nargs="+",
    default=list(ACTIVATIONS),
    choices=list(ACTIVATIONS),
    help="which activations (default all)",
  )
  return parser.parse_args(argv)


def chain_samples(name: str, depth: int, members: int, key: jax.Array) -> list[np.ndarray]:
  """Independent one-neuron chains: ``(log |f_j|, z_j, w_j)``, each ``[members, depth]``.

  Chain m has its own w, b ~ N(0, 1) and its own input x_m ~ N(0, 1), so the rows are
  iid samples (the Wilson intervals of :func:`vanish.probability.summarize` count them
  as such). The input enters as ``z_1 = (w_1 x_m)·1 + b_1``: the chain is fed x = 1
  through a first weight ``w_1 x_m`` (f_1 = φ'(z_1) has no weight factor), and the
  returned ``w_1`` is the drawn one.

  Example:
    >>> log_f, pre, w = chain_samples("tanh", 3, 5, jax.random.key(0))
    >>> log_f.shape, pre.shape, w.shape
    ((5, 3), (5, 3), (5, 3))
  """
  activation, _, _ = ACTIVATIONS[name]
  net = vn.MLP([1] * (depth + 1), activation, vn.init.normal(1.0), vn.init.normal(1.0))
  params = net.init(jax.random.fold_in(key, 0), members=members)
  # jax.random.normal's bits; init's straight-line threefry compiles in a fraction of the time
  x = vn.init.normal(1.0)(
    jax.random.fold_in(key, 1), (members,), jax.dtypes.canonicalize_dtype(float)
  )
  first = params[0]["w"][:, 0]  # [M, 1, 1], w_1 of every chain
  fed = ({**params[0], "w": params[0]["w"].at[:, 0].set(first * x[:, None, None])},)
  log_f, pre, _ = probability.scalar_chain_log_factors(net, fed + tuple(params[1:]), jnp.ones(1))
  weights = jnp.concatenate([p["w"][..., 0, 0] for p in params], axis=1)  # [M, L], as drawn
  return [np.asarray(a, np.float64).reshape(members, depth) for a in (log_f, pre, weights)]


def _layer_samples(name, depth, sizes, key):
  activation, weights, biases = ACTIVATIONS[name]
  width = sizes["width"]
  net = vn.MLP([width] * (depth + 1), activation, weights, biases)
  # jax.random.normal's bits; init's straight-line threefry compiles in a fraction of the time
  normal, dtype = vn.init.normal(1.0), jax.dtypes.canonicalize_dtype(float)
  x = normal(jax.random.fold_in(key, 3), (sizes["inputs"], width), dtype)
  cotangent = normal(jax.random.fold_in(key, 4), (sizes["inputs"], width), dtype)
  # at most a quarter of the free memory per chunk, by the engine's memory model: the weights
  # count 4 times (the sampler's buffers, and the scan's [M, L] -> [L, M] relayout, measured
  # ~1x the weights at --full), plus the forward trace (512 full-width members at once
  # exceeded a 24 GB host)
  per_member = vn.streaming.bytes_per_member(net, sizes["inputs"])
  chunk = vn.sharding.members_per_chunk(sizes["members"], per_member)
  log_norms = np.concatenate(
    [
      np.asarray(
        vn.log_gradient_norms(
          net,
          net.init(jax.random.fold_in(key, 2), members=chunk, first=start),
          x,
          cotangent,
        ),
        np.float64,
      )
      for start in range(0, sizes["members"], chunk)
    ]
  )
  log_norms = log_norms.reshape(-1, depth)
  # depth K = number of layers the gradient crossed: layer L−K+1 relative to layer L.
  return (log_norms - log_norms[:, -1:])[:, ::-1]


INSIDE_QUANTILES = (0.1, 0.5, 0.9)


def inside_t1_conditional(
  pre: np.ndarray, log_slope: np.ndarray, log_g: np.ndarray, *, half_width: float, epsilon: float
) -> dict[str, np.ndarray]:
  """The one-neuron chain sorted by how many pre-activations lie inside ``[−t, t]``.

  For tanh(2x) and ``t = t1(2)`` every slope inside is at most 2 and every slope
  outside below 1/2 (docs/seed_analysis.md §4), so with k of L inside, ``Π φ'(z_j) < 2^{2k−L}``:
  the per-layer log-rate ``(1/L) Σ log φ'(z_j)`` stays below ``(2k/L − 1) log 2``,
  and the slope product can reach 1 only when at least half are inside.

  Args:
    pre: ``[S, L]`` pre-activations of the chain's L layers.
    log_slope: ``[S, L]`` ``log φ'(z_j)`` (−inf where φ' underflowed).
    log_g: ``[S]`` ``log |g_L|`` of the whole chain (−inf for exact zeros).
    half_width: t ≥ 0.
    epsilon: vanished if ``|g_L| < ε``, in (0, 1).

  Returns:
    Arrays indexed by the count k = 0..L: ``count`` [L+1]; ``trials`` [L+1] samples
    with k inside; ``vanished`` [L+1] of them with ``|g_L| < ε``;
    ``slope_product_at_least_1`` [L+1] of them with ``Π φ'(z_j) ≥ 1``;
    ``slope_rate_quantiles`` and ``log_g_rate_quantiles`` [L+1, 3] the 10/50/90 %
    quantiles of ``(1/L) Σ log φ'(z_j)`` and ``(1/L) log |g_L|`` (NaN where no sample).

  Example:
    >>> pre = np.array([[0.1, 2.0], [0.1, 0.2], [3.0, 3.0]])
    >>> out = inside_t1_conditional(
    ...   pre, np.zeros((3, 2)), np.zeros(3), half_width=0.5, epsilon=1e-3)
    >>> out["trials"].tolist(), out["slope_product_at_least_1"].tolist()
    ([1, 1, 1], [1, 1, 1])
  """
  pre, log_slope = np.asarray(pre, np.float64), np.asarray(log_slope, np.float64)
  log_g = np.asarray(log_g, np.float64)
  if pre.ndim != 2 or log_slope.shape != pre.shape or log_g.shape != pre.shape[:1]:
    raise ValueError(
      f"need pre and log_slope [S, L] and log_g [S], got {pre.shape}, {log_slope.shape}, "
      f"{log_g.shape}"
    )
  depth = pre.shape[1]
  inside = (np.abs(pre) <= half_width).sum(axis=1)
  slope_rate = log_slope.sum(axis=1) / depth
  log_g_rate = log_g / depth
  counts = np.arange(depth + 1)
  trials = np.bincount(inside, minlength=depth + 1)
  vanished = np.bincount(inside, weights=log_g < np.log(epsilon), minlength=depth + 1)
  grows = np.bincount(inside, weights=slope_rate >= 0, minlength=depth + 1)
  quantiles = {"slope_rate_quantiles": slope_rate, "log_g_rate_quantiles": log_g_rate}
  out = {
    "count": counts,
    "trials": trials,
    "vanished": vanished.astype(np.int64),
    "slope_product_at_least_1": grows.astype(np.int64),
  }
  for field, values in quantiles.items():
    table = np.full((depth + 1, len(INSIDE_QUANTILES)), np.nan)
    for k in np.flatnonzero(trials):  # ≤ L + 1 groups, host-side
      table[k] = np.quantile(values[inside == k], INSIDE_QUANTILES, method="inverted_cdf")
    out[field] = table
  return out


CONDITIONAL_EDGES = np.linspace(-4.0, 4.0, 33)


def conditional_log_g(values: np.ndarray, log_g: np.ndarray) -> dict[str, np.ndarray]:
  """E[log|g_L| | value of one layer], pooled over the layers, with its standard error.

  Args:
    values: ``[S, L]`` a per-layer quantity (pre-activation or weight) of S chains.
    log_g: ``[S]`` the chains' ``log |g_L|``; chains with ``−inf`` (exact zeros) are dropped.

  Returns:
    ``edges`` [B + 1] (``CONDITIONAL_EDGES``), ``count`` [B] pairs per bin, ``shift`` [B]
    the bin's mean of ``log |g_L|`` minus the overall mean of the pooled pairs, and ``sem``
    [B] its standard error (NaN for bins with fewer than 2 pairs).

  Example:
    >>> v = np.array([[-1.0, 1.0], [-1.0, 1.0]]); g = np.array([0.0, 2.0])
    >>> out = conditional_log_g(v, g)
    >>> float(np.nansum(out["shift"] * out["count"]))
    0.0
  """
  values, log_g = np.asarray(values, np.float64), np.asarray(log_g, np.float64)
  keep = np.isfinite(log_g)
  values, log_g = values[keep], np.broadcast_to(log_g[keep, None], values[keep].shape)
  inside = (values >= CONDITIONAL_EDGES[0]) & (values < CONDITIONAL_EDGES[-1])
  which = np.digitize(values[inside], CONDITIONAL_EDGES) - 1
  g = log_g[inside]
  bins = CONDITIONAL_EDGES.size - 1
  count = np.bincount(which, minlength=bins)
  total = np.bincount(which, weights=g, minlength=bins)
  squares = np.bincount(which, weights=g**2, minlength=bins)
  with np.errstate(invalid="ignore", divide="ignore"):
    mean = total / count
    var = (squares - count * mean**2) / (count - 1)
    sem = np.where(count > 1, np.sqrt(np.maximum(var, 0) / count), np.nan)
  overall = g.mean() if g.size else np.nan
  return {"edges": CONDITIONAL_EDGES, "count": count, "shift": mean - overall, "sem": sem}


def run(args: argparse.Namespace, names: Sequence[str]) -> dict:
  """Samples and summarizes the activations ``names`` (a chunk of ``args.activations``)."""
  sizes = SIZES[args.size]
  depth, key = args.depth, jax.random.key(args.seed)
  t1 = theory.scaled_tanh_vanish_threshold(2.0, depth=2)
  arrays, rows = {}, []
  for name in names:
    member_key = jax.random.fold_in(key, args.activations.index(name))
    log_f, pre, weights = chain_samples(name, depth, sizes["chain_members"], member_key)
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
    slope = vn.activations.get(ACTIVATIONS[name][0]).derivative(jnp.asarray(pre, jnp.float32))
    with np.errstate(divide="ignore"):  # φ' underflowing to 0 in float32 -> log = −inf
      log_slope = np.log(np.abs(np.asarray(slope, np.float64)))
    conditional = inside_t1_conditional(
      pre, log_slope, log_g[:, -1], half_width=t1, epsilon=args.epsilon
    )
    arrays |= {f"{name}/inside_t1/{k}": v for k, v in conditional.items()}
    for label, values in (("preactivation", pre), ("weight", weights)):
      given = conditional_log_g(values, log_g[:, -1])
      arrays |= {f"{name}/conditional_{label}/{k}": v for k, v in given.items()}
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
    "outputs": 4,  # bumped when the stored arrays change (3: inside_t1/*, conditional_*;
    # 4: one input per network, every sample independent)
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


ensure = default_ensure(parse_args, cached)


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
