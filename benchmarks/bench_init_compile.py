"""net.init's sampler: XLA compile and run time against vmapped jax.random (the old sampler).

Session 6, helper C: on CPU, ``net.init`` was dominated by XLA compilation (2-14 s per
network). jax lowers threefry on CPU to a while loop whose rotation amounts are loop
state; under the sampler's nested vmaps LLVM's loop unswitching and loop-strength
reduction spend seconds per draw. ``vanish.init.sample`` hashes the counters in
straight-line ops instead. This benchmark measures, in one process, for each network:

* **compile**: a fresh ``jax.jit`` (no trace, lowering or executable cache) of the whole
  sampler, ``lower(...).compile()`` timed, in interleaved rounds (one compile of each
  implementation per round, so load from other processes hits both alike); best and all.
* **run**: the compiled sampler's wall time (``common.time_fn``).
* **check**: both implementations' parameters are bitwise equal.

The baseline is the previous implementation: member keys and layer keys by vmapped
``jax.random.fold_in``, each layer drawn by ``jax.random.normal``/``uniform`` under
``vmap`` (``vanish.init._KeyDraws``).

Usage::

  python -m benchmarks.bench_init_compile --size tiny --out /tmp/init.json   # CI smoke
  python -m benchmarks.bench_init_compile --size paper --out /tmp/init.json  # quick-mode nets
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp

import vanish as vn
from benchmarks import common
from experiments._common import positive_int
from vanish import init as _init
from vanish import networks as _networks

SCHEMA_VERSION = 1


def _networks_for(size: str) -> list[tuple[str, vn.MLP, int]]:
  g, n = vn.init.gaussian(1.0), vn.init.normal(1.0)
  if size == "tiny":
    return [("[3,5,5,2] M=2", vn.MLP([3, 5, 5, 2], "tanh", g, n), 2)]
  return [  # the networks the experiments' quick modes build, and two at 1e8 floats
    ("[5,9,9,9] M=4", vn.MLP([5, 9, 9, 9], "tanh", g, n), 4),
    ("[1]*51 M=4096 (probabilistic_model)", vn.MLP([1] * 51, "sigmoid", n, n), 4096),
    ("[64]*51 M=64 (probabilistic_model)", vn.MLP([64] * 51, "tanh", g, vn.init.zeros()), 64),
    (
      "[64]+[32]*20+[10] M=4 (activation_depth)",
      vn.MLP([64] + [32] * 20 + [10], "sigmoid", g, n),
      4,
    ),
    ("[64]+[32]*8+[10] M=8 (trainability)", vn.MLP([64] + [32] * 8 + [10], "tanh"), 8),
    ("[16]*21 M=64 (phase_map)", vn.MLP([16] * 21, "tanh", g, n), 64),
    ("[1024]*97 M=1 (1e8 floats)", vn.MLP([1024] * 97, "tanh", g, n), 1),
    ("[256]*51 M=32 (1e8 floats)", vn.MLP([256] * 51, "tanh", g, n), 32),
  ]


def _baseline_draw(initializer, key, shape, dtype):
  sampler = _init._SAMPLERS[initializer.name]
  return sampler(_init._KeyDraws(key), shape, dtype, **dict(initializer.params))


def baseline_init_members(sampler, key, members, dtype, first):
  """The previous ``_init_members``: jax.random under nested vmaps (same parameters)."""

  def member(k):
    streams = jax.random.fold_in(k, 0), jax.random.fold_in(k, 1)
    params = []
    for seg in sampler.segments:
      index = seg.start + jnp.arange(seg.depth, dtype=jnp.uint32)

      def per_layer(initializer, stream, shape, index=index):
        draw = lambda i: _baseline_draw(initializer, jax.random.fold_in(stream, i), shape, dtype)  # noqa: E731
        return jax.vmap(draw)(index)

      w = per_layer(sampler.weights, streams[0], (seg.fan_out, seg.fan_in))
      params.append({"w": w, "b": per_layer(sampler.biases, streams[1], (seg.fan_out,))})
    return tuple(params)

  keys = jax.vmap(lambda m: jax.random.fold_in(key, m))(
    first + jnp.arange(members, dtype=jnp.uint32)
  )
  return jax.vmap(member)(keys)


IMPLS = {"baseline": baseline_init_members, "vanish": _networks._init_members.__wrapped__}


def _compile(impl, net, members):
  sampler = _networks._Sampler.of(net)
  fresh = jax.jit(lambda k, f: IMPLS[impl](sampler, k, members, jnp.dtype(jnp.float32), f))
  lowered = fresh.lower(jax.random.key(0), jnp.uint32(0))
  start = time.perf_counter()
  compiled = lowered.compile()
  return time.perf_counter() - start, compiled


def run(size: str, repeats: int) -> list[dict[str, Any]]:
  """One entry per network: compile times of both implementations, run times, bitwise check."""
  entries = []
  for name, net, members in _networks_for(size):
    compile_s: dict[str, list[float]] = {impl: [] for impl in IMPLS}
    compiled = {}
    for _ in range(repeats):
      for impl in IMPLS:
        seconds, compiled[impl] = _compile(impl, net, members)
        compile_s[impl].append(seconds)
    args = (jax.random.key(1), jnp.uint32(3))
    outputs = {impl: c(*args) for impl, c in compiled.items()}
    same = common.same_bits(outputs["baseline"], outputs["vanish"])
    runs = {
      impl: common.time_fn(lambda c=c, args=args: c(*args), repeats=repeats)[0]
      for impl, c in compiled.items()
    }
    floats = sum(int(leaf.size) for leaf in jax.tree.leaves(outputs["vanish"]))
    entries.append(
      {
        "network": name,
        "members": members,
        "floats": floats,
        "compile_s": compile_s,
        "compile_best_s": {impl: min(v) for impl, v in compile_s.items()},
        "compile_speedup": min(compile_s["baseline"]) / min(compile_s["vanish"]),
        "run": {impl: t.as_dict() for impl, t in runs.items()},
        "run_speedup": runs["baseline"].minimum / runs["vanish"].minimum,
        "bitwise_equal": same,
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
  entries = run(args.size, args.repeats)
  report = {
    **common.report_header(SCHEMA_VERSION, "init_compile", args.size),
    "dtype": "float32",
    "timing": "fresh jit per compile, interleaved rounds, best of --repeats; run by common.time_fn",
    "entries": entries,
    "wall_s": time.perf_counter() - start,
  }
  if args.out:
    common.write_json_atomic(args.out, report)
  rows = [
    [
      e["network"],
      common.fmt(e["compile_best_s"]["baseline"]),
      common.fmt(e["compile_best_s"]["vanish"]),
      common.fmt(e["run"]["baseline"]["min_s"]),
      common.fmt(e["run"]["vanish"]["min_s"]),
      e["bitwise_equal"],
    ]
    for e in entries
  ]
  header = ["network", "compile old s", "compile new s", "run old s", "run new s", "same bits"]
  print(common.format_table(rows, header))
  if args.out:
    print(f"wrote {args.out}")
  return report


if __name__ == "__main__":
  main(sys.argv[1:])
