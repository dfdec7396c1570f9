"""Where the time of a Jacobian chain goes: experiments that explain ``bench_chains``.

``bench_chains`` measures what users call; this script takes the plain chain and
the one-neuron chain apart to find what their time is spent on, at the same
shapes and on the same weights:

* the device's measured HBM bandwidth (``w + 1`` over the 3.4 GB weight tensor);
* the chain as written (``vmap`` over members of a ``lax.scan`` over layers,
  weights ``[B, L, N, N]``) against the same chain on weights already stored
  layer-major ``[L, B, N, N]`` (a scan of batched matmuls, no relayout), and the
  relayout alone (``swapaxes`` materialized);
* ``vn.jacobian`` through its public entry point against its jitted core
  (the per-call Python validation);
* per-layer orthonormalization options for the spectrum, one layer of the
  ensemble ``[B, N, N]`` times L: ``jnp.linalg.qr`` (Householder via cuSOLVER)
  and CholeskyQR2 (Gram matrix, Cholesky, triangular solve, twice; fast but
  unstable on rank-deficient products, see ``JAX_NOTES.md`` §5);
* the one-neuron chain: as written (scan over ``[M]`` vectors, all ``[M, L]``
  outputs), on layer-major inputs, fully unrolled (one fusion), and keeping only
  the final ``log |g_L|`` (the memory floor without per-layer outputs).

Usage::

  python -m benchmarks.profile_chains --size paper --out benchmarks/results/profile_h100.json
"""

from __future__ import annotations

import functools
import os
import sys
import time
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

import vanish as vn
from benchmarks import bench_chains, common
from vanish import chains as _chains


@functools.partial(jax.jit, static_argnames="precision")
def layer_major_chain(w_t, b_t, x, precision):
  """The chain on weights stored ``[L, B, N, N]``: one scan of batched matmuls."""
  members, n = w_t.shape[1], w_t.shape[-1]

  def layer(carry, wb):
    h, jac = carry
    w_l, b_l = wb
    h = jnp.tanh(jnp.einsum("bij,bj->bi", w_l, h, precision=precision) + b_l)
    jac = (1 - h**2)[:, :, None] * jnp.matmul(w_l, jac, precision=precision)
    return (h, jac), None

  h0 = jnp.broadcast_to(x, (members, n))
  jac0 = jnp.broadcast_to(jnp.eye(n, dtype=x.dtype), (members, n, n))
  (_, jac), _ = lax.scan(layer, (h0, jac0), (w_t, b_t))
  return jac


@jax.jit
def add_one(a):
  return a + 1


@jax.jit
def to_layer_major(a):
  return jnp.swapaxes(a, 0, 1) + 0  # materialized relayout


@jax.jit
def cholesky_qr2(z):
  """CholeskyQR2 of a batch ``[B, N, N]``: returns ``(Q, R)``."""

  def once(a):
    gram = jnp.matmul(jnp.swapaxes(a, -1, -2), a, precision="highest")
    r = jnp.swapaxes(jnp.linalg.cholesky(gram), -1, -2)
    q = jax.lax.linalg.triangular_solve(r, a, left_side=False, lower=False)
    return q, r

  q1, r1 = once(z)
  q, r2 = once(q1)
  return q, jnp.matmul(r2, r1, precision="highest")


@functools.partial(jax.jit, static_argnames=("unroll", "final_only"))
def scalar_chain_layer_major(w_t, b_t, x, *, unroll=1, final_only=False):
  """The one-neuron chain on ``w_t, b_t: [L, M]``; log-space accumulation in the loop."""

  def layer(carry, inputs):
    a, log_abs, sign = carry
    w_l, b_l, first = inputs
    s = jax.nn.sigmoid(w_l * a + b_l)
    factor = s * (1 - s) * jnp.where(first, jnp.ones_like(w_l), w_l)
    log_abs = log_abs + jnp.log(jnp.abs(factor))
    sign = sign * jnp.sign(factor)
    out = None if final_only else (log_abs, sign)
    return (s, log_abs, sign), out

  depth, m = w_t.shape
  zeros = jnp.zeros((m,), w_t.dtype)
  init = (jnp.full((m,), x, w_t.dtype), zeros, zeros + 1)
  first = jnp.arange(depth) == 0
  (_, log_abs, sign), outs = lax.scan(layer, init, (w_t, b_t, first), unroll=unroll)
  return (log_abs, sign) if final_only else outs


