"""Jacobian chains and Lyapunov spectra: vanish against what a researcher would write.

For each ensemble shape (members B, width N, depth L) of tanh MLPs with weights
N(0, 1/N), every implementation runs in this one process on the same weights
(``net.init``'s arrays, handed to the baselines as ``params[0]["w"]``) and the
same fixed random input x:

* baselines: a ``lax.scan`` chain ``J ← D·W·J`` (precision ``highest`` and
  ``default``), ``vmap(jacfwd(forward))``, Benettin with ``jnp.linalg.qr`` at
  every layer, ``vmap(grad)`` for per-layer gradient norms, and, where PyTorch
  is importable, ``torch.func.vmap(jacfwd)`` and a per-network
  ``torch.autograd.functional.jacobian`` loop (timed on a few members and
  scaled to B);
* the batched-matmul roofline: the same ``B·L`` products of N×N matrices with
  no dependence between layers;
* ours: ``vn.jacobian``, ``vn.lyapunov_spectrum(refine=False)``,
  ``vn.lyapunov_spectrum(refine=True)`` (on fewer members at wide shapes, where
  its per-layer sweeps are slow; the time is scaled to B and marked), and
  ``vn.log_gradient_norms``;
* the one-neuron chain Monte Carlo: ``vn.scalar_chain`` against a plain
  ``lax.scan``, in factors per second, on stored parameters and with sampling.

Each entry records the median time, its ratios to the relevant baselines, the
achieved TFLOP/s (``2·B·L·N³`` for the chain's matmuls) or GB/s with the
percentage of the device's peak for its precision, and a correctness check
against a baseline. Results go to JSON (written atomically after every shape,
so a run cut short keeps what it measured) and a table is printed.

Usage::

  python -m benchmarks.bench_chains --size paper --out benchmarks/results/chains_h100.json
  python -m benchmarks.bench_chains --size tiny --out /tmp/chains.json   # CI smoke run
"""

from __future__ import annotations

import dataclasses
import functools
import math
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

import vanish as vn
from benchmarks import common

SCHEMA_VERSION = 1
# Issue 6's targets, checked in the "targets" section of the JSON.
SPECTRUM_OVER_CHAIN_TARGET = 2.0
SMALL_WIDTH_SPEEDUP_TARGET = 8.0
WIDE_ROOFLINE_TARGET = 0.9
SCALAR_FACTORS_PER_S_TARGET = 3e11
# Singular values within this many nats of the largest are resolvable from the
# float32 product; the refined spectrum is checked against their SVD.
RESOLVABLE_NATS = 5.0
FLOAT64_MEMBERS = 2  # members of each shape whose chain is also computed in float64


@dataclasses.dataclass(frozen=True)
class Shape:
  """One ensemble shape; ``refine_members`` caps the members of the refine=True run."""

  members: int
  width: int
  depth: int
  refine_members: int
  torch_loop_members: int


@dataclasses.dataclass(frozen=True)
class Size:
  """A benchmark size; CI's tiny one skips what only compiles more (default precision, sampling)."""

  shapes: tuple[Shape, ...]
  repeats: int
  scalar_chains: int
  scalar_depth: int
  precisions: tuple[str, ...] = ("highest", "default")
  sampled_scalar: bool = True
  # Multi-pass presets for vn.jacobian (issue 6.5: a faster precision mode with its measured
  # accuracy against float64); every vn.jacobian and jax.chain entry is compared with a
  # float64 chain on the first FLOAT64_MEMBERS members.
  fast_precisions: tuple[str, ...] = ("TF32_TF32_F32_X3", "BF16_BF16_F32_X3", "BF16_BF16_F32_X6")


SIZES = {
  # Compilation dominates on a CPU and CI only proves that it runs: one shape, one
  # precision, and no sampling (the threefry programs are slow to compile on a CPU).
  "tiny": Size(
    shapes=(Shape(4, 16, 5, refine_members=2, torch_loop_members=2),),
    repeats=2,
    scalar_chains=1024,
    scalar_depth=5,
    precisions=("highest",),
    sampled_scalar=False,
    fast_precisions=("BF16_BF16_F32_X3",),  # XLA:CPU has no TF32 presets
  ),
  "paper": Size(
    shapes=(
      Shape(64, 512, 50, 1, 4),
      Shape(1024, 128, 50, 8, 4),
      Shape(16384, 32, 50, 2048, 4),
    ),
    repeats=10,
    scalar_chains=2**20,
    scalar_depth=50,
  ),
}


# --------------------------------------------------------------------------- baselines


def _forward(w, b, x, precision):
  """One tanh network's output; ``w`` is ``[L, N, N]``, ``b`` is ``[L, N]``."""

  def layer(h, wb):
    w_l, b_l = wb
    return jnp.tanh(jnp.matmul(w_l, h, precision=precision) + b_l), None

  h, _ = lax.scan(layer, x, (w, b))
  return h


