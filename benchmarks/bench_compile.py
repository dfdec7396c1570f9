"""XLA compile vs run time of vanish's programs on CPU: default emitters vs the elemental one.

Session 6, helper F: on CPU the quick experiments, ``vanish reproduce --quick`` and the
tests are dominated by XLA compilation. A chain program is small (a forward and a
backward ``lax.scan``, ~25-70 fused kernels) and its compile time is per-kernel
overhead: XLA's default MLIR fusion emitters run an MLIR pipeline and LLVM for every
kernel. The option ``xla_cpu_use_fusion_emitters=False`` (:data:`OPTIONS`; the older
elemental emitter, which also fuses a little differently) compiles the same programs
20-60 % faster, but their runs take up to ~45 % more wall time on 2 cores (about the same
CPU time), and results agree within float32 rounding, not always bit for bit. So vanish
does not set it; this benchmark keeps the trade-off measurable. For each program the
quick experiments compile, in one process:

* **compile**: a fresh ``jax.jit`` of the program's function (no trace, lowering or
  executable cache) with and without :data:`OPTIONS`, ``lower(...).compile()`` timed as
  process CPU time (all threads; robust to load from other processes) and wall time,
  in interleaved rounds (one compile of each per round); best and all.
* **run**: the compiled program's wall time (``common.time_fn``).
* **check**: whether both programs' outputs are bitwise equal (NaN equal to NaN), and
  their largest absolute difference.

Both columns compile at LLVM's default optimization level 2, whatever ``XLA_FLAGS`` says
(the test suite sets 0). On other platforms the option does not apply and the benchmark
says so (both columns compile the same).

Usage::

  python -m benchmarks.bench_compile --size tiny --out /tmp/compile.json    # CI smoke
  python -m benchmarks.bench_compile --size paper --out /tmp/compile.json   # quick-mode nets
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

import vanish as vn
from benchmarks import common
from experiments._common import positive_int
from vanish import chains, probability, spectrum, streaming
from vanish import networks as _networks
from vanish import sharding as _sharding

SCHEMA_VERSION = 1
OPTIONS = {"xla_cpu_use_fusion_emitters": False}

Case = tuple[str, Callable[..., Any], tuple[Any, ...]]  # name, f(*dynamic), dynamic args


def _chain(fun, net, params, x, *rest, **static) -> Case:
  return lambda *a: fun.__wrapped__(net, *a, **static), (params, x, None, *rest)


def _log_gradient_norms(net, members, inputs) -> tuple[Callable[..., Any], tuple[Any, ...]]:
  params = net.init(jax.random.key(0), members)
  shape = (inputs, net.widths[0]) if inputs else (net.widths[0],)
  x = jax.random.normal(jax.random.key(1), shape)
  cotangent = jax.random.normal(jax.random.key(2), shape[:-1] + (net.widths[-1],))
  static = {"precision": "highest", "batched": bool(inputs), "wrt": "bias", "loss": None}
  return _chain(chains._log_gradient_norms, net, params, x, cotangent, **static)


def _one_neuron(fun, net, members, inputs):
  params = net.init(jax.random.key(0), members)
  x = jax.random.normal(jax.random.key(1), (inputs, 1))
  return _chain(fun, net, params, x, precision="highest", batched=True)


def _spectrum(net, members):
  params = net.init(jax.random.key(0), members)
  x = jax.random.normal(jax.random.key(1), (net.widths[0],))
  static = {"precision": "highest", "batched": False, "k": net.widths[0], "refine": False}
  return _chain(spectrum._lyapunov_spectrum, net, params, x, **static)


def _stream_chunk(net, block, blocks):
  """One ``gradient_statistics`` chunk (as ``streaming.measured_call_bytes`` builds it)."""
  device = jax.local_devices()[0]
  size = block * blocks
  spec = streaming._ChunkSpec(net, "float32", "highest", "bias", False, block, size, 400, (device,))
  index = _sharding.shard_members(
    jnp.arange(size, dtype=jnp.uint32), _sharding.member_mesh([device])
  )
  x = jax.random.normal(jax.random.key(1), (net.widths[0],))
  cotangent = jnp.ones((net.widths[-1],))
  scalars = (jnp.float32(np.log(1e-3)), jnp.float32(-200), jnp.float32(1))
  args = (jax.random.key(0), None, index, jnp.uint32(size), x, cotangent, scalars)
  return lambda *a: streaming._run_chunk.__wrapped__(spec, *a), args


def _init(net, members):
  sampler = _networks._Sampler.of(net)
  init = _networks._init_members.__wrapped__
  return (
    lambda k, f: init(sampler, k, members, jnp.dtype(jnp.float32), f),
    (jax.random.key(0), jnp.uint32(0)),
  )


def _cases(size: str) -> list[tuple[str, Callable[[], tuple[Callable[..., Any], tuple]]]]:
  g, n, z = vn.init.gaussian(1.0), vn.init.normal(1.0), vn.init.zeros()
  if size == "tiny":
    return [
      (
        "log_gradient_norms [3,5,5,2] M=2",
        lambda: _log_gradient_norms(vn.MLP([3, 5, 5, 2], "tanh", g, n), 2, 0),
      ),
      (
        "scalar_chain [1]*5 M=8",
        lambda: _one_neuron(chains._scalar_chain, vn.MLP([1] * 5, "sigmoid", n, n), 8, 2),
      ),
    ]
  return [  # the programs the experiments' quick modes compile
    (
      "log_gradient_norms tanh [64]*51 M=64 x4 (probabilistic_model)",
      lambda: _log_gradient_norms(vn.MLP([64] * 51, "tanh", g, z), 64, 4),
    ),
    (
      "log_gradient_norms tanh [16]*21 M=64",
      lambda: _log_gradient_norms(vn.MLP([16] * 21, "tanh", g, n), 64, 0),
    ),
    (
      "log_gradient_norms relu [64]+[32]*8+[10] M=8 x4",
      lambda: _log_gradient_norms(vn.MLP([64] + [32] * 8 + [10], "relu", vn.init.he()), 8, 4),
    ),
    (
      "scalar_chain sigmoid [1]*51 M=4096 x4",
      lambda: _one_neuron(chains._scalar_chain, vn.MLP([1] * 51, "sigmoid", n, n), 4096, 4),
    ),
    (
      "scalar_chain_log_factors sigmoid [1]*51 M=4096 x4 (probabilistic_model)",
      lambda: _one_neuron(probability._scalar_factors, vn.MLP([1] * 51, "sigmoid", n, n), 4096, 4),
    ),
    (
      "lyapunov_spectrum tanh [16]*1001 M=16 refine=False (lyapunov_depth)",
      lambda: _spectrum(vn.MLP([16] * 1001, "tanh", g, n), 16),
    ),
    (
      "gradient_statistics chunk tanh [16]*21 block 64 x2",
      lambda: _stream_chunk(vn.MLP([16] * 21, "tanh", g, n), 64, 2),
    ),
    (  # larger than quick mode: where the slower run can outweigh the faster compile
      "log_gradient_norms tanh [256]*51 M=32 x16 (run-time check)",
      lambda: _log_gradient_norms(vn.MLP([256] * 51, "tanh", g, z), 32, 16),
    ),
    ("net.init [64]*51 M=64", lambda: _init(vn.MLP([64] * 51, "tanh", g, z), 64)),
    ("net.init [1]*51 M=4096", lambda: _init(vn.MLP([1] * 51, "sigmoid", n, n), 4096)),
  ]


IMPLS = ("default", "elemental")


def compile_options(impl: str) -> dict[str, Any] | None:
  """Both at LLVM's default level 2 (what users run, whatever ``XLA_FLAGS`` says here, e.g.
  the test suite's level 0); ``elemental`` adds :data:`OPTIONS`. Off the CPU: both None."""
  if jax.default_backend() != "cpu":
    return None
  level = {"xla_backend_optimization_level": 2}
  return {**level, **OPTIONS} if impl == "elemental" else level


