"""Is tanh(n·x) a new activation? The rescaling equivalence, step by step.

The seed analysis (``docs/seed_analysis.md`` §4): a network with tanh(n·x) units and parameters α
computes exactly the tanh(x) network with parameters β = n·α, so tanh(n·x) changes only
the initialization and the effective learning rate. Derivation, for an MLP with
``h^l = φ(W^l h^{l−1} + b^l)`` at *every* layer, the readout included:

* forward: ``tanh(n(W h + b)) = tanh((nW) h + nb)``, layer by layer, so the outputs and
  the cost agree: ``C_n(α) = C_1(nα)``;
* gradient: ``∇_α C_n(α) = n · (∇C_1)(nα)``;
* SGD with rate δ on α: ``α' = α − δ n (∇C_1)(nα)``; multiplied by n,
  ``nα' = nα − δn² (∇C_1)(nα)``: the tanh(x) network with β = nα and rate **δ·n²**
  takes the same step, and by induction the whole trajectory is the same, β_t = n·α_t.
  Heavy-ball momentum is linear in the gradients and maps the same way.
* Adam with rate δ: the update ``−δ m̂/(√v̂ + ε)`` sees gradients n times larger, so in
  β coordinates ``n·Δα = −δn m̂_β/(√v̂_β + ε/n)``: the tanh(x) network with rate **δ·n**
  and ε/n follows the same trajectory; with the usual ε (1e-8) it differs by terms of
  relative size ε/(n√v̂) — tiny while gradients are large, not while they vanish.

*Which parameters to scale.* The identity needs the factor n in front of every layer
whose parameters are scaled. With a linear readout ``y = W^L h + b^L`` (no tanh, no n),
the equivalent tanh(x) network keeps ``W^L, b^L`` unscaled; their gradients are equal in
both networks, so SGD needs rate δ there and δn² in the hidden layers — no single global
rate is equivalent (the tests check both statements). This experiment therefore uses
tanh(n·) at every layer, with Nielsen's quadratic cost ``½‖h^L − y‖²`` (ch. 1), and scales
every weight and bias.

For digits (scikit-learn's bundled 8×8 images) and a 64-32-32-10 network it trains the
tanh(n·x) network from α₀ (weights N(0, 1/fan_in), biases N(0, 0.05)) and the tanh(x)
network from β₀ = n·α₀ on the same mini-batches, in float64, and records per step
the relative parameter distance ``‖β_t − n·α_t‖ / ‖n·α_t‖`` and the difference of the
full-training-set costs ``|C_1(β_t) − C_n(α_t)|`` for

* ``sgd_rescaled``: SGD, rate δ·n² (equal to float64 rounding);
* ``sgd_unscaled``: SGD, rate δ (differs at once and drifts apart);
* ``adam_unscaled``: Adam, rate δ_A (differs);
* ``adam_rescaled``: Adam, rate δ_A·n (equal up to the ε term);
* ``adam_rescaled_eps``: Adam, rate δ_A·n and ε/n (equal to rounding);

and, as the yardstick of "float tolerance", ``rounding_control``: the tanh(n·x) SGD run
itself restarted from α₀ perturbed by 1e-16 (relative, Gaussian). Early training
amplifies any rounding-level difference exponentially (by ~1e6 over the first hundred
steps here), so the ``sgd_rescaled`` distance grows from 1e-16 to ~1e-10 exactly as the
control does: the two networks are as equal as two runs of one network can be.

For n = 2 (a power of two) every scaling is exact in binary floating point, yet the
trajectories do not agree bit for bit: the two networks are different compiled programs
(tanh(2·z) against tanh(z')), whose sums and fused multiply-adds XLA may order
differently, so they agree to rounding, like any n: for this 64-32-32-10 network the
first difference is one float32 ulp (3e-8) after the first step, here and also through
``vanish.training.train`` (measured); each step agrees to K·u of the update (tested). The
reported distances for n = 2 are therefore rounding-level and grow like the
``rounding_control``, not zero.

Run:  python -m experiments.rescaling --quick   (n = 3, 200 steps; about 10 s on 2 CPU cores)
      python -m experiments.rescaling --full    (n = 2, 3, 5; 5000 steps)
Results: results/rescaling/<config hash>/ (arrays.npz, differences.csv, run.json).
"""

from __future__ import annotations

import argparse
import functools
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

import vanish as vn
from experiments._common import (
  TRAIN_SIZE,
  cached_run,
  check_batch_size,
  default_ensure,
  digits_sets,
  experiment_parser,
  positive_float,
  positive_int,
)
from vanish import data, models, store, training

WIDTHS = (64, 32, 32, 10)
SIGMA_B2 = 0.05
ADAM_EPS = 1e-8  # optax.adam's default, the one vanish.training uses
SIZES = {
  "quick": {"n": [3.0], "steps": 200, "batch_size": 32},
  "full": {"n": [2.0, 3.0, 5.0], "steps": 5000, "batch_size": 32},
}


