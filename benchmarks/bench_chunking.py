"""Streamed gradient statistics: the automatic chunk against hand-picked chunk sizes.

Issue 7, point 2: per-layer gradient-norm statistics of M tanh networks (weights
N(0, 1/n)) by :func:`vanish.streaming.gradient_statistics`, in this one process on
the same key, input and block (:func:`vanish.streaming.default_block` unless
``--block``), with ``chunk="auto"`` (:func:`vanish.streaming.choose_chunk`) and with a
sweep of hand-picked chunk sizes. Every entry is compiled and run once, then timed in
``repeats`` interleaved rounds (one run of every entry per round, so load from other
processes hits all entries alike); members/s is from the best round (``min_s``), the
median is recorded too. Each entry also records the chunk, the number of calls, the
memory model's bytes per device (one block: a call holds one block at a time) and, on
a GPU, the device's peak memory. The target: the automatic chunk within 10 % of the
best hand-picked throughput. It also records whether every chunk size gave bitwise
identical statistics (point 3).

Usage::

  python -m benchmarks.bench_chunking --size tiny \\
    --out benchmarks/results/chunking_cpu.json                 # CPU / CI
  python -m benchmarks.bench_chunking --size paper \\
    --out benchmarks/results/chunking_h100.json     # 10⁶ members × width 128 × depth 100
"""

from __future__ import annotations

import dataclasses
import sys
import time
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

import vanish as vn
from benchmarks import common
from experiments._common import positive_int
from vanish import streaming

SCHEMA_VERSION = 2
TARGET = 0.9  # auto throughput / best hand-picked throughput
FIELDS = ("count", "mean", "var", "min", "max", "vanish", "explode", "histogram", "ratio_mean")


@dataclasses.dataclass(frozen=True)
class Size:
  members: int
  width: int
  depth: int
  chunks: tuple[int, ...]  # hand-picked chunk sizes (rounded to whole blocks)
  repeats: int  # interleaved timed rounds


SIZES = {
  # CPU / CI. The default CPU block of these networks is 64 members (50 kB each).
  "tiny": Size(members=2000, width=16, depth=10, chunks=(64, 256, 1024, 2048), repeats=25),
  # Issue 7's target on one H100: the memory model gives ≈ 29 MB a member, so the default
  # block is 128 members (3.7 GB); the sweep goes from one block a call to 128.
  "paper": Size(
    members=1_000_000,
    width=128,
    depth=100,
    chunks=(128, 1024, 4096, 8192, 16384),
    repeats=1,
  ),
}


def _peak_bytes() -> int | None:
  stats = jax.local_devices()[0].memory_stats() or {}
  return stats.get("peak_bytes_in_use")


