"""The one-way street: a two-state Markov model of the gradient during training, tested on data.

The seed analysis claims that training moves the gradient reaching the first layer
between two states, ``[g ≉ 0]`` and ``[g ≈ 0]``, as a Markov chain whose vanished
state is absorbing: large gradients push the weights (and so the pre-activations)
up until units saturate, and once the gradient has vanished no gradient can bring
it back. This script trains ensembles of a tanh network (16 → 32 × 4 → 4, LeCun
init N(0, 1/n_in), zero biases, softmax cross-entropy) on a teacher–student task
with :func:`vanish.training.train` (``log="step"``, the full training set evaluated
after every step: ``evaluate_every=1``) under several optimizers and
learning rates, where the claim fails, and of a narrow deep ReLU network (16 → 8 × 6
→ 4, He init N(0, 2/n_in)) under SGD with η = 1, where it holds exactly: a step that
makes a hidden layer output 0 on every training input (a *dead* layer) zeros the
gradient of that layer and of every layer below it, so no later SGD step can change
them and the layer stays dead. ``g`` comes from the logged learning speeds
(Nielsen ch. 5) of the very gradients applied: the first layer's ``‖∂C/∂b^1‖``
(signal ``"first"``) or its ratio to the last layer's (``"ratio"``: the
backpropagated product alone, logged by training as ``Log.log_g`` / ``eval_log_g``).
For every setting, signal and threshold ε (``[g ≈ 0]`` iff ``g < ε``) it estimates
with :mod:`vanish.markov` the 2×2 transition matrix with 95 % Wilson intervals, the
absorption (first-passage) time into ``[g ≈ 0]`` against its geometric prediction,
the exact binomial test of the one-way street ``H0: P(≈ → ≉) ≤ q0``, and a
likelihood-ratio test that the chain is time-homogeneous.

Run:  python -m experiments.markov --quick   (5 settings × 32 nets × 160 steps; ~29 s CPU)
      python -m experiments.markov --full    (256 nets × 2560 steps; one GPU)
Results: results/markov/<config hash>/ (arrays.npz, markov.csv, run.json). Quick run: the
one-way street is rejected for every tanh setting that visits [g ≈ 0] (escape
probabilities 0.037–1 ≫ q0 = 0.01, p ≤ 1e-4) and for the ReLU net's mini-batch g; it
is not rejected for the ReLU net's full-set g at ε ≤ 1e-4, where [g ≈ 0] is a dead
layer (g = 0 exactly): 0 escapes in 2545 steps, upper bound 0.0012.
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
from experiments._common import (
  cached_run,
  default_ensure,
  experiment_parser,
  positive_int,
  unit_fraction,
)
from vanish import data, markov, store, training

# network -> (widths, activation, σ_w² of the weights N(0, σ_w²/n_in)); biases 0.
NETWORKS = {
  "tanh": ([16, 32, 32, 32, 32, 4], "tanh", 1.0),
  "relu": ([16, 8, 8, 8, 8, 8, 8, 4], "relu", 2.0),
}
# name -> (network, optimizer, learning rate). tanh: η = 1 SGD trains normally; η = 10
# and 100 SGD first explode the gradient, then saturate the units (the seed's
# scenario); Adam at η = 1 normalizes every step, so even a tiny gradient moves the
# weights by ~η. ReLU: η = 1 kills a hidden layer in most members (an exactly zero,
# absorbing gradient); the narrow layers (8 units) make a dead layer likely.
SETTINGS = {
  "sgd_lr1": ("tanh", "sgd", 1.0),
  "sgd_lr10": ("tanh", "sgd", 10.0),
  "adam_lr1": ("tanh", "adam", 1.0),
  "sgd_lr100": ("tanh", "sgd", 100.0),
  "relu_sgd_lr1": ("relu", "sgd", 1.0),
}
LABELS = {
  "sgd_lr1": "tanh, SGD, η = 1",
  "sgd_lr10": "tanh, SGD, η = 10",
  "adam_lr1": "tanh, Adam, η = 1",
  "sgd_lr100": "tanh, SGD, η = 100",
  "relu_sgd_lr1": "ReLU, SGD, η = 1",
}
# (gradient, measure): "minibatch" = the logged speeds of the applied step's gradient,
# "full" = the full training set's gradient after each step (and at initialization);
# "ratio" = first / last layer, "first" = the first layer's speed itself.
SIGNALS = ("full_ratio", "full_first", "minibatch_ratio", "minibatch_first")
THRESHOLDS = (1e-1, 1e-2, 1e-3, 1e-4, 1e-6)
Q0 = 0.01  # the escape probability tolerated by "~0"
SIZES = {
  "quick": {"members": 32, "epochs": 10, "n_train": 256},
  "full": {"members": 256, "epochs": 20, "n_train": 2048},
}
BATCH_SIZE = 16


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
  parser = experiment_parser(
    __doc__, quick_help="32 nets, 160 steps (CPU, CI)", full_help="256 nets, 2560 steps (GPU)"
  )
  parser.add_argument("--members", type=positive_int, help="override the size's ensemble size")
  parser.add_argument("--epochs", type=positive_int, help="override the size's epoch count")
  parser.add_argument(
    "--n-train", type=positive_int, help=f"override the training-set size (>= {BATCH_SIZE})"
  )
  parser.add_argument(
    "--settings",
    nargs="+",
    default=list(SETTINGS),
    choices=list(SETTINGS),
    help="optimizer settings (default all)",
  )
  parser.add_argument(
    "--thresholds",
    type=unit_fraction,
    nargs="+",
    default=list(THRESHOLDS),
    help="thresholds ε on g, each in (0, 1) (default 1e-1 1e-2 1e-3 1e-4 1e-6)",
  )
  args = parser.parse_args(argv)
  if args.n_train is not None and args.n_train < BATCH_SIZE:
    parser.error(f"--n-train must be >= the batch size {BATCH_SIZE}, got {args.n_train}")
  return args


def network(name: str = "tanh") -> vn.MLP:
  """The network ``name`` of :data:`NETWORKS` (compiled once per optimizer)."""
  widths, activation, sigma_w2 = NETWORKS[name]
  return vn.MLP(widths, activation, vn.init.gaussian(sigma_w2), vn.init.zeros(), readout="linear")


@functools.cache
def _weight_count(name: str) -> int:
  return sum(s.depth * s.fan_out * s.fan_in for s in network(name).segments)


def sample_params(name: str, *, key: jax.Array, members: int) -> tuple[dict[str, jax.Array], ...]:
  """An ensemble of network ``name``: weights N(0, σ_w²/n_in), biases 0, in ``net.init``'s layout.

  The same distribution as ``network(name).init(key, members)``, drawn from ONE
  ``jax.random.normal(key, shape)`` (its bits, by :func:`vanish.init.normal`) whose shape
  is shared by every network: ``net.init`` compiles a sampler per network (5–8 s of CPU
  each), more than training here.

  Args:
    name: a key of :data:`NETWORKS`.
    key: a typed key.
    members: M ≥ 1.

  Returns:
    One dict per segment, ``{"w": [M, L_s, fan_out, fan_in], "b": [M, L_s, fan_out]}``.

  Example:
    >>> import jax
    >>> from experiments import markov
    >>> params = markov.sample_params("relu", key=jax.random.key(0), members=2)
    >>> [p["w"].shape for p in params]
    [(2, 1, 8, 16), (2, 5, 8, 8), (2, 1, 4, 8)]
  """
  sigma_w2 = NETWORKS[name][2]
  shape = (members, max(map(_weight_count, NETWORKS)))
  # jax.random.normal's bits; init's straight-line threefry compiles in a fraction of the time
  normals = vn.init.normal(1.0)(key, shape, jax.dtypes.canonicalize_dtype(float))
  params, start = [], 0
  for s in network(name).segments:
    size = s.depth * s.fan_out * s.fan_in
    w = normals[:, start : start + size].reshape(members, s.depth, s.fan_out, s.fan_in)
    params.append({"w": w * math.sqrt(sigma_w2 / s.fan_in), "b": jnp.zeros(w.shape[:-1])})
    start += size
  return tuple(params)


def sizes_of(args: argparse.Namespace) -> dict:
  sizes = dict(SIZES[args.size])
  sizes.update({k: getattr(args, k) for k in ("members", "epochs", "n_train") if getattr(args, k)})
  return sizes


def _analyse(name: str, signal: str, log_g: np.ndarray, thresholds: Sequence[float]):
  """Markov estimates of one (setting, signal) for every threshold: arrays and CSV rows."""
  arrays, rows = {}, []
  for eps in thresholds:
    s = markov.states(log_g, math.log(eps))
    est = markov.estimate(s)
    fp = markov.first_passage(s)
    test = markov.one_way_street_test(counts=est.counts, q0=Q0)
    homogeneity = markov.homogeneity_test(s, windows=4)
    prefix = f"{name}/{signal}/eps{eps:g}"
    arrays |= {
      f"{prefix}/counts": est.counts,
      f"{prefix}/matrix": est.matrix,
      f"{prefix}/intervals": est.intervals,
      f"{prefix}/initial": est.initial,
      f"{prefix}/survival": fp.survival,
      f"{prefix}/survival_interval": fp.survival_interval,
      f"{prefix}/geometric_survival": fp.geometric_survival,
      f"{prefix}/vanished_fraction": s.mean(axis=0),
    }
    rows.append(
      {
        "setting": name,
        "signal": signal,
        "threshold": eps,
        "members_start_vanished": int(est.initial_counts[1]),
        "n_healthy": int(est.counts[0].sum()),
        "n_vanished": int(est.counts[1].sum()),
        "p_vanish": est.matrix[0, 1],
        "p_vanish_lo": est.intervals[0, 1, 0],
        "p_vanish_hi": est.intervals[0, 1, 1],
        "q_escape": est.matrix[1, 0],
        "q_escape_lo": est.intervals[1, 0, 0],
        "q_escape_hi": est.intervals[1, 0, 1],
        "q_escape_upper95": test.upper_bound,
        "escapes": test.escapes,
        "one_way_p_value": test.p_value,
        "one_way_rejected": test.rejected,
        "absorption_time": est.absorption_time,
        "absorption_time_lo": est.absorption_time_interval[0],
        "absorption_time_hi": est.absorption_time_interval[1],
        "first_passage_rate": fp.rate,
        "first_passage_events": int(fp.observed.sum()),
        "first_passage_at_risk": len(fp.time),
        "stationary_vanished": est.stationary_vanished,
        "final_vanished": float(s[:, -1].mean()),
        "homogeneity_p_value": homogeneity.p_value,
      }
    )
  return arrays, rows


def _finite_members(*speeds: np.ndarray) -> np.ndarray:
  """``[M]`` bool: members whose logged speeds are finite at every step (not diverged)."""
  return np.logical_and.reduce([np.isfinite(a).all(axis=(1, 2)) for a in speeds])


def run(args: argparse.Namespace, sizes: dict, name: str) -> dict:
  """Trains the ensemble of one setting and analyses its logged speeds.

  Members whose speeds overflow or turn NaN (diverged training) are left out of the
  chain and counted in the rows' ``diverged_members``.
  """
  net_name, optimizer, learning_rate = SETTINGS[name]
  key = jax.random.key(args.seed)
  train_set, _ = data.teacher_student(
    jax.random.fold_in(key, 0), n_train=sizes["n_train"], n_test=1
  )
  net = network(net_name)
  params = sample_params(net_name, key=jax.random.fold_in(key, 1), members=sizes["members"])
  log = training.train(
    net,
    params,
    train_set,
    key=jax.random.fold_in(key, 2),
    epochs=sizes["epochs"],
    cost="cross_entropy",
    optimizer=optimizer,
    learning_rate=learning_rate,
    batch_size=BATCH_SIZE,
    log="step",
    evaluate_every=1,  # the "full" signals: the full training set's gradient after every step
    eval_speeds=True,
  ).log
  arrays = {
    f"{name}/bias_speed": log.bias_speed.astype(np.float32),
    f"{name}/loss": log.loss,
    f"{name}/train_accuracy": log.train_accuracy,
  }
  rows = []
  finite = _finite_members(log.eval_bias_speed, log.bias_speed)
  if not finite.any():
    raise RuntimeError(f"setting {name}: every member diverged; nothing to analyse")
  speeds = {"full": log.eval_bias_speed[finite], "minibatch": log.bias_speed[finite]}
  # the gradient-product state that training logs in the step: log ‖∂C/∂b^1‖/‖∂C/∂b^L‖
  ratios = {"full": log.eval_log_g[finite], "minibatch": log.log_g[finite]}
  arrays[f"{name}/eval_bias_speed"] = log.eval_bias_speed.astype(np.float32)
  arrays[f"{name}/finite_members"] = finite
  for signal in SIGNALS:
    gradient, measure = signal.split("_")
    if measure == "ratio":
      log_g = np.asarray(ratios[gradient], np.float64)
    else:
      log_g = markov.log_first_layer_speed(speeds[gradient])
    arrays[f"{name}/{signal}/log_g"] = log_g.astype(np.float32)
    more, new_rows = _analyse(name, signal, log_g, args.thresholds)
    arrays |= more
    accuracy = float(log.train_accuracy[finite, -1].mean())
    extra = {"final_train_accuracy": accuracy, "diverged_members": int((~finite).sum())}
    rows += [r | extra for r in new_rows]
  return {"arrays": arrays, "rows": rows}


def cached(args: argparse.Namespace) -> Path:
  """The stored run of ``args``' config, computed first (one chunk per setting) if needed."""
  sizes = sizes_of(args)
  config = {
    "size": args.size,
    **sizes,
    "networks": {
      name: {"widths": w, "activation": a, "init": f"weights N(0, {s:g}/n_in), biases 0"}
      for name, (w, a, s) in NETWORKS.items()
    },
    "cost": "cross_entropy",
    "batch_size": BATCH_SIZE,
    "settings": {name: list(SETTINGS[name]) for name in args.settings},
    "signals": list(SIGNALS),
    "thresholds": list(args.thresholds),
    "q0": Q0,
    "confidence": 0.95,
    "interval": "wilson",
    "data": "teacher_student default teacher 16-32-4 tanh",
    "seed": args.seed,
    "precision": "highest",
  }
  return cached_run(
    args.out,
    "markov",
    config,
    lambda name: run(args, sizes, name),
    table="markov",
    force=args.force,
    chunks=args.settings,
  )


