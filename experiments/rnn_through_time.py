"""Vanishing gradients through time: a vanilla tanh RNN against mean field, and the LSTM.

Ensembles of random tanh RNNs ``h_t = tanh(W h_{t−1} + U x_t + b)`` driven by Gaussian
inputs are run for ``burn_in + steps`` steps, and ``log ‖∂L/∂h_t‖`` (``L = Σ_i h_{T,i}``)
is computed for every t by :func:`vanish.recurrent.log_gradient_norms_through_time`
(renormalized backpropagation through time). Settings: Gaussian ``W`` in the ordered,
critical and chaotic phases and an orthogonal ``W`` at the critical gain, all with
input weights ``U ~ N(0, σ_u²/d)`` and inputs ``x_t ~ N(0, I_d)`` (input variance
σ_u² = 0.1 per pre-activation, no bias). The measured decay rate per step of lag is
compared with the mean-field prediction ``½ log χ₁`` at the stationary state q* of the
length map with the input variance as bias variance (:func:`vanish.recurrent.
rnn_mean_field`; Chen, Pennington & Schoenholz 2018), and the stationary ``E h²`` with
``(q* − σ_u²)/σ_w²``. LSTMs at forget-gate bias 1 and 5 are the gated comparison; their
mean-field number is the cell path alone, ``½ log E f²``.

Run:  python -m experiments.rnn_through_time --quick   (about 20 s on 2 CPU cores)
Results: results/rnn_through_time/<config hash>/ (arrays.npz, rates.csv, run.json).
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
from flax import nnx
from scipy import stats

from experiments._common import (
  cached_run,
  default_ensure,
  experiment_parser,
  integer,
  positive_int,
)
from vanish import init, recurrent, store, theory

INPUT_VARIANCE = 0.1  # σ_u² of U ~ N(0, σ_u²/d), with x_t ~ N(0, I_d)
CRITICAL = theory.critical_sigma_w2("tanh", INPUT_VARIANCE)
# name -> (initializer family, σ_w²): the phases of the length map with the input as bias
RNN_SETTINGS = {
  "ordered": ("gaussian", 1.0),
  "critical": ("gaussian", CRITICAL),
  "chaotic": ("gaussian", 4.0),
  "orthogonal": ("orthogonal", CRITICAL),
}
LSTM_FORGET_BIASES = (1.0, 5.0)
STATES_BLOCK_BYTES = 2**30  # hidden states held at once while measuring E h²
SIZES = {
  "quick": {"hidden": 128, "inputs": 32, "members": 8, "sequences": 2, "steps": 200, "burn_in": 50},
  "full": {
    "hidden": 1024,
    "inputs": 256,
    "members": 64,
    "sequences": 8,
    "steps": 2000,
    "burn_in": 500,
  },
}


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
  parser = experiment_parser(
    __doc__,
    quick_help="width 128, 200 steps (CPU, CI)",
    full_help="width 1024, 2000 steps (one GPU)",
  )
  parser.add_argument("--hidden", type=positive_int, help="hidden size n (default by size)")
  parser.add_argument(
    "--members", type=integer(2), help="ensemble members per setting (>= 2: intervals)"
  )
  parser.add_argument("--steps", type=positive_int, help="measured steps of lag")
  parser.add_argument("--burn-in", type=int, help="steps run before the measured window")
  parser.add_argument(
    "--settings",
    nargs="+",
    default=list(RNN_SETTINGS),
    choices=list(RNN_SETTINGS),
    help="vanilla-RNN initializations: ordered (Gaussian σ_w² = 1), critical (Gaussian at the "
    "critical σ_w²), chaotic (Gaussian σ_w² = 4), orthogonal (at the critical σ_w²) "
    "(default: all)",
  )
  args = parser.parse_args(argv)
  if args.burn_in is not None and args.burn_in < 0:
    parser.error(f"--burn-in must be >= 0, got {args.burn_in}")
  if args.steps is not None and args.steps < 4:
    parser.error(f"--steps must be >= 4, got {args.steps}")
  return args


def sizes(args: argparse.Namespace) -> dict:
  """The size values of ``args`` (defaults of ``args.size`` with the overrides)."""
  out = dict(SIZES[args.size])
  for field in ("hidden", "members", "steps", "burn_in"):
    if getattr(args, field) is not None:
      out[field] = getattr(args, field)
  return out


def _rnn(s: dict, family: str, sigma_w2: float, rngs: nnx.Rngs) -> recurrent.RNN:
  weights = init.gaussian(sigma_w2) if family == "gaussian" else init.orthogonal(sigma_w2**0.5)
  return recurrent.RNN(
    s["inputs"],
    s["hidden"],
    weights=weights,
    input_weights=init.gaussian(INPUT_VARIANCE),
    rngs=rngs,
  )


def _lstm(s: dict, forget_bias: float, rngs: nnx.Rngs) -> recurrent.LSTM:
  return recurrent.LSTM(
    s["inputs"],
    s["hidden"],
    input_weights=init.gaussian(INPUT_VARIANCE),
    forget_bias=forget_bias,
    rngs=rngs,
  )


def _maker(build, *setting):
  """``rngs -> model`` for ``nnx.vmap`` (which would map over a lambda's default arguments)."""
  return lambda rngs: build(*setting, rngs)


def _lag_curves(log_g: np.ndarray, steps: int) -> np.ndarray:
  """``[curves, steps]``: log ‖∂L/∂h_{T−k}‖ − log ‖∂L/∂h_T‖ at lag k = 0..steps−1."""
  window = log_g.reshape(-1, log_g.shape[-1])[:, ::-1][:, :steps]
  return window - window[:, :1]


def _summarize(name: str, curves: np.ndarray, members: int) -> tuple[dict, float, float, float]:
  """Mean curve with 95 % interval, and the least-squares rate per step with its interval.

  ``curves`` is ``[members · sequences, steps]``, member-major. The sequences of one member
  share its weights, so they are not independent (the ordered RNN's two slopes per member
  correlate at r = 0.93): the intervals are Student-t over the ``members`` per-member means
  (M − 1 degrees of freedom), conditional on the shared input sequences.
  """
  count, steps = curves.shape
  if members < 1 or count % members:
    raise ValueError(f"members must divide the {count} curves, got {members}")
  lags = np.arange(steps, dtype=np.float64)
  fit = lags >= steps // 10  # skip the first lags, where the adjoint turns to the typical direction
  x = lags[fit] - lags[fit].mean()
  slopes = (curves[:, fit] - curves[:, fit].mean(1, keepdims=True)) @ x / (x @ x)
  per_member = curves.reshape(members, -1, steps).mean(1)  # [M, steps]
  member_slopes = slopes.reshape(members, -1).mean(1)  # [M]
  mean, rate = per_member.mean(0), float(member_slopes.mean())
  if members > 1:
    t = stats.t.ppf(0.975, members - 1) / math.sqrt(members)
    half, rate_half = t * per_member.std(0, ddof=1), float(t * member_slopes.std(ddof=1))
  else:  # one member: no interval (not a zero-width one)
    half, rate_half = np.full(steps, np.nan), math.nan
  arrays = {
    f"{name}/mean": mean,
    f"{name}/lo": mean - half,
    f"{name}/hi": mean + half,
    f"{name}/slopes": slopes,
  }
  return arrays, rate, rate - rate_half, rate + rate_half


def run(args: argparse.Namespace, chunk: str) -> dict:
  """One chunk: every RNN setting in one vmapped call, or every LSTM forget bias."""
  s = sizes(args)
  key = jax.random.key(args.seed)
  total = s["burn_in"] + s["steps"]
  # jax.random.normal's bits; init's straight-line threefry compiles in a fraction of the time
  shape, dtype = (s["sequences"], total, s["inputs"]), jax.dtypes.canonicalize_dtype(float)
  xs = init.normal(1.0)(jax.random.fold_in(key, 0), shape, dtype)
  names = args.settings if chunk == "rnn" else [f"lstm_f{b:g}" for b in LSTM_FORGET_BIASES]
  models = []
  for i, name in enumerate(names):
    rngs = nnx.Rngs(jax.random.fold_in(key, 1 + i)).split(s["members"])
    if chunk == "rnn":
      family, sigma_w2 = RNN_SETTINGS[name]
      models.append(nnx.vmap(_maker(_rnn, s, family, sigma_w2))(rngs))
    else:
      b = LSTM_FORGET_BIASES[i]
      models.append(nnx.vmap(_maker(_lstm, s, b))(rngs))
  # every setting shares one shape: one compiled call over all of them
  params = jax.tree.map(lambda *a: jnp.concatenate(a), *map(recurrent.to_params, models))
  wrt = "hidden" if chunk == "rnn" else "state"
  log_g = np.asarray(recurrent.log_gradient_norms_through_time(params, xs, wrt=wrt), np.float64)
  log_g = log_g.reshape(len(names), s["members"], s["sequences"], total)
  block = max(1, STATES_BLOCK_BYTES // (xs.dtype.itemsize * s["sequences"] * total * s["hidden"]))
  h2 = _stationary_h2(params, xs, burn_in=s["burn_in"], block=block)  # [S·M]
  h2 = np.asarray(h2, np.float64).reshape(len(names), -1).mean(1)  # the stationary E h²

  arrays = {f"{chunk}/lags": np.arange(s["steps"], dtype=np.float64)}
  rows = []
  for i, name in enumerate(names):
    curves = _lag_curves(log_g[i], s["steps"])
    summary, rate, lo, hi = _summarize(name, curves, s["members"])
    arrays.update(summary)
    if chunk == "rnn":
      family, sigma_w2 = RNN_SETTINGS[name]
      mf = recurrent.rnn_mean_field(sigma_w2, input_variance=INPUT_VARIANCE)
      row = {
        "model": "rnn",
        "setting": name,
        "weights": family,
        "sigma_w2": sigma_w2,
        "forget_bias": "",
        "chi1": mf.mean_field.chi1,
        "q_star": mf.mean_field.q_star,
        "h2_theory": (mf.mean_field.q_star - INPUT_VARIANCE) / sigma_w2,
        "theory_rate": mf.rate,
      }
    else:
      b = LSTM_FORGET_BIASES[i]
      mf = recurrent.lstm_mean_field(1.0, input_variance=INPUT_VARIANCE, forget_bias=b)
      row = {
        "model": "lstm",
        "setting": name,
        "weights": "gaussian",
        "sigma_w2": 1.0,
        "forget_bias": b,
        "chi1": "",
        "q_star": mf.q_z,
        "h2_theory": mf.q_h,
        "theory_rate": mf.rate,
      }
    rows.append(
      {**row, "h2_measured": float(h2[i]), "measured_rate": rate, "rate_lo": lo, "rate_hi": hi}
    )
  return {"arrays": arrays, "rows": rows}


@functools.partial(jax.jit, static_argnames=("burn_in", "block"))
def _stationary_h2(params, xs, *, burn_in: int, block: int) -> jax.Array:
  """``[models]``: the mean of h_t² over the sequences, the steps t > ``burn_in`` and the
  units. ``lax.map`` takes ``block`` models at a time, so at most ``[block, batch, T, n]``
  states exist at once (all models' states at --full size are 21 GB)."""

  def model(p):
    hs = jax.vmap(lambda x: recurrent.states(p, x)[0])(xs)  # [batch, T, n]
    return jnp.mean(jnp.square(hs[:, burn_in:]))

  return jax.lax.map(model, params, batch_size=block)


def cached(args: argparse.Namespace) -> Path:
  """The stored run of ``args``' config, computed first (chunks "rnn", "lstm") if needed."""
  config = {
    "size": args.size,
    **sizes(args),
    "input_variance": INPUT_VARIANCE,
    "settings": {name: list(RNN_SETTINGS[name]) for name in args.settings},
    "lstm_forget_biases": list(LSTM_FORGET_BIASES),
    "seed": args.seed,
    "precision": "highest",
    "interval": "student t over members (sequences averaged within a member)",
  }
  return cached_run(
    args.out,
    "rnn_through_time",
    config,
    lambda chunk: run(args, chunk),
    table="rates",
    force=args.force,
    chunks=["rnn", "lstm"],
  )


ensure = default_ensure(parse_args, cached)


def main(argv: Sequence[str] | None = None) -> int:
  args = parse_args(argv)
  path = cached(args)
  rows = store.load(path).tables["rates"]
  s = sizes(args)
  print(
    f"\nlog ‖∂L/∂h_t‖ per step of lag, width {s['hidden']}, {s['steps']} steps "
    f"(95% t interval over {s['members']} members, {s['sequences']} sequences each)"
  )
  print(f"{'setting':<12} {'σ_w²':>6} {'measured rate':>28} {'mean field':>11} {'E h²':>14}")
  for r in rows:
    theory_name = "½log χ₁" if r["model"] == "rnn" else "½log E f²"
    print(
      f"{r['setting']:<12} {float(r['sigma_w2']):>6.3f} "
      f"{float(r['measured_rate']):>+8.4f} "
      f"[{float(r['rate_lo']):+.4f}, {float(r['rate_hi']):+.4f}] "
      f"{float(r['theory_rate']):>+8.4f} {theory_name:<9} "
      f"{float(r['h2_measured']):.3f}/{float(r['h2_theory']):.3f}"
    )
  return 0


if __name__ == "__main__":
  sys.exit(main())