def options_supported() -> bool:
  """Whether this jaxlib's CPU compiler knows :data:`OPTIONS` (jaxlib 0.11 dropped the flag)."""
  options = compile_options("elemental")
  if options is None:
    return True
  try:
    jax.jit(lambda x: x + 1, compiler_options=options).lower(np.float32(0)).compile()
  except jax.errors.JaxRuntimeError as error:
    if "No such compile option" in str(error):
      return False
    raise
  return True


def _compile(impl: str, fun: Callable[..., Any], args: tuple) -> tuple[float, float, Any]:
  options = compile_options(impl)
  fresh = jax.jit(lambda *a: fun(*a), compiler_options=options)
  lowered = fresh.lower(*args)
  wall, cpu = time.perf_counter(), time.process_time()
  compiled = lowered.compile()
  return time.process_time() - cpu, time.perf_counter() - wall, compiled


def _max_abs_diff(a: Any, b: Any) -> float:
  """Largest ``|a − b|`` over the floating outputs' finite entries (0 if all identical)."""
  worst = 0.0
  for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
    u, v = np.asarray(u), np.asarray(v)
    if np.issubdtype(u.dtype, np.floating):
      finite = np.isfinite(u) & np.isfinite(v)
      if finite.any():
        worst = max(worst, float(np.abs(u[finite].astype(np.float64) - v[finite]).max()))
  return worst