class Case(NamedTuple):
  """One comparison: the tanh(x) network's optimizer, rate and ε for a tanh(n·x) reference."""

  name: str
  optimizer: str  # "sgd" or "adam"
  rate_power: int  # the tanh(x) network's rate is (reference rate) · n**rate_power
  eps_power: int  # Adam's ε is ADAM_EPS / n**eps_power
  label: str


CASES = (
  Case("sgd_rescaled", "sgd", 2, 0, "SGD, η·n²"),
  Case("sgd_unscaled", "sgd", 0, 0, "SGD, η"),
  Case("adam_unscaled", "adam", 0, 0, "Adam, η"),
  Case("adam_rescaled", "adam", 1, 0, "Adam, η·n"),
  Case("adam_rescaled_eps", "adam", 1, 1, "Adam, η·n, ε/n"),
)
CONTROL_LABEL = "tanh(n·x), α₀(1+1e-16)"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
  parser = experiment_parser(
    __doc__, quick_help="n = 3, 200 steps (CPU, CI)", full_help="n = 2, 3, 5; 5000 steps"
  )
  parser.add_argument("--n", type=positive_float, nargs="+", help="slopes n of tanh(n·x)")
  parser.add_argument("--steps", type=positive_int, help="optimizer steps")
  parser.add_argument("--batch-size", type=positive_int, help="mini-batch size (default 32)")
  parser.add_argument("--sgd-rate", type=positive_float, default=0.05, help="δ of SGD (0.05)")
  parser.add_argument("--adam-rate", type=positive_float, default=1e-3, help="δ_A (1e-3)")
  parser.add_argument(
    "--train-size", type=TRAIN_SIZE, help="use only the first N training images (tests)"
  )
  args = parser.parse_args(argv)
  check_batch_size(parser, args, args.batch_size or SIZES[args.size]["batch_size"])
  return args


def sizes_of(args: argparse.Namespace) -> dict:
  sizes = dict(SIZES[args.size])
  if args.n is not None:
    sizes["n"] = sorted({float(n) for n in args.n})
  for name in ("steps", "batch_size"):
    if getattr(args, name) is not None:
      sizes[name] = getattr(args, name)
  return sizes


def network(n: float, widths: Sequence[int] = WIDTHS, readout: str = "activation") -> vn.MLP:
  """The tanh(n·x) network (``n = 1``: tanh(x)); φ at every layer unless ``readout="linear"``."""
  activation = "tanh" if n == 1 else vn.activations.scaled_tanh(n)
  return vn.MLP(list(widths), activation, readout=readout)


def initial_params(
  widths: Sequence[int], *, key: jax.Array, dtype=np.float64
) -> tuple[dict[str, jax.Array], ...]:
  """One member (M = 1) in ``net.init``'s layout: ``W ~ N(0, 1/fan_in)``, ``b ~ N(0, 0.05)``.

  Drawn with numpy's PCG64 seeded by ``key``'s data, then cast to ``dtype`` (float64
  needs ``jax.enable_x64``); one dict per segment of :func:`network` ``(n, widths)``.

  Example:
    >>> import jax
    >>> from experiments import rescaling
    >>> p = rescaling.initial_params([4, 3, 3, 2], key=jax.random.key(0), dtype="float32")
    >>> [q["w"].shape for q in p]
    [(1, 1, 3, 4), (1, 1, 3, 3), (1, 1, 2, 3)]
  """
  net = network(1.0, widths)
  rng = np.random.default_rng([int(v) for v in np.asarray(jax.random.key_data(key)).ravel()])
  params = []
  for s in net.segments:
    w = rng.standard_normal((1, s.depth, s.fan_out, s.fan_in)) / math.sqrt(s.fan_in)
    b = math.sqrt(SIGMA_B2) * rng.standard_normal((1, s.depth, s.fan_out))
    params.append({"w": jnp.asarray(w, dtype), "b": jnp.asarray(b, dtype)})
  return tuple(params)


def scale_params(params, factor: float):
  """Every weight and bias times ``factor`` (β = n·α)."""
  return jax.tree.map(lambda a: a * jnp.asarray(factor, a.dtype), params)


def _unflatten(like, flat: np.ndarray):
  """The inverse of :func:`_flatten` for one member (M = 1) shaped like ``like``."""
  leaves, treedef = jax.tree.flatten(like)
  sizes = np.cumsum([leaf.size for leaf in leaves])[:-1]
  parts = np.split(flat, sizes)
  return jax.tree.unflatten(
    treedef,
    [jnp.asarray(p.reshape(leaf.shape), leaf.dtype) for p, leaf in zip(parts, leaves, strict=True)],
  )


