"""Lyapunov spectra of products thousands of layers deep versus Newman's formula.

For products of n × n Gaussian matrices (linear networks, W ~ N(0, 1/n)) this
measures, with Benettin's repeated QR (:func:`vanish.lyapunov_spectrum` with
``refine=False``), the full Lyapunov spectrum at depth L (quick 1,000; full 10,000)
and compares it with Newman's exact exponents (1986;
:func:`vanish.theory.newman_lyapunov`): λ_i = ½[log(2/n) + ψ((n − i + 1)/2)].

Why Benettin's sums: in the QR recursion of a Gaussian product, R_ii² ~ (1/n)
χ²_{n−i+1} independently at every layer (Bartlett decomposition), so
Σ_l log R_ii / L is an unbiased estimate of λ_i at every depth, with standard
deviation √(ψ'((n − i + 1)/2)/(4L)) per product: exactly the L → ∞ quantity (the
spectrum returns these sums sorted, which biases only shallow depths, where the sums
are not yet ordered). The exact log singular values of the product (``refine=True``)
converge to the same exponents, but with a slowly decaying positive bias (the input
direction's overlap with the top singular vector), which the experiment also
measures for the top exponent.

For contrast it runs, at the same width, tanh at criticality (σ_b² = 0.05,
σ_w² = 1.76 on χ₁ = 1, inputs at q*) to depth L and He-initialized ReLU to a
shallower depth (its forward signal drifts by −(5/2) L/n nats in log‖a‖², which a
float32 forward pass cannot follow for ever); the ReLU top exponent is compared with
Hanin's per-layer law, λ₁ = ½ E[log((2/n) χ²(K))], K ~ Binomial(n, ½).

Product m draws its layers from its own key (``fold_in(key, m)``) and the products run
in chunks sized to a quarter of the free memory (:func:`vanish.sharding.members_per_chunk`;
one chunk in ``--quick``; ``--full`` on an 80 GB GPU: 16 products of 10,000 layers, 2.6 GB of
weights, instead of all 64 at once), so the results do not depend on the chunking.

Run:  python -m experiments.lyapunov_depth --quick   (about 10 s on 2 CPU cores)
      python -m experiments.lyapunov_depth --full    (width 64, depth 10,000, one GPU)
Results: results/lyapunov_depth/<config hash>/ (arrays.npz, exponents.csv, run.json).
"""

from __future__ import annotations

import argparse
import functools
import math
import sys
from collections.abc import Sequence
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from scipy import stats

import vanish as vn
from experiments._common import cached_run, default_ensure, experiment_parser, integer, positive_int
from vanish import store, theory

TANH_SIGMA_B2 = 0.05
NETWORKS = ("linear", "tanh", "relu")
SIZES = {
  "quick": {"width": 16, "depth": 1000, "relu_depth": 250, "exact_depth": 250, "members": 16},
  "full": {"width": 64, "depth": 10_000, "relu_depth": 2000, "exact_depth": 1000, "members": 64},
}


def depth_grid(depth: int, points: int = 40) -> np.ndarray:
  """About ``points`` log-spaced depths in [1, depth], always ending at ``depth``.

  Example:
    >>> depth_grid(1000, 4).tolist()
    [1, 10, 100, 1000]
  """
  grid = np.unique(np.round(np.geomspace(1, depth, points)).astype(int))
  return grid


def relu_top_exponent(width: int) -> float:
  """Hanin's top Lyapunov exponent of a width-n He ReLU chain: ½ E[log (2/n) χ²(K) | K ≥ 1].

  Example:
    >>> round(relu_top_exponent(10_000), 4)   # → 0 like −(5/4)/n
    -0.0001
  """
  return 0.5 * theory.relu_gradient_moments([width, width]).log_mean


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
  parser = experiment_parser(
    __doc__,
    quick_help="width 16, depth 1,000 (CPU, CI)",
    full_help="width 64, depth 10,000 (one GPU)",
  )
  parser.add_argument("--width", type=positive_int, help="matrix size n")
  parser.add_argument("--depth", type=positive_int, help="product depth L (linear and tanh)")
  parser.add_argument("--relu-depth", type=positive_int, help="ReLU depth")
  parser.add_argument("--exact-depth", type=positive_int, help="depth of the exact spectrum")
  parser.add_argument("--members", type=integer(2), help="products per network (>= 2: intervals)")
  args = parser.parse_args(argv)
  given = {name for name in SIZES[args.size] if getattr(args, name) is not None}
  for name, value in SIZES[args.size].items():
    if name not in given:
      setattr(args, name, value)
  if args.width < 2:
    parser.error(f"--width must be >= 2, got {args.width}")
  for name in ("relu_depth", "exact_depth"):
    flag = "--" + name.replace("_", "-")
    if name in given and getattr(args, name) > args.depth:
      parser.error(f"{flag} must be in [1, --depth = {args.depth}], got {getattr(args, name)}")
    setattr(args, name, min(getattr(args, name), args.depth))  # a default follows a small --depth
  return args