ensure = default_ensure(parse_args, cached)


def _fmt(value: str) -> str:
  v = float(value)
  return "   -" if math.isnan(v) else f"{v:.3f}"


def main(argv: Sequence[str] | None = None) -> int:
  args = parse_args(argv)
  path = cached(args)
  rows = store.load(path).tables["markov"]
  rows = [r for r in rows if r["signal"] in ("full_ratio", "minibatch_ratio")]
  print(f"\nMarkov chain of g = ‖∂C/∂b^1‖/‖∂C/∂b^L‖ per step; [g≈0] iff g < ε; q0 = {Q0}")
  print("full: the full training set's gradient; minibatch: the applied step's gradient")
  print(
    f"{'setting':<12} {'signal':<15} {'ε':>6} {'P(≉→≈) [95% CI]':>22} {'P(≈→≉) [95% CI]':>22} "
    f"{'escapes/n':>11} {'q upper':>7} {'one-way p':>9} {'1/p':>7} {'homog. p':>8}"
  )
  for r in rows:
    p = f"{_fmt(r['p_vanish'])} [{_fmt(r['p_vanish_lo'])},{_fmt(r['p_vanish_hi'])}]"
    q = f"{_fmt(r['q_escape'])} [{_fmt(r['q_escape_lo'])},{_fmt(r['q_escape_hi'])}]"
    print(
      f"{r['setting']:<12} {r['signal']:<15} {float(r['threshold']):>6.0e} {p:>22} {q:>22} "
      f"{r['escapes'] + '/' + r['n_vanished']:>11} {_fmt(r['q_escape_upper95']):>7} "
      f"{float(r['one_way_p_value']):>9.2g} "
      f"{float(r['absorption_time']):>7.1f} {float(r['homogeneity_p_value']):>8.2g}"
    )
  verdict = {}
  for r in rows:
    if int(r["n_vanished"]) > 0:
      verdict.setdefault((r["setting"], r["signal"]), []).append(r["one_way_rejected"] == "True")
  for (name, signal), rejected in verdict.items():
    print(
      f"{name} {signal}: one-way street rejected at {sum(rejected)} of {len(rejected)} thresholds"
      " that saw [g ≈ 0]"
    )
  diverged = {r["setting"]: r["diverged_members"] for r in rows if r["diverged_members"] != "0"}
  if diverged:
    print(f"left out as diverged (members per setting): {diverged}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
