"""Per-layer QR for stable Lyapunov spectra: Householder vs Cholesky QR built from matmuls.

Measures, in one process on the same data (issue 6, part 2):

* **Per-layer QR** of a batch ``[B, N, N]`` of one layer's Jacobians ``D·W`` (for
  square ``Z = J Q`` with orthonormal ``Q``, ``cond(Z) = cond(J)``, so every layer
  of the ensemble looks like this one): ``jnp.linalg.qr`` (Householder, cuSOLVER
  on GPUs), CholeskyQR2 and shifted CholeskyQR3 (``vanish.orthonormalize``) with
  ``Z R⁻¹`` by triangular solve or by a matmul with the doubling inverse, their
  matmuls at ``highest`` and at 3-pass presets, the guarded ``stable_qr``, and
  the pieces (Gram matmul, Cholesky, triangular solve, triangular inverse). Each
  reports the median time, × L, the fraction of matrices the guard flags, the
  orthogonality ``max|QᵀQ − I|`` and ``max |log diag R − log diag R₆₄|`` against
  NumPy's float64 Householder of the same matrices.
* **Whole spectra**: ``vn.lyapunov_spectrum(refine=False, qr=...)`` and, at depth L
  only (``depths=[L]``), ``reorthonormalize="adaptive"`` (with its QR count) and
  ``refine=True``, against the plain unstable chain (a ``lax.scan`` of
  ``J ← D W J`` at ``highest``, and ``vn.jacobian``), as a ratio, with the per-member agreement with
  ``qr="householder"`` on a few members.
* **Accuracy at depth**: tanh networks (``gaussian(1.0)``) at depth 1000 against
  a float64 Householder run of the same parameters (``jax.enable_x64``):
  ``max_l max_i |λ̂_{l,i} − λ_{l,i}| / l`` ("per layer") and in nats, smallest
  exponents included; plus ReLU (dead units) and saturated tanh (exactly
  rank-deficient Jacobians) for finiteness and agreement with Householder.

Run (CPU smoke test, about 80 s / H100, about 5 minutes with every section)::

  python -m benchmarks.bench_qr --size tiny --out /tmp/qr.json
  python -m benchmarks.bench_qr --size paper --no-presets --budget-s 400 --out /tmp/qr_h100.json

``--sections``, ``--shape B,N,L``, ``--spectrum-methods``, ``--no-layer-rows`` and
``--no-presets`` select parts. ``results/qr_h100.json`` holds the two H100 runs and a
summary (how they were split is recorded in it).
"""

from __future__ import annotations

import functools
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

import vanish as vn
from benchmarks import bench_chains, common
from vanish import orthonormalize as orth

SCHEMA_VERSION = 1

SHAPES = {
  "tiny": [(4, 16, 5)],
  "paper": [(64, 512, 50), (1024, 128, 50), (16384, 32, 50)],
}
ACCURACY = {
  "tiny": [("tanh", 1.0, 0.0, 2, 8, 60)],
  "paper": [
    ("tanh", 1.0, 0.0, 8, 32, 1000),
    ("tanh", 1.0, 0.0, 2, 128, 1000),
    ("tanh", 1.5, 0.0, 8, 16, 300),
  ],
}
ROBUSTNESS = {
  "tiny": [("relu", 2.0, 0.0, 2, 8, 20), ("tanh", 25.0, 0.5, 2, 8, 20)],
  "paper": [("relu", 2.0, 0.0, 8, 32, 200), ("tanh", 25.0, 0.5, 8, 32, 200)],
}
SPECTRUM_METHODS = ("auto", "shifted_cholesky_qr3", "cholesky_qr2")
# Spectrum at depth L only (depths=[L]): (label, lyapunov_spectrum kwargs).
ADAPTIVE_ENTRIES = (
  (
    "refine=False, depths=[L], reorthonormalize='adaptive'",
    {"refine": False, "reorthonormalize": "adaptive"},
  ),
  ("refine=True, depths=[L]", {"refine": True}),
  (
    "refine=True, depths=[L], reorthonormalize='adaptive'",
    {"refine": True, "reorthonormalize": "adaptive"},
  ),
)
PRESETS = ("TF32_TF32_F32_X3", "BF16_BF16_F32_X6")
# Householder whole spectra are skipped when one layer's QR × L predicts more than this.
HOUSEHOLDER_SPECTRUM_MAX_S = 3.0
# One layer's Householder × L measured in the first H100 run, for when per-layer rows are off.
KNOWN_HOUSEHOLDER_S = {(512, 50): 21.1, (128, 50): 1.65}


