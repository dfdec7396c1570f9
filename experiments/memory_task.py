"""Remembering a sign across T steps: a vanilla tanh RNN against the LSTM (the gated comparison).

The latching task of Bengio, Simard & Frasconi (1994) in the form of Hochreiter &
Schmidhuber's (1997) long-lag experiments: step 1 shows a sign s = ±1 (with a marker),
every later step shows Gaussian noise N(0, 1), and the network's hidden state at step T
must tell s (:func:`vanish.recurrent.memory_task`; a linear readout of ``h_T``, softmax
cross-entropy). Ensembles of vanilla tanh RNNs (``W ~ N(0, 1/n)``, σ_w² = 1) and of
LSTMs at forget-gate bias 1 and 3 (same weight draws: the members differ only in that
bias) are trained with optax Adam (η = 0.01) on fresh batches at every lag T
(:func:`vanish.recurrent.train_memory_task`; all members of a model in one compiled
call, one compilation per model for every lag). Recorded per lag and model: the test
accuracy of every member (chance 0.5) before and after training, the loss and accuracy
curves, ``log ‖∂C/∂h_1‖`` at every step, and ``log ‖∂C/∂h_t‖`` for every t at
initialization and at the end, whose drop from t = T to t = 1 is the through-time
product of Hochreiter (1991) that decides whether the sign can be learned.

Run:  python -m experiments.memory_task --quick   (T = 5, 20, 50; 8 members per model,
      width 16, 200 Adam steps of 16 sequences; ~23 s of CPU time, compilation included)
      python -m experiments.memory_task --full    (T up to 200, 16 members, width 32,
      2000 steps of 64; one GPU; not run yet)
Results: results/memory_task/<config hash>/ (arrays.npz, memory.csv, run.json). Quick
run (seed 0), members with test accuracy ≥ 0.9 after 200 steps: RNN 8/8 at T = 5, 3/8
at T = 20, 0/8 at T = 50 (all at chance, 0.47–0.53); LSTM at forget bias 1: 8/8, 8/8,
3/8; LSTM at forget bias 3: 8/8 at every lag (≥ 0.99 at T = 50). At initialization the
gradient reaching h_1 relative to h_T, log(‖∂C/∂h_1‖/‖∂C/∂h_T‖), is −11.8 (RNN), −8.1
(LSTM, f ≈ σ(1) = 0.73 per step) and −0.9 (LSTM, f ≈ σ(3) = 0.95) at T = 50: the
models learn the lags across which the through-time product keeps the gradient. With
4 members the counts move by a member or two between seeds (Adam rescales a small
gradient, so a vanilla RNN occasionally latches at T = 50).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import jax
import jax.numpy as jnp

from experiments._common import cached_run, default_ensure, experiment_parser, positive_int
from vanish import init, recurrent, store

LEARNING_RATE = 1e-2
NOISE = 1.0
RNN_SIGMA_W2 = 1.0  # W ~ N(0, σ_w²/n): the edge of chaos without inputs
FORGET_BIASES = (1.0, 3.0)  # Jozefowicz et al. (2015) recommend 1; 3 keeps f ≈ 0.95
SOLVED = 0.9  # a member "solved" a lag when its test accuracy reaches this
SIZES = {
  "quick": {
    "lags": [5, 20, 50],
    "hidden": 16,
    "members": 8,
    "steps": 200,
    "batch": 16,
    "test_batches": 8,
  },
  "full": {
    "lags": [5, 10, 20, 50, 100, 200],
    "hidden": 32,
    "members": 16,
    "steps": 2000,
    "batch": 64,
    "test_batches": 16,
  },
}
MODELS = ("rnn",) + tuple(f"lstm_f{b:g}" for b in FORGET_BIASES)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
  parser = experiment_parser(
    __doc__,
    quick_help="T = 5, 20, 50; width 16; 200 steps (CPU, CI)",
    full_help="T up to 200; width 32; 2000 steps (one GPU)",
  )
  parser.add_argument("--lags", type=positive_int, nargs="+", help="lags T (default by size)")
  parser.add_argument("--hidden", type=positive_int, help="hidden size n")
  parser.add_argument("--members", type=positive_int, help="members per model")
  parser.add_argument("--steps", type=positive_int, help="Adam steps")
  parser.add_argument("--batch", type=positive_int, help="sequences per step")
  return parser.parse_args(argv)


def sizes(args: argparse.Namespace) -> dict:
  """The size values of ``args`` (defaults of ``args.size`` with the overrides)."""
  out = dict(SIZES[args.size])
  for field in ("lags", "hidden", "members", "steps", "batch"):
    if getattr(args, field) is not None:
      out[field] = getattr(args, field)
  out["lags"] = sorted(set(out["lags"]))
  return out


def ensembles(s: dict, seed: int) -> dict[str, tuple[recurrent.Params, recurrent.Readout]]:
  """The initial RNN and LSTM ensembles and their readouts, by model name.

  The distributions of ``recurrent.RNN(2, n, weights=init.gaussian(σ_w²))`` and
  ``recurrent.LSTM(2, n, forget_bias=b)`` (every weight block ``N(0, σ²/fan_in)`` with
  σ² = 1 for the LSTM and the inputs, zero biases but the forget gate's b), drawn
  from ONE ``jax.random.normal`` draw (its bits, by ``init.normal``): building
  ``nnx.vmap`` ensembles of the modules compiles their initializers op by op (~5 s of
  CPU, more than training a lag). The
  LSTMs of every forget bias share one draw (common random numbers); all models share
  the readout ``v ~ N(0, 1/n)``, ``c = 0``.

  Example:
    >>> from experiments import memory_task
    >>> models = memory_task.ensembles({"members": 3, "hidden": 4}, seed=0)
    >>> sorted(models), models["lstm_f3"][0].w.shape, float(models["lstm_f3"][0].b[0, 4])
    (['lstm_f1', 'lstm_f3', 'rnn'], (3, 16, 4), 3.0)
  """
  members, n = s["members"], s["hidden"]
  lstm_size, readout_size = 4 * n * (n + 2), 2 * n
  # jax.random.normal's bits; init's straight-line threefry compiles in a fraction of the time
  shape = (2, members, lstm_size + readout_size)
  z = init.normal(1.0)(jax.random.key(seed), shape, jax.dtypes.canonicalize_dtype(float))

  def blocks(row, rows, sigma2):  # W [rows, n] then U [rows, 2], each N(0, σ²/fan_in)
    w = row[:, : rows * n].reshape(members, rows, n) * (sigma2 / n) ** 0.5
    u = row[:, rows * n : rows * (n + 2)].reshape(members, rows, 2) * 0.5**0.5
    return w, u

  rnn = recurrent.RNNParams(*blocks(z[0], n, RNN_SIGMA_W2), jnp.zeros((members, n)))
  w, u = blocks(z[1], 4 * n, 1.0)
  v = z[1, :, lstm_size:].reshape(members, 2, n) / n**0.5
  readout = recurrent.Readout(v, jnp.zeros((members, 2)))
  out = {"rnn": (rnn, readout)}
  for b in FORGET_BIASES:  # gates stacked (i, f, g, o): rows n:2n are the forget gate's
    bias = jnp.zeros((members, 4 * n)).at[:, n : 2 * n].set(b)
    out[f"lstm_f{b:g}"] = (recurrent.LSTMParams(w, u, bias), readout)
  return out


def _train(s: dict, seed: int, lag: int, params: recurrent.Params, readout: recurrent.Readout):
  return recurrent.train_memory_task(
    params,
    readout,
    [lag],
    key=jax.random.fold_in(jax.random.key(seed), 3),
    steps=s["steps"],
    batch=s["batch"],
    length=max(s["lags"]),  # one length for every lag: one compilation per model
    learning_rate=LEARNING_RATE,
    noise=NOISE,
    test_batches=s["test_batches"],
  )


def run(args: argparse.Namespace, lag: int) -> dict:
  """One chunk: the RNN and both LSTM ensembles trained at lag T = ``lag``."""
  s = sizes(args)
  models = ensembles(s, args.seed)
  lstm_names = [f"lstm_f{b:g}" for b in FORGET_BIASES]
  # the LSTMs of all forget biases are one ensemble: one call
  lstm = jax.tree.map(lambda *a: jnp.concatenate(a), *(models[m] for m in lstm_names))
  results = {
    "rnn": _train(s, args.seed, lag, *models["rnn"]),
    "lstm": _train(s, args.seed, lag, *lstm),
  }
  arrays, rows = {}, []
  m = s["members"]
  for name in MODELS:
    if name == "rnn":
      res, members = results["rnn"], slice(None)
    else:
      i = lstm_names.index(name)
      res, members = results["lstm"], slice(i * m, (i + 1) * m)
    pick = {
      "loss": res.loss[0, members],
      "accuracy": res.accuracy[0, members],
      "log_grad_first": res.log_grad_first[0, members],
      "test_loss": res.test_loss[0, members],
      "test_accuracy": res.test_accuracy[0, members],
      "log_grad": res.log_grad[0, members],
    }
    arrays |= {f"T{lag}/{name}/{k}": v for k, v in pick.items()}
    acc = pick["test_accuracy"][:, 1]
    h1, h_last = pick["log_grad"][:, :, 0], pick["log_grad"][:, :, lag - 1]  # [M, 2]
    gain = h1 - h_last  # log ‖∂C/∂h_1‖/‖∂C/∂h_T‖: the through-time product alone
    rows.append(
      {
        "model": name,
        "lag": lag,
        "forget_bias": "" if name == "rnn" else FORGET_BIASES[lstm_names.index(name)],
        "members": m,
        "accuracy_init": float(pick["test_accuracy"][:, 0].mean()),
        "accuracy": float(acc.mean()),
        "accuracy_lo": float(acc.min()),
        "accuracy_hi": float(acc.max()),
        "accuracy_members": " ".join(f"{a:.3f}" for a in acc),
        "solved": int((acc >= SOLVED).sum()),
        "test_loss": float(pick["test_loss"][:, 1].mean()),
        "log_grad_h1_init": float(h1[:, 0].mean()),
        "log_grad_h1_end": float(h1[:, 1].mean()),
        "log_gain_init": float(gain[:, 0].mean()),
        "log_gain_end": float(gain[:, 1].mean()),
      }
    )
  return {"arrays": arrays, "rows": rows}


def cached(args: argparse.Namespace) -> Path:
  """The stored run of ``args``' config, computed first (one chunk per lag) if needed."""
  s = sizes(args)
  config = {
    "size": args.size,
    **s,
    "task": "sign at step 1 (with marker), N(0, noise^2) distractors, read out h_T",
    "noise": NOISE,
    "optimizer": "adam",
    "learning_rate": LEARNING_RATE,
    "rnn": {"activation": "tanh", "weights": f"N(0, {RNN_SIGMA_W2:g}/n)", "inputs": "N(0, 1/2)"},
    "lstm_forget_biases": list(FORGET_BIASES),
    "solved_threshold": SOLVED,
    "seed": args.seed,
    "precision": "highest",
  }
  return cached_run(
    args.out,
    "memory_task",
    config,
    lambda lag: run(args, lag),
    table="memory",
    force=args.force,
    chunks=s["lags"],
  )


ensure = default_ensure(parse_args, cached)


def main(argv: Sequence[str] | None = None) -> int:
  args = parse_args(argv)
  path = cached(args)
  rows = store.load(path).tables["memory"]
  s = sizes(args)
  print(
    f"\nremember the sign of step 1 until step T: test accuracy after {s['steps']} Adam steps "
    f"(chance 0.5; solved = accuracy >= {SOLVED}); log ‖∂C/∂h_1‖ and the through-time "
    "gain log ‖∂C/∂h_1‖/‖∂C/∂h_T‖, init -> end"
  )
  print(
    f"{'model':<9} {'T':>4} {'accuracy [min, max]':>22} {'solved':>7} "
    f"{'log‖∂C/∂h_1‖':>16} {'log gain':>16}"
  )
  for r in rows:
    acc = (
      f"{float(r['accuracy']):.3f} [{float(r['accuracy_lo']):.2f}, {float(r['accuracy_hi']):.2f}]"
    )
    grad = f"{float(r['log_grad_h1_init']):+.1f} -> {float(r['log_grad_h1_end']):+.1f}"
    gain = f"{float(r['log_gain_init']):+.1f} -> {float(r['log_gain_end']):+.1f}"
    print(
      f"{r['model']:<9} {r['lag']:>4} {acc:>22} {r['solved'] + '/' + r['members']:>7} "
      f"{grad:>16} {gain:>16}"
    )
  return 0


if __name__ == "__main__":
  sys.exit(main())