def run(size: str, repeats: int) -> list[dict[str, Any]]:
  """One entry per program: compile times with and without :data:`OPTIONS`, run times, bits."""
  entries = []
  for name, make in _cases(size):
    fun, args = make()
    cpu_s: dict[str, list[float]] = {impl: [] for impl in IMPLS}
    wall_s: dict[str, list[float]] = {impl: [] for impl in IMPLS}
    compiled = {}
    for _ in range(repeats):
      for impl in IMPLS:
        cpu, wall, compiled[impl] = _compile(impl, fun, args)
        cpu_s[impl].append(cpu)
        wall_s[impl].append(wall)
    outputs = {impl: c(*args) for impl, c in compiled.items()}
    runs = {
      impl: common.time_fn(lambda c=c, a=args: c(*a), repeats=repeats)[0]
      for impl, c in compiled.items()
    }
    best = {impl: min(v) for impl, v in cpu_s.items()}
    entries.append(
      {
        "program": name,
        "compile_cpu_s": cpu_s,
        "compile_wall_s": wall_s,
        "compile_cpu_best_s": best,
        "compile_wall_best_s": {impl: min(v) for impl, v in wall_s.items()},
        "compile_cpu_saving": 1 - best["elemental"] / best["default"],
        "run": {impl: t.as_dict() for impl, t in runs.items()},
        "run_ratio": runs["elemental"].minimum / runs["default"].minimum,
        "bitwise_equal": common.same_bits(outputs["default"], outputs["elemental"]),
        "max_abs_diff": _max_abs_diff(outputs["default"], outputs["elemental"]),
      }
    )
  return entries


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
  """Runs the benchmark, writes the JSON report and prints a table."""
  parser = common.argument_parser(__doc__, ["tiny", "paper"])
  parser.add_argument(
    "--repeats", type=positive_int, default=3, help="interleaved compile rounds, runs"
  )
  args = parser.parse_args(argv)
  start = time.perf_counter()
  supported = options_supported()
  if not supported:
    print(f"this jaxlib ({jax.__version__}) has no {sorted(OPTIONS)}: nothing to compare")
  entries = run(args.size, args.repeats) if supported else []
  report = {
    **common.report_header(SCHEMA_VERSION, "compile", args.size),
    "dtype": "float32",
    "options_supported": supported,
    "compiler_options": {impl: compile_options(impl) for impl in IMPLS},
    "timing": (
      "fresh jit per compile, interleaved rounds, best of --repeats; compile as process CPU "
      "time (all threads) and wall; run by common.time_fn"
    ),
    "entries": entries,
    "wall_s": time.perf_counter() - start,
  }
  if args.out:
    common.write_json_atomic(args.out, report)
  rows = [
    [
      e["program"],
      common.fmt(e["compile_cpu_best_s"]["default"]),
      common.fmt(e["compile_cpu_best_s"]["elemental"]),
      f"{100 * e['compile_cpu_saving']:.0f} %",
      common.fmt(e["run"]["default"]["min_s"]),
      common.fmt(e["run"]["elemental"]["min_s"]),
      f"{e['run_ratio']:.2f}",
      e["bitwise_equal"],
    ]
    for e in entries
  ]
  header = ["program", "compile cpu s", "elemental", "saved", "run s", "elemental", "ratio"]
  print(common.format_table(rows, [*header, "same bits"]))
  if args.out:
    print(f"wrote {args.out}")
  return report


if __name__ == "__main__":
  main(sys.argv[1:])