def _net(activation: str, sigma_w2: float, sigma_b: float, width: int, depth: int) -> vn.MLP:
  biases = vn.init.normal(sigma_b) if sigma_b else vn.init.zeros()
  return vn.MLP([width] * (depth + 1), activation, vn.init.gaussian(sigma_w2), biases)


def _unguarded(method: str, solve: str, precision: str) -> Callable:
  """``z -> (q, r, flagged)`` without the fallback (what the guard sees)."""
  fast = orth._fast(method, solve, precision, orth.DEFAULT_TOL, orth.DEFAULT_SHIFT_SCALE)
  return jax.jit(fast)


@functools.partial(jax.jit, static_argnames=("solve", "precision"))
def _scqr3_diagonal_only(z, solve="trsm", precision="highest"):
  """Shifted CholeskyQR3 returning ``(q, diag R)``: what ``refine=False`` needs (no R products)."""
  s = orth._shift(z, orth.DEFAULT_SHIFT_SCALE)
  q1, r1, _ = orth._cholesky_pass(z, s, solve, precision)
  q2, r2, _ = orth._cholesky_pass(q1, None, solve, precision)
  q, r3, _ = orth._cholesky_pass(q2, None, solve, precision)
  diag = lambda r: jnp.diagonal(r, axis1=-2, axis2=-1)
  return q, diag(r1) * diag(r2) * diag(r3)


def _qr_accuracy(q, r, z64: np.ndarray, ref_log_diag: np.ndarray, flagged=None) -> dict[str, Any]:
  q, r = common.to_numpy(q), common.to_numpy(r)
  k = q.shape[-1]
  diag = r if r.ndim == z64.ndim - 1 else np.diagonal(r, axis1=-2, axis2=-1)
  good = np.ones(z64.shape[0], bool) if flagged is None else ~np.asarray(flagged)
  out: dict[str, Any] = {
    "flagged_fraction": None if flagged is None else float(np.mean(np.asarray(flagged))),
    "matrices": int(z64.shape[0]),
  }
  if good.any():
    gram = np.swapaxes(q[good], -1, -2) @ q[good]
    with np.errstate(divide="ignore", invalid="ignore"):
      log_diag = np.log(np.abs(diag[good]))
    out["orthogonality"] = float(np.max(np.abs(gram - np.eye(k))))
    out["log_diag_err"] = float(np.max(np.abs(log_diag - ref_log_diag[good])))
    if r.ndim == z64.ndim:
      out["residual"] = float(np.max(np.abs(q[good] @ r[good] - z64[good])) / np.abs(z64).max())
  return out


class Bench:
  """Timing with a wall-clock budget; entries past it are recorded as skipped."""

  def __init__(self, repeats: int, budget_s: float):
    self.repeats = repeats
    self.budget_s = budget_s
    self.start = time.perf_counter()

  def elapsed(self) -> float:
    return time.perf_counter() - self.start

  def time(self, name: str, fn: Callable[[], Any], **extra: Any) -> tuple[dict[str, Any], Any]:
    entry: dict[str, Any] = {"name": name, **extra}
    if self.elapsed() > self.budget_s:
      entry["skipped"] = f"budget of {self.budget_s} s spent"
      print(f"  {name}: skipped (budget)", flush=True)
      return entry, None
    try:
      timing, out = common.time_fn(fn, repeats=self.repeats, entry_budget_s=20.0)
    except Exception as exc:  # a preset the backend rejects, an OOM: record, go on
      entry["error"] = f"{type(exc).__name__}: {str(exc)[:300]}"
      print(f"  {name}: ERROR {entry['error']}", flush=True)
      return entry, None
    entry.update(timing.as_dict())
    print(f"  {name}: {timing.median * 1e3:.3f} ms (warm-up {timing.warmup_s:.1f} s)", flush=True)
    return entry, out