@functools.partial(jax.jit, static_argnames="precision")
def plain_chain(w, b, x, precision):
  """The chain ``J ← diag(1 − h²) W J`` in a ``lax.scan``, vmapped over members."""

  def network(w, b):
    def layer(carry, wb):
      h, jac = carry
      w_l, b_l = wb
      h = jnp.tanh(jnp.matmul(w_l, h, precision=precision) + b_l)
      jac = (1 - h**2)[:, None] * jnp.matmul(w_l, jac, precision=precision)
      return (h, jac), None

    (_, jac), _ = lax.scan(layer, (x, jnp.eye(x.shape[0], dtype=x.dtype)), (w, b))
    return jac

  return jax.vmap(network)(w, b)


@functools.partial(jax.jit, static_argnames="precision")
def plain_jacfwd(w, b, x, precision):
  """``vmap(jacfwd(forward))`` over members."""
  forward = functools.partial(_forward, precision=precision)
  return jax.vmap(jax.jacfwd(forward, argnums=2), in_axes=(0, 0, None))(w, b, x)


@functools.partial(jax.jit, static_argnames="precision")
def plain_qr_benettin(w, b, x, precision):
  """Benettin with ``jnp.linalg.qr`` at every layer.

  Returns ``[B, L, N]``: the cumulative ``log |diag R|``, sorted descending.
  """

  def network(w, b):
    def layer(carry, wb):
      h, q = carry
      w_l, b_l = wb
      h = jnp.tanh(jnp.matmul(w_l, h, precision=precision) + b_l)
      q, r = jnp.linalg.qr((1 - h**2)[:, None] * jnp.matmul(w_l, q, precision=precision))
      return (h, q), jnp.log(jnp.abs(jnp.diagonal(r)))

    eye = jnp.eye(x.shape[0], dtype=x.dtype)
    _, log_r = lax.scan(layer, (x, eye), (w, b))
    return jnp.flip(jnp.sort(jnp.cumsum(log_r, axis=0), axis=-1), axis=-1)

  return jax.vmap(network)(w, b)


@functools.partial(jax.jit, static_argnames="precision")
def plain_grad_log_norms(w, b, x, precision):
  """``log ‖∂C/∂b^l‖`` for ``C = Σ h^L`` by ``vmap(grad)``: ``[B, L]``."""

  def loss(b, w):
    return jnp.sum(_forward(w, b, x, precision))

  grads = jax.vmap(jax.grad(loss))(b, w)
  return jnp.log(jnp.linalg.norm(grads, axis=-1))


@functools.partial(jax.jit, static_argnames="precision")
def batched_matmul(a, b, precision):
  """The roofline: all ``B·L`` N×N products at once, no dependence between layers."""
  return jnp.matmul(a, b, precision=precision)


@jax.jit
def batched_qr(a):
  """One layer's QR of the whole ensemble (to apportion the Benettin time)."""
  return jnp.linalg.qr(a)


@jax.jit
def plain_scalar_chain(w, b, x):
  """The one-neuron sigmoid chain, ``w, b: [M, L]``: ``(log|g|, sign g)``, each ``[M, L]``."""

  def layer(a, wb):
    w_l, b_l = wb
    s = jax.nn.sigmoid(w_l * a + b_l)
    return s, s * (1 - s)

  _, slopes = lax.scan(layer, jnp.full(w.shape[:1], x, w.dtype), (w.T, b.T))
  factors = slopes.T * jnp.concatenate([jnp.ones_like(w[:, :1]), w[:, 1:]], axis=1)
  return jnp.cumsum(jnp.log(jnp.abs(factors)), axis=1), jnp.cumprod(jnp.sign(factors), axis=1)


@functools.partial(jax.jit, static_argnames=("chains", "depth"))
def plain_scalar_monte_carlo(key, x, *, chains, depth):
  """Samples ``w, b ~ N(0, 1)`` and runs :func:`plain_scalar_chain`."""
  kw, kb = jax.random.split(key)
  w = jax.random.normal(kw, (chains, depth), jnp.float32)
  b = jax.random.normal(kb, (chains, depth), jnp.float32)
  return plain_scalar_chain(w, b, x)


def _torch_forward(torch, w, b, x):
  h = x
  for layer in range(w.shape[0]):
    h = torch.tanh(w[layer] @ h + b[layer])
  return h


def _to_torch(torch, a: jax.Array) -> Any:
  try:
    return torch.from_dlpack(a)
  except Exception:  # noqa: BLE001 - fall back to a host round trip
    device = "cuda" if a.devices().pop().platform == "gpu" else "cpu"
    return torch.as_tensor(np.asarray(a), device=device)


# --------------------------------------------------------------------------- runner


