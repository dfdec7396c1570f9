"""Ensemble training: M members in one compiled step vs M sequential runs, and the logging cost.

Measures, in one process on the same network, parameters, data and mini-batch order
(issue 4, "Performance"):

* **(a) Ensemble vs sequential.** ``training.train`` of M members in one call against a
  Python loop of M one-member ``training.train`` calls (member m's own parameters), both
  after a warm-up call that compiles them; reported as member-steps per second and the
  ratio (target ≥ 20× on a GPU at M = 64). Two levels: the public call (includes the
  per-epoch evaluation of the full training and test sets, input checks, the run
  fingerprint and host transfers: what a user's loop pays) and the compiled epoch alone
  (``training._run_epoch``: the vmapped ``lax.scan`` over mini-batches). Correctness: the
  ensemble's member m equals the one-member run m.
* **(b) Logging overhead.** ``training.train`` cannot turn its per-layer logging off, so
  the baseline is a minimal plain step written here: ``value_and_grad`` of the same cost
  through the same forward (``vanish.models.apply``), ``optax`` update, scanned over the
  same mini-batches and vmapped over members, keeping only the loss. Compared with (i) the
  same plain step plus the per-layer norms ``‖∂C/∂b^l‖, ‖∂C/∂W^l‖_F`` (one ``Σ g²`` per
  tensor), (ii) the plain step plus ``Σ g²`` of every layer from two zero-padded stacks,
  one reduction each (``plain_with_packed_norms``: 2 reductions a step instead of vanish's
  6, a candidate for the GPU, where launches dominate) and (iii) vanish's compiled epoch
  (``training._run_epoch``: per-tensor ``Σ g²``, their exactness checks reduced by one
  ``all`` a step, the step's log as one vector summed in the scan's carry); overhead =
  time / plain − 1 (target ≤ 10 %). Correctness: vanish's and the plain step's parameters
  agree. On the H100 (session 14, ``results/ensemble_training_h100.json``; 64 members,
  ~84 µs a plain step, bound by kernel launches) vanish's epoch cost **+33.8 %**, the
  plain step with the same norms +9.9 %, the packed norms +17 %; the present step (the
  loss behind a barrier, below) is not yet measured on a GPU. CPU ``--quick`` (shared 2
  cores, session 14): vanish +5.0–6.9 % (four runs), the plain step's own norms
  +2.9–5.5 %, the packed norms +10–25 % (the CPU materializes the padded stacks). A
  variant that logged one 0/1 flag per norm and reduced them once per epoch, after the
  scan, instead of the ``all`` every step, measured +5.3–8.0 % (three runs, noise) and
  changed no op count (below), so it was reverted.

* **Structure.** Every entry also records ``loop_body_ops``: the ops of its compiled scanned
  step that launch a kernel on a GPU (:func:`loop_body_ops`: fusions, reductions, custom
  calls, copies, dynamic-update-slices; nested loops times their trip counts), with
  ``loop_body_detail`` (by opcode), so a GPU run shows each time beside its per-step launch
  count. On the CPU XLA fuses differently: ``--quick`` gives vanish 84 (also with the
  per-norm flags, and with the loss barrier), the plain step 79 without the norms and 85
  with them. A deviceless H100 compile with jax 0.10.2 (``jax.experimental.topologies``
  with an H100 target config, Triton GEMMs off) gave 58 for vanish (also with the per-norm
  flags: the ``all`` sits in the log's kernel), 56 and 61 for the plain step without and
  with the norms, 61 packed, so launches alone do not explain vanish's +20 µs a step on the
  H100 (jax 0.11.2 there). What it did show: XLA had fused the whole cross-entropy into
  the kernel that builds the step's log vector (``input_concatenate_fusion``: max and
  Σ exp of the logits again, the label gather, log, the batch mean), one thread per member
  looping over 10 examples × 10 classes, where the plain step computes the per-example
  losses in the last bias's update kernel (640 threads) and their mean in the kernel that
  writes its loss. The loss now passes ``lax.optimization_barrier`` before it is packed
  (``training._packed_log``): the same compile gives 60 for vanish (+1 fusion, the
  loss's mean, +1 copy), the per-example losses in the update kernel as in the plain step,
  and only the norms' sums, ``log_g`` and the check in the log's kernel; logs and
  parameters are bitwise unchanged on the CPU. Whether that closes the gap is for the
  next GPU run to measure.

Network: Nielsen's 64-30-30-30-10 sigmoid net (``gaussian(1.0)`` weights, ``normal(1.0)``
biases, linear readout, softmax cross-entropy), SGD η = 0.1, batches of 10, sklearn digits.
Times are medians after one warm-up each, with ``block_until_ready``; the functions being
compared are timed in interleaved rounds (rotating order) so load drift on a shared
machine hits them alike; ratios of the minima are reported too.

Run::

  python -m benchmarks.bench_ensemble_training --quick   # CPU: 16 members, 1 epoch
  python -m benchmarks.bench_ensemble_training --full    # GPU: 64 members, 1 epoch

Writes ``benchmarks/results/ensemble_training_<device>.json`` (``--out`` to change).
"""

