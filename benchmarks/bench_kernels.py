"""vanish's Pallas kernels against the plain-JAX baselines, in one process on the same data.

Three hot paths of issue 6:

* **one-neuron chain Monte Carlo** (point 4, target ≥ 3·10¹¹ factors/s): the baseline samples
  ``w, b ~ N(0, 1)`` with ``jax.random.normal`` and runs the plain ``lax.scan`` chain
  (``bench_chains.plain_scalar_monte_carlo``, which writes ``log|g|`` and ``sign g`` for every
  depth); ours is ``vanish.kernels.scalar_chain.monte_carlo`` with in-kernel Philox sampling,
  writing every depth (``all``), only the last (``final``) or per-depth moments (``moments``).
  Independent draws, so they are compared by statistics (z-score of the mean of ``log|g_L|``);
  the kernel is compared exactly with its jnp reference (same generator) on the first chains,
  and its ``fast_math=True`` variant (PTX approximations) by statistics on the same draws
  (the mean's bias against its Monte Carlo error, the moments).
* **small-width Jacobian chain** (point 3, target ≥ 8× the plain chain at 16384 × 32 × 50): the
  baseline is ``bench_chains.plain_chain`` (``lax.scan`` of ``J ← diag(1 − h²) W J``, vmapped),
  ours is ``vanish.kernels.small_chain.jacobian``, both on ``net.init``'s weights and one x.

* **small-width Lyapunov spectrum** (point 2, target ≤ 2× the plain chain at 16384 × 32 × 50):
  ours is ``vanish.kernels.small_chain.lyapunov_spectrum`` (Benettin with a Householder QR per
  layer on chip), against the same plain chain (the target's denominator), the per-layer
  ``jnp.linalg.qr`` Benettin a researcher would write (``bench_chains.plain_qr_benettin``) and
  vanish's jnp path (``vn.lyapunov_spectrum(refine=False)``, guarded shifted CholeskyQR3 on
  GPUs); every spectrum is checked against the float64 Householder path on a few members.

At ``--size paper`` each kernel is also timed over a grid of launch configurations
(``Size.scalar_sweep``: block × warps, accurate and ``fast_math``; ``Size.small_sweep``: warps ×
pipelining stages; ``Size.spectrum_launches``: warps at 2 stages and stages at the default
warps; entries ``impl="vanish-sweep"``), and a target reports the best entry. Session 14's
H100 sweep chose the defaults (``small_chain.JACOBIAN_LAUNCH``, ``small_chain.SPECTRUM_LAUNCH``,
``scalar_chain.DEFAULT_BLOCK``/``DEFAULT_NUM_WARPS``); the sweeps check them. Every kernel
entry records its ``launch``.

Each entry: median time, factors/s or TFLOP/s and GB/s with % of the device's peak, the ratio
to the baseline, the path that ran (``pallas_triton``, ``pallas_interpret`` or ``reference``),
and a correctness check. On a CPU (``--size tiny``) the kernels run in the Pallas interpreter
or fall back to the reference: the report says so and the times are **not timings**.

Usage::

  python -m benchmarks.bench_kernels --size tiny --out /tmp/kernels.json          # CPU smoke run
  python -m benchmarks.bench_kernels --size paper --out benchmarks/results/kernels_h100.json
"""

from __future__ import annotations

import dataclasses
import math
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

import vanish as vn
from benchmarks import bench_chains, common
from vanish import kernels
from vanish.kernels import scalar_chain as ksc
from vanish.kernels import small_chain

SCHEMA_VERSION = 1
SCALAR_TARGET = 3e11  # factors per second (issue 6, point 4)
SMALL_SPEEDUP_TARGET = 8.0  # × the plain chain (issue 6, point 3)
SPECTRUM_RATIO_TARGET = 2.0  # spectrum time ≤ 2× the plain chain's (issue 6, point 2)
SPECTRUM_ACCURACY_TARGET = 1e-3  # nats per layer against float64 (issue 6, point 2)
SPECTRUM_CHECK_MEMBERS = 4  # members compared with the float64 spectrum
# A small-chain entry counts towards its target only if its Jacobian is within this relative
# difference of the plain chain's at the same precision (H100, session 14: 1.9–2.2·10⁻⁶ at
# "highest", 4.5–8.6·10⁻⁶ at TF32x3, 3.6·10⁻⁴–1.6·10⁻³ at "default", which is TF32).
SMALL_CHECK_RTOL = {"highest": 1e-4, "TF32_TF32_F32_X3": 1e-4, "default": 1e-2}
SWEPT_PRECISIONS = ("highest", "default")  # the small kernel's launch sweep (tf32x3: defaults)
SECTIONS = ("scalar", "small", "spectrum")  # the one-neuron chain, the small-width chain, spectra