def per_layer(
  bench: Bench, z: jax.Array, depth: int, platform: str, presets: bool = True
) -> list[dict[str, Any]]:
  """One layer's batched QR by every method, its pieces, and their accuracy."""
  z64 = common.to_numpy(z)
  ref_log_diag = np.log(np.abs(np.diagonal(np.linalg.qr(z64)[1], axis1=-2, axis2=-1)))
  rows = []

  def add(name, fn, accuracy=None, **extra):
    entry, out = bench.time(name, fn, **extra)
    if "median_s" in entry:
      entry["median_s_times_L"] = entry["median_s"] * depth
      if accuracy is not None and out is not None:
        entry["accuracy"] = accuracy(out)
    rows.append(entry)
    return out

  hh = jax.jit(orth.householder_qr)
  add("householder (jnp.linalg.qr)", lambda: hh(z), lambda o: _qr_accuracy(*o, z64, ref_log_diag))
  configs = [("cholesky_qr2", s, "highest") for s in orth.SOLVES]
  configs += [("shifted_cholesky_qr3", s, "highest") for s in orth.SOLVES]
  if platform == "gpu" and presets:
    configs += [("shifted_cholesky_qr3", s, p) for p in PRESETS for s in orth.SOLVES]
  for method, solve, precision in configs:
    fn = _unguarded(method, solve, precision)
    add(
      f"{method} unguarded [{solve}, {precision}]",
      lambda fn=fn: fn(z),
      lambda o: _qr_accuracy(o[0], o[1], z64, ref_log_diag, o[2]),
      method=method,
      solve=solve,
      precision=precision,
    )
  for solve in orth.SOLVES:
    add(
      f"shifted_cholesky_qr3 q + diag R only [{solve}, highest]",
      lambda solve=solve: _scqr3_diagonal_only(z, solve=solve),
      lambda o: _qr_accuracy(o[0], o[1], z64, ref_log_diag),
      solve=solve,
    )
  for method in ("shifted_cholesky_qr3", "auto"):
    fn = jax.jit(functools.partial(orth.stable_qr, method=method))
    add(
      f"stable_qr({method}) guarded",
      lambda fn=fn: fn(z),
      lambda o: _qr_accuracy(*o, z64, ref_log_diag),
    )
  # The pieces.
  gram = jax.jit(lambda a, p: jnp.matmul(jnp.swapaxes(a, -1, -2), a, precision=p), static_argnums=1)
  g = gram(z, "highest")
  r = jnp.swapaxes(jnp.linalg.cholesky(g), -1, -2)
  precisions = ("highest",) + (PRESETS if platform == "gpu" and presets else ())
  for p in precisions:
    add(f"piece: Gram ZᵀZ [{p}]", lambda p=p: gram(z, p))
  add("piece: Cholesky (jnp.linalg.cholesky)", lambda: jax.jit(jnp.linalg.cholesky)(g))
  for block in (64, 128):
    if block < z.shape[-1]:
      add(
        f"piece: blocked_cholesky(block={block})",
        lambda block=block: jax.jit(orth.blocked_cholesky, static_argnums=1)(g, block),
      )
  add(
    "piece: triangular solve Z R⁻¹",
    lambda: jax.jit(orth._right_solve, static_argnums=(2, 3))(z, r, "trsm", "highest"),
  )
  add("piece: triangular_inverse(R)", lambda: jax.jit(orth.triangular_inverse)(r))
  add("piece: matmul Z·R⁻¹ [highest]", lambda: gram(z, "highest"))  # same shape and cost
  return rows