from __future__ import annotations

import argparse
import collections
import functools
import os
import re
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import lax

import vanish as vn
from benchmarks import common
from vanish import data, models, training

SCHEMA_VERSION = 1
SIZES = {
  "tiny": {"members": 4, "train_size": 100, "epochs": 1, "repeats": 1},
  "quick": {"members": 16, "train_size": None, "epochs": 1, "repeats": 7},
  "full": {"members": 64, "train_size": None, "epochs": 1, "repeats": 5},
}
WIDTHS = [64, 30, 30, 30, 10]
LEARNING_RATE = 0.1
BATCH = 10
COST = "cross_entropy"
PRECISION = "highest"


def network() -> vn.MLP:
  return vn.MLP(WIDTHS, "sigmoid", vn.init.gaussian(1.0), vn.init.normal(1.0), readout="linear")


def _member(params, m: int):
  return tuple({k: v[m : m + 1] for k, v in seg.items()} for seg in params)


def _loss(net, params, x, y):
  out = models.apply(net, params, x, PRECISION)
  return training.cost(COST, out, y)


def _tensor_norms(grads) -> dict[str, jax.Array]:
  """``sqrt(Σ g²)`` per layer and tensor, one reduction each (``[L]`` biases, ``[L]`` weights)."""
  return {
    "bias": jnp.concatenate([jnp.sqrt(jnp.sum(g["b"] ** 2, axis=-1)) for g in grads]),
    "weight": jnp.concatenate([jnp.sqrt(jnp.sum(g["w"] ** 2, axis=(-2, -1))) for g in grads]),
  }


def _packed_norms(grads) -> dict[str, jax.Array]:
  """What vanish's plain norms need, ``Σ g²`` of every layer, from two zero-padded stacks
  (biases ``[L, 30]``, weights ``[L, 1920]`` here) and one reduction each: 2 reductions a
  step instead of 6 (a GPU candidate; see the docstring)."""

  def sums(rows):
    length = max(r.shape[1] for r in rows)
    stack = jnp.concatenate([jnp.pad(r, ((0, 0), (0, length - r.shape[1]))) for r in rows])
    return jnp.sum(stack**2, axis=1)

  bias_sums = sums([g["b"] for g in grads])
  weight_sums = sums([g["w"].reshape(g["w"].shape[0], -1) for g in grads])
  return {"bias": jnp.sqrt(bias_sums), "weight": jnp.sqrt(weight_sums)}