class Runner:
  """Times entries, enforces the overall time budget and collects the JSON rows."""

  def __init__(self, device: dict[str, Any], repeats: int, deadline: float | None):
    self.device = device
    self.repeats = repeats
    self.deadline = deadline
    # Slow entries (the per-layer QR at N = 512 takes ~20 s a call) get fewer repeats.
    self.entry_budget_s = 30.0

  def out_of_time(self) -> bool:
    return self.deadline is not None and time.perf_counter() > self.deadline

  def measure(
    self,
    name: str,
    impl: str,
    precision: str,
    fn: Callable[[], Any],
    *,
    flops: float | None = None,
    bytes_moved: float | None = None,
    scale: float = 1.0,
    sync: Callable[[Any], Any] = common.block,
    note: str | None = None,
  ) -> tuple[dict[str, Any], Any]:
    """Times ``fn`` and returns ``(entry, result)``; ``result`` is None if skipped or failed.

    ``scale`` multiplies the measured time when ``fn`` covers only a fraction of
    the members (the entry is then marked ``extrapolated``).
    """
    entry: dict[str, Any] = {
      "name": name,
      "impl": impl,
      "precision": precision,
      "precision_class": common.precision_class(precision),
      "note": note,
    }
    if self.out_of_time():
      entry["skipped"] = "time budget exhausted"
      return entry, None
    try:
      timing, out = common.time_fn(
        fn, repeats=self.repeats, sync=sync, entry_budget_s=self.entry_budget_s
      )
    except Exception as err:  # noqa: BLE001 - a failing entry must not lose the others
      entry["error"] = f"{type(err).__name__}: {str(err)[:500]}"
      return entry, None
    entry.update(timing.as_dict())
    print(
      f"  {name}[{precision}]: {timing.median * 1e3:.4g} ms median of {len(timing.times)}"
      f" (warm-up {timing.warmup_s:.3g} s)",
      flush=True,
    )
    entry["extrapolated"] = scale != 1.0
    seconds = timing.median * scale
    entry["seconds"] = seconds
    if flops is not None:
      entry["tflops"] = flops / seconds / 1e12
      peak = common.peak_tflops(self.device, precision)
      entry["peak_tflops"] = peak
      entry["pct_peak"] = None if peak is None else 100 * entry["tflops"] / peak
    if bytes_moved is not None:
      entry["gbs"] = bytes_moved / seconds / 1e9
      peaks = self.device.get("peaks")
      peak = None if peaks is None else peaks["hbm_gbs"]
      entry["peak_gbs"] = peak
      entry["pct_peak_bandwidth"] = None if peak is None else 100 * entry["gbs"] / peak
    return entry, out


def _key(name: str, precision: str) -> str:
  return f"{name}[{precision}]"


def _add_ratios(entries: list[dict[str, Any]], baselines: dict[str, Sequence[str]]) -> None:
  """``ratios[b] = seconds / seconds of b``: > 1 is slower than the baseline."""
  by_key = {_key(e["name"], e["precision"]): e for e in entries}
  for entry in entries:
    own = by_key.get(_key(entry["name"], entry["precision"]))
    refs = baselines.get(_key(entry["name"], entry["precision"]), ())
    ratios = {}
    for ref in refs:
      other = by_key.get(ref)
      if own is not None and other is not None and "seconds" in own and "seconds" in other:
        ratios[ref] = own["seconds"] / other["seconds"]
    entry["ratios"] = ratios


def _check(against: str, result: Any, reference: Any) -> dict[str, Any]:
  if result is None or reference is None:
    return {"against": against, "max_abs_diff": None, "rel_diff": None}
  return {
    "against": against,
    "max_abs_diff": common.max_abs_diff(result, reference),
    "rel_diff": common.rel_diff(result, reference),
  }


def _resolvable_check(against: str, spectrum: Any, log_sv: np.ndarray | None) -> dict[str, Any]:
  """Max |spectrum − log SVD| at the last layer over values within RESOLVABLE_NATS of the top."""
  if spectrum is None or log_sv is None:
    return {"against": against, "max_abs_diff": None}
  last = common.to_numpy(spectrum)[:, -1, :]
  mask = log_sv > log_sv[:, :1] - RESOLVABLE_NATS
  return {
    "against": against,
    "resolvable_nats": RESOLVABLE_NATS,
    "values_compared": int(mask.sum()),
    "max_abs_diff": float(np.max(np.abs(last - log_sv)[mask])),
  }


def _float64_chain(w, b, x, members: int) -> np.ndarray:
  """``plain_chain`` in float64 for the first ``members``: the accuracy reference."""
  with jax.enable_x64(True):
    w64, b64 = (jnp.asarray(a[:members], jnp.float64) for a in (w, b))
    return common.to_numpy(plain_chain(w64, b64, jnp.asarray(x, jnp.float64), "highest"))


