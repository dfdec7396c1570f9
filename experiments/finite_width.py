"""Finite width: the variance of the log squared gradient of ReLU nets versus Σ 1/n_l (Hanin).

For He-initialized ReLU networks (W^l ~ N(0, 2/n_{l−1}), zero biases) of many width
profiles — constant widths 4 to 16 (quick) at several depths, and non-constant
profiles (bottleneck, funnel, alternating) — this samples the squared input–output
gradient ``‖J u‖²``, J = ∂a^L/∂x = D_L W_L ⋯ D_1 W_1, and compares, against
β = Σ_{l=1}^{L} 1/n_l,

* ``Var[log ‖J u‖²]`` (95 % interval from the fourth-moment formula
  Var(s²) ≈ (m₄ − s⁴)/N) with Hanin's exact finite-width law
  (:func:`vanish.theory.relu_gradient_moments`: ‖Ju‖² is a product of independent
  (2/n_{l−1}) χ²(K_l), K_l ~ Binomial(n_l, ½)) and with its large-width form 5β
  (Hanin 2018; Hanin & Nica 2020);
* the mean of log ‖Ju‖² against the exact law and log(n_L/n₀) − (5/2) β;
* the fraction of networks with a dead layer (J = 0) against 1 − Π(1 − 2^{−n_l}).

What is measured is the forward law ``‖J u‖²`` for a fixed unit u — the one Hanin's
theorem states exactly. The networks have one input (n₀ = 1), so J is a vector and
``‖J‖²`` is literally the squared gradient ∂a^L/∂x; n₀ enters neither the variance
nor β. (For ``‖Jᵀc‖²`` with c uniform on the sphere the law adds ψ'(n₀/2) − ψ'(n_L/2),
a constant that is no depth effect.)

All profiles of one group run as a single network: narrower layers are embedded in
the group's widest one by zero rows and columns (those units have pre-activation 0,
hence ReLU slope 0 and no effect), and shallower networks are continued by identity
layers (ReLU(I a) = a for a ≥ 0, and rows of J for inactive units are already 0).
Both leave J exactly unchanged, so one compiled, vmapped :func:`vanish.jacobian`
call covers every profile. Network m of each profile draws its weights from its own
key (``fold_in(fold_in(key, profile), m)``), and the networks run in chunks of members
sized to a quarter of the free memory (:func:`vanish.sharding.members_per_chunk`; one
chunk in ``--quick``), so the full size never holds every weight at once and the
results do not depend on the chunking.

Run:  python -m experiments.finite_width --quick   (about 10 s on 2 CPU cores)
      python -m experiments.finite_width --full    (widths 8–128, depth ≤ 64, one GPU)
Results: results/finite_width/<config hash>/ (arrays.npz, variance.csv, run.json).
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

import vanish as vn
from experiments._common import cached_run, default_ensure, experiment_parser, integer
from vanish import store, theory


def _constant(widths: Sequence[int], depths: Sequence[int]) -> dict[str, list[int]]:
  return {f"n{n}_L{d}": [n] * d for n in widths for d in depths}


# name -> [n_1, …, n_L] (n_0 = 1); one group = one padded network.
_QUICK = {
  **{f"n4_L{d}": [4] * d for d in (1, 2, 4, 8)},
  **_constant([8, 16], [2, 4, 8, 16]),
  "bottleneck": [16, 16, 16, 4, 16, 16, 16, 4],
  "funnel": [16, 16, 8, 8, 4, 4],
  "alternating": [4, 16] * 4,
}
_FULL = {
  **_constant([8, 16, 32, 64, 128], [4, 16, 64]),
  "bottleneck": ([64] * 7 + [8]) * 4,
  "funnel": [128] * 8 + [64] * 8 + [32] * 8 + [16] * 8,
  "alternating": [8, 64] * 16,
}
SIZES = {
  "quick": {"members": 2000, "profiles": _QUICK, "groups": [list(_QUICK)]},
  "full": {"members": 8192, "profiles": _FULL, "groups": [[name] for name in _FULL]},
}


def beta(widths: Sequence[int]) -> float:
  """β = Σ_{l=1}^{L} 1/n_l for hidden-and-output widths ``[n_1, …, n_L]``.

  Example:
    >>> beta([4, 16] * 4)
    1.25
  """
  return float(sum(1 / n for n in widths))


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
  parser = experiment_parser(
    __doc__,
    quick_help="widths 4-16, depth <= 16, 2000 nets each (CPU, CI)",
    full_help="widths 8-128, depth <= 64, 8192 nets each (one GPU)",
  )
  parser.add_argument(
    "--members", type=integer(2), help="networks per width profile (>= 2: variances)"
  )
  parser.add_argument(
    "--profiles",
    nargs="+",
    help="only these width profiles (names from the size's table, e.g. n8_L4 bottleneck)",
  )
  args = parser.parse_args(argv)
  sizes = SIZES[args.size]
  if args.members is None:
    args.members = sizes["members"]
  known = sizes["profiles"]
  chosen = list(known) if args.profiles is None else args.profiles
  unknown = [p for p in chosen if p not in known]
  if unknown:
    parser.error(f"--profiles: unknown {unknown}; choose from {list(known)}")
  args.profiles = {name: known[name] for name in chosen}
  groups = [[p for p in group if p in args.profiles] for group in sizes["groups"]]
  args.groups = [g for g in groups if g]
  return args


def _padded_params(
  key: jax.Array, profiles: Sequence[Sequence[int]], members: int, *, first: int = 0
) -> tuple:
  """He weights of every profile embedded in one ``[1, N, …, N]`` net: ``[P·M, …]`` params.

  Layer l ≤ L_p of profile p has iid N(0, 2/n_{l−1}) entries in its top-left
  ``n_l × n_{l−1}`` block and zeros elsewhere; layers past L_p are the identity.
  Network m of profile p (members ``first … first + M − 1``) draws from
  ``fold_in(fold_in(key, p), m)``, so chunks of members give the same networks.
  """
  width = max(max(p) for p in profiles)
  depth = max(len(p) for p in profiles)
  fan_in = np.ones((len(profiles), depth))  # n_{l−1}, l = 1..depth
  rows = np.zeros((len(profiles), depth, width))  # 1 on the units n_l of layer l
  identity = np.zeros((len(profiles), depth))
  for i, p in enumerate(profiles):
    for l, n in enumerate(p):
      rows[i, l, :n] = 1
      fan_in[i, l] = 1 if l == 0 else p[l - 1]
    identity[i, len(p) :] = 1
    rows[i, len(p) :] = 1
  columns = np.concatenate([np.ones((len(profiles), 1, width)), rows[:, :-1]], axis=1)
  scale = np.sqrt(2 / fan_in) * (1 - identity)
  first_w, hidden = _draw(key, len(profiles), members, jnp.uint32(first), depth, width)
  mask = (scale[:, 1:, None, None] * rows[:, 1:, :, None] * columns[:, 1:, None, :])[:, None]
  eye = identity[:, None, 1:, None, None] * np.eye(width)
  hidden = hidden * jnp.asarray(mask, hidden.dtype) + jnp.asarray(eye, hidden.dtype)
  first_w = first_w * jnp.asarray(
    (scale[:, :1, None] * rows[:, :1, :])[:, None, :, :, None], first_w.dtype
  )
  flat = (len(profiles) * members,)
  params = [{"w": first_w.reshape(flat + first_w.shape[2:]), "b": jnp.zeros(flat + (1, width))}]
  if depth > 1:
    params.append(
      {"w": hidden.reshape(flat + hidden.shape[2:]), "b": jnp.zeros(flat + (depth - 1, width))}
    )
  return tuple(params), vn.MLP([1] + [width] * depth, "relu", vn.init.he())


@functools.partial(jax.jit, static_argnums=(1, 2, 4, 5))
def _draw(key, profiles: int, members: int, first, depth: int, width: int):
  """Unit normals ``[P, M, 1, N, 1]`` (first layer) and ``[P, M, depth − 1, N, N]``.

  Network m of profile p draws ``jax.random.normal(fold_in(k, 1), (1, N, 1))`` and
  ``jax.random.normal(fold_in(k, 0), (depth − 1, N, N))`` with
  ``k = fold_in(fold_in(key, p), m)``, all networks at once by :func:`vanish.init.fold_in`
  and :func:`vanish.init.sample` (the same bits as vmapped ``jax.random``, which takes
  seconds to compile on CPU).
  """
  index = first + jnp.arange(members, dtype=jnp.uint32)
  per_profile = vn.init.fold_in(key, jnp.arange(profiles, dtype=jnp.uint32))  # [P]
  nets = vn.init.fold_in(per_profile[:, None], index[None, :])  # [P, M]
  streams = vn.init.fold_in(nets[..., None], jnp.arange(2, dtype=jnp.uint32)[None, None, :])
  unit = vn.init.normal(1.0)
  hidden = vn.init.sample(unit, streams[..., 0], (depth - 1, width, width))
  return vn.init.sample(unit, streams[..., 1], (1, width, 1)), hidden


def _member_bytes(width: int, depth: int) -> int:
  """Device bytes one padded network needs at once: its weights through the sampler's ~4
  buffers (as :func:`vanish.streaming.bytes_per_member` counts them), float32."""
  return 4 * 4 * depth * width * (width + 1)


def variance_interval(samples: np.ndarray) -> tuple[float, float, float]:
  """Sample variance with a 95 % interval from Var(s²) ≈ (m₄ − s⁴)/N.

  Example:
    >>> v, lo, hi = variance_interval(np.random.default_rng(0).normal(size=100_000))
    >>> bool(lo < 1 < hi), round(hi - lo, 2)
    (True, 0.02)
  """
  samples = np.asarray(samples, np.float64)
  centered = samples - samples.mean()
  var = centered.var(ddof=1)
  se = math.sqrt(max(np.mean(centered**4) - np.mean(centered**2) ** 2, 0.0) / samples.size)
  return float(var), float(var - 1.96 * se), float(var + 1.96 * se)


def run(args: argparse.Namespace, group: Sequence[str]) -> dict:
  """Samples log ‖Ju‖² for the width profiles of one group (one vmapped call)."""
  profiles = [args.profiles[name] for name in group]
  key = jax.random.fold_in(jax.random.key(args.seed), list(args.profiles).index(group[0]))
  width, depth = max(max(p) for p in profiles), max(len(p) for p in profiles)
  per_member = len(profiles) * _member_bytes(width, depth)  # one member of every profile
  chunk = vn.sharding.members_per_chunk(args.members, per_member)
  squared = []
  for first in range(0, args.members, chunk):
    params, net = _padded_params(key, profiles, chunk, first=first)
    jac = np.asarray(vn.jacobian(net, params, jnp.ones((1,))), np.float64)  # [P·c, N, 1]
    squared.append(np.sum(jac[:, :, 0] ** 2, axis=1).reshape(len(profiles), chunk))
    del params
  squared = np.concatenate(squared, axis=1)  # [P, M]
  arrays, rows = {}, []
  for name, p, sq in zip(group, profiles, squared, strict=True):
    widths = [1, *p]
    law = theory.relu_gradient_moments(widths)
    alive = sq > 0
    logs = np.log(sq[alive])
    var, lo, hi = variance_interval(logs)
    dead = 1 - alive.mean()
    arrays[f"{name}/log_squared_gradient"] = logs
    rows.append(
      {
        "profile": name,
        "widths": " ".join(map(str, widths)),
        "depth": len(p),
        "beta": beta(p),
        "members": args.members,
        "alive": int(alive.sum()),
        "log_var": var,
        "log_var_lo": lo,
        "log_var_hi": hi,
        "theory_log_var": law.log_var,
        "leading_log_var": law.log_var_leading,
        "log_mean": logs.mean(),
        "log_mean_se": logs.std(ddof=1) / math.sqrt(logs.size),
        "theory_log_mean": law.log_mean,
        "leading_log_mean": law.log_mean_leading,
        "log_mean_offset": math.log(widths[-1] / widths[0]),
        "dead_fraction": dead,
        "dead_fraction_se": math.sqrt(dead * (1 - dead) / args.members),
        "theory_dead_probability": law.dead_probability,
      }
    )
  return {"arrays": arrays, "rows": rows}


def cached(args: argparse.Namespace) -> Path:
  """The stored run of ``args``' config, computed first (one chunk per group) if needed."""
  config = {
    "size": args.size,
    "members": args.members,
    "profiles": args.profiles,
    "groups": args.groups,
    "input_width": 1,
    "sampling": "per network: fold_in(fold_in(key, profile), member)",
    "seed": args.seed,
    "precision": "highest",
  }
  return cached_run(
    args.out,
    "finite_width",
    config,
    lambda group: run(args, group),
    table="variance",
    force=args.force,
    chunks=args.groups,
  )


ensure = default_ensure(parse_args, cached)


def main(argv: Sequence[str] | None = None) -> int:
  args = parse_args(argv)
  path = cached(args)
  rows = store.load(path).tables["variance"]
  print("\nVar[log ‖Ju‖²] of He-initialized ReLU nets vs Hanin's law (β = Σ 1/n_l):")
  print(f"{'profile':<12} {'β':>6} {'measured [95% CI]':>24} {'exact':>7} {'5β':>7}")
  for r in sorted(rows, key=lambda r: float(r["beta"])):
    measured = (
      f"{float(r['log_var']):.3f} [{float(r['log_var_lo']):.3f}, {float(r['log_var_hi']):.3f}]"
    )
    print(
      f"{r['profile']:<12} {float(r['beta']):>6.3f} {measured:>24} "
      f"{float(r['theory_log_var']):>7.3f} {float(r['leading_log_var']):>7.3f}"
    )
  return 0


if __name__ == "__main__":
  sys.exit(main())
