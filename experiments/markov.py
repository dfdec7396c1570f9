"""The one-way street: a two-state Markov model of the gradient during training, tested on data.

The seed analysis claims that training moves the gradient reaching the first layer
between two states, ``[g ≉ 0]`` and ``[g ≈ 0]``, as a Markov chain whose vanished
state is absorbing: large gradients push the weights (and so the pre-activations)
up until units saturate, and once the gradient has vanished no gradient can bring
it back. This script trains ensembles of one tanh network (16 → 32 × 4 → 4, LeCun
init N(0, 1/n_in), zero biases, softmax cross-entropy) on a teacher–student task
with :func:`vanish.training.train` (``log="step"``) under several optimizers and
learning rates, and takes ``g`` from the logged mini-batch learning speeds
(Nielsen ch. 5) of the very gradients applied: the first layer's ``‖∂C/∂b^1‖``
(signal ``"first"``) or its ratio to the last layer's (``"ratio"``: the
backpropagated product alone). For every setting, signal and threshold ε
(``[g ≈ 0]`` iff ``g < ε``) it estimates with :mod:`vanish.markov` the 2×2
transition matrix with 95 % Wilson intervals, the absorption (first-passage) time
into ``[g ≈ 0]`` against its geometric prediction, the exact binomial test of the
one-way street ``H0: P(≈ → ≉) ≤ q0``, and a likelihood-ratio test that the chain is
time-homogeneous.

Run:  python -m experiments.markov --quick   (4 settings × 32 nets × 160 steps; ~20 s idle CPU)
      python -m experiments.markov --full    (256 nets × 2560 steps; one GPU)
Results: results/markov/<config hash>/ (arrays.npz, markov.csv, run.json).
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Sequence
from pathlib import Path

import jax
import numpy as np

import vanish as vn
from experiments._common import cached_run, experiment_parser, positive_int
from vanish import data, markov, store, training

# name -> (optimizer, learning rate). η = 1 SGD trains normally; η = 10 and 100 SGD
# first explode the gradient, then saturate the units (the seed's scenario); Adam at
# η = 1 normalizes every step, so even a tiny gradient moves the weights by ~η.
SETTINGS = {
  "sgd_lr1": ("sgd", 1.0),
  "sgd_lr10": ("sgd", 10.0),
  "adam_lr1": ("adam", 1.0),
  "sgd_lr100": ("sgd", 100.0),
}
LABELS = {
  "sgd_lr1": "SGD, η = 1",
  "sgd_lr10": "SGD, η = 10",
  "adam_lr1": "Adam, η = 1",
  "sgd_lr100": "SGD, η = 100",
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
WIDTHS = [16, 32, 32, 32, 32, 4]
BATCH_SIZE = 16


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
  parser = experiment_parser(
    __doc__, quick_help="32 nets, 160 steps (CPU, CI)", full_help="256 nets, 2560 steps (GPU)"
  )
  parser.add_argument("--members", type=positive_int, help="override the size's ensemble size")
  parser.add_argument("--epochs", type=positive_int, help="override the size's epoch count")
  parser.add_argument(
    "--settings",
    nargs="+",
    default=list(SETTINGS),
    choices=list(SETTINGS),
    help="optimizer settings (default all)",
  )
  parser.add_argument(
    "--thresholds",
    type=float,
    nargs="+",
    default=list(THRESHOLDS),
    help="thresholds ε on g (default 1e-1 1e-2 1e-3 1e-4 1e-6)",
  )
  args = parser.parse_args(argv)
  if not all(0 < e < math.inf for e in args.thresholds):
    parser.error(f"--thresholds must be > 0 and finite, got {args.thresholds}")
  return args


def network() -> vn.MLP:
  """The one network of every setting (compiled once per optimizer)."""
  return vn.MLP(WIDTHS, "tanh", vn.init.gaussian(1.0), vn.init.zeros(), readout="linear")


def sizes_of(args: argparse.Namespace) -> dict:
  sizes = dict(SIZES[args.size])
  sizes.update({k: getattr(args, k) for k in ("members", "epochs") if getattr(args, k)})
  return sizes


def _analyse(name: str, signal: str, log_g: np.ndarray, thresholds: Sequence[float]):
  """Markov estimates of one (setting, signal) for every threshold: arrays and CSV rows."""
  arrays, rows = {}, []
  for eps in thresholds:
    s = markov.states(log_g, math.log(eps))
    est = markov.estimate(s)
    fp = markov.first_passage(s)
    test = markov.one_way_street_test(est.counts, q0=Q0)
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


def run(args: argparse.Namespace, sizes: dict, name: str) -> dict:
  """Trains the ensemble of one setting and analyses its logged speeds."""
  optimizer, learning_rate = SETTINGS[name]
  key = jax.random.key(args.seed)
  train_set, _ = data.teacher_student(
    jax.random.fold_in(key, 0), n_train=sizes["n_train"], n_test=1
  )
  net = network()
  params = net.init(jax.random.fold_in(key, 1), members=sizes["members"])  # shared by settings
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
    eval_speeds=True,
  ).log
  arrays = {
    f"{name}/bias_speed": log.bias_speed.astype(np.float32),
    f"{name}/loss": log.loss,
    f"{name}/train_accuracy": log.train_accuracy,
  }
  rows = []
  speeds = {"full": log.eval_bias_speed, "minibatch": log.bias_speed}
  arrays[f"{name}/eval_bias_speed"] = log.eval_bias_speed.astype(np.float32)
  for signal in SIGNALS:
    gradient, measure = signal.split("_")
    log_g = markov.log_first_layer_speed(speeds[gradient], relative_to_last=measure == "ratio")
    arrays[f"{name}/{signal}/log_g"] = log_g.astype(np.float32)
    more, new_rows = _analyse(name, signal, log_g, args.thresholds)
    arrays |= more
    accuracy = float(log.train_accuracy[:, -1].mean())
    rows += [r | {"final_train_accuracy": accuracy} for r in new_rows]
  return {"arrays": arrays, "rows": rows}


def cached(args: argparse.Namespace) -> Path:
  """The stored run of ``args``' config, computed first (one chunk per setting) if needed."""
  sizes = sizes_of(args)
  config = {
    "size": args.size,
    **sizes,
    "widths": WIDTHS,
    "activation": "tanh",
    "init": "weights N(0, 1/n_in), biases 0",
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


def ensure(size: str = "quick", out: str | Path = "results", *, force: bool = False) -> Path:
  """Runs (or finds) the ``size`` configuration with default options; returns its folder."""
  return cached(parse_args([f"--{size}", "--out", str(out), *(["--force"] if force else [])]))


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
    f"{'setting':<10} {'signal':<15} {'ε':>6} {'P(≉→≈) [95% CI]':>22} {'P(≈→≉) [95% CI]':>22} "
    f"{'escapes/n':>11} {'one-way p':>9} {'1/p':>7} {'homog. p':>8}"
  )
  for r in rows:
    p = f"{_fmt(r['p_vanish'])} [{_fmt(r['p_vanish_lo'])},{_fmt(r['p_vanish_hi'])}]"
    q = f"{_fmt(r['q_escape'])} [{_fmt(r['q_escape_lo'])},{_fmt(r['q_escape_hi'])}]"
    print(
      f"{r['setting']:<10} {r['signal']:<15} {float(r['threshold']):>6.0e} {p:>22} {q:>22} "
      f"{r['escapes'] + '/' + r['n_vanished']:>11} {float(r['one_way_p_value']):>9.2g} "
      f"{float(r['absorption_time']):>7.1f} {float(r['homogeneity_p_value']):>8.2g}"
    )
  verdict = {}
  for r in rows:
    if int(r["n_vanished"]) > 0:
      verdict.setdefault((r["setting"], r["signal"]), []).append(r["one_way_rejected"] == "True")
  for (name, signal), rejected in verdict.items():
    print(
      f"{name} {signal}: one-way street rejected at {sum(rejected)} of {len(rejected)} thresholds"
    )
  return 0


if __name__ == "__main__":
  sys.exit(main())