def run_shape(
  runner: Runner,
  shape: Shape,
  *,
  seed: int,
  use_torch: bool,
  precisions: Sequence[str],
  fast_precisions: Sequence[str] = (),
) -> dict[str, Any]:
  """All entries for one ensemble shape."""
  B, N, L = shape.members, shape.width, shape.depth
  net = vn.MLP(widths=[N] * (L + 1), activation="tanh", weights=vn.init.gaussian(1.0))
  params = net.init(jax.random.key(seed), members=B)
  w, b = params[0]["w"], params[0]["b"]
  x = jax.random.normal(jax.random.key(seed + 1), (N,), jnp.float32)
  chain_flops = 2.0 * B * L * N**3
  weight_bytes = float(w.size * w.dtype.itemsize + b.size * b.dtype.itemsize)
  entries: list[dict[str, Any]] = []
  results: dict[str, Any] = {}

  def add(name, impl, precision, fn, **kw):
    entry, out = runner.measure(name, impl, precision, fn, **kw)
    entries.append(entry)
    results[_key(name, precision)] = out
    return entry, out

  # Baselines a researcher would write, and the roofline.
  for p in precisions:
    add("jax.chain", "baseline", p, lambda p=p: plain_chain(w, b, x, p), flops=chain_flops)
  ref = results[_key("jax.chain", "highest")]
  for p in precisions:
    add(
      "roofline.batched_matmul",
      "roofline",
      p,
      lambda p=p: batched_matmul(w, w, p),
      flops=chain_flops,
      note="the same B·L N×N products with no dependence between layers",
    )
    results[_key("roofline.batched_matmul", p)] = None  # B·L·N² floats: don't keep
  for p in precisions:
    add("jax.vmap_jacfwd", "baseline", p, lambda p=p: plain_jacfwd(w, b, x, p), flops=chain_flops)
  add(
    "jax.vmap_grad_norms",
    "baseline",
    "highest",
    lambda: plain_grad_log_norms(w, b, x, "highest"),
    bytes_moved=weight_bytes,
    note="bytes = weights and biases read once",
  )

  # Ours.
  for p in (*precisions, *fast_precisions):
    add(
      "vn.jacobian",
      "vanish",
      p,
      lambda p=p: vn.jacobian(net, params, x, precision=p),
      flops=chain_flops,
    )
  add(
    "vn.log_gradient_norms",
    "vanish",
    "highest",
    lambda: vn.log_gradient_norms(net, params, x),
    bytes_moved=weight_bytes,
    note="bytes = weights and biases read once",
  )

  # PyTorch, where installed.
  torch = common.optional_torch() if use_torch else None
  torch_info = None
  if torch is not None:
    tw, tb, tx = (_to_torch(torch, a) for a in (w, b, x))
    cuda = tw.is_cuda
    torch_info = {
      "device": str(tw.device),
      "allow_tf32": bool(torch.backends.cuda.matmul.allow_tf32),
      "float32_matmul_precision": torch.get_float32_matmul_precision(),
    }

    def sync(out):
      if cuda:
        torch.cuda.synchronize()
      return out

    forward = functools.partial(_torch_forward, torch)
    jac_fn = torch.func.vmap(torch.func.jacfwd(forward, argnums=2), in_dims=(0, 0, None))
    add(
      "torch.vmap_jacfwd",
      "baseline",
      "torch_fp32",
      lambda: jac_fn(tw, tb, tx),
      flops=chain_flops,
      sync=sync,
    )
    n_loop = min(B, shape.torch_loop_members)

    def loop():
      return torch.stack(
        [
          torch.autograd.functional.jacobian(lambda v, m=m: forward(tw[m], tb[m], v), tx)
          for m in range(n_loop)
        ]
      )

    add(
      "torch.autograd_jacobian_loop",
      "baseline",
      "torch_fp32",
      loop,
      flops=chain_flops,
      sync=sync,
      scale=B / n_loop,
      note=f"Python loop over networks; timed on {n_loop} of {B} members and scaled to {B}",
    )

  # Stable spectra: per-layer QR baseline, one layer's QR alone, and ours.
  q_input = plain_chain(w[:, :1], b[:, :1], x, "highest")  # one layer's D·W: a realistic matrix
  add(
    "jax.qr_one_layer_x_L",
    "profile",
    "highest",
    lambda: batched_qr(q_input),
    scale=float(L),
    note="one layer's batched jnp.linalg.qr of [B, N, N], times L: the QR share of Benettin",
  )
  add(
    "jax.qr_benettin",
    "baseline",
    "highest",
    lambda: plain_qr_benettin(w, b, x, "highest"),
    flops=chain_flops,
    note="TFLOP/s counts the chain matmuls only (2·B·L·N³), not the QR",
  )
  add(
    "vn.lyapunov_spectrum(refine=False)",
    "vanish",
    "highest",
    lambda: vn.lyapunov_spectrum(net, params, x, refine=False),
    flops=chain_flops,
    note="TFLOP/s counts the chain matmuls only (2·B·L·N³), not the QR",
  )
  m = min(B, shape.refine_members)
  sub = tuple({k: v[:m] for k, v in p.items()} for p in params)
  add(
    "vn.lyapunov_spectrum(refine=True)",
    "vanish",
    "highest",
    lambda: vn.lyapunov_spectrum(net, sub, x, refine=True),
    flops=chain_flops,
    scale=B / m,
    note=(f"timed on {m} of {B} members and scaled to {B}" if m < B else "all members"),
  )

  # Correctness, all against the same weights and input.
  checks = {}
  against_chain = [
    _key("jax.chain", "default"),
    _key("jax.vmap_jacfwd", "highest"),
    _key("jax.vmap_jacfwd", "default"),
    _key("vn.jacobian", "highest"),
    _key("vn.jacobian", "default"),
    _key("torch.vmap_jacfwd", "torch_fp32"),
  ]
  for k in against_chain:
    checks[k] = _check("jax.chain[highest]", results.get(k), ref)
  loop_out = results.get(_key("torch.autograd_jacobian_loop", "torch_fp32"))
  if loop_out is not None:
    n_loop = loop_out.shape[0]
    checks[_key("torch.autograd_jacobian_loop", "torch_fp32")] = _check(
      "jax.chain[highest]", loop_out, ref[:n_loop]
    )
  checks[_key("vn.log_gradient_norms", "highest")] = _check(
    "jax.vmap_grad_norms[highest]",
    results.get(_key("vn.log_gradient_norms", "highest")),
    results.get(_key("jax.vmap_grad_norms", "highest")),
  )
  benettin = results.get(_key("jax.qr_benettin", "highest"))
  checks[_key("vn.lyapunov_spectrum(refine=False)", "highest")] = _check(
    "jax.qr_benettin[highest]",
    results.get(_key("vn.lyapunov_spectrum(refine=False)", "highest")),
    benettin,
  )
  # The refined spectrum is exact at finite depth: compare it (and Benettin's sum,
  # which is not) with the SVD of the float32 product at the last layer.
  log_sv = None
  if ref is not None:
    sv = jnp.linalg.svd(ref[:m], compute_uv=False)
    log_sv = np.log(np.maximum(common.to_numpy(sv), np.finfo(np.float32).tiny))
  against_svd = "log SVD of jax.chain[highest] at the last layer (resolvable values)"
  checks[_key("vn.lyapunov_spectrum(refine=True)", "highest")] = _resolvable_check(
    against_svd, results.get(_key("vn.lyapunov_spectrum(refine=True)", "highest")), log_sv
  )
  checks[_key("jax.qr_benettin", "highest")] = _resolvable_check(
    against_svd, None if benettin is None else benettin[:m], log_sv
  )
  for entry in entries:
    entry["check"] = checks.get(_key(entry["name"], entry["precision"]))
  # Accuracy against float64 (relative Frobenius error of J on the first members).
  k = min(B, FLOAT64_MEMBERS)
  try:
    exact = None if runner.out_of_time() else _float64_chain(w, b, x, k)
  except Exception as err:  # noqa: BLE001 - a failed reference must not lose the timings
    exact = None
    print(f"  float64 reference: ERROR {type(err).__name__}: {str(err)[:200]}", flush=True)
  for entry in entries:
    out = results.get(_key(entry["name"], entry["precision"]))
    if entry["name"] in ("jax.chain", "vn.jacobian") and out is not None and exact is not None:
      entry["check_float64"] = {
        "against": f"float64 jax.chain on the first {k} members",
        "rel_diff": common.rel_diff(common.to_numpy(out)[:k], exact),
      }

  chain_h, chain_d = _key("jax.chain", "highest"), _key("jax.chain", "default")
  roof_h, roof_d = (
    _key("roofline.batched_matmul", "highest"),
    _key("roofline.batched_matmul", "default"),
  )
  qr = _key("jax.qr_benettin", "highest")
  _add_ratios(
    entries,
    {
      chain_d: [chain_h],
      chain_h: [roof_h],
      _key("jax.vmap_jacfwd", "highest"): [chain_h],
      _key("jax.vmap_jacfwd", "default"): [chain_d],
      _key("jax.vmap_grad_norms", "highest"): [chain_h],
      _key("vn.jacobian", "highest"): [chain_h, _key("jax.vmap_jacfwd", "highest"), roof_h],
      _key("vn.jacobian", "default"): [chain_d, _key("jax.vmap_jacfwd", "default"), roof_d],
      **{
        _key("vn.jacobian", p): [chain_h, roof_h, _key("vn.jacobian", "highest")]
        for p in fast_precisions
      },
      _key("vn.log_gradient_norms", "highest"): [_key("jax.vmap_grad_norms", "highest")],
      _key("torch.vmap_jacfwd", "torch_fp32"): [chain_h],
      _key("torch.autograd_jacobian_loop", "torch_fp32"): [chain_h],
      _key("jax.qr_one_layer_x_L", "highest"): [qr],
      qr: [chain_h],
      _key("vn.lyapunov_spectrum(refine=False)", "highest"): [chain_h, qr],
      _key("vn.lyapunov_spectrum(refine=True)", "highest"): [chain_h, qr],
    },
  )
  peaks = runner.device.get("peaks")
  floors = {
    "memory_s": None if peaks is None else weight_bytes / (peaks["hbm_gbs"] * 1e9),
    "compute_fp32_s": None if peaks is None else chain_flops / (peaks["fp32"] * 1e12),
    "compute_tf32_s": None if peaks is None else chain_flops / (peaks["tf32"] * 1e12),
  }
  return {
    "members": B,
    "width": N,
    "depth": L,
    "refine_members": m,
    "chain_flops": chain_flops,
    "weight_bytes": weight_bytes,
    "floors": floors,
    "torch": torch_info,
    "entries": entries,
  }