def _flatten(params) -> jax.Array:
  return jnp.concatenate([a.ravel() for a in jax.tree.leaves(params)])


@functools.partial(jax.jit, static_argnames=("net", "optimizer"))
def _trajectory(net, optimizer, rate, eps, params, x, y, batches):
  """Scan of one member's steps; returns flattened params and full-set costs, ``[T + 1, ·]``."""
  tx = optax.sgd(rate) if optimizer == "sgd" else optax.adam(rate, eps=eps)
  precision = "highest"

  def loss(p, xb, yb):
    return training.cost("quadratic", models.apply(net, p, xb, precision), yb)

  def step(carry, indices):
    p, state = carry
    grads = jax.grad(loss)(p, x[indices], y[indices])
    updates, state = tx.update(grads, state, p)
    p = optax.apply_updates(p, updates)
    return (p, state), (_flatten(p), loss(p, x, y))

  _, (flat, costs) = jax.lax.scan(step, (params, tx.init(params)), batches)
  return (
    jnp.concatenate([_flatten(params)[None], flat]),
    jnp.concatenate([loss(params, x, y)[None], costs]),
  )


def trajectory(
  net: vn.MLP,
  params: Sequence[dict[str, jax.Array]],
  train_data: data.Dataset,
  batches: np.ndarray,
  *,
  optimizer: str,
  learning_rate: float,
  eps: float = ADAM_EPS,
) -> tuple[np.ndarray, np.ndarray]:
  """Trains ONE network on the given mini-batches and returns every step's state.

  The step is :func:`vanish.training.train`'s (quadratic cost, ``optax.sgd(η)`` or
  ``optax.adam(η)``, the same forward pass), written out here because ``train`` does not
  return intermediate parameters; the tests check that both agree.

  Args:
    net: the network spec.
    params: one member, ``net.init``'s layout with M = 1 (float32 or float64).
    train_data: the training set; the cost is evaluated on all of it after every step.
    batches: ``[T, batch]`` example indices of the T steps.
    optimizer: ``"sgd"`` or ``"adam"``.
    learning_rate: η > 0.
    eps: Adam's ε.

  Returns:
    ``(params, cost)``: ``[T + 1, P]`` flattened parameters (leaf order of ``params``)
    and ``[T + 1]`` full-set quadratic costs, both starting at initialization.

  Example:
    >>> import jax, numpy as np
    >>> from experiments import rescaling
    >>> from vanish import data
    >>> train, _ = data.teacher_student(jax.random.key(0), n_train=40, n_test=1)
    >>> net = rescaling.network(2.0, [16, 8, 4])
    >>> p = rescaling.initial_params([16, 8, 4], key=jax.random.key(1), dtype="float32")
    >>> flat, cost = rescaling.trajectory(net, p, train, np.arange(40).reshape(4, 10),
    ...                                   optimizer="sgd", learning_rate=0.1)
    >>> flat.shape, bool(cost[-1] < cost[0])
    ((5, 172), True)
  """
  if optimizer not in ("sgd", "adam"):
    raise ValueError(f"optimizer must be 'sgd' or 'adam', got {optimizer!r}")
  if not (math.isfinite(learning_rate) and learning_rate > 0):
    raise ValueError(f"learning_rate must be a finite number > 0, got {learning_rate}")
  params = tuple(jax.tree.map(lambda a: a[0], dict(p)) for p in params)  # drop M = 1
  dtype = params[0]["w"].dtype
  x = jnp.asarray(train_data.x, dtype)
  y = jnp.asarray(train_data.y, jnp.int32)
  flat, cost = _trajectory(
    net,
    optimizer,
    jnp.asarray(learning_rate, dtype),
    jnp.asarray(eps, dtype),
    params,
    x,
    y,
    jnp.asarray(batches, jnp.int32),
  )
  return np.asarray(flat), np.asarray(cost)