@dataclasses.dataclass(frozen=True)
class Size:
  scalar: tuple[tuple[int, int], ...]  # (chains, depth)
  small: tuple[tuple[int, int, int], ...]  # (members, width, depth)
  precisions: tuple[str, ...]
  repeats: int
  check_chains: int  # chains compared exactly with the reference path
  # launch configurations timed besides the defaults: (block, num_warps, fast_math) of the
  # one-neuron kernel at output="final", (num_warps, num_stages) of the small-width kernel
  scalar_sweep: tuple[tuple[int, int, bool], ...] = ()
  small_sweep: tuple[tuple[int, int], ...] = ()
  # (output, rounds or None for the default) of the one-neuron kernel with fast_math=True
  scalar_fast: tuple[tuple[str, int | None], ...] = ()
  spectrum: tuple[tuple[int, int, int], ...] = ()  # (members, width, depth)
  # (num_warps, num_stages) of the spectrum kernel timed besides the default launch, None for
  # the launch table's value at the shape's width; launches equal to the default are skipped
  spectrum_launches: tuple[tuple[int | None, int | None], ...] = ()
  spectrum_precisions: tuple[str, ...] = ()  # W·Q precisions timed besides "highest"
  deadline: float | None = None  # perf_counter() after which entries are skipped (--budget-s)


SIZES = {
  # the sweeps' one configuration each only exercises the code (the interpreter ignores them)
  "tiny": Size(
    scalar=((2048, 10),),
    small=((16, 32, 5),),
    precisions=("highest",),
    repeats=2,
    check_chains=256,
    scalar_sweep=((256, 2, False),),
    small_sweep=((2, 1),),
    scalar_fast=(("final", None), ("moments", None)),
    spectrum=((8, 16, 5),),
    spectrum_launches=((2, None),),
  ),
  "paper": Size(
    ((2**20, 50), (2**24, 50)),
    ((16384, 32, 50), (4096, 64, 50), (16384, 16, 50)),
    ("highest", "default", "TF32_TF32_F32_X3"),
    10,
    2**16,
    # session 14 (H100, 2^24 x 50, ms): default (256, 8) 9.30, the old (512, 4) 12.4; block
    # 1024 with 2 warps and 2048 with 2 or 4 warps were 4-14x slower at both sizes (not
    # repeated). fast_math ran only at (512, 4): 3.98 ms; its sweep is new ((256, 8) repeats
    # the default fast_math entry, by name).
    scalar_sweep=(
      *((b, w, False) for b, w in ((256, 2), (256, 4), (512, 4), (512, 8), (1024, 4), (1024, 8))),
      (2048, 8, False),
      *((b, w, True) for b in (256, 512, 1024) for w in (4, 8)),
    ),
    # PTX approximations for Box–Muller, φ and the logs; Philox-7 passes BigCrush too
    # (Salmon et al. 2011)
    scalar_fast=(("final", None), ("moments", None), ("final", 7)),
    # session 14 chose small_chain.JACOBIAN_LAUNCH from this grid (at 4096 x 64 x 50,
    # "highest", 2 warps were 12x slower than the plain chain, 8 warps 1.63x faster)
    small_sweep=tuple((w, s) for w in (1, 2, 4, 8) for s in (1, 2, 3)),
    # 4096 × 64 last: the slowest launches are there (2 warps: 900 ms at "highest")
    spectrum=((16384, 32, 50), (16384, 16, 50), (4096, 64, 50)),
    # stages 1, 2, 3 at SPECTRUM_LAUNCH's warps (session 14 swept warps at 2 stages only),
    # then warps 2, 4, 8 and 1 at 2 stages (1 last: at N = 64 it may spill worse than 2)
    spectrum_launches=(
      *((None, s) for s in (1, 2, 3)),
      *((w, 2) for w in (2, 4, 8, 1)),
    ),
    spectrum_precisions=("TF32_TF32_F32_X3",),  # GPU only: XLA:CPU has no TF32
  ),
}