def sample_statistics(ours: np.ndarray, baseline: np.ndarray) -> dict[str, float]:
  """Compares two independent Monte Carlo samples of ``log |g_L|`` by their means.

  Returns:
    Means, standard deviations and ``|Δ mean| / standard error``, which is below
    ~3 when both sample the same distribution.
  """
  stderr = math.sqrt(ours.var() / ours.size + baseline.var() / baseline.size)
  return {
    "mean_log_abs_g_L": float(ours.mean()),
    "baseline_mean_log_abs_g_L": float(baseline.mean()),
    "std_log_abs_g_L": float(ours.std()),
    "baseline_std_log_abs_g_L": float(baseline.std()),
    "z_score_of_mean_difference": float(abs(ours.mean() - baseline.mean()) / stderr),
  }


def run_scalar(
  runner: Runner, chains: int, depth: int, *, seed: int, sampled: bool
) -> dict[str, Any]:
  """The one-neuron sigmoid chain Monte Carlo (w, b ~ N(0, 1), x = 1).

  Two comparisons: on stored parameters (``net.init``'s, handed to the baseline),
  and end to end with sampling (``net.init`` + ``vn.scalar_chain`` against
  ``jax.random.normal`` + the plain chain), if ``sampled``.
  """
  net = vn.MLP(
    widths=[1] * (depth + 1),
    activation="sigmoid",
    weights=vn.init.normal(1.0),
    biases=vn.init.normal(1.0),
  )
  key = jax.random.key(seed)
  params = net.init(key, members=chains)
  w, b = params[0]["w"][:, :, 0, 0], params[0]["b"][:, :, 0]
  x = jnp.ones((1,), jnp.float32)
  factors = float(chains * depth)
  # Stored parameters: read w, b (8 B/factor), write log|g| and sign (8 B/factor).
  io_bytes = 16.0 * factors
  entries = []
  outs = {}
  cases = [
    ("jax.scalar_chain", "baseline", lambda: plain_scalar_chain(w, b, x[0]), io_bytes),
    ("vn.scalar_chain", "vanish", lambda: vn.scalar_chain(net, params, x), io_bytes),
  ]
  sampling = [
    (
      "jax.scalar_monte_carlo",
      "baseline",
      lambda: plain_scalar_monte_carlo(key, x[0], chains=chains, depth=depth),
      None,
    ),
    (
      "vn.init+scalar_chain",
      "vanish",
      lambda: vn.scalar_chain(net, net.init(key, members=chains), x),
      None,
    ),
  ]
  for name, impl, fn, bytes_moved in cases + (sampling if sampled else []):
    entry, out = runner.measure(name, impl, "highest", fn, bytes_moved=bytes_moved)
    if "seconds" in entry:
      entry["factors_per_s"] = factors / entry["seconds"]
    entries.append(entry)
    outs[name] = out
  ours, base = outs["vn.scalar_chain"], outs["jax.scalar_chain"]
  if ours is not None and base is not None:
    finite = np.isfinite(common.to_numpy(base[0]))
    entries[1]["check"] = {
      "against": "jax.scalar_chain",
      "max_abs_diff_log_abs": float(
        np.max(np.abs(common.to_numpy(ours[0]) - common.to_numpy(base[0]))[finite])
      ),
      "sign_mismatches": int(np.sum(common.to_numpy(ours[1]) != common.to_numpy(base[1]))),
    }
  ours, base = outs.get("vn.init+scalar_chain"), outs.get("jax.scalar_monte_carlo")
  if ours is not None and base is not None:
    entries[3]["check"] = {
      "against": "jax.scalar_monte_carlo (independent draws: statistics only)",
      **sample_statistics(common.to_numpy(ours[0])[:, -1], common.to_numpy(base[0])[:, -1]),
    }
  _add_ratios(
    entries,
    {
      _key("vn.scalar_chain", "highest"): [_key("jax.scalar_chain", "highest")],
      _key("vn.init+scalar_chain", "highest"): [_key("jax.scalar_monte_carlo", "highest")],
    },
  )
  return {
    "chains": chains,
    "depth": depth,
    "activation": "sigmoid",
    "weights": "normal(std=1)",
    "biases": "normal(std=1)",
    "factors": factors,
    "entries": entries,
  }