@functools.partial(jax.jit, static_argnames=("net", "log"))
def plain_epoch(net, params, opt_state, x, y, batches, *, log: str | None):
  """The plain-JAX baseline: a scanned SGD epoch, vmapped over members.

  With ``log="tensor"`` it also returns the epoch means of the per-layer gradient norms
  (:func:`_tensor_norms`), with ``log="packed"`` those of :func:`_packed_norms`.
  """
  tx = optax.sgd(LEARNING_RATE)
  norms = {None: lambda g: {}, "tensor": _tensor_norms, "packed": _packed_norms}[log]

  def one(params, opt_state):
    def step(carry, idx):
      p, s = carry
      loss, g = jax.value_and_grad(functools.partial(_loss, net))(p, x[idx], y[idx])
      row = {"loss": loss} | norms(g)
      u, s = tx.update(g, s, p)
      return (optax.apply_updates(p, u), s), row

    (p, s), rows = lax.scan(step, (params, opt_state), batches)
    return p, s, jax.tree.map(lambda a: jnp.mean(a, axis=0), rows)

  return jax.vmap(one)(params, opt_state)


def _vanish_args(net, params, opt_state, x, y, batches, x_test=None, y_test=None):
  """The arguments of ``training._run_epoch`` for one epoch as :func:`training.train` passes
  them (without a test set unless given: the epoch does not use it for ``log="epoch"``)."""
  config = training._static(
    training.Config(cost=COST, optimizer="sgd", learning_rate=LEARNING_RATE, batch_size=BATCH)
  )
  rates = (jnp.asarray(LEARNING_RATE, jnp.float32), jnp.asarray(0.0, jnp.float32))
  return (net, config, rates, params, opt_state, x, y, x_test, y_test, batches)


def _vanish_epoch(net, params, opt_state, x, y, batches):
  return training._run_epoch(*_vanish_args(net, params, opt_state, x, y, batches))


# --------------------------------------------------------------------------- compiled structure

# HLO instructions that launch nothing: buffer plumbing and literals
_NOT_KERNELS = frozenset({"parameter", "tuple", "get-tuple-element", "constant", "bitcast"})
_INSTRUCTION = re.compile(r"^\s*(?:ROOT\s+)?%?([\w.\-]+)\s*=\s*(.*)$")


def _opcode(rest: str) -> str | None:
  """The opcode of an HLO instruction's right-hand side ``TYPE opcode(operands), ...``."""
  end, depth = rest.find(" "), 0
  if rest.startswith("("):  # a tuple type: skip its balanced parentheses
    for index, char in enumerate(rest):
      depth += (char == "(") - (char == ")")
      if depth == 0:
        end = index + 1
        break
  match = re.match(r"\s*([\w\-]+)\(", rest[end:])
  return match.group(1) if match else None


def _computations(hlo: str) -> tuple[dict[str, list[tuple[str | None, str]]], str | None]:
  """The computations of a compiled module's text, ``name -> [(opcode, rhs)]``, and ENTRY's."""
  computations: dict[str, list[tuple[str | None, str]]] = {}
  entry = current = None
  for line in hlo.splitlines():
    if line and not line[0].isspace() and line.rstrip().endswith("{"):
      head = line.split()
      current = (head[1] if head[0] == "ENTRY" else head[0]).lstrip("%")
      entry = current if head[0] == "ENTRY" else entry
      computations[current] = []
    elif line.startswith("}"):
      current = None
    elif current is not None and (match := _INSTRUCTION.match(line)):
      computations[current].append((_opcode(match.group(2)), match.group(2)))
  return computations, entry


def _body_ops(computations, name: str) -> dict[str, Any]:
  """The ops of one loop body that can launch a kernel, nested loops expanded by trip count."""
  counts: collections.Counter[str] = collections.Counter()
  nested, per_step = [], 0
  for opcode, rest in computations[name]:
    if opcode is None or opcode in _NOT_KERNELS:
      continue
    counts[opcode] += 1
    per_step += 1
    if opcode == "while":
      inner = _body_ops(computations, re.search(r"body=%?([\w.\-]+)", rest).group(1))
      trip = re.search(r'known_trip_count":\{"n":"(\d+)"', rest)
      nested.append({"trip_count": int(trip.group(1)) if trip else None, "ops": inner["per_step"]})
      per_step += (int(trip.group(1)) if trip else 1) * inner["per_step"]
  return {
    "per_step": per_step,
    "top_level": sum(counts.values()),
    "by_opcode": dict(sorted(counts.items())),
    "nested_loops": nested,
  }