def profile_shape(shape: bench_chains.Shape, timed: Any, hlo_dir: str | None) -> dict[str, Any]:
  """The chain and spectrum experiments at one ensemble shape."""
  B, N, L = shape.members, shape.width, shape.depth
  net = vn.MLP(widths=[N] * (L + 1), activation="tanh", weights=vn.init.gaussian(1.0))
  params = net.init(jax.random.key(0), members=B)
  w, b = params[0]["w"], params[0]["b"]
  x = jax.random.normal(jax.random.key(1), (N,), jnp.float32)
  w_t, b_t = common.block((to_layer_major(w), to_layer_major(b)))
  nbytes = w.size * w.dtype.itemsize
  rows = [
    timed("hbm: w + 1 (read + write)", lambda: add_one(w)),
    timed("relayout [B,L,N,N] -> [L,B,N,N]", lambda: to_layer_major(w)),
  ]
  for row in rows:
    row["gbs"] = 2 * nbytes / row["median_s"] / 1e9
  for p in ("highest", "default"):
    rows.append(timed(f"chain vmap(scan) [{p}]", lambda p=p: bench_chains.plain_chain(w, b, x, p)))
    rows.append(timed(f"chain layer-major [{p}]", lambda p=p: layer_major_chain(w_t, b_t, x, p)))
    rows.append(
      timed(f"vn.jacobian public [{p}]", lambda p=p: vn.jacobian(net, params, x, precision=p))
    )
    rows.append(
      timed(
        f"vn.jacobian jitted core [{p}]",
        lambda p=p: _chains._jacobian(net, params, x, None, precision=p, batched=False),
      )
    )
  z = bench_chains.plain_chain(w[:, :1], b[:, :1], x, "highest")
  per_layer = [
    timed("one layer jnp.linalg.qr", lambda: bench_chains.batched_qr(z)),
    timed("one layer CholeskyQR2", lambda: cholesky_qr2(z)),
    timed(
      "one layer D·W·Q matmul [highest]", lambda: bench_chains.batched_matmul(w[:, 0], z, "highest")
    ),
  ]
  for row in per_layer:
    row["median_s_times_L"] = row["median_s"] * L
  if hlo_dir:
    os.makedirs(hlo_dir, exist_ok=True)
    for p in ("highest", "default"):
      for name, fn, args in [
        ("chain", bench_chains.plain_chain, (w, b, x, p)),
        ("chain_layer_major", layer_major_chain, (w_t, b_t, x, p)),
      ]:
        with open(os.path.join(hlo_dir, f"{name}_{B}x{N}x{L}_{p}.hlo.txt"), "w") as f:
          f.write(fn.lower(*args).compile().as_text())
  return {"members": B, "width": N, "depth": L, "rows": rows + per_layer}


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
  """Runs the experiments, writes JSON and prints one line per measurement."""
  parser = common.argument_parser(__doc__, sorted(bench_chains.SIZES))
  parser.add_argument("--repeats", type=int, default=10)
  parser.add_argument("--hlo-dir", default=None, help="write the optimized HLO of the chains here")
  args = parser.parse_args(argv)
  size = bench_chains.SIZES[args.size]
  device = common.device_info()
  report: dict[str, Any] = {
    "benchmark": "profile_chains",
    "size": args.size,
    "device": device,
    "versions": common.versions(),
    "shapes": [],
  }
  start = time.perf_counter()

  def timed(label, fn, **extra):
    timing, _ = common.time_fn(fn, repeats=args.repeats, entry_budget_s=20.0)
    row = {"name": label, "median_s": timing.median, "repeats": len(timing.times), **extra}
    print(f"  {label}: {timing.median * 1e3:.4g} ms", flush=True)
    return row

  for shape in size.shapes:
    print(f"shape B={shape.members} N={shape.width} L={shape.depth}", flush=True)
    report["shapes"].append(profile_shape(shape, timed, args.hlo_dir))
    if args.out:
      common.write_json_atomic(args.out, report)

  M, L = size.scalar_chains, size.scalar_depth
  print(f"scalar chain {M}x{L}", flush=True)
  kw, kb = jax.random.split(jax.random.key(2))
  w = jax.random.normal(kw, (M, L), jnp.float32)
  b = jax.random.normal(kb, (M, L), jnp.float32)
  w_t, b_t = common.block((w.T + 0, b.T + 0))
  one = jnp.float32(1)
  rows = [
    timed(
      "as written: scan over [M], outputs [M, L]",
      lambda: bench_chains.plain_scalar_chain(w, b, one),
    ),
    timed("layer-major inputs, outputs [L, M]", lambda: scalar_chain_layer_major(w_t, b_t, one)),
    timed(
      "layer-major, unrolled, outputs [L, M]",
      lambda: scalar_chain_layer_major(w_t, b_t, one, unroll=L),
    ),
    timed(
      "layer-major, unrolled, final log|g_L| only",
      lambda: scalar_chain_layer_major(w_t, b_t, one, unroll=L, final_only=True),
    ),
  ]
  for row in rows:
    row["factors_per_s"] = M * L / row["median_s"]
  report["scalar"] = {"chains": M, "depth": L, "rows": rows}
  report["wall_s"] = time.perf_counter() - start
  if args.out:
    common.write_json_atomic(args.out, report)
  for s in report["shapes"]:
    print(f"\n{s['members']}×{s['width']}×{s['depth']}")
    for r in s["rows"]:
      extra = f"  ({r['median_s_times_L'] * 1e3:.4g} ms × L)" if "median_s_times_L" in r else ""
      extra += f"  {r['gbs']:.4g} GB/s" if r.get("gbs") else ""
      print(f"  {r['name']:<42} {r['median_s'] * 1e3:9.4g} ms{extra}")
  print(f"\nscalar {M}×{L}")
  for r in report["scalar"]["rows"]:
    print(f"  {r['name']:<46} {r['median_s'] * 1e3:9.4g} ms  {r['factors_per_s']:.3g} factors/s")
  return report


if __name__ == "__main__":
  main(sys.argv[1:])