# --------------------------------------------------------------------------- targets


def _entry(shape: dict[str, Any], name: str, precision: str = "highest") -> dict[str, Any]:
  for e in shape["entries"]:
    if e["name"] == name and e["precision"] == precision:
      return e
  return {}


def _fast_precision_target(shape: dict[str, Any], tag: str) -> dict[str, Any]:
  """Issue 6.5's faster precision mode: the fastest vn.jacobian preset at least as accurate
  (against float64) as 10× float32's own error, with its speed-up over ``highest``."""
  highest = _entry(shape, "vn.jacobian")
  error = highest.get("check_float64", {}).get("rel_diff")
  rows = [
    {
      "precision": e["precision"],
      "speedup_over_highest": highest["seconds"] / e["seconds"],
      "rel_error_vs_float64": e["check_float64"]["rel_diff"],
    }
    for e in shape["entries"]
    if e["name"] == "vn.jacobian" and "seconds" in e and "check_float64" in e and highest
    and "seconds" in highest
  ]  # fmt: skip
  accurate = [r for r in rows if error is not None and r["rel_error_vs_float64"] <= 10 * error]
  best = max(accurate, key=lambda r: r["speedup_over_highest"], default=None)
  return {
    "target": f"wide chain: a faster precision mode, accuracy against float64, at {tag}",
    "measured": None if best is None else best["speedup_over_highest"],
    "met": None if best is None else best["speedup_over_highest"] > 1,
    "best": best,
    "modes": rows,
  }