@functools.partial(jax.jit, static_argnames=("solve", "diagnose"))
def benettin(w, b, x, solve=None, diagnose=False):
  """Benettin with guarded ``stable_qr`` on plain arrays (the tanh network of ``bench_chains``).

  Returns the cumulative sorted ``log diag R`` ``[B, L, N]`` (what
  ``lyapunov_spectrum(refine=False)`` returns) and, with ``diagnose``, per layer the
  number of matrices flagged by shifted CholeskyQR3 and still flagged by the rescue
  (two shifted passes), i.e. sent to Householder.
  """
  w_t, b_t = jnp.swapaxes(w, 0, 1), jnp.swapaxes(b, 0, 1)
  members, width = w.shape[0], w.shape[-1]
  fast3 = orth._fast("shifted_cholesky_qr3", solve or "inverse", "highest", orth.DEFAULT_TOL, 1.0)
  fast4 = orth._fast("shifted_cholesky_qr4", solve or "inverse", "highest", orth.DEFAULT_TOL, 1.0)

  def layer(carry, wb):
    h, q = carry
    w_l, b_l = wb
    h = jnp.tanh(jnp.einsum("bij,bj->bi", w_l, h, precision="highest") + b_l)
    z = (1 - h**2)[:, :, None] * jnp.matmul(w_l, q, precision="highest")
    q, r = orth.stable_qr(z, "shifted_cholesky_qr3", solve=solve)
    log_r = jnp.log(jnp.diagonal(r, axis1=-2, axis2=-1))
    if not diagnose:
      return (h, q), (log_r, jnp.zeros((2,), jnp.int32))
    bad3 = fast3(z)[2]
    bad4 = fast4(z)[2] & bad3
    return (h, q), (log_r, jnp.stack([bad3.sum(), bad4.sum()]).astype(jnp.int32))

  eye = jnp.broadcast_to(jnp.eye(width, dtype=w.dtype)[None], (members, width, width))
  h0 = jnp.broadcast_to(x[None, :], (members, width))
  _, (log_r, flags) = jax.lax.scan(layer, (h0, eye), (w_t, b_t))
  spectrum = jnp.flip(jnp.sort(jnp.cumsum(jnp.swapaxes(log_r, 0, 1), axis=1), axis=-1), axis=-1)
  return spectrum, flags


def flag_statistics(bench: Bench, w, b, x) -> dict[str, Any]:
  """How often the guard fires along a whole Benettin run (every layer, every member)."""
  if bench.elapsed() > bench.budget_s:
    return {"skipped": True}
  try:
    _, flags = benettin(w, b, x, diagnose=True)
  except Exception as exc:
    return {"error": f"{type(exc).__name__}: {str(exc)[:300]}"}
  flags = np.asarray(flags)
  out = {
    "matrices": int(w.shape[0] * w.shape[1]),
    "flagged_by_shifted_cholesky_qr3": int(flags[:, 0].sum()),
    "layers_with_a_flag": int((flags[:, 0] > 0).sum()),
    "max_flagged_in_a_layer": int(flags[:, 0].max()),
    "sent_to_householder": int(flags[:, 1].sum()),
  }
  print(f"  flags: {out}", flush=True)
  return out