def _entry(
  name: str, impl: str, path: str | None, fn: Callable[[], Any], size: Size
) -> tuple[dict[str, Any], Any]:
  entry: dict[str, Any] = {"name": name, "impl": impl, "path": path}
  if size.deadline is not None and time.perf_counter() > size.deadline:
    entry["skipped"] = "time budget exhausted"
    print(f"  {name}: skipped (time budget)", flush=True)
    return entry, None
  try:
    timing, out = common.time_fn(fn, repeats=size.repeats)
  except Exception as err:  # noqa: BLE001 - one failing entry must not lose the others
    entry["error"] = f"{type(err).__name__}: {str(err)[:800]}"
    print(f"  {name}: ERROR {entry['error'][:200]}", flush=True)
    return entry, None
  entry.update(timing.as_dict())
  entry["seconds"] = timing.median
  print(f"  {name} [{path}]: {timing.median * 1e3:.4g} ms (warm-up {timing.warmup_s:.3g} s)")
  return entry, out


def run_scalar(chains: int, depth: int, size: Size, device: dict[str, Any], use_kernel: str):
  """One-neuron sigmoid chains, w, b ~ N(0, 1), x = 1."""
  net = vn.MLP(
    widths=[1] * (depth + 1),
    activation="sigmoid",
    weights=vn.init.normal(1.0),
    biases=vn.init.normal(1.0),
  )
  key = jax.random.key(0)
  factors = float(chains) * depth
  hbm = (device.get("peaks") or {}).get("hbm_gbs")
  entries, outs = [], {}
  base, base_out = _entry(
    "jax.scalar_monte_carlo",
    "baseline",
    "plain jax",
    lambda: bench_chains.plain_scalar_monte_carlo(key, 1.0, chains=chains, depth=depth),
    size,
  )
  entries.append(base)
  written = {"final": 5.0 * chains, "all": 5.0 * factors, "moments": None}
  default_launch = {"block": ksc.DEFAULT_BLOCK, "num_warps": ksc.DEFAULT_NUM_WARPS}
  for output in ksc.OUTPUTS:
    path = kernels.resolve(use_kernel)
    entry, out = _entry(
      f"kernels.scalar_chain[{output}]",
      "vanish",
      path,
      lambda output=output: ksc.monte_carlo(
        net, key, chains, 1.0, output=output, use_kernel=use_kernel
      )[:4],
      size,
    )
    entry["launch"] = default_launch
    entries.append(entry)
    outs[output] = out
  fast_outs = {}
  for output, rounds in size.scalar_fast:
    entry, out = _entry(
      f"kernels.scalar_chain[{output}, fast_math" + (f", rounds={rounds}]" if rounds else "]"),
      "vanish-sweep",
      kernels.resolve(use_kernel),
      lambda output=output, rounds=rounds: ksc.monte_carlo(
        net, key, chains, 1.0, output=output, use_kernel=use_kernel, fast_math=True,
        rounds=rounds or ksc.philox.DEFAULT_ROUNDS,
      )[:4],
      size,
    )  # fmt: skip
    entry["launch"] = default_launch
    entries.append(entry)
    fast_outs[output, rounds] = entry, out
  swept_fast = {}
  for block, num_warps, fast in size.scalar_sweep:
    entry, out = _entry(
      f"kernels.scalar_chain[final{', fast_math' if fast else ''}, block={block}, "
      f"warps={num_warps}]",
      "vanish-sweep",
      kernels.resolve(use_kernel),
      lambda block=block, num_warps=num_warps, fast=fast: ksc.monte_carlo(
        net, key, chains, 1.0, output="final", use_kernel=use_kernel, block=block,
        num_warps=num_warps, fast_math=fast,
      )[:4],
      size,
    )  # fmt: skip
    entry["launch"] = {"block": block, "num_warps": num_warps}
    entries.append(entry)
    if fast:
      swept_fast[entry["name"]] = entry, out
  for e in entries:
    if "seconds" in e:
      e["factors_per_s"] = factors / e["seconds"]
      e["of_target"] = e["factors_per_s"] / SCALAR_TARGET
      if "seconds" in base and e is not base:
        e["speedup_vs_baseline"] = base["seconds"] / e["seconds"]
  for output, e in zip(ksc.OUTPUTS, entries[1 : 1 + len(ksc.OUTPUTS)], strict=True):
    if "seconds" in e and written[output]:
      e["written_gbs"] = written[output] / e["seconds"] / 1e9
      e["pct_hbm_peak"] = None if hbm is None else 100 * e["written_gbs"] / hbm
  checks: dict[str, Any] = {}
  final = outs.get("final")
  if final is not None and base_out is not None:
    checks["final_vs_baseline_statistics"] = bench_chains.sample_statistics(
      common.to_numpy(final[0]), common.to_numpy(base_out[0])[:, -1]
    )
  if final is not None:
    n = min(chains, size.check_chains)
    ref = ksc.monte_carlo(net, key, n, 1.0, output="final", use_kernel="reference")
    checks["final_vs_reference_same_draws"] = {
      "chains": n,
      "max_abs_diff_log_abs_g": common.max_abs_diff(final[0][:n], ref.log_abs_g),
      "sign_mismatches": int(np.sum(common.to_numpy(final[1][:n]) != common.to_numpy(ref.sign))),
    }
  # Only an entry whose numbers passed a check counts towards the target: the accurate
  # kernel by the same-draws comparison above (one code path for every output and launch),
  # a fast_math entry by statistics on the same draws.
  same = checks.get("final_vs_reference_same_draws")
  accurate_ok = bool(
    same and same["max_abs_diff_log_abs_g"] < 1e-3 and same["sign_mismatches"] == 0
  )
  for e in entries[1:]:
    e["checked"] = accurate_ok
  n = min(chains, size.check_chains)
  for (output, rounds), (entry, out) in fast_outs.items():
    name = f"fast_math[{output}" + (f", rounds={rounds}]" if rounds else "]")
    if out is not None:
      checks[name] = _fast_math_check(net, key, n, out, output, rounds, outs.get("moments"))
    entry["checked"] = bool(checks.get(name, {}).get("passed"))
  for name, (entry, out) in swept_fast.items():  # each fast launch on the same draws
    if out is not None:
      checks[name] = _fast_math_check(net, key, n, out, "final", None, None)
    entry["checked"] = bool(checks.get(name, {}).get("passed"))
  moments = outs.get("moments")
  if moments is not None and final is not None:
    last = common.to_numpy(final[0])
    checks["moments_vs_final"] = {
      "mean_diff": float(common.to_numpy(moments[2])[-1] - last.mean()),
      "var_rel_diff": float(common.to_numpy(moments[3])[-1] / last.var() - 1),
    }
  return {
    "chains": chains,
    "depth": depth,
    "factors": factors,
    "entries": entries,
    "checks": checks,
  }