def targets(report: dict[str, Any]) -> list[dict[str, Any]]:
  """Issue 6's targets, each with the measured figure and whether it is met."""
  out = []
  for s in report["shapes"]:
    tag = f"({s['members']}, {s['width']}, {s['depth']})"
    spec = _entry(s, "vn.lyapunov_spectrum(refine=False)")
    ratio = spec.get("ratios", {}).get(_key("jax.chain", "highest"))
    out.append(
      {
        "target": f"stable spectrum ≤ {SPECTRUM_OVER_CHAIN_TARGET}× plain chain at {tag}",
        "measured": ratio,
        "met": None if ratio is None else ratio <= SPECTRUM_OVER_CHAIN_TARGET,
      }
    )
    for p in ("highest", "default") if s["width"] <= 64 or s["width"] >= 512 else ():
      jac = _entry(s, "vn.jacobian", p)
      if s["width"] <= 64:
        baseline, wanted = _key("jax.chain", p), SMALL_WIDTH_SPEEDUP_TARGET
        target = f"small width: vn.jacobian[{p}] ≥ {wanted}× faster than jax.chain[{p}]"
      else:
        baseline, wanted = _key("roofline.batched_matmul", p), WIDE_ROOFLINE_TARGET
        target = f"wide chain: vn.jacobian[{p}] ≥ {wanted:.0%} of the batched-matmul roofline"
      r = jac.get("ratios", {}).get(baseline)
      measured = None if not r else 1 / r  # a speed-up over the baseline (or roofline fraction)
      out.append(
        {
          "target": f"{target} at {tag}",
          "measured": measured,
          "met": None if measured is None else measured >= wanted,
        }
      )
    if s["width"] >= 512:
      out.append(_fast_precision_target(s, tag))
  if report.get("scalar"):
    for name in ("vn.scalar_chain", "vn.init+scalar_chain"):
      e = next((e for e in report["scalar"]["entries"] if e["name"] == name), {})
      rate = e.get("factors_per_s")
      out.append(
        {
          "target": f"one-neuron chain: {name} ≥ {SCALAR_FACTORS_PER_S_TARGET:.1e} factors/s",
          "measured": rate,
          "met": None if rate is None else rate >= SCALAR_FACTORS_PER_S_TARGET,
        }
      )
  return out


# --------------------------------------------------------------------------- output


def _ratio_text(entry: dict[str, Any]) -> str:
  return ", ".join(
    f"{common.fmt(v, '.3g')}× {k.split('[')[0]}" for k, v in entry.get("ratios", {}).items()
  )


def _check_text(check: dict[str, Any] | None) -> str:
  if not check:
    return ""
  if check.get("rel_diff") is not None:
    return f"rel {check['rel_diff']:.1e}, max {check['max_abs_diff']:.1e}"
  if check.get("max_abs_diff") is not None:
    return f"max {check['max_abs_diff']:.1e}"
  if check.get("max_abs_diff_log_abs") is not None:
    return f"max {check['max_abs_diff_log_abs']:.1e}, sign≠ {check['sign_mismatches']}"
  if check.get("z_score_of_mean_difference") is not None:
    return f"z {check['z_score_of_mean_difference']:.2f}"
  return ""


def _status(entry: dict[str, Any]) -> str:
  if "error" in entry:
    return "ERROR " + entry["error"][:60]
  if "skipped" in entry:
    return "skipped: " + entry["skipped"]
  return ""