def spectra(
  bench: Bench,
  shape: tuple[int, int, int],
  methods: Sequence[str] = SPECTRUM_METHODS,
  layer_rows: bool = True,
  presets: bool = True,
  seed: int = 0,
) -> dict[str, Any]:
  """Whole ``refine=False`` spectra vs the plain chain, plus one layer's QR."""
  B, N, L = shape
  net = _net("tanh", 1.0, 0.0, N, L)
  params = net.init(jax.random.key(seed), members=B)
  w, b = params[0]["w"], params[0]["b"]
  x = jax.random.normal(jax.random.key(seed + 1), (N,), jnp.float32)
  platform = jax.devices()[0].platform
  print(f"shape B={B} N={N} L={L}", flush=True)
  entries = []
  chain, _ = bench.time("jax.chain [highest]", lambda: bench_chains.plain_chain(w, b, x, "highest"))
  entries.append(chain)
  entries.append(bench.time("vn.jacobian", lambda: vn.jacobian(net, params, x))[0])
  outs = {}
  for method in methods:
    entry, outs[method] = bench.time(
      f"vn.lyapunov_spectrum(refine=False, qr={method!r})",
      lambda m=method: vn.lyapunov_spectrum(net, params, x, refine=False, qr=m),
      qr=method,
    )
    entries.append(entry)
  # Fewer QRs (issue 6): the spectrum only at depth L, refined or not, one QR per layer or
  # per adaptive block (vanish.spectrum's reorthonormalize="adaptive"); QR counts recorded.
  for label, kwargs in ADAPTIVE_ENTRIES:
    entry, out = bench.time(
      f"vn.lyapunov_spectrum({label})",
      lambda kw=kwargs: vn.lyapunov_spectrum(net, params, x, depths=[L], return_counts=True, **kw),
      **{k: str(v) for k, v in kwargs.items()},
    )
    if out is not None:
      # Each member's own counts; the ensemble's QRs are at least the largest.
      entry["qr_count"] = int(np.asarray(out[1]["qr"]).max())
      entry["rollbacks"] = int(np.asarray(out[1]["rollbacks"]).max())
      outs[label] = out[0]
    entries.append(entry)
  z = bench_chains.plain_chain(w[:, :1], b[:, :1], x, "highest")  # one layer's D·W
  rows = per_layer(bench, z, L, platform, presets) if layer_rows else []
  flags = flag_statistics(bench, w, b, x)
  hh_layer = next((r for r in rows if r["name"].startswith("householder")), {})
  predicted = hh_layer.get("median_s_times_L", KNOWN_HOUSEHOLDER_S.get((N, L)))
  name = "vn.lyapunov_spectrum(refine=False, qr='householder')"
  if predicted is not None and predicted < HOUSEHOLDER_SPECTRUM_MAX_S:
    entry, outs["householder"] = bench.time(
      name, lambda: vn.lyapunov_spectrum(net, params, x, refine=False), qr="householder"
    )
  else:
    entry = {"name": name, "qr": "householder", "skipped": f"one layer × L predicts {predicted} s"}
  entries.append(entry)
  base = chain.get("median_s")
  for entry in entries:
    if base and entry.get("median_s"):
      entry["ratio_to_chain"] = entry["median_s"] / base
  for row in rows:
    if base and row.get("median_s"):
      row["times_L_ratio_to_chain"] = row["median_s_times_L"] / base
  # Agreement with Householder on a few members (all of them when it was timed).
  members = B if outs.get("householder") is not None else min(B, 4)
  sub = tuple({k: v[:members] for k, v in p.items()} for p in params)
  try:
    ref = outs.get("householder")
    ref = ref if ref is not None else vn.lyapunov_spectrum(net, sub, x, refine=False)
    ref = common.to_numpy(ref)[:members]
    depths = np.arange(1, L + 1)[:, None]
    agreement = {}
    for label, kwargs in ADAPTIVE_ENTRIES:  # depth L only, against the same reference
      if outs.get(label) is None or kwargs.get("refine", True):
        continue
      err = np.abs(common.to_numpy(outs[label])[:members, 0] - ref[:, -1])
      agreement[label] = {
        "members": members,
        "max_abs_nats": float(err.max()),
        "max_per_layer": float(err.max() / L),
      }
    for method in methods:
      if outs.get(method) is None:
        continue
      got = common.to_numpy(outs[method])[:members]
      err = np.abs(got - ref)
      agreement[method] = {
        "members": members,
        "finite": bool(np.isfinite(got).all()),
        "max_abs_nats": float(err.max()),
        "max_per_layer": float((err / depths).max()),
      }
  except Exception as exc:
    agreement = {"error": f"{type(exc).__name__}: {str(exc)[:300]}"}
  print(f"  agreement with householder: {agreement}", flush=True)
  return {
    "members": B,
    "width": N,
    "depth": L,
    "chain_flops": 2.0 * B * L * N**3,
    "entries": entries,
    "per_layer_qr": rows,
    "agreement_with_householder": agreement,
    "flags": flags,
  }


