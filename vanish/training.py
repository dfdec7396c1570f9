"""Training with optax, logging Nielsen's per-layer learning speeds from the update's own gradients.

:func:`train` runs mini-batch training of an ensemble of M networks (``params``
from ``net.init``, or :func:`vanish.models.to_params` of a model) in one compiled
call per epoch: the step is a pure function of ``(params, opt_state, batch)``,
``vmap``-ed over members and ``lax.scan``-ned over the epoch's mini-batches. On
CPU (2 shared cores; 64 members of a 64-30-30-10 sigmoid net, batch 10) one step
takes 1.2 ms, against 5.6 ms for ``nnx.jit(nnx.vmap(step))`` with an
``nnx.Optimizer`` (4.5 ms with ``nnx.cached_partial``) and 1.6 ms for a
``jax.jit(jax.vmap(step))`` called once per step; training the 64 members together
is 2.9× faster than 64 runs of one member. :func:`fit` does the same for an
:class:`~vanish.models.MLPModel`, in place.

Every step logs, per member, the mini-batch loss and the *speed of learning*
of every layer (Nielsen, *Neural Networks and Deep Learning*, ch. 5)

    ‖∂C/∂b^l‖  and  ‖∂C/∂W^l‖_F,   l = 1..L,

taken from the very gradients the optimizer applies (no second backward pass). A
logged 0 means an exactly zero gradient (e.g. a dead ReLU layer), not one whose
squares underflow float32 (below ~1e-19): the plain ``sqrt(Σ g²)`` is used when
every member's sums of squares lie safely inside the float32 range in every step of
the epoch; otherwise (an underflow or overflow, and also an exactly zero, inf or NaN
gradient, which the plain sums cannot tell apart from one) the epoch is run again from
the same state with the norms scaled by the largest entry (:func:`_scaled_layer_norms`),
and so are all later epochs of the run (deep networks whose gradients vanish stay in
that regime: one rerun, not one per epoch). The step chooses no branch for this: on a
GPU a conditional copies its predicate to the host every step. On the H100 (session 10)
vanish's epoch cost +28 % over a plain optax epoch while the step held a ``lax.cond``
for it, and the same norms in the plain step +11 %; the present design is not yet
measured on a GPU (``bash benchmarks/gpu_session.sh scale``). There a step of a small
network is bound by kernel launches, so the logging adds as few ops to the scanned step
as it can: one ``Σ g²`` reduction per tensor (no ``max |g|`` beside it), one
elementwise op for the checks after them, and one log vector, written once
(``log="step"``) or added to the epoch's sums in the scan's carry (``log="epoch"``).
On the 2-core CPU (``benchmarks/bench_ensemble_training.py --quick``, 16 members of a
64-30-30-30-10 net) the logging costs +5–7 % over a plain optax epoch, about as much as
the plain step's own per-tensor norms (+3–7 %; +10–11 % with ``max |g|`` beside ``Σ g²``).
A scaled epoch costs about +8 % more than a plain one (median; the rerun adds one epoch
and a second compilation, ~1.4 s there). Runs pay it whose gradients vanish below float32's
squares, explode past them or turn inf or NaN (a diverged run), or that hold an exactly
zero layer gradient (a dead ReLU layer): of the paper's experiments, markov's ReLU and
η = 100 tanh settings and large_weights (w = 100) at their quick sizes.

Each step also logs the *gradient-product state* of the Markov model of
:mod:`vanish.markov`,

    log g = log(‖∂C/∂b^1‖ / ‖∂C/∂b^L‖),

the log size of the backpropagated product ``δ^1 = Σ'(z^1) (W^2)ᵀ ⋯ Σ'(z^L) ∇_a C``
relative to its last factor (``−inf`` when the first layer's gradient is exactly 0,
``+inf`` when only the last layer's is): ``markov.states(log.log_g, log(ε))`` is the
chain ``[g ≈ 0]`` of the applied gradients, ``markov.states(log.eval_log_g, …)`` that
of the full training set's gradient (with ``eval_speeds=True``).

With ``log="epoch"`` the per-step values are averaged over the epoch's steps (so
``log_g`` is the mean log, a geometric mean of the ratio) and the full training and
test sets are evaluated once per epoch. With ``log="step"`` every step is a row of
these values, still taken from the step's own gradients, and the full sets are
evaluated at the end of every epoch and, with ``evaluate_every=k``, also after every
k-th step (``Log.eval_step`` lists the evaluated steps). A full evaluation costs far
more than a mini-batch step: on CPU (8 members of a 64-30-30-30-10 sigmoid net, batch
10, digits, 143 steps) an epoch takes 0.046 s with ``log="step"`` (0.044 s with
``log="epoch"``), 0.12 s with ``evaluate_every=10`` and 0.97 s with
``evaluate_every=1``, the old behaviour of ``log="step"``.

Costs (on the network output ``a = h^L``, averaged over the mini-batch):

* ``"quadratic"``: ``½‖a − y‖²`` with one-hot targets y (Nielsen ch. 1, eq. 6);
* ``"cross_entropy"``: softmax cross-entropy, ``a`` read as logits (use
  ``readout="linear"``);
* ``"sigmoid_cross_entropy"``: Nielsen's ``−Σ_j [y_j ln σ(a_j) + (1−y_j) ln(1−σ(a_j))]``
  (ch. 3, eq. 63) with ``a`` the output pre-activations (``readout="linear"``):
  the same function and gradients as his sigmoid output layer.

Optimizers: ``"sgd"`` (Nielsen's ``w → w − η ∂C/∂w``), ``"momentum"`` (heavy ball,
``optax.sgd(η, momentum)``) and ``"adam"`` (Kingma & Ba 2015).

Runs are deterministic given ``key``: mini-batch order of epoch e is a
permutation drawn from ``fold_in(key, e)``, shared by all members, so member m of
an ensemble takes the same steps as it would alone, *up to float rounding*: the
ensemble's program batches its matmuls over members and a single member's does not,
so sums round in another order and every step agrees only to a few ulp of the update
(tested: to K·u, K the longest sum). Training is often chaotic, and chaos amplifies
such differences: after 50 SGD steps (η = 0.05) of a tanh(3x) 64-16-16-10 net on
digits a member of a 4-member run and the same member alone differ by 16–22 % in
their parameters (Adam at η = 1e-2 on a sigmoid net: < 1e-6 after 286 steps). On
XLA:CPU runs with M ≥ 2 currently give every member bitwise the same result whatever
M and its position (M = 1 differs); this is an observation, not a guarantee (GPU
batched kernels may depend on M). With ``checkpoint=path`` the state
(params, optimizer state, epoch, key, log) is written atomically every
``checkpoint_every`` epochs, and a rerun resumes from it with bitwise-identical
results.

Example:
  >>> import jax, vanish as vn
  >>> from vanish import data, training
  >>> train_set, test_set = data.teacher_student(jax.random.key(0), n_train=200, n_test=50)
  >>> net = vn.MLP([16, 32, 4], "tanh", readout="linear")
  >>> params = net.init(jax.random.key(1), members=3)
  >>> result = training.train(net, params, train_set, test_set, key=jax.random.key(2),
  ...                         optimizer="adam", learning_rate=1e-2, batch_size=20, epochs=3)
  >>> result.log.bias_speed.shape          # [M, epochs, L]: ‖∂C/∂b^l‖ per epoch
  (3, 3, 2)
  >>> result.log.test_accuracy.shape       # [M, 1 + epochs]: at init, then each epoch
  (3, 4)
  >>> result.log.log_g.shape               # [M, epochs]: log ‖∂C/∂b^1‖/‖∂C/∂b^L‖
  (3, 3)
  >>> bool((result.log.train_loss[:, -1] < result.log.train_loss[:, 0]).all())
  True
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
import numbers
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import lax

from vanish import _checks, _engine, store
from vanish.data import Dataset
from vanish.models import MLPModel, _check_params, apply, members, to_params
from vanish.networks import MLP, _check_key

__all__ = [
  "COSTS",
  "OPTIMIZERS",
  "Config",
  "Log",
  "TrainResult",
  "cost",
  "epoch_batches",
  "fit",
  "gradient_norms",
  "optimizer",
  "train",
]

COSTS = ("quadratic", "cross_entropy", "sigmoid_cross_entropy")
OPTIMIZERS = ("sgd", "momentum", "adam")
_LOGS = ("epoch", "step")
_CHECKPOINT_VERSION = 3  # 2: the log holds log_g; 3: evaluate_every


@dataclasses.dataclass(frozen=True)
class Config:
  """Everything that defines a training run besides the network, data, params and key.

  Attributes:
    cost: one of :data:`COSTS`.
    optimizer: one of :data:`OPTIMIZERS`.
    learning_rate: η > 0.
    momentum: the heavy-ball coefficient in [0, 1) (``"momentum"`` only).
    batch_size: mini-batch size; each epoch drops the ``N mod batch_size``
      examples left over by its permutation (static shapes).
    log: ``"epoch"`` or ``"step"``.
    evaluate_every: with ``log="step"``, evaluate the full training and test
      sets after every step whose count is a multiple of this (and after the last
      step of every epoch); None (default): only at the end of every epoch.
      ``log="epoch"`` always evaluates at epoch ends (None only).
    eval_speeds: at every evaluation also compute the learning speeds of the
      full training set's mean cost (Nielsen's measurement; one extra backward
      pass per evaluation, not per step).
    precision: matmul precision of the forward pass.
  """

  cost: str = "cross_entropy"
  optimizer: str = "sgd"
  learning_rate: float = 0.1
  momentum: float = 0.9
  batch_size: int = 10
  log: str = "epoch"
  evaluate_every: int | None = None
  eval_speeds: bool = False
  precision: str = "highest"

  def __post_init__(self):
    if self.cost not in COSTS:
      raise ValueError(f"cost must be one of {', '.join(COSTS)}, got {self.cost!r}")
    if self.optimizer not in OPTIMIZERS:
      raise ValueError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {self.optimizer!r}")
    lr = _real_scalar(self.learning_rate)
    if lr is None or not (math.isfinite(lr) and lr > 0):
      raise ValueError(f"learning_rate must be a finite number > 0, got {self.learning_rate!r}")
    mu = _real_scalar(self.momentum)
    if mu is None or not 0 <= mu < 1:
      raise ValueError(f"momentum must be a number in [0, 1), got {self.momentum!r}")
    _check_count("batch_size", self.batch_size, 1)
    if self.log not in _LOGS:
      raise ValueError(f"log must be 'epoch' or 'step', got {self.log!r}")
    if self.evaluate_every is not None:
      _check_count("evaluate_every", self.evaluate_every, 1)
      if self.log != "step":
        raise ValueError("evaluate_every needs log='step' (log='epoch' evaluates at epoch ends)")
      object.__setattr__(self, "evaluate_every", int(self.evaluate_every))
    _engine.check_precision(self.precision)
    object.__setattr__(self, "learning_rate", float(lr))
    object.__setattr__(self, "momentum", float(mu))
    object.__setattr__(self, "batch_size", int(self.batch_size))
    object.__setattr__(self, "eval_speeds", bool(self.eval_speeds))


class Log(NamedTuple):
  """What a run logged, as numpy arrays (M members, L layers, T rows).

  Attributes:
    step: ``[T]`` optimizer steps taken at each row.
    loss: ``[M, T]`` mini-batch loss of the step (epoch mean for ``log="epoch"``).
    bias_speed: ``[M, T, L]`` ``‖∂C/∂b^l‖`` of the applied gradient (epoch mean).
    weight_speed: ``[M, T, L]`` ``‖∂C/∂W^l‖_F`` of the applied gradient (epoch mean).
    log_g: ``[M, T]`` the gradient-product state ``log(‖∂C/∂b^1‖ / ‖∂C/∂b^L‖)`` of
      the applied gradient (epoch mean of the log), what :func:`vanish.markov.states`
      classifies.
    eval_step: ``[E + 1]`` the steps after which the full sets were evaluated: 0
      (initialization), then every epoch's end (``E = T`` for ``log="epoch"``) and,
      with ``evaluate_every=k``, every k-th step.
    train_loss, train_accuracy, test_loss, test_accuracy: ``[M, E + 1]`` on the
      full sets (NaN without a test set). A member whose outputs are inf or NaN
      (diverged) has accuracy NaN, and :func:`train` warns naming it.
    eval_bias_speed, eval_weight_speed: ``[M, E + 1, L]`` learning speeds of the
      full training set's cost, or None unless ``eval_speeds=True``.
    eval_log_g: ``[M, E + 1]`` the gradient-product state of the full training
      set's cost, or None unless ``eval_speeds=True``.
  """

  step: np.ndarray
  loss: np.ndarray
  bias_speed: np.ndarray
  weight_speed: np.ndarray
  log_g: np.ndarray
  eval_step: np.ndarray
  train_loss: np.ndarray
  train_accuracy: np.ndarray
  test_loss: np.ndarray
  test_accuracy: np.ndarray
  eval_bias_speed: np.ndarray | None = None
  eval_weight_speed: np.ndarray | None = None
  eval_log_g: np.ndarray | None = None

  def arrays(self) -> dict[str, np.ndarray]:
    """The fields that are not None, by name (for ``np.savez`` or the results store)."""
    return {k: v for k, v in self._asdict().items() if v is not None}


class TrainResult(NamedTuple):
  """The trained ``params`` (``net.init``'s format), the optax state, the log, epochs done."""

  params: tuple[dict[str, jax.Array], ...]
  opt_state: Any
  log: Log
  epochs: int


# --------------------------------------------------------------------------- pure pieces


def cost(name: str, outputs: jax.Array, labels: jax.Array) -> jax.Array:
  """The mean cost of a batch.

  Args:
    name: one of :data:`COSTS` (see the module docstring).
    outputs: network outputs ``[batch, classes]``.
    labels: integer labels ``[batch]``.

  Returns:
    A scalar: the batch mean of the per-example cost.

  Example:
    >>> import jax.numpy as jnp
    >>> from vanish import training
    >>> float(training.cost("quadratic", jnp.array([[1.0, 0.0]]), jnp.array([1])))
    1.0
  """
  if name not in COSTS:
    raise ValueError(f"cost must be one of {', '.join(COSTS)}, got {name!r}")
  if name == "cross_entropy":
    return optax.softmax_cross_entropy_with_integer_labels(outputs, labels).mean()
  targets = jax.nn.one_hot(labels, outputs.shape[-1], dtype=outputs.dtype)
  if name == "quadratic":
    return 0.5 * jnp.sum((outputs - targets) ** 2, axis=-1).mean()
  return optax.sigmoid_binary_cross_entropy(outputs, targets).sum(axis=-1).mean()


def optimizer(
  name: str, learning_rate: float, momentum: float = 0.9
) -> optax.GradientTransformation:
  """The optax transformation for ``"sgd"``, ``"momentum"`` or ``"adam"``."""
  return _optimizer(Config(optimizer=name, learning_rate=learning_rate, momentum=momentum))


def _optimizer(config: Config, rates: Any = None) -> optax.GradientTransformation:
  """``rates = (learning_rate, momentum)``, traced inside jit; default the config's values."""
  lr, mu = (config.learning_rate, config.momentum) if rates is None else rates
  if config.optimizer == "sgd":
    return optax.sgd(lr)
  if config.optimizer == "momentum":
    return optax.sgd(lr, momentum=mu)
  return optax.adam(lr)


def _host_rows(row: dict[str, jax.Array]) -> dict[str, np.ndarray]:
  """One evaluation ``[M, ...]`` as a log row ``[M, 1, ...]`` on the host."""
  return {k: np.asarray(v)[:, None] for k, v in row.items()}


def _eval_static(config: Config) -> Config:
  """The part of the config that evaluation depends on (shared by all optimizers)."""
  return Config(cost=config.cost, eval_speeds=config.eval_speeds, precision=config.precision)


def _static(config: Config) -> Config:
  """The part of the config that shapes the compiled program.

  The rates are passed traced, so a learning-rate sweep compiles once.
  """
  every = config.evaluate_every
  return dataclasses.replace(
    config, learning_rate=1.0, momentum=0.0, evaluate_every=None if every is None else min(every, 2)
  )


def epoch_batches(key: jax.Array, epoch: int, n: int, batch_size: int) -> jax.Array:
  """The example indices of each mini-batch of ``epoch``: ``[n // batch_size, batch_size]``.

  A permutation of ``range(n)`` drawn from ``fold_in(key, epoch)``; the last
  ``n mod batch_size`` indices are dropped.
  """
  _check_key(key)
  epoch = _checks.integer("epoch", epoch, minimum=0, maximum=2**32 - 1)  # fold_in takes uint32
  n = _checks.integer("n", n)
  batch_size = _checks.integer("batch_size", batch_size)
  steps = n // batch_size
  order = jax.random.permutation(jax.random.fold_in(key, epoch), n)
  return order[: steps * batch_size].reshape(steps, batch_size).astype(jnp.int32)


def _safe_square_sum(dtype) -> float:
  """The smallest sum of squares that is exact to rounding: one at least this large lost at
  most ``n · tiny`` to squares flushed to zero (XLA on CPU flushes subnormals), a relative
  ``n · 2⁻⁶⁶``. float32: 2⁻⁶⁰ (a norm of ~9e-10); float64: 2⁻⁹⁵⁶."""
  return float(jnp.finfo(dtype).tiny) * 2.0**66


def _plain_layer_norms(grads) -> tuple[jax.Array, jax.Array, jax.Array]:
  """Per-layer ``sqrt(Σ g²)`` for biases and weights (``[L]`` each) from segment-stacked
  gradients, and whether all of them are exact (a scalar bool).

  A norm is known exact when its sum of squares lies in ``[_safe_square_sum, inf)``.
  Anything else (0, tiny, inf or NaN) is flagged: the entries may be too small or too
  large to square in the dtype, which only :func:`_scaled_layer_norms` gets right. An
  exactly zero gradient (a dead layer), or one holding inf or NaN, is flagged too,
  although scaling does not change its norm: telling it apart from an underflowed one
  takes ``max |g|``, a second reduction per tensor (its cost: the module docstring). Such
  an epoch is run again scaled, once per run (:func:`train`). The ``2L`` sums are joined
  before the checks and square roots: one elementwise op after the reductions.

  Packing the gradients into two zero-padded stacks (biases, weights) for one reduction
  each would cut a 64-30-30-30-10 net's 6 reductions to 2, but XLA:CPU materializes the
  padded stacks (+12 % for a plain step on the CPU, against +3–7 % with one reduction per
  tensor), so the reductions stay one per tensor (``benchmarks/bench_ensemble_training.py``
  times the packed variant for a GPU, where it is not yet measured).
  """
  tensors = [(g["b"], (-1,)) for g in grads] + [(g["w"], (-2, -1)) for g in grads]
  sums = jnp.concatenate([jnp.sum(jnp.square(g), axis=axis) for g, axis in tensors])
  exact = jnp.all(jnp.isfinite(sums) & (sums >= _safe_square_sum(sums.dtype)))
  norms, half = jnp.sqrt(sums), sums.size // 2
  return norms[:half], norms[half:], exact


def _scaled_layer_norms(grads) -> tuple[jax.Array, jax.Array]:
  """Per-layer norms for biases and weights, ``[L]`` each, without underflow or overflow of
  the squares.

  ``‖g‖ = s · ‖g / s‖`` with ``s = max |g|`` (LAPACK's ``xNRM2`` idea): in float32 a
  plain ``sqrt(Σ g²)`` rounds to 0 once the entries fall below ~1e-23 and to inf above
  ~1e19, so a logged 0 would not mean an exactly zero gradient. Here it does: a norm is 0
  iff every entry is 0 (inf if any is inf, NaN if any is NaN). The scales and scaled norms
  of all segments are joined before ``s · ‖g / s‖``: one elementwise op for all layers.
  """

  def scale_and_scaled_norm(g, axis):
    scale = jnp.max(jnp.abs(g), axis=axis, keepdims=True)
    safe = jnp.where(jnp.isfinite(scale) & (scale > 0), scale, jnp.ones_like(scale))
    norm = jnp.sqrt(jnp.sum(jnp.square(g / safe), axis=axis, keepdims=True))
    return jnp.squeeze(scale, axis=axis), jnp.squeeze(norm, axis=axis)

  def norms(name, axis):
    parts = [scale_and_scaled_norm(g[name], axis) for g in grads]
    scale, norm = (jnp.concatenate(column) for column in zip(*parts, strict=True))
    return jnp.where(jnp.isfinite(scale) & (scale > 0), scale * norm, scale)

  return norms("b", (-1,)), norms("w", (-2, -1))


def _layer_norms(grads, axis_name: str | None = None) -> tuple[jax.Array, jax.Array]:
  """Per-layer ``(‖∂C/∂b^l‖, ‖∂C/∂W^l‖_F)``, each ``[L]``, for a full-set evaluation.

  The plain norms where :func:`_plain_layer_norms` says they are exact, else
  :func:`_scaled_layer_norms` (so a gradient of 1e-30 logs ~1e-30, not 0, and NaN or inf
  propagate). Under ``vmap(..., axis_name=axis_name)`` the choice is made once for all
  members (``lax.pmin``), so it stays a real ``lax.cond`` (a batched predicate would turn
  it into a select that computes both). The training step does not use it: a
  conditional inside the step's loop would cost a device-to-host copy of its predicate
  every step on a GPU (see :func:`_epoch`).
  """
  bias, weight, exact = _plain_layer_norms(grads)
  if axis_name is not None:
    exact = lax.pmin(exact.astype(jnp.int32), axis_name) > 0
  return lax.cond(exact, lambda: (bias, weight), lambda: _scaled_layer_norms(grads))


def _log_g(bias_speed: jax.Array) -> jax.Array:
  """``log(‖∂C/∂b^1‖ / ‖∂C/∂b^L‖)`` from ``[..., L]`` speeds, with the conventions of
  :func:`vanish.markov.log_first_layer_speed`: ``−inf`` where the first is 0 (also 0/0)."""
  first, last = bias_speed[..., 0], bias_speed[..., -1]
  return jnp.where(first == 0, -jnp.inf, jnp.log(first) - jnp.log(last))


def _packed_log(loss, bias, weight, exact) -> jax.Array:
  """One step's log as one vector ``[3 + 2L]``: the loss, ``log_g``, 1 if a norm is inexact
  (else 0), the L bias speeds, the L weight speeds. The scanned step writes one vector
  (``log="step"``) or adds it to the epoch's sums (``log="epoch"``), not one per field.

  The loss enters through ``lax.optimization_barrier``, which changes no value: the
  gradient does not need the loss itself, so without it XLA:GPU fused the whole
  cross-entropy (a deviceless H100 compile, jax 0.10.2: max and Σ exp of the logits again,
  the label gather, log, the batch mean) into the kernel that concatenates this vector, one
  thread per member looping over batch × classes. Behind the barrier the per-example
  losses join the last bias's update kernel and their mean is its own small kernel, as in
  a plain optax step that returns its loss (``benchmarks/bench_ensemble_training.py``).
  """
  loss = lax.optimization_barrier(loss)
  head = jnp.stack([loss, _log_g(bias), jnp.where(exact, 0, 1).astype(loss.dtype)])
  return jnp.concatenate([head, bias, weight])


def _unpacked_log(packed: jax.Array) -> tuple[dict[str, jax.Array], jax.Array]:
  """The log fields of :func:`_packed_log` vectors ``[T, 3 + 2L]`` (``[T]`` and ``[T, L]``),
  and the inexact flags (0 where all norms were exact; or their sums, for summed vectors)."""
  depth = (packed.shape[-1] - 3) // 2
  fields = {
    "loss": packed[:, 0],
    "bias_speed": packed[:, 3 : 3 + depth],
    "weight_speed": packed[:, 3 + depth :],
    "log_g": packed[:, 1],
  }
  return fields, packed[:, 2]


def _loss_and_outputs(net, config, params, x, y):
  out = apply(net, params, x, _engine.lax_precision(config.precision))
  return cost(config.cost, out, y), out


def _accuracy(out, y):
  """The fraction of correct argmax predictions; NaN if any output is inf or NaN (a diverged
  network has no meaningful argmax: ``argmax`` of NaNs is 0, which would read as chance)."""
  accuracy = jnp.mean(jnp.argmax(out, axis=-1) == y)
  return jnp.where(jnp.all(jnp.isfinite(out)), accuracy, jnp.nan)


def _evaluate(net, config, params, x, y, x_test, y_test, axis_name=None):
  """Full-set metrics of ONE member (plus its full-batch learning speeds if asked)."""
  if config.eval_speeds:
    (loss, out), grads = jax.value_and_grad(_loss_and_outputs, argnums=2, has_aux=True)(
      net, config, params, x, y
    )
    bias, weight = _layer_norms(grads, axis_name)
    row = {"eval_bias_speed": bias, "eval_weight_speed": weight, "eval_log_g": _log_g(bias)}
  else:
    loss, out = _loss_and_outputs(net, config, params, x, y)
    row = {}
  row |= {"train_loss": loss, "train_accuracy": _accuracy(out, y)}
  if x_test is None:
    nan = jnp.full((), jnp.nan, loss.dtype)
    row |= {"test_loss": nan, "test_accuracy": nan}
  else:
    test_loss, test_out = _loss_and_outputs(net, config, params, x_test, y_test)
    row |= {"test_loss": test_loss, "test_accuracy": _accuracy(test_out, y_test)}
  return row


_MEMBERS = "members"  # the vmap axis name of the ensemble in the compiled epoch
_EVAL_FIELDS = (
  "train_loss",
  "train_accuracy",
  "test_loss",
  "test_accuracy",
  "eval_bias_speed",
  "eval_weight_speed",
  "eval_log_g",
)


def _epoch(
  net, config, rates, params, opt_state, x, y, x_test, y_test, batches, evaluate, *, scaled
):
  """One epoch of ONE member (vmapped over axis ``_MEMBERS``): scan over mini-batches.

  The speeds are the plain ``sqrt(Σ g²)`` (``scaled=False``), with a flag that says
  whether all of this member's were known exact (:func:`_plain_layer_norms`), or
  :func:`_scaled_layer_norms` (``scaled=True``). The norms choose no branch in the step:
  on a GPU a conditional copies its predicate to the host, a synchronization per step
  (XLA's conditional thunk). :func:`train` picks the variant per epoch (see there). The
  full-set evaluation inside the step (``evaluate_every``) keeps its conditionals.

  The step logs the mini-batch loss, speeds and ``log_g`` of its own gradients (no extra
  pass), as one :func:`_packed_log` vector: a ``[T, 3 + 2L]`` scan output for
  ``log="step"``; for ``log="epoch"`` no output, the vectors are summed in the carry and
  divided by T after the scan (the same means, summed in step order in float32 or wider:
  relative error ≤ T·u, u the accumulator's unit roundoff, for positive values; −inf, inf
  and NaN propagate as in a mean). The inexact flags are summed alike. The full-set
  evaluation runs inside the step only for ``log="step"`` with ``evaluate_every``: after
  every step (1) or, behind a ``lax.cond`` on the unbatched ``evaluate[i]`` (≥ 2), after the
  flagged steps (NaN rows elsewhere, dropped on the host). Otherwise the epoch end is
  evaluated after the call, by :func:`_evaluate_members`.
  """
  tx = _optimizer(config, rates)
  grad_fn = jax.value_and_grad(_loss_and_outputs, argnums=2, has_aux=True)

  def full_sets(params):
    return _evaluate(net, config, params, x, y, x_test, y_test, _MEMBERS)

  def skipped(params):
    shapes = jax.eval_shape(full_sets, params)
    return jax.tree.map(lambda a: jnp.full(a.shape, jnp.nan, a.dtype), shapes)

  def step(carry, inputs):
    params, opt_state, total = carry
    indices, flag = inputs
    (loss, _), grads = grad_fn(net, config, params, x[indices], y[indices])
    if scaled:  # the gradients that are applied next
      (bias, weight), exact = _scaled_layer_norms(grads), jnp.array(True)
    else:
      bias, weight, exact = _plain_layer_norms(grads)
    updates, opt_state = tx.update(grads, opt_state, params)
    params = optax.apply_updates(params, updates)
    packed = _packed_log(loss, bias, weight, exact)
    if config.log == "epoch":  # summed in the carry: no per-step output
      return (params, opt_state, total + packed.astype(total.dtype)), {}
    row = {"packed": packed}
    if config.evaluate_every == 1:
      row |= full_sets(params)
    elif config.evaluate_every is not None:
      row |= lax.cond(flag, full_sets, skipped, params)
    return (params, opt_state, total), row

  if evaluate is None:
    evaluate = jnp.zeros(batches.shape[0], bool)
  depth = sum(s.depth for s in net.segments)
  dtype = params[0]["w"].dtype
  # the sums of log="epoch", in float32 at least: a bfloat16 sum stops growing after a few
  # hundred steps (jnp.mean, too, accumulates low precision in float32)
  total = jnp.zeros(3 + 2 * depth, jnp.promote_types(dtype, jnp.float32))
  carry = (params, opt_state, total)
  (params, opt_state, total), rows = lax.scan(step, carry, (batches, evaluate))
  if config.log == "epoch":  # evaluated after the call, by _evaluate_members: compiled once
    logged, inexact = _unpacked_log(total[None])
    rows = jax.tree.map(lambda a: (a / batches.shape[0]).astype(dtype), logged)  # step means
  else:
    logged, inexact = _unpacked_log(rows.pop("packed"))
    rows |= logged
  return params, opt_state, rows, jnp.all(inexact == 0)


@functools.partial(jax.jit, static_argnames=("net", "config", "scaled"))
def _run_epoch(
  net, config, rates, params, opt_state, x, y, x_test, y_test, batches, evaluate=None, scaled=False
):
  """One epoch of every member; returns ``(params, opt_state, rows, norms_exact [M])``."""
  per_member = functools.partial(_epoch, net, config, rates, scaled=scaled)
  return jax.vmap(per_member, in_axes=(0, 0) + (None,) * 6, axis_name=_MEMBERS)(
    params, opt_state, x, y, x_test, y_test, batches, evaluate
  )


def _evaluated_steps(config: Config, first: int, count: int, steps_per_epoch: int) -> np.ndarray:
  """Which of the steps ``first + 1 .. first + count`` (1-based counts) end with a full-set
  evaluation: every ``evaluate_every``-th step and every epoch's last (``log="step"``)."""
  counts = np.arange(first + 1, first + count + 1)
  flags = counts % steps_per_epoch == 0
  if config.evaluate_every is not None:
    flags |= counts % config.evaluate_every == 0
  return flags


@functools.partial(jax.jit, static_argnames=("net", "config"))
def _evaluate_members(net, config, params, x, y, x_test, y_test):
  def per_member(params):
    return _evaluate(net, config, params, x, y, x_test, y_test, _MEMBERS)

  return jax.vmap(per_member, axis_name=_MEMBERS)(params)


@functools.partial(jax.jit, static_argnames=("net", "config"))
def _init_opt_state(net, config, params):
  del net
  return jax.vmap(_optimizer(config).init)(params)


# --------------------------------------------------------------------------- public API


def gradient_norms(
  net: MLP,
  params: Sequence[dict[str, jax.Array]],
  data: Dataset,
  *,
  cost: str = "cross_entropy",
  precision: str = "highest",
) -> tuple[jax.Array, jax.Array]:
  """Nielsen's learning speeds of the mean cost over ``data``, per member and layer.

  This is how Nielsen (ch. 5) measures them at initialization: the gradient of
  the cost averaged over a set of examples, ``‖∂C/∂b^l‖`` and ``‖∂C/∂W^l‖_F``.

  Args:
    net: the network spec.
    params: ``net.init(key, members=M)``.
    data: a :class:`~vanish.data.Dataset`.
    cost: one of :data:`COSTS`.
    precision: matmul precision.

  Returns:
    ``(bias_speed, weight_speed)``, each ``[M, L]``.

  Example:
    >>> import jax, vanish as vn
    >>> from vanish import data, training
    >>> train_set, _ = data.teacher_student(jax.random.key(0), n_train=100, n_test=1)
    >>> net = vn.MLP([16, 30, 30, 30, 4], "sigmoid", vn.init.gaussian(1.0), vn.init.normal(1.0),
    ...              readout="linear")
    >>> bias, weight = training.gradient_norms(net, net.init(jax.random.key(1), members=8),
    ...                                        train_set, cost="sigmoid_cross_entropy")
    >>> bias.shape
    (8, 4)
    >>> bool((bias[:, 0] < bias[:, 2] / 10).all())  # 1st hidden layer: >10x slower than 3rd
    True
  """
  config = Config(cost=cost, precision=precision, eval_speeds=True)
  _check_network(net, params)
  x, y = _check_data(net, data, "data")
  x = jnp.asarray(x, jnp.asarray(params[0]["w"]).dtype)
  row = _evaluate_members(net, _eval_static(config), params, x, y, None, None)
  return row["eval_bias_speed"], row["eval_weight_speed"]


def train(
  net: MLP,
  params: Sequence[dict[str, jax.Array]],
  train_data: Dataset,
  test_data: Dataset | None = None,
  *,
  key: jax.Array,
  epochs: int = 1,
  cost: str = "cross_entropy",
  optimizer: str = "sgd",
  learning_rate: float = 0.1,
  momentum: float = 0.9,
  batch_size: int = 10,
  log: str = "epoch",
  evaluate_every: int | None = None,
  eval_speeds: bool = False,
  precision: str = "highest",
  checkpoint: str | os.PathLike | None = None,
  checkpoint_every: int = 1,
) -> TrainResult:
  """Trains an ensemble of M networks for ``epochs`` epochs, every member in one compiled step.

  Args:
    net: a :class:`vanish.MLP` with a deterministic activation.
    params: initial parameters, ``net.init(key, members=M)`` (M ≥ 1).
    train_data: a :class:`~vanish.data.Dataset`; labels in ``0..n_L − 1``.
    test_data: an optional held-out :class:`~vanish.data.Dataset`.
    key: a typed key; it fixes the mini-batch order (shared by all members).
    epochs: number of epochs (≥ 0; a resumed run continues up to this number).
    cost, optimizer, learning_rate, momentum, batch_size, log, evaluate_every,
      eval_speeds, precision: see :class:`Config`.
    checkpoint: a file to checkpoint to and resume from (``.npz`` content).
    checkpoint_every: write the checkpoint every this many epochs (and at the end).

  Returns:
    A :class:`TrainResult`; ``log`` holds ``T = epochs`` rows (``log="epoch"``)
    or ``epochs × (N // batch_size)`` rows (``log="step"``).

  Raises:
    ValueError: a bad argument (the message names it), or a checkpoint written
      by a different run.
  """
  config = Config(
    cost=cost,
    optimizer=optimizer,
    learning_rate=learning_rate,
    momentum=momentum,
    batch_size=batch_size,
    log=log,
    evaluate_every=evaluate_every,
    eval_speeds=eval_speeds,
    precision=precision,
  )
  _check_network(net, params)
  _check_key(key)
  epochs = _check_count("epochs", epochs, 0)
  checkpoint_every = _check_count("checkpoint_every", checkpoint_every, 1)
  x, y = _check_data(net, train_data, "train_data")
  x_test, y_test = (None, None) if test_data is None else _check_data(net, test_data, "test_data")
  # float64 params (under jax.enable_x64) train in float64, on the data as given (not rounded
  # to float32 on the way)
  dtype = jnp.asarray(params[0]["w"]).dtype
  x, x_test = jnp.asarray(x, dtype), None if x_test is None else jnp.asarray(x_test, dtype)
  if config.batch_size > x.shape[0]:
    raise ValueError(f"batch_size ({config.batch_size}) exceeds the training set ({x.shape[0]})")
  params = jax.tree.map(jnp.asarray, tuple(params))
  steps_per_epoch = x.shape[0] // config.batch_size

  # the fingerprint hashes host copies of the parameters and data: only for checkpoints
  fingerprint, state = None, None
  if checkpoint:
    fingerprint = _fingerprint(net, config, params, key, (x, y, x_test, y_test))
    state = _load_checkpoint(checkpoint, fingerprint, params, net, config)
  eval_config = _eval_static(config)
  if state is None:
    opt_state = _init_opt_state(net, _static(config), params)
    rows = [_host_rows(_evaluate_members(net, eval_config, params, x, y, x_test, y_test))]
    done, scaled = 0, False
  else:
    params, opt_state, rows, done, scaled = state
    if done > epochs:
      raise ValueError(f"epochs ({epochs}) is below the checkpoint's epoch count ({done})")

  rates = (jnp.asarray(config.learning_rate, dtype), jnp.asarray(config.momentum, dtype))
  for epoch in range(done, epochs):
    batches = epoch_batches(key, epoch, x.shape[0], config.batch_size)
    evaluate = _evaluated_steps(config, epoch * steps_per_epoch, steps_per_epoch, steps_per_epoch)
    inputs = (net, _static(config), rates, params, opt_state, x, y, x_test, y_test, batches)
    params, opt_state, row, exact = _run_epoch(*inputs, evaluate, scaled=scaled)
    if not scaled and not np.all(exact):  # a sum under/overflowed, or is 0, inf or NaN: scaled
      scaled = True  # and for the rest of the run (vanishing gradients tend to stay)
      params, opt_state, row, _ = _run_epoch(*inputs, evaluate, scaled=True)
    row = jax.tree.map(np.asarray, row)
    if config.evaluate_every is None:  # the epoch end, by the program of the initial evaluation
      row |= _host_rows(_evaluate_members(net, eval_config, params, x, y, x_test, y_test))
    else:  # evaluated in the step: keep the flagged steps' rows
      row |= {k: row[k][:, evaluate] for k in _EVAL_FIELDS if k in row}
    rows.append(row)
    if checkpoint and ((epoch + 1) % checkpoint_every == 0 or epoch + 1 == epochs):
      _save_checkpoint(checkpoint, fingerprint, params, opt_state, rows, epoch + 1, key, scaled)
  log = _assemble_log(rows, config, net, steps_per_epoch)
  _warn_diverged(params, log)
  return TrainResult(params, opt_state, log, epochs)


def fit(
  model: MLPModel,
  train_data: Dataset,
  test_data: Dataset | None = None,
  *,
  key: jax.Array,
  **kwargs: Any,
) -> Log:
  """Trains an :class:`~vanish.models.MLPModel` (single or ensemble) in place.

  Args:
    model: the model; its parameters are replaced by the trained ones.
    train_data, test_data, key, **kwargs: as for :func:`train` (``precision``
      defaults to the model's).

  Returns:
    The :class:`Log` (member axis M = 1 for a single model).

  Example:
    >>> import jax, vanish as vn
    >>> from vanish import data, models, training
    >>> train_set, _ = data.teacher_student(jax.random.key(0), n_train=100, n_test=10)
    >>> model = models.MLPModel(vn.MLP([16, 8, 4], readout="linear"), key=jax.random.key(1))
    >>> log = training.fit(model, train_set, key=jax.random.key(2), epochs=2, batch_size=10)
    >>> log.loss.shape, bool(log.train_loss[0, -1] < log.train_loss[0, 0])
    ((1, 2), True)
  """
  if not isinstance(model, MLPModel):
    raise TypeError(f"model must be an MLPModel, got {type(model).__name__}")
  kwargs.setdefault("precision", model.precision)
  single = members(model) is None
  result = train(model.net, to_params(model), train_data, test_data, key=key, **kwargs)
  for segment, p in zip(model.segments, result.params, strict=True):
    segment.w.set_value(p["w"][0] if single else p["w"])
    segment.b.set_value(p["b"][0] if single else p["b"])
  return result.log


# --------------------------------------------------------------------------- helpers


def _real_scalar(value: Any) -> float | None:
  """``value`` as a float if it is a real number (Python, numpy or a 0-d numpy/JAX array of a
  real, non-boolean dtype), else None."""
  if isinstance(value, (np.ndarray, jax.Array)):
    if value.ndim != 0 or not (
      jnp.issubdtype(value.dtype, jnp.floating) or jnp.issubdtype(value.dtype, jnp.integer)
    ):
      return None
    return float(value)
  if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
    return None
  return float(value)


def _check_count(name: str, value: Any, low: int) -> int:
  if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
    raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
  return int(value)


def _check_network(net: Any, params: Any) -> None:
  if not isinstance(net, MLP):
    raise TypeError(f"net must be a vanish.MLP, got {type(net).__name__}")
  if any(s.layer.activation.stochastic for s in net.segments):
    raise ValueError(
      "net: training supports deterministic activations only: a stochastic one (e.g. noisy "
      "ReLU) needs fresh noise per step, member and example, which train does not draw; train "
      "its deterministic counterpart (e.g. relu or softplus)"
    )
  _check_params(net, params, member_axis=True)


def _check_data(net: MLP, data: Any, name: str) -> tuple[jax.Array, jax.Array]:
  if not (isinstance(data, tuple) and len(data) == 2):
    raise ValueError(f"{name} must be a Dataset (x, y), got {type(data).__name__}")
  x, y = np.asarray(data[0]), np.asarray(data[1])
  if x.ndim != 2 or x.shape[1] != net.widths[0]:
    raise ValueError(f"{name}.x must have shape (N, {net.widths[0]}), got {x.shape}")
  if y.shape != (x.shape[0],) or not np.issubdtype(y.dtype, np.integer):
    raise ValueError(f"{name}.y must hold {x.shape[0]} integer labels, got {y.dtype} {y.shape}")
  if x.shape[0] == 0:
    raise ValueError(f"{name} is empty")
  if not np.all(np.isfinite(x)):
    raise ValueError(f"{name}.x contains inf or NaN")
  classes = net.widths[-1]
  if y.min() < 0 or y.max() >= classes:
    raise ValueError(
      f"{name}.y must lie in [0, {classes}) (the output width), got {y.min()}..{y.max()}"
    )
  return x, jnp.asarray(y, jnp.int32)  # x is cast once, straight to the params' dtype


def _warn_diverged(params, log: Log) -> None:
  """A RuntimeWarning naming the members whose parameters or final training loss are not
  finite (their accuracies read NaN)."""
  m = log.train_loss.shape[0]
  finite = np.isfinite(log.train_loss[:, -1])
  for leaf in jax.tree.leaves(params):  # reduced on the device: [M] booleans come back
    finite &= np.asarray(jnp.isfinite(leaf).reshape(m, -1).all(axis=1))
  if not finite.all():
    bad = np.flatnonzero(~finite)
    shown = ", ".join(map(str, bad[:20])) + (", ..." if bad.size > 20 else "")
    warnings.warn(
      f"training diverged for {bad.size} of {m} members (parameters or training loss inf or "
      f"NaN; their accuracies are NaN): members {shown}",
      RuntimeWarning,
      stacklevel=3,
    )


def _assemble_log(rows: list[dict[str, np.ndarray]], config: Config, net: MLP, spe: int) -> Log:
  """Joins the initial evaluation ``rows[0]`` and the per-epoch rows along the time axis."""
  initial, trained = rows[0], rows[1:]
  m = initial["train_loss"].shape[0]
  empty = {
    "loss": np.zeros((m, 0), np.float32),
    "bias_speed": np.zeros((m, 0, net.depth), np.float32),
    "weight_speed": np.zeros((m, 0, net.depth), np.float32),
    "log_g": np.zeros((m, 0), np.float32),
  }
  joined = {
    name: np.concatenate([r[name] for r in trained], axis=1) if trained else empty[name]
    for name in empty
  }
  joined |= {name: np.concatenate([r[name] for r in rows], axis=1) for name in initial}
  step = np.arange(1, joined["loss"].shape[1] + 1) * (spe if config.log == "epoch" else 1)
  evaluated = step if config.log == "epoch" else step[_evaluated_steps(config, 0, step.size, spe)]
  return Log(step=step, eval_step=np.concatenate([[0], evaluated]), **joined)


# --------------------------------------------------------------------------- checkpoints


def _digest(arrays: Sequence[Any]) -> str:
  h = hashlib.sha256()
  for a in arrays:
    if a is None:
      h.update(b"none")
      continue
    a = np.ascontiguousarray(np.asarray(a))
    h.update(f"{a.dtype.str}{a.shape}".encode())
    h.update(a.reshape(-1).view(np.uint8))  # a view: a.tobytes() would copy
  return h.hexdigest()


def _fingerprint(net, config, params, key, data) -> str:
  """Identifies a run: resuming is allowed only into the run that wrote the checkpoint."""
  record = {
    "version": _CHECKPOINT_VERSION,
    "net": repr(net),
    "config": dataclasses.asdict(config),
    "key": np.asarray(jax.random.key_data(key)).tolist(),
    "params": _digest(jax.tree.leaves(params)),
    "data": _digest(data),
  }
  return hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()


def _save_checkpoint(path, fingerprint, params, opt_state, rows, epoch, key, scaled) -> None:
  """Writes the state atomically (:func:`vanish.store.write_atomic`)."""
  path = Path(path)
  arrays = {
    "fingerprint": np.asarray(fingerprint),
    "epoch": np.asarray(epoch),
    "key": np.asarray(jax.random.key_data(key)),
    "scaled_norms": np.asarray(scaled),  # the norms' variant of the next epochs
  }
  arrays |= {f"params/{i}": np.asarray(a) for i, a in enumerate(jax.tree.leaves(params))}
  arrays |= {f"opt/{i}": np.asarray(a) for i, a in enumerate(jax.tree.leaves(opt_state))}
  if len(rows) > 2:  # the initial evaluation, then every trained row as one block
    rows = [rows[0], {k: np.concatenate([r[k] for r in rows[1:]], axis=1) for k in rows[1]}]
  for r, row in enumerate(rows):
    arrays |= {f"log/{r}/{k}": v for k, v in row.items()}
  store.write_atomic(path, lambda handle: np.savez(handle, **arrays))


def _load_checkpoint(path, fingerprint, params, net, config):
  path = Path(path)
  if not path.is_file():
    return None
  with np.load(path) as archive:
    stored = {k: archive[k] for k in archive.files}
  if str(stored["fingerprint"]) != fingerprint:
    raise ValueError(
      f"checkpoint {path} was written by a different run (network, config, params, key or "
      "data differ); delete it or pass another checkpoint path"
    )

  def restore(prefix, like):
    leaves, treedef = jax.tree.flatten(like)
    return jax.tree.unflatten(
      treedef, [jnp.asarray(stored[f"{prefix}/{i}"], leaf.dtype) for i, leaf in enumerate(leaves)]
    )

  opt_like = _init_opt_state(net, _static(config), params)
  rows: dict[int, dict[str, np.ndarray]] = {}
  for name, value in stored.items():
    if name.startswith("log/"):
      _, r, field = name.split("/", 2)
      rows.setdefault(int(r), {})[field] = value
  return (
    restore("params", params),
    restore("opt", opt_like),
    [rows[r] for r in sorted(rows)],
    int(stored["epoch"]),
    bool(stored.get("scaled_norms", False)),  # absent before session 10: plain first
  )