def loop_body_ops(compiled_text: str) -> dict[str, Any]:
  """What one step of a compiled scanned epoch launches: the ops of the scan's while-loop body.

  ``compiled_text`` is ``jax.jit(f).lower(...).compile().as_text()``. The scan is the
  outermost ``while`` of the entry computation with the most ops. Counted: the body's
  top-level instructions but parameters, tuples, get-tuple-elements, constants and bitcasts,
  i.e. fusions, reductions, custom calls (cuBLAS on a GPU), copies, dynamic-update-slices
  (on a GPU each is a kernel launch; on the CPU XLA fuses differently, so only the GPU's
  counts explain a GPU time). ``per_step`` also adds the ops of nested loops (the engine's
  scan over a segment's layers) times their known trip counts; ``by_opcode`` and
  ``nested_loops`` break it down.
  """
  computations, entry = _computations(compiled_text)
  loops = [
    _body_ops(computations, re.search(r"body=%?([\w.\-]+)", rest).group(1))
    for opcode, rest in computations.get(entry, [])
    if opcode == "while"
  ]
  return max(loops, key=lambda loop: loop["per_step"]) if loops else {"per_step": 0}


def _compiled_ops(fn, *args, **kwargs) -> dict[str, Any]:
  """:func:`loop_body_ops` of the jitted ``fn`` compiled for these arguments."""
  return loop_body_ops(fn.lower(*args, **kwargs).compile().as_text())


def interleaved(fns: Sequence[Any], repeats: int) -> list[tuple[common.Timing, Any]]:
  """Times each of ``fns`` after one warm-up each, in rounds (one call of each per round).

  Interleaving makes a slow drift of the machine's load (shared CPUs) hit every
  function alike, so the ratios stay fair even when the absolute times move.
  """
  outs, warm = [], []
  for fn in fns:
    start = time.perf_counter()
    outs.append(common.block(fn()))
    warm.append(time.perf_counter() - start)
  times: list[list[float]] = [[] for _ in fns]
  for r in range(repeats):
    for i in np.roll(np.arange(len(fns)), r):  # rotate the order every round
      start = time.perf_counter()
      outs[i] = common.block(fns[i]())
      times[i].append(time.perf_counter() - start)
  return [(common.Timing(t, w), o) for t, w, o in zip(times, warm, outs, strict=True)]


def _entry(name: str, timing: common.Timing, member_steps: int, **extra: Any) -> dict[str, Any]:
  return {
    "name": name,
    **timing.as_dict(),
    "member_steps": member_steps,
    "member_steps_per_s": member_steps / timing.median,
    **extra,
  }