def _errors(got: np.ndarray, ref: np.ndarray) -> dict[str, Any]:
  depth = ref.shape[-2]
  err = np.abs(got - ref)
  per_layer = err / np.arange(1, depth + 1)[:, None]
  return {
    "finite": bool(np.isfinite(got).all()),
    "max_abs_nats": float(err.max()),
    "max_per_layer": float(per_layer.max()),
    "final_exponent_err": float(err[..., -1, :].max() / depth),
    "smallest_exponent_err_per_layer": float(per_layer[..., -1].max()),
  }


def accuracy(cases: Sequence[tuple], methods: Sequence[str], bench: Bench) -> list[dict[str, Any]]:
  """Spectra at depth against a float64 Householder reference of the same parameters."""
  out = []
  for activation, sigma_w2, sigma_b, members, width, depth in cases:
    if bench.elapsed() > bench.budget_s:
      out.append({"case": [activation, sigma_w2, sigma_b, members, width, depth], "skipped": True})
      continue
    net = _net(activation, sigma_w2, sigma_b, width, depth)
    params = net.init(jax.random.key(7), members=members)
    x = jax.random.normal(jax.random.key(8), (width,), jnp.float32)
    row: dict[str, Any] = {
      "activation": activation,
      "sigma_w2": sigma_w2,
      "sigma_b": sigma_b,
      "members": members,
      "width": width,
      "depth": depth,
    }
    start = time.perf_counter()
    with jax.enable_x64(True):
      p64 = jax.tree.map(lambda a: a.astype(jnp.float64), params)
      ref = common.to_numpy(vn.lyapunov_spectrum(net, p64, x.astype(jnp.float64), refine=False))
    row["reference"] = "float64 Householder, same parameters and input, on this device"
    row["reference_s"] = time.perf_counter() - start
    row["reference_final_exponents_member0"] = (ref[0, -1] / depth).tolist()
    got = {}
    for method in ("householder", *methods):
      got[method] = common.to_numpy(vn.lyapunov_spectrum(net, params, x, refine=False, qr=method))
      row[method] = _errors(got[method], ref)
    if activation == "tanh" and not sigma_b:
      w, b = params[0]["w"], params[0]["b"]
      for solve in orth.SOLVES:
        name = f"shifted_cholesky_qr3[{solve}] (bench scan)"
        got[name] = common.to_numpy(benettin(w, b, x, solve=solve)[0])
        row[name] = _errors(got[name], ref)
    print(
      f"accuracy {activation} σw²={sigma_w2} N={width} L={depth}: "
      + ", ".join(f"{m}: {row[m]['max_per_layer']:.2e}/layer" for m in got),
      flush=True,
    )
    out.append(row)
  return out