def table(report: dict[str, Any]) -> str:
  """The human-readable summary printed at the end of a run."""
  header = ["shape", "entry", "precision", "ms", "ratios (time / baseline)", "TFLOP/s", "% peak"]
  header += ["GB/s", "check", ""]
  rows = []
  for s in report["shapes"]:
    tag = f"{s['members']}×{s['width']}×{s['depth']}"
    for e in s["entries"]:
      ms = None if "seconds" not in e else e["seconds"] * 1e3
      rows.append(
        [
          tag,
          e["name"] + (" *" if e.get("extrapolated") else ""),
          e["precision"],
          common.fmt(ms, ".4g"),
          _ratio_text(e),
          common.fmt(e.get("tflops"), ".3g"),
          common.fmt(e.get("pct_peak"), ".2g"),
          common.fmt(e.get("gbs"), ".4g"),
          "; ".join(
            text
            for text in (
              _check_text(e.get("check")),
              f"f64 rel {e['check_float64']['rel_diff']:.1e}" if "check_float64" in e else "",
            )
            if text
          ),
          _status(e),
        ]
      )
  if report.get("scalar"):
    sc = report["scalar"]
    tag = f"scalar {sc['chains']}×{sc['depth']}"
    for e in sc["entries"]:
      ms = None if "seconds" not in e else e["seconds"] * 1e3
      rate = e.get("factors_per_s")
      rows.append(
        [
          tag,
          e["name"],
          e["precision"],
          common.fmt(ms, ".4g"),
          _ratio_text(e),
          "-" if rate is None else f"{rate:.3g} factors/s",
          common.fmt(e.get("pct_peak_bandwidth"), ".2g"),
          common.fmt(e.get("gbs"), ".4g"),
          _check_text(e.get("check")),
          _status(e),
        ]
      )
  text = common.format_table(rows, header)
  text += "\n(* timed on fewer members or networks and scaled to the full ensemble)\n"
  lines = [
    f"  [{'met' if t['met'] else ('missed' if t['met'] is False else 'n/a')}] {t['target']}: "
    f"{common.fmt(t['measured'], '.3g')}"
    for t in report.get("targets", [])
  ]
  return text + "targets:\n" + "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
  """Runs the benchmark, writes the JSON report and prints the table.

  Args:
    argv: command-line arguments (see ``--help``); ``sys.argv[1:]`` if None.

  Returns:
    The report that was written.
  """
  parser = common.argument_parser(__doc__, sorted(SIZES))
  parser.add_argument("--repeats", type=int, default=None, help="timed repeats per entry")
  parser.add_argument(
    "--budget-s", type=float, default=None, help="skip remaining entries after this many seconds"
  )
  parser.add_argument("--no-torch", action="store_true", help="skip the PyTorch baselines")
  parser.add_argument(
    "--shape",
    action="append",
    default=None,
    metavar="B,N,L",
    help="run this shape instead of the size's (repeatable)",
  )
  parser.add_argument("--no-scalar", action="store_true", help="skip the one-neuron chain")
  parser.add_argument("--seed", type=int, default=0)
  args = parser.parse_args(argv)

  size = SIZES[args.size]
  shapes = size.shapes
  if args.shape:
    shapes = []
    for text in args.shape:
      B, N, L = (int(v) for v in text.split(","))
      shapes.append(Shape(B, N, L, max(1, min(B, 2**19 // N**2)), torch_loop_members=4))
  repeats = args.repeats or size.repeats
  start = time.perf_counter()
  deadline = None if args.budget_s is None else start + args.budget_s
  device = common.device_info()
  runner = Runner(device, repeats, deadline)
  report: dict[str, Any] = {
    **common.report_header(SCHEMA_VERSION, "chains", args.size, device),
    "dtype": "float32",
    "precisions": {
      "highest": "float32 matmuls (XLA precision HIGHEST); peak: fp32 non-tensor",
      "default": "XLA default for float32 on GPU (TF32 tensor cores); peak: tf32",
      "torch_fp32": "PyTorch float32 with its defaults (allow_tf32 recorded); peak: fp32",
      **{
        p: "lax.DotAlgorithmPreset (multi-pass TF32 or bf16 products, float32 accumulation)"
        for p in size.fast_precisions
      },
    },
    "network": {"activation": "tanh", "weights": "gaussian(sigma_w2=1)", "biases": "zeros"},
    "input": "x ~ N(0, I_N), key seed+1, the same for every implementation",
    "repeats": repeats,
    "timing": "median wall time of the repeats after one warm-up, block_until_ready each",
    "shapes": [],
    "scalar": None,
  }

  def save():
    report["targets"] = targets(report)
    report["wall_s"] = time.perf_counter() - start
    if args.out:
      common.write_json_atomic(args.out, report)

  for shape in shapes:
    print(f"shape B={shape.members} N={shape.width} L={shape.depth} ...", flush=True)
    report["shapes"].append(
      run_shape(
        runner,
        shape,
        seed=args.seed,
        use_torch=not args.no_torch,
        precisions=size.precisions,
        fast_precisions=size.fast_precisions,
      )
    )
    save()
  if not args.no_scalar:
    print(f"scalar chain {size.scalar_chains}×{size.scalar_depth} ...", flush=True)
    report["scalar"] = run_scalar(
      runner, size.scalar_chains, size.scalar_depth, seed=args.seed, sampled=size.sampled_scalar
    )
  save()
  print(f"\ndevice: {device['device_kind']} ({device['platform']}), peaks: {device['peak_row']}")
  print(table(report))
  if args.out:
    print(f"wrote {args.out}")
  return report


if __name__ == "__main__":
  main(sys.argv[1:])