def step_batches(key: jax.Array, n_examples: int, batch_size: int, steps: int) -> np.ndarray:
  """``[steps, batch_size]`` indices: :func:`vanish.training.epoch_batches`, epoch after epoch."""
  per_epoch = n_examples // batch_size
  epochs = -(-steps // per_epoch)
  order = [
    np.asarray(training.epoch_batches(key, e, n_examples, batch_size)) for e in range(epochs)
  ]
  return np.concatenate(order)[:steps]


def compare(args: argparse.Namespace, sizes: dict, n: float) -> dict:
  """Runs the tanh(n·x) references and every case for one n, in float64."""
  train_set, _ = digits_sets(args)
  key = jax.random.key(args.seed)
  batches = step_batches(
    jax.random.fold_in(key, 1), len(train_set.y), sizes["batch_size"], sizes["steps"]
  )
  arrays, rows = {}, []
  with jax.enable_x64(True):
    alpha = initial_params(WIDTHS, key=jax.random.fold_in(key, 0), dtype=np.float64)
    beta = scale_params(alpha, n)
    rates = {"sgd": args.sgd_rate, "adam": args.adam_rate}
    references = {
      name: trajectory(
        network(n), alpha, train_set, batches, optimizer=name, learning_rate=rates[name]
      )
      for name in rates
    }
    for case in CASES:
      flat_a, cost_a = references[case.optimizer]
      flat_b, cost_b = trajectory(
        network(1.0),
        beta,
        train_set,
        batches,
        optimizer=case.optimizer,
        learning_rate=rates[case.optimizer] * n**case.rate_power,
        eps=ADAM_EPS / n**case.eps_power,
      )
      mapped = n * flat_a  # α_t in β coordinates
      distance = np.linalg.norm(flat_b - mapped, axis=1) / np.linalg.norm(mapped, axis=1)
      cost_gap = np.abs(cost_b - cost_a)
      prefix = f"n{n:g}/{case.name}"
      arrays[f"{prefix}/distance"] = distance
      arrays[f"{prefix}/cost_difference"] = cost_gap
      arrays[f"{prefix}/cost"] = cost_b
      rows.append(
        {
          "n": n,
          "case": case.name,
          "optimizer": case.optimizer,
          "learning_rate": rates[case.optimizer] * n**case.rate_power,
          "eps": ADAM_EPS / n**case.eps_power if case.optimizer == "adam" else "",
          "max_distance": float(distance.max()),
          "final_distance": float(distance[-1]),
          "max_cost_difference": float(cost_gap.max()),
          "final_cost_difference": float(cost_gap[-1]),
        }
      )
    flat_a, cost_a = references["sgd"]
    noise = np.random.default_rng(args.seed).standard_normal(flat_a.shape[1])
    perturbed = _unflatten(alpha, np.asarray(flat_a[0]) * (1 + 1e-16 * noise))
    flat_c, cost_c = trajectory(
      network(n), perturbed, train_set, batches, optimizer="sgd", learning_rate=args.sgd_rate
    )
    distance = np.linalg.norm(flat_c - flat_a, axis=1) / np.linalg.norm(flat_a, axis=1)
    arrays[f"n{n:g}/rounding_control/distance"] = distance
    arrays[f"n{n:g}/rounding_control/cost_difference"] = np.abs(cost_c - cost_a)
    rows.append(
      {
        "n": n,
        "case": "rounding_control",
        "optimizer": "sgd",
        "learning_rate": args.sgd_rate,
        "eps": "",
        "max_distance": float(distance.max()),
        "final_distance": float(distance[-1]),
        "max_cost_difference": float(np.abs(cost_c - cost_a).max()),
        "final_cost_difference": float(np.abs(cost_c - cost_a)[-1]),
      }
    )
    for name, (_, cost_a) in references.items():
      arrays[f"n{n:g}/reference_{name}/cost"] = cost_a
  return {"arrays": arrays, "rows": rows}


def config_of(args: argparse.Namespace) -> dict:
  return {
    "size": args.size,
    **sizes_of(args),
    "widths": list(WIDTHS),
    "sigma_b2": SIGMA_B2,
    "cost": "quadratic",
    "readout": "activation",
    "data": "digits",
    "train_size": args.train_size,
    "sgd_rate": args.sgd_rate,
    "adam_rate": args.adam_rate,
    "adam_eps": ADAM_EPS,
    "dtype": "float64",
    "seed": args.seed,
    "precision": "highest",
  }


def cached(args: argparse.Namespace) -> Path:
  """The stored run of ``args``' config, computed first (one chunk per n) if needed."""
  sizes = sizes_of(args)
  return cached_run(
    args.out,
    "rescaling",
    config_of(args),
    lambda n: compare(args, sizes, float(n)),
    table="differences",
    force=args.force,
    chunks=sizes["n"],
  )


ensure = default_ensure(parse_args, cached)


def main(argv: Sequence[str] | None = None) -> int:
  args = parse_args(argv)
  path = cached(args)
  run = store.load(path)
  print(
    f"\ntanh(n·x) net (SGD η = {args.sgd_rate:g}, Adam η = {args.adam_rate:g}) vs tanh(x) net "
    f"from β = n·α, {run.config['steps']} steps, float64"
  )
  print(f"{'n':>4} {'compared run':<24} {'max ‖β−nα‖/‖nα‖':>17} {'max |ΔC|':>10}")
  labels = {case.name: case.label for case in CASES} | {"rounding_control": CONTROL_LABEL}
  for row in run.tables["differences"]:
    print(
      f"{float(row['n']):>4g} {labels[row['case']]:<24} {float(row['max_distance']):>17.2e} "
      f"{float(row['max_cost_difference']):>10.2e}"
    )
  return 0


if __name__ == "__main__":
  sys.exit(main())