FAST_BIAS_OVER_ERROR = 0.1  # a fast entry's bias must be below 1/10 of the Monte Carlo error


def _fast_math_check(net, key, n, out, output, rounds, accurate_moments) -> dict[str, Any]:
  """``fast_math=True`` against accurate arithmetic on the same draws: for ``final`` the
  reference path on the first ``n`` chains (same ``rounds``), for ``moments`` the accurate
  kernel's moments. The difference of the means is compared with the Monte Carlo standard
  error of the mean of ``log|g_L|`` (the statistic's own error at this sample size)."""
  if output == "final":
    rounds = rounds or ksc.philox.DEFAULT_ROUNDS
    ref = ksc.monte_carlo(net, key, n, 1.0, output="final", use_kernel="reference", rounds=rounds)
    got, want = common.to_numpy(out[0][:n]), common.to_numpy(ref.log_abs_g)
    error = want.std() / np.sqrt(n)
    diff = got - want
    mismatches = int(np.sum(common.to_numpy(out[1][:n]) != common.to_numpy(ref.sign)))
    check = {
      "against": f"reference path, same draws, first {n} chains",
      "mean_diff": float(diff.mean()),
      "mean_diff_over_monte_carlo_error": float(diff.mean() / error),
      "fraction_above_1e-4": float(np.mean(np.abs(diff) > 1e-4)),
      "max_abs_diff": float(np.abs(diff).max()),
      "sign_mismatches": mismatches,
      "all_finite": bool(np.isfinite(got).all()),
    }
    check["passed"] = bool(
      check["all_finite"]
      and abs(check["mean_diff_over_monte_carlo_error"]) < FAST_BIAS_OVER_ERROR
      and mismatches <= max(1, n // 10_000)
    )
    return check
  mean, var = (common.to_numpy(v) for v in out[2:4])
  if accurate_moments is None:
    return {"against": "accurate moments (not run)", "passed": False}
  ref_mean, ref_var = (common.to_numpy(v) for v in accurate_moments[2:4])
  check = {
    "against": "the accurate kernel's moments, same draws, all chains",
    "max_abs_mean_diff": float(np.abs(mean - ref_mean).max()),
    "max_rel_var_diff": float(np.abs(var / ref_var - 1).max()),
    "all_finite": bool(np.isfinite(mean).all() and np.isfinite(var).all()),
  }
  check["passed"] = bool(
    check["all_finite"] and check["max_abs_mean_diff"] < 1e-3 and check["max_rel_var_diff"] < 1e-2
  )
  return check


def run_small(
  members: int, width: int, depth: int, size: Size, device: dict[str, Any], use_kernel: str
):
  """tanh MLP, weights N(0, 1/N), zero biases: the chain of bench_chains at this shape."""
  net = vn.MLP(widths=[width] * (depth + 1), activation="tanh", weights=vn.init.gaussian(1.0))
  params = net.init(jax.random.key(0), members=members)
  w, b = params[0]["w"], params[0]["b"]
  x = jax.random.normal(jax.random.key(1), (width,))
  flops = 2.0 * members * depth * width**3
  weight_bytes = 4.0 * members * depth * (width * width + width)
  hbm = (device.get("peaks") or {}).get("hbm_gbs")
  entries = []
  for precision in size.precisions:
    base, base_out = _entry(
      f"jax.chain[{precision}]",
      "baseline",
      "plain jax",
      lambda precision=precision: bench_chains.plain_chain(w, b, x, precision),
      size,
    )
    ours, out = _entry(
      f"kernels.small_chain[{precision}]",
      "vanish",
      None,
      lambda precision=precision: small_chain.jacobian(
        net, params, x, precision=precision, use_kernel=use_kernel
      ),
      size,
    )
    launch = small_chain._launch("jacobian", width, precision)
    ours["launch"] = {"num_warps": launch[0], "num_stages": launch[1]}
    if out is not None:
      ours["path"] = out.path
      if base_out is not None:
        ours["check"] = {
          "against": base["name"],
          "rel_diff": common.rel_diff(out.jacobian, base_out),
        }
    swept = []
    for num_warps, num_stages in size.small_sweep if precision in SWEPT_PRECISIONS else ():
      entry, swept_out = _entry(
        f"kernels.small_chain[{precision}, warps={num_warps}, stages={num_stages}]",
        "vanish-sweep",
        ours.get("path"),
        lambda precision=precision, num_warps=num_warps, num_stages=num_stages: (
          small_chain.jacobian(
            net, params, x, precision=precision, use_kernel=use_kernel, num_warps=num_warps,
            num_stages=num_stages,
          ).jacobian
        ),
        size,
      )  # fmt: skip
      entry["launch"] = {"num_warps": num_warps, "num_stages": num_stages}
      if swept_out is not None and base_out is not None:  # a launch must not change the result
        entry["check"] = {"against": base["name"], "rel_diff": common.rel_diff(swept_out, base_out)}
      swept.append(entry)
    for e in (base, ours, *swept):
      e["precision"] = precision
      if "seconds" in e:
        e["tflops"] = flops / e["seconds"] / 1e12
        peak = common.peak_tflops(device, precision)
        e["pct_peak"] = None if peak is None else 100 * e["tflops"] / peak
        e["weights_gbs"] = weight_bytes / e["seconds"] / 1e9
        e["pct_hbm_peak"] = None if hbm is None else 100 * e["weights_gbs"] / hbm
    for e in (ours, *swept):
      if "seconds" in base and "seconds" in e:
        e["speedup_vs_baseline"] = base["seconds"] / e["seconds"]
    entries += [base, ours, *swept]
  return {
    "members": members,
    "width": width,
    "depth": depth,
    "flops": flops,
    "weight_bytes": weight_bytes,
    "entries": entries,
  }


def _float64_spectrum(net, params, x, members: int) -> np.ndarray:
  """``vn.lyapunov_spectrum(refine=False)`` in float64 (Householder) for the first members."""
  with jax.enable_x64(True):
    p64 = jax.tree.map(lambda a: a[:members].astype(jnp.float64), params)
    spectrum = vn.lyapunov_spectrum(net, p64, x.astype(jnp.float64), refine=False, qr="householder")
    return common.to_numpy(spectrum)


def _spectrum_launches(width: int, launches: Sequence[tuple[int | None, int | None]]):
  """``launches`` with None resolved by ``small_chain``'s launch table at ``width``, without
  repeats and without the default launch (the unswept entry times it)."""
  default = small_chain._launch("spectrum", width, "highest")
  resolved = (small_chain._launch("spectrum", width, "highest", w, s) for w, s in launches)
  return [launch for launch in dict.fromkeys(resolved) if launch != default]


def run_spectrum(
  members: int, width: int, depth: int, size: Size, device: dict[str, Any], use_kernel: str
):
  """Benettin's full spectrum of bench_chains' tanh network, against the plain chain (the
  target's denominator), the per-layer ``jnp.linalg.qr`` Benettin and vanish's jnp path."""
  net = vn.MLP(widths=[width] * (depth + 1), activation="tanh", weights=vn.init.gaussian(1.0))
  params = net.init(jax.random.key(0), members=members)
  w, b = params[0]["w"], params[0]["b"]
  x = jax.random.normal(jax.random.key(1), (width,))
  exact = _float64_spectrum(net, params, x, min(members, SPECTRUM_CHECK_MEMBERS))
  run = lambda **kw: small_chain.lyapunov_spectrum(net, params, x, use_kernel=use_kernel, **kw)
  chain = lambda: bench_chains.plain_chain(w, b, x, "highest")
  qr_benettin = lambda: bench_chains.plain_qr_benettin(w, b, x, "highest")
  jnp_path = lambda: vn.lyapunov_spectrum(net, params, x, refine=False)
  default = small_chain._launch("spectrum", width, "highest")
  candidates = [
    ("jax.chain[highest]", "baseline", "plain jax", chain, None),
    ("jax.qr_benettin", "baseline", "plain jax", qr_benettin, None),
    ("vn.lyapunov_spectrum(refine=False)", "vanish-jnp", "reference", jnp_path, None),
    ("kernels.small_chain.lyapunov_spectrum", "vanish", None, run, default),
    *(
      (f"kernels.small_chain.lyapunov_spectrum[{p}]", "vanish-sweep", None,
       lambda p=p: run(precision=p), small_chain._launch("spectrum", width, p))
      for p in size.spectrum_precisions
    ),
    *(
      (f"kernels.small_chain.lyapunov_spectrum[warps={n}, stages={s}]", "vanish-sweep", None,
       lambda n=n, s=s: run(num_warps=n, num_stages=s), (n, s))
      for n, s in _spectrum_launches(width, size.spectrum_launches)
    ),
  ]  # fmt: skip
  entries = []
  for name, impl, path, fn, launch in candidates:
    entry, out = _entry(name, impl, path, fn, size)
    if launch is not None:
      entry["launch"] = {"num_warps": launch[0], "num_stages": launch[1]}
    spectrum = getattr(out, "spectrum", out)
    if out is not None and name != "jax.chain[highest]":
      entry["path"] = getattr(out, "path", path)
      got = common.to_numpy(spectrum)[: len(exact)]
      entry["check"] = {
        "against": "float64 Householder (vn.lyapunov_spectrum, x64) on the first members",
        "members": len(exact),
        "max_abs_per_layer": float(np.abs(got - exact).max() / depth),
      }
    entry["precision"] = next((p for p in size.spectrum_precisions if p in name), "highest")
    entries.append(entry)
  chain = entries[0].get("seconds")
  for e in entries[1:]:
    if chain and "seconds" in e:
      e["ratio_to_plain_chain"] = e["seconds"] / chain
  return {"members": members, "width": width, "depth": depth, "entries": entries}


def targets(report: dict[str, Any]) -> list[dict[str, Any]]:
  """Issue 6's points 3 and 4 with the measured figures (meaningful only on a GPU)."""
  out = []
  if report["path"] != "pallas_triton":
    return [
      {
        "target": "issue 6 points 2, 3 and 4",
        "measured": None,
        "met": None,
        "note": report["timing_note"],
      }
    ]
  for s in report["scalar"]:
    ours = [
      e
      for e in s["entries"]
      if e["impl"].startswith("vanish") and "factors_per_s" in e and e.get("checked")
    ]
    best = max(ours, key=lambda e: e["factors_per_s"], default={})
    rate = best.get("factors_per_s", 0)
    out.append(
      {
        "target": f"one-neuron chain ≥ {SCALAR_TARGET:.0e} factors/s ({s['chains']}×{s['depth']})",
        "measured": rate,
        "met": rate >= SCALAR_TARGET,
        "entry": best.get("name"),  # only entries whose numbers passed their check
      }
    )
  for s in report["small"]:
    if (s["members"], s["width"], s["depth"]) != (16384, 32, 50):
      continue
    for precision in dict.fromkeys(e["precision"] for e in s["entries"]):
      # only entries whose Jacobian matched the plain chain's at this precision count
      rtol = SMALL_CHECK_RTOL.get(precision, SMALL_CHECK_RTOL["default"])
      ours = [
        e
        for e in s["entries"]
        if e["impl"].startswith("vanish")
        and e["precision"] == precision
        and "speedup_vs_baseline" in e
        and e.get("check", {}).get("rel_diff", math.inf) <= rtol
      ]
      if ours:
        best = max(ours, key=lambda e: e["speedup_vs_baseline"])
        out.append(
          {
            "target": f"small width: kernel[{precision}] ≥ {SMALL_SPEEDUP_TARGET}× faster "
            f"than jax.chain[{precision}]",
            "measured": best["speedup_vs_baseline"],
            "met": best["speedup_vs_baseline"] >= SMALL_SPEEDUP_TARGET,
            "entry": best["name"],
          }
        )
  for s in report["spectrum"]:
    if (s["members"], s["width"], s["depth"]) != (16384, 32, 50):
      continue
    # Only entries within the accuracy target count; the fastest of them is reported.
    accurate = [
      e
      for e in s["entries"]
      if e["impl"].startswith("vanish")
      and "ratio_to_plain_chain" in e
      and e["check"]["max_abs_per_layer"] < SPECTRUM_ACCURACY_TARGET
    ]
    best = min(accurate, key=lambda e: e["ratio_to_plain_chain"], default=None)
    out.append(
      {
        "target": f"stable spectrum ≤ {SPECTRUM_RATIO_TARGET}× jax.chain[highest], every "
        f"exponent within {SPECTRUM_ACCURACY_TARGET} per layer of float64",
        "measured": None if best is None else best["ratio_to_plain_chain"],
        "met": best is not None and best["ratio_to_plain_chain"] <= SPECTRUM_RATIO_TARGET,
        "entry": None if best is None else best["name"],
        "precision": None if best is None else best["precision"],
      }
    )
  return out


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
  """Runs the benchmark, prints a table and writes the JSON report."""
  parser = common.argument_parser(__doc__, sorted(SIZES))
  parser.add_argument("--repeats", type=int, default=None)
  parser.add_argument(
    "--budget-s",
    type=float,
    default=None,
    help="skip the entries left (marked 'skipped') once the run has taken this many seconds",
  )
  parser.add_argument(
    "--sections",
    default=",".join(SECTIONS),
    help=f"comma-separated subset of {','.join(SECTIONS)} (default: all)",
  )
  parser.add_argument(
    "--use-kernel",
    default=None,
    choices=["auto", "pallas", "interpret", "reference"],
    help="default: 'pallas' on a supported GPU, else 'interpret' (CPU: a correctness run)",
  )
  args = parser.parse_args(argv)
  sections = args.sections.split(",")
  if not sections or any(name not in SECTIONS for name in sections):
    parser.error(
      f"--sections must be a comma-separated subset of {','.join(SECTIONS)}, got {args.sections!r}"
    )
  size = SIZES[args.size]
  size = dataclasses.replace(size, **{name: () for name in SECTIONS if name not in sections})
  if args.repeats:
    size = dataclasses.replace(size, repeats=args.repeats)
  use_kernel = args.use_kernel or ("pallas" if kernels.available() else "interpret")
  device = common.device_info()
  start = time.perf_counter()
  if args.budget_s is not None:
    size = dataclasses.replace(size, deadline=start + args.budget_s)
  timing_note = (
    "GPU timings"
    if kernels.resolve(use_kernel) == "pallas_triton"
    else f"NOT A TIMING: the kernels ran as {kernels.resolve(use_kernel)!r} on "
    f"{device['platform']} ({kernels.unavailable_reason() or 'by request'})"
  )
  report: dict[str, Any] = {
    **common.report_header(SCHEMA_VERSION, "kernels", args.size, device),
    "use_kernel": use_kernel,
    "path": kernels.resolve(use_kernel),
    "timing_note": timing_note,
    "timing": "median wall time of the repeats after one warm-up, block_until_ready each",
    "scalar": [],
    "small": [],
    "spectrum": [],
  }
  print(timing_note, flush=True)

  def save():
    report["targets"] = targets(report)
    report["wall_s"] = time.perf_counter() - start
    if args.out:
      common.write_json_atomic(args.out, report)

  for chains, depth in size.scalar:
    print(f"scalar chain {chains}×{depth}", flush=True)
    report["scalar"].append(run_scalar(chains, depth, size, device, use_kernel))
    save()
  for members, width, depth in size.small:
    print(f"small chain {members}×{width}×{depth}", flush=True)
    report["small"].append(run_small(members, width, depth, size, device, use_kernel))
    save()
  for members, width, depth in size.spectrum:
    print(f"small spectrum {members}×{width}×{depth}", flush=True)
    report["spectrum"].append(run_spectrum(members, width, depth, size, device, use_kernel))
    save()
  shape = {
    "scalar": lambda s: f"{s['chains']}×{s['depth']}",
    "small": lambda s: f"{s['members']}×{s['width']}×{s['depth']}",
  }
  shape["spectrum"] = shape["small"]
  rate = {
    "scalar": lambda e: common.fmt(e.get("factors_per_s")) + " f/s",
    "small": lambda e: f"{common.fmt(e.get('tflops'))} TF/s {common.fmt(e.get('pct_peak'))}%pk",
    "spectrum": lambda e: f"{common.fmt((e.get('check') or {}).get('max_abs_per_layer'))} /layer",
  }
  rows = [
    [
      shape[kind](s),
      e["name"],
      e.get("path"),
      common.fmt(e.get("seconds", math.nan) * 1e3),
      rate[kind](e),
      common.fmt(e.get("speedup_vs_baseline") or e.get("ratio_to_plain_chain")),
    ]
    for kind in ("scalar", "small", "spectrum")
    for s in report[kind]
    for e in s["entries"]
  ]
  header = ["shape", "entry", "path", "ms", "rate or error", "speedup | × chain"]
  print(common.format_table(rows, header))
  for t in report["targets"]:
    print(f"target {t['target']}: measured {common.fmt(t['measured'])}, met={t['met']}")
  print(timing_note)
  if args.out:
    print(f"wrote {args.out}")
  return report


if __name__ == "__main__":
  main(sys.argv[1:])