def _network(name: str, width: int, depth: int) -> tuple[vn.MLP, jax.Array]:
  """The network ``name`` and an input at its fixed point (length 1 where there is none)."""
  if name == "linear":
    return vn.MLP([width] * (depth + 1), "linear", vn.init.gaussian(1.0)), jnp.ones(width)
  if name == "relu":
    return vn.MLP([width] * (depth + 1), "relu", vn.init.he()), jnp.ones(width)
  sigma_w2 = theory.critical_sigma_w2("tanh", TANH_SIGMA_B2)
  q_star = theory.mean_field("tanh", sigma_w2, TANH_SIGMA_B2).q_star
  x = jnp.full((width,), math.sqrt((q_star - TANH_SIGMA_B2) / sigma_w2))
  biases = vn.init.normal(math.sqrt(TANH_SIGMA_B2))
  return vn.MLP([width] * (depth + 1), "tanh", vn.init.gaussian(sigma_w2), biases), x


def mean_interval(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Mean over members (axis 0) and its 95 % Student-t interval, ``[..., 2]``.

  The members' exponents are sums of L independent log R_ii terms, so close to normal,
  but their standard deviation is estimated from M products: t with M − 1 degrees of
  freedom (2.131 for the 16 of ``--quick``; 1.96 would cover 93 %).

  Example:
    >>> mean, ci = mean_interval(np.array([1.0, 2.0, 3.0]))
    >>> float(mean), ci.round(3).tolist()   # 2 ± 4.303 · 1/√3
    (2.0, [-0.484, 4.484])
  """
  values = np.asarray(values, np.float64)
  if values.shape[0] < 2:
    raise ValueError(f"values needs at least 2 members along axis 0, got shape {values.shape}")
  mean = values.mean(0)
  quantile = stats.t.ppf(0.975, values.shape[0] - 1)
  half = quantile * values.std(0, ddof=1) / math.sqrt(values.shape[0])
  return mean, np.stack([mean - half, mean + half], axis=-1)


def _member_bytes(width: int, depth: int) -> int:
  """Device bytes one product needs at once: its weights and biases through the sampler's
  3 buffers (as :func:`vanish.streaming.bytes_per_member` counts them) plus the
  ``[depth, n]`` spectrum, float32."""
  return 4 * (3 * depth * (width * width + width) + 2 * depth * width)


@functools.partial(jax.jit, static_argnums=(1, 3, 4))
def _unit_normals(key: jax.Array, members: int, first: jax.Array, depth: int, width: int):
  """N(0, 1) weights ``[c, depth, n, n]`` and biases ``[c, depth, n]`` of products
  ``first … first + c − 1``; product m draws from ``fold_in(key, m)`` only.

  One compiled sampler for all three networks: they scale the draws, and the shallower
  ReLU chain takes its first layers. Product m's weights are
  ``jax.random.normal(fold_in(fold_in(key, m), 0), (depth, n, n))`` and its biases the
  same with stream 1, drawn for all products at once by :func:`vanish.init.fold_in` and
  :func:`vanish.init.sample` (the same bits as vmapped ``jax.random``, which takes
  seconds to compile on CPU).
  """
  products = vn.init.fold_in(key, first + jnp.arange(members, dtype=jnp.uint32))  # [c]
  streams = vn.init.fold_in(products[:, None], jnp.arange(2, dtype=jnp.uint32)[None, :])
  unit = vn.init.normal(1.0)
  w = vn.init.sample(unit, streams[:, 0], (depth, width, width))
  return w, vn.init.sample(unit, streams[:, 1], (depth, width))


def _params(
  net: vn.MLP, key: jax.Array, members: int, first: int, draw_depth: int
) -> tuple[dict, ...]:
  """Products ``first … first + members − 1`` of ``net`` (one segment, gaussian weights,
  normal or zero biases): the first ``net.depth`` layers of :func:`_unit_normals` at
  ``draw_depth``, scaled."""
  weights, biases = net.weights, net.biases
  zero_biases = biases.name == "zeros" or (biases.name == "constant" and biases.param("value") == 0)
  if weights.name != "gaussian" or not (biases.name == "normal" or zero_biases):
    raise ValueError(f"need gaussian weights and normal or zero biases, got {weights}, {biases}")
  width, depth = net.widths[0], net.depth
  w, b = _unit_normals(key, members, jnp.uint32(first), draw_depth, width)
  w, b = w[:, :depth], b[:, :depth]
  w_std = math.sqrt(weights.param("sigma_w2") / width)
  b_std = 0.0 if zero_biases else biases.param("std")
  return ({"w": w_std * w, "b": b_std * b},)


def run(args: argparse.Namespace, name: str) -> dict:
  """The Lyapunov spectrum of network ``name``, products chunked to fit the free memory.

  Product m draws its layers from ``fold_in(key, m)`` (:func:`_unit_normals`), so the
  results do not depend on the chunking; one chunk covers ``--quick``.
  """
  depth = args.relu_depth if name == "relu" else args.depth
  net, x = _network(name, args.width, depth)
  key = jax.random.fold_in(jax.random.key(args.seed), NETWORKS.index(name))
  grid = depth_grid(depth)
  exact_grid = depth_grid(args.exact_depth)
  exact_net = vn.MLP([args.width] * (args.exact_depth + 1), "linear", vn.init.gaussian(1.0))
  chunk = vn.sharding.members_per_chunk(args.members, _member_bytes(args.width, args.depth))
  final, top, top_exact = [], [], []
  for first in range(0, args.members, chunk):
    params = _params(net, key, chunk, first, args.depth)
    benettin = np.asarray(vn.lyapunov_spectrum(net, params, x, refine=False), np.float64)
    final.append(benettin[:, -1] / depth)  # [c, n]
    top.append(benettin[:, grid - 1, 0] / grid)  # [c, D]
    if name == "linear":  # the exact spectrum of the first layers of the same products
      exact_params = tuple({k: v[:, : args.exact_depth] for k, v in p.items()} for p in params)
      # refined (sweeps and an SVD) at the grid's depths only: the costly part
      depths = exact_grid.tolist()
      exact = vn.lyapunov_spectrum(exact_net, exact_params, x, depths=depths)
      top_exact.append(np.asarray(exact, np.float64)[:, :, 0] / exact_grid)
    del params, benettin
  exponents = np.concatenate(final)  # [M, n]
  mean, ci = mean_interval(exponents)
  top_mean, top_ci = mean_interval(np.concatenate(top))
  arrays = {
    f"{name}/exponents": exponents,
    f"{name}/exponents_mean": mean,
    f"{name}/exponents_ci": ci,
    f"{name}/depths": grid,
    f"{name}/top_benettin_mean": top_mean,
    f"{name}/top_benettin_ci": top_ci,
  }
  predicted = np.full(args.width, np.nan)
  if name == "linear":
    predicted = theory.newman_lyapunov(args.width)
    top_exact_mean, top_exact_ci = mean_interval(np.concatenate(top_exact))
    arrays |= {
      "linear/exact_depths": exact_grid,
      "linear/top_exact_mean": top_exact_mean,
      "linear/top_exact_ci": top_exact_ci,
    }
  elif name == "relu":
    predicted[0] = relu_top_exponent(args.width)
  arrays[f"{name}/theory"] = predicted
  rows = [
    {
      "network": name,
      "depth": depth,
      "index": i + 1,
      "exponent": mean[i],
      "exponent_lo": ci[i, 0],
      "exponent_hi": ci[i, 1],
      "theory": predicted[i],
      "theory_se_per_product": (
        math.sqrt(float(theory_trigamma(args.width - i)) / (4 * depth))
        if name == "linear"
        else math.nan
      ),
    }
    for i in range(args.width)
  ]
  return {"arrays": arrays, "rows": rows}


def theory_trigamma(dof: int) -> float:
  """ψ'(dof/2): 4L × the variance of Benettin's estimate of Newman's exponent with dof = n − i + 1.

  Example:
    >>> round(theory_trigamma(1), 6)   # ψ'(1/2) = π²/2
    4.934802
  """
  from scipy import special

  return float(special.polygamma(1, dof / 2))


def cached(args: argparse.Namespace) -> Path:
  """The stored run of ``args``' config, computed first (one chunk per network) if needed."""
  config = {
    "size": args.size,
    "width": args.width,
    "depth": args.depth,
    "relu_depth": args.relu_depth,
    "exact_depth": args.exact_depth,
    "members": args.members,
    "tanh_sigma_b2": TANH_SIGMA_B2,
    "interval": "student t over members",
    "method": "benettin (refine=False); exact (refine=True) for the linear top exponent",
    "sampling": "product m: N(0, 1) [depth, n, n], [depth, n] from fold_in(fold_in(key, net), m)",
    "seed": args.seed,
    "precision": "highest",
  }
  return cached_run(
    args.out,
    "lyapunov_depth",
    config,
    lambda name: run(args, name),
    table="exponents",
    force=args.force,
    chunks=list(NETWORKS),
  )


ensure = default_ensure(parse_args, cached)


def main(argv: Sequence[str] | None = None) -> int:
  args = parse_args(argv)
  path = cached(args)
  rows = [r for r in store.load(path).tables["exponents"] if r["network"] == "linear"]
  z = [
    (float(r["exponent"]) - float(r["theory"]))
    / (float(r["theory_se_per_product"]) / math.sqrt(args.members))
    for r in rows
  ]
  print(f"\nLinear Gaussian products, n = {args.width}, depth {args.depth}: Benettin vs Newman")
  print(f"{'i':>3} {'measured':>10} {'Newman':>10} {'z':>6}")
  for r, zi in zip(rows, z, strict=True):
    print(f"{r['index']:>3} {float(r['exponent']):>10.5f} {float(r['theory']):>10.5f} {zi:>6.2f}")
  print(f"max |z| = {max(map(abs, z)):.2f} over {len(z)} exponents")
  return 0


if __name__ == "__main__":
  sys.exit(main())