def run(size: str, repeats: int | None = None) -> dict[str, Any]:
  """Runs every entry at ``size``; returns the report (see the module docstring)."""
  cfg = dict(SIZES[size])
  repeats = cfg["repeats"] if repeats is None else repeats
  members, epochs = cfg["members"], cfg["epochs"]
  train_set, test_set = data.digits(seed=0)
  if cfg["train_size"]:
    train_set = data.Dataset(train_set.x[: cfg["train_size"]], train_set.y[: cfg["train_size"]])
  net = network()
  params = net.init(jax.random.key(0), members)
  key = jax.random.key(1)
  steps = epochs * (train_set.x.shape[0] // BATCH)
  kwargs = dict(
    key=key, epochs=epochs, cost=COST, optimizer="sgd", learning_rate=LEARNING_RATE,
    batch_size=BATCH, precision=PRECISION,
  )  # fmt: skip
  entries: list[dict[str, Any]] = []

  # (a) the public call: M together vs M one-member calls
  def together():
    return training.train(net, params, train_set, test_set, **kwargs).params

  singles = [_member(params, m) for m in range(members)]

  def sequential():
    return [training.train(net, p, train_set, test_set, **kwargs).params for p in singles]

  (t_together, out_together), (t_seq, out_seq) = interleaved([together, sequential], repeats)
  member_diff = max(
    common.max_abs_diff(a[:, None][m], b)
    for m, single in enumerate(out_seq)
    for a, b in zip(jax.tree.leaves(out_together), jax.tree.leaves(single), strict=True)
  )
  entries.append(_entry("train.ensemble", t_together, members * steps))
  entries.append(_entry("train.sequential", t_seq, members * steps))

  # (a') the compiled epoch alone, and (b) the logging overhead against a plain step
  x = jnp.asarray(train_set.x)
  y = jnp.asarray(train_set.y)
  batches = training.epoch_batches(key, 0, x.shape[0], BATCH)
  opt = jax.vmap(optax.sgd(LEARNING_RATE).init)(params)
  opt1 = [jax.vmap(optax.sgd(LEARNING_RATE).init)(p) for p in singles]
  epoch_steps = members * batches.shape[0]
  timed = interleaved(
    [
      lambda: _vanish_epoch(net, params, opt, x, y, batches),
      lambda: [
        _vanish_epoch(net, p, o, x, y, batches)[0] for p, o in zip(singles, opt1, strict=True)
      ],
      lambda: plain_epoch(net, params, opt, x, y, batches, log=None),
      lambda: plain_epoch(net, params, opt, x, y, batches, log="tensor"),
      lambda: plain_epoch(net, params, opt, x, y, batches, log="packed"),
    ],
    max(repeats, 5),
  )
  (t_ep, out_ep), (t_ep_seq, _), (t_plain, out_plain), (t_plain_log, out_plain_log) = timed[:4]
  t_packed, out_packed = timed[4]
  plain_vs_vanish = max(
    common.max_abs_diff(a, b)
    for a, b in zip(jax.tree.leaves(out_plain[0]), jax.tree.leaves(out_ep[0]), strict=True)
  )
  speed_diff = common.max_abs_diff(out_plain_log[2]["bias"], out_ep[2]["bias_speed"][:, 0])
  packed_diff = common.max_abs_diff(out_packed[2]["weight"], out_plain_log[2]["weight"])
  entries.append(_entry("epoch.vanish_ensemble", t_ep, epoch_steps))
  entries.append(_entry("epoch.vanish_sequential", t_ep_seq, epoch_steps))
  entries.append(_entry("epoch.plain_no_logging", t_plain, epoch_steps))
  entries.append(_entry("epoch.plain_with_logging", t_plain_log, epoch_steps))
  entries.append(_entry("epoch.plain_with_packed_norms", t_packed, epoch_steps))

  # the step's structure: what each entry's scanned step launches (compiled again, untimed)
  x_test, y_test = jnp.asarray(test_set.x), jnp.asarray(test_set.y)
  structure = {  # train's epoch: the same program, with the (unused) test set and step flags
    "train.ensemble": _compiled_ops(
      training._run_epoch,
      *_vanish_args(net, params, opt, x, y, batches, x_test, y_test),
      np.zeros(batches.shape[0], bool),
    ),
    "train.sequential": _compiled_ops(
      training._run_epoch,
      *_vanish_args(net, singles[0], opt1[0], x, y, batches, x_test, y_test),
      np.zeros(batches.shape[0], bool),
    ),
    "epoch.vanish_ensemble": _compiled_ops(
      training._run_epoch, *_vanish_args(net, params, opt, x, y, batches)
    ),
    "epoch.vanish_sequential": _compiled_ops(
      training._run_epoch, *_vanish_args(net, singles[0], opt1[0], x, y, batches)
    ),
  }
  for name, log in (
    ("no_logging", None),
    ("with_logging", "tensor"),
    ("with_packed_norms", "packed"),
  ):
    ops = _compiled_ops(plain_epoch, net, params, opt, x, y, batches, log=log)
    structure[f"epoch.plain_{name}"] = ops
  for entry in entries:
    ops = structure[entry["name"]]
    entry["loop_body_ops"] = ops["per_step"]
    entry["loop_body_detail"] = {k: v for k, v in ops.items() if k != "per_step"}

  ratios = {
    "ensemble_speedup_train_call": t_seq.median / t_together.median,
    "ensemble_speedup_compiled_epoch": t_ep_seq.median / t_ep.median,
    "logging_overhead_vanish_vs_plain": t_ep.median / t_plain.median - 1,
    "logging_overhead_plain_log_vs_plain": t_plain_log.median / t_plain.median - 1,
    "logging_overhead_plain_packed_vs_plain": t_packed.median / t_plain.median - 1,
    "logging_overhead_vanish_vs_plain_min": t_ep.minimum / t_plain.minimum - 1,
    "ensemble_speedup_compiled_epoch_min": t_ep_seq.minimum / t_ep.minimum,
  }
  return {
    "schema": SCHEMA_VERSION,
    "benchmark": "ensemble_training",
    "size": size,
    "setting": {
      **cfg,
      "repeats": repeats,
      "widths": WIDTHS,
      "activation": "sigmoid",
      "init": "gaussian(1.0) weights, normal(1.0) biases",
      "cost": COST,
      "optimizer": "sgd",
      "learning_rate": LEARNING_RATE,
      "batch_size": BATCH,
      "steps_per_member": steps,
      "train_images": int(train_set.x.shape[0]),
      "precision": PRECISION,
    },
    "device": common.device_info(),
    # 1/5/15-minute load averages at the end: on a shared CPU the timings are only indicative
    "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    "versions": common.versions(),
    "entries": entries,
    "ratios": ratios,
    "targets": {"ensemble_speedup_gpu_64": 20.0, "logging_overhead_max": 0.10},
    "checks": {
      "max_abs_diff_ensemble_member_vs_alone": member_diff,
      "max_abs_diff_plain_vs_vanish_params": plain_vs_vanish,
      "max_abs_diff_plain_vs_vanish_bias_speed": speed_diff,
      "max_abs_diff_packed_vs_tensor_weight_speed": packed_diff,
    },
  }


def default_out(device: dict[str, Any]) -> Path:
  """``benchmarks/results/ensemble_training_<device>.json`` (``cpu``, ``h100``, …)."""
  name = (device.get("peak_row") or device["platform"]).split()[0].lower()
  return Path(__file__).parent / "results" / f"ensemble_training_{name}.json"


def report_table(report: dict[str, Any]) -> str:
  rows = [
    [
      e["name"],
      common.fmt(e["median_s"] * 1e3),
      common.fmt(e["member_steps_per_s"], ".4g"),
      str(e.get("loop_body_ops", "")),
    ]
    for e in report["entries"]
  ]
  text = common.format_table(rows, ["entry", "median ms", "member-steps/s", "ops/step"])
  text += "\n" + "\n".join(f"{k}: {v:.3f}" for k, v in report["ratios"].items())
  text += "\n" + "\n".join(f"{k}: {v:.3g}" for k, v in report["checks"].items())
  return text


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  size = parser.add_mutually_exclusive_group()
  for name in SIZES:
    size.add_argument(f"--{name}", action="store_const", const=name, dest="size")
  parser.set_defaults(size="quick")
  parser.add_argument("--repeats", type=int, help="timed repeats (default by size)")
  parser.add_argument("--out", help="JSON path (default benchmarks/results/...<device>.json)")
  args = parser.parse_args(argv)
  if args.repeats is not None and args.repeats < 1:
    parser.error(f"--repeats must be >= 1, got {args.repeats}")
  start = time.perf_counter()
  report = run(args.size, args.repeats)
  report["wall_s"] = time.perf_counter() - start
  out = Path(args.out) if args.out else default_out(report["device"])
  common.write_json_atomic(out, report)
  print(report_table(report))
  print(f"wrote {out} ({report['wall_s']:.1f} s)")
  return report


if __name__ == "__main__":
  main()
  sys.exit(0)