def run(
  size: Size, *, seed: int, memory_limit: int | None, block: int | None = None
) -> dict[str, Any]:
  """All entries for one size."""
  net = vn.MLP([size.width] * (size.depth + 1), "tanh", vn.init.gaussian(1.0))
  x = np.asarray(jax.random.normal(jax.random.key(seed + 1), (size.width,), jnp.float32))
  member_bytes = streaming.bytes_per_member(net)
  devices = jax.local_devices()
  if block is None:
    block = streaming.default_block(size.members, member_bytes, devices[0].platform)
  auto_chunk = streaming.choose_chunk(
    size.members, member_bytes, memory_limit=memory_limit, block=block, devices=devices
  )

  def stats_for(chunk: int | str, members: int = size.members):
    return streaming.gradient_statistics(
      net,
      x,
      key=jax.random.key(seed),
      members=members,
      chunk=chunk,
      block=block,
      memory_limit=memory_limit,
      progress=False,
    )

  hand = sorted({max(block, c // block * block) for c in size.chunks})
  entries: dict[str, dict[str, Any]] = {}
  results, timed = {}, {}
  for label, chunk in [("auto", "auto"), *((str(c), c) for c in hand)]:
    real = auto_chunk if chunk == "auto" else chunk
    entry: dict[str, Any] = {
      "chunk": label,
      "members_per_chunk": real,
      "chunks": -(-size.members // real),
      "model_bytes_per_device": block * member_bytes,
    }
    entries[label] = entry
    start = time.perf_counter()
    try:  # compile and warm up on one call: the same program (the member count is traced)
      stats_for(chunk, members=min(size.members, real))
    except Exception as err:  # noqa: BLE001 - an out-of-memory chunk must not lose the others
      entry["error"] = f"{type(err).__name__}: {str(err)[:300]}"
      continue
    entry["warmup_s"] = time.perf_counter() - start
    timed[label] = chunk
  times: dict[str, list[float]] = {label: [] for label in timed}
  for _ in range(size.repeats):  # interleaved rounds: background load hits every entry alike
    for label, chunk in timed.items():
      start = time.perf_counter()
      results[label] = stats_for(chunk)
      times[label].append(time.perf_counter() - start)
  for label, entry in entries.items():
    if label not in times:
      continue
    timing = common.Timing(times[label], entry.pop("warmup_s"))
    entry.update(timing.as_dict())
    entry["members_per_s"] = size.members / timing.minimum
    entry["members_per_s_median"] = size.members / timing.median
    entry["peak_bytes_in_use"] = _peak_bytes()
    print(
      f"  chunk {label:>6} ({entry['members_per_chunk']} members, {entry['chunks']} calls): "
      f"{entry['members_per_s']:.4g} members/s (median {entry['members_per_s_median']:.4g})",
      flush=True,
    )
  entries = list(entries.values())
  done = [e for e in entries if "members_per_s" in e]
  hand_done = [e for e in done if e["chunk"] != "auto"]
  auto = next((e for e in done if e["chunk"] == "auto"), None)
  best = max(hand_done, key=lambda e: e["members_per_s"]) if hand_done else None
  ratio = None if auto is None or best is None else auto["members_per_s"] / best["members_per_s"]
  median_ratio = None
  if auto is not None and best is not None:
    best_median = max(e["members_per_s_median"] for e in hand_done)
    median_ratio = auto["members_per_s_median"] / best_median
  reference = results.get("auto")
  identical = None
  if reference is not None and len(results) > 1:
    identical = all(
      np.array_equal(getattr(r, f), getattr(reference, f), equal_nan=True)
      for r in results.values()
      for f in FIELDS
    )
  summary = None
  if reference is not None:
    summary = {
      "mean_first": float(reference.mean[0]),
      "mean_last": float(reference.mean[-1]),
      "std_first": float(reference.std[0]),
      "p_vanish_first": float(reference.p_vanish[0]),
    }
  return {
    "members": size.members,
    "width": size.width,
    "depth": size.depth,
    "block": block,
    "model_bytes_per_member": member_bytes,
    "auto_chunk": auto_chunk,
    "entries": entries,
    "best_hand_picked": None if best is None else best["chunk"],
    "auto_over_best": ratio,
    "auto_over_best_median": median_ratio,
    "target": f"auto ≥ {TARGET:.0%} of the best hand-picked members/s (best rounds)",
    "met": None if ratio is None else ratio >= TARGET,
    "bitwise_identical_across_chunks": identical,
    "statistics": summary,
  }


def _chunk_list(text: str) -> list[int]:
  return [positive_int(part) for part in text.split(",")]


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
  """Runs the benchmark, writes the JSON report and prints a table."""
  parser = common.argument_parser(__doc__, sorted(SIZES))
  parser.add_argument("--members", type=int, default=None, help="override the ensemble size")
  parser.add_argument("--memory-limit", type=int, default=None, help="bytes per device")
  parser.add_argument("--block", type=int, default=None, help="members per block (default: auto)")
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument(
    "--chunks",
    type=_chunk_list,
    default=None,
    help="hand-picked chunk sizes, comma-separated (default by size)",
  )
  parser.add_argument(
    "--repeats", type=positive_int, default=None, help="timed rounds (default by size)"
  )
  args = parser.parse_args(argv)
  size = SIZES[args.size]
  if args.members is not None:
    size = dataclasses.replace(size, members=args.members)
  if args.repeats is not None:
    size = dataclasses.replace(size, repeats=args.repeats)
  if args.chunks is not None:
    size = dataclasses.replace(size, chunks=tuple(args.chunks))
  start = time.perf_counter()
  device = common.device_info()
  print(f"{args.size}: {size.members} members × width {size.width} × depth {size.depth}")
  result = run(size, seed=args.seed, memory_limit=args.memory_limit, block=args.block)
  report = {
    **common.report_header(SCHEMA_VERSION, "chunking", args.size, device),
    "dtype": "float32",
    "precision": "highest",
    "network": {"activation": "tanh", "weights": "gaussian(sigma_w2=1)", "biases": "zeros"},
    "timing": (
      "wall time of whole gradient_statistics runs after a one-call warm-up (same program), "
      "in interleaved rounds; "
      "members_per_s from the best round, members_per_s_median from the median"
    ),
    "result": result,
    "wall_s": time.perf_counter() - start,
  }
  if args.out:
    common.write_json_atomic(args.out, report)
  rows = [
    [
      e["chunk"],
      e["members_per_chunk"],
      e["chunks"],
      common.fmt(e.get("members_per_s")),
      e.get("error", "")[:40],
    ]
    for e in result["entries"]
  ]
  print(common.format_table(rows, ["chunk", "members", "chunks", "members/s", "note"]))
  print(
    f"auto/best = {common.fmt(result['auto_over_best'])} (target ≥ {TARGET}); bitwise identical "
    f"across chunks: {result['bitwise_identical_across_chunks']}"
  )
  if args.out:
    print(f"wrote {args.out}")
  return report


if __name__ == "__main__":
  main(sys.argv[1:])