def robustness(cases: Sequence[tuple], methods: Sequence[str]) -> list[dict[str, Any]]:
  """Exactly rank-deficient Jacobians (dead ReLUs, saturated tanh): finite, = Householder."""
  out = []
  for activation, sigma_w2, sigma_b, members, width, depth in cases:
    net = _net(activation, sigma_w2, sigma_b, width, depth)
    params = net.init(jax.random.key(3), members=members)
    x = jax.random.normal(jax.random.key(4), (width,), jnp.float32)
    hh = common.to_numpy(vn.lyapunov_spectrum(net, params, x, refine=False))
    # A layer with r units whose slope is above round-off (eps × the largest) has numerical
    # rank r: only the leading min_l r_l exponents are determined in float32, for any QR
    # (the rest are round-off: dead or saturated directions).
    pre = vn.preactivations(net, params, x)
    slope = np.abs(common.to_numpy(net.activation.value_and_derivative(pre)[1]))
    eps = np.finfo(np.float32).eps
    rank = (slope > eps * slope.max(axis=-1, keepdims=True)).sum(axis=-1).min(axis=-1)
    resolved = np.arange(width)[None, None, :] < rank[:, None, None]
    resolved = np.broadcast_to(resolved, hh.shape)
    row: dict[str, Any] = {
      "activation": activation,
      "sigma_w2": sigma_w2,
      "sigma_b": sigma_b,
      "members": members,
      "width": width,
      "depth": depth,
      "resolved_exponents_per_member": rank.tolist(),
    }
    for method in methods:
      got = common.to_numpy(vn.lyapunov_spectrum(net, params, x, refine=False, qr=method))
      err = np.abs(got - hh)[resolved]
      row[method] = {
        "finite": bool(np.isfinite(got).all()),
        "max_abs_nats_vs_householder_resolved": float(err.max()) if err.size else 0.0,
        "top_exponent_diff": float(np.abs(got[..., 0] - hh[..., 0]).max()),
      }
    print(f"robustness {activation} σw²={sigma_w2}: {row}", flush=True)
    out.append(row)
  return out


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
  parser = common.argument_parser(__doc__, sorted(SHAPES))
  parser.add_argument("--repeats", type=int, default=5)
  parser.add_argument("--budget-s", type=float, default=float("inf"))
  parser.add_argument(
    "--sections", default="spectra,accuracy,robustness", help="comma-separated, in this order"
  )
  parser.add_argument("--shape", action="append", default=None, help="B,N,L (repeatable)")
  parser.add_argument("--spectrum-methods", default=",".join(SPECTRUM_METHODS))
  parser.add_argument("--no-layer-rows", action="store_true", help="skip the per-layer QR rows")
  parser.add_argument("--no-presets", action="store_true", help="skip the 3-pass precisions")
  args = parser.parse_args(argv)
  bench = Bench(args.repeats, args.budget_s)
  report: dict[str, Any] = {
    **common.report_header(SCHEMA_VERSION, "qr", args.size),
    "dtype": "float32",
    "network": "vn.MLP tanh, weights gaussian(sigma_w2=1), zero biases; x ~ N(0, I)",
    "timing": "median wall time after one warm-up, block_until_ready each",
    "defaults": {
      "tol": orth.DEFAULT_TOL,
      "shift_scale": orth.DEFAULT_SHIFT_SCALE,
      "auto": orth._AUTO,
      "solve": orth._SOLVE,
      "capacity": 1 / 16,
    },
  }

  def save():
    report["elapsed_s"] = bench.elapsed()
    if args.out:
      common.write_json_atomic(args.out, report)

  methods = ("auto", "shifted_cholesky_qr3", "cholesky_qr2")
  shapes = SHAPES[args.size]
  if args.shape:
    shapes = [tuple(int(v) for v in shape.split(",")) for shape in args.shape]
  for section in args.sections.split(","):
    if section == "accuracy":
      report["accuracy"] = accuracy(ACCURACY[args.size], methods, bench)
    elif section == "robustness":
      report["robustness"] = robustness(ROBUSTNESS[args.size], methods)
    elif section == "spectra":
      report["shapes"] = []
      for shape in shapes:
        report["shapes"].append(
          spectra(
            bench,
            shape,
            tuple(args.spectrum_methods.split(",")),
            layer_rows=not args.no_layer_rows,
            presets=not args.no_presets,
          )
        )
        save()
    else:
      raise ValueError(f"unknown section {section!r}")
    save()
  print(f"done in {bench.elapsed():.0f} s", flush=True)
  return report


if __name__ == "__main__":
  main(sys.argv[1:])
