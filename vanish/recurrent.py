"""Recurrent networks and vanishing gradients through time.

A vanilla recurrent network reuses one layer at every time step,

    z_t = W h_{t−1} + U x_t + b,     h_t = φ(z_t),     t = 1..T,

so the gradient of a loss on ``h_T`` with respect to an earlier state is the same
kind of Jacobian chain as in a deep feed-forward network (Hochreiter 1991;
Bengio, Simard & Frasconi 1994; Hochreiter & Schmidhuber 1997):

    ∂L/∂h_t = J_{t+1}ᵀ ⋯ J_Tᵀ ∂L/∂h_T,     J_s = ∂h_s/∂h_{s−1} = diag(φ'(z_s)) W,

with the *same* W in every factor. The LSTM (Hochreiter & Schmidhuber 1997, with
the forget gate of Gers, Schmidhuber & Cummins 2000) carries a cell state
``c_t = f_t ⊙ c_{t−1} + i_t ⊙ g_t`` whose own Jacobian is the diagonal of forget
gates, which the forget-gate bias can hold near 1.

What is here:

* :class:`RNNParams`, :class:`LSTMParams`: the parameters as pytrees (a leading
  member axis M makes an ensemble), and the pure functions :func:`rnn_step`,
  :func:`lstm_step` and :func:`states` (a ``lax.scan`` over time);
* :class:`RNN`, :class:`LSTM`: Flax NNX modules around them, any :mod:`vanish.init`
  initializer for the recurrent weights; ensembles come from ``nnx.vmap``;
* :func:`log_gradient_norms_through_time`: ``log ‖∂L/∂h_t‖`` for every t, one
  backward ``lax.scan`` that renormalizes the adjoint at every step and
  accumulates its log length (as :func:`vanish.log_gradient_norms` does over
  depth), so T = 10,000 neither overflows nor underflows; vmapped over members;
* :func:`rnn_mean_field`, :func:`lstm_mean_field`: the mean-field predictions of
  the per-step decay rate (below);
* :func:`memory_task` and :func:`train_memory_task`: the sign shown at step 1 must be
  reported at step T (Bengio, Simard & Frasconi 1994; Hochreiter & Schmidhuber 1997),
  ensembles of RNNs or LSTMs trained on it with optax Adam for several lags in one
  compiled call, logging ``log ‖∂C/∂h_t‖`` before and after training.

Mean field through time. With ``W_ij ~ N(0, σ_w²/n)`` (or ``orthogonal(gain)``,
σ_w² = gain²), ``U_ij ~ N(0, σ_u²/d)``, ``b_i ~ N(0, σ_b²)`` and inputs with
``E‖x_t‖²/d = σ_x²``, the pre-activation ``z_{t,i}`` has variance
``σ_w² ‖h_{t−1}‖²/n + σ_u² σ_x² + σ_b²``: the input is one more independent
additive term, so the recurrence is Poole et al.'s (2016) length map with the
input folded into the bias variance,

    q_t = σ_w² E[φ(√q_{t−1} z)²] + σ_b,eff²,     σ_b,eff² = σ_b² + σ_u² σ_x²,

its stationary state is ``q*`` of :func:`vanish.theory.mean_field` at
``(σ_w², σ_b,eff²)``, and each step backward multiplies ``E‖∂L/∂h_t‖²`` by
``χ₁ = σ_w² E[φ'(√q* z)²]``. So ``log ‖∂L/∂h_t‖`` falls by ``½ log χ₁`` per step
of lag T − t: vanishing for χ₁ < 1 (ordered), flat at χ₁ = 1 (critical),
exploding for χ₁ > 1 (chaotic). Reusing W at every step does not change this at
large width (Chen, Pennington & Schoenholz 2018, "Dynamical isometry and a mean
field theory of RNNs", ICML, §3; the gradient-independence assumption); at width
n the typical (median) log-norm falls short of it by O(1/n) per step.

Example:
  >>> import jax, jax.numpy as jnp
  >>> from flax import nnx
  >>> from vanish import init, recurrent
  >>> make = lambda r: recurrent.RNN(4, 128, weights=init.gaussian(1.0),
  ...                                input_weights=init.gaussian(0.1), rngs=r)
  >>> ensemble = nnx.vmap(make)(nnx.Rngs(0).split(8))          # 8 members
  >>> xs = jax.random.normal(jax.random.key(1), (200, 4))       # T = 200 steps
  >>> log_g = recurrent.log_gradient_norms_through_time(ensemble, xs)
  >>> log_g.shape                                               # [M, T]
  (8, 200)
  >>> slope = float((log_g[:, 59] - log_g[:, 159]).mean() / 100)   # per step of lag
  >>> rate = recurrent.rnn_mean_field(1.0, input_variance=0.1).rate
  >>> round(rate, 3), abs(slope - rate) < 0.03                  # ½ log χ₁ < 0: vanishing
  (-0.186, True)
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jax import lax

from vanish import _checks, _engine, activations, init, theory
from vanish.networks import _check_key

__all__ = [
  "LSTM",
  "LSTMMeanField",
  "LSTMParams",
  "MemoryTaskResult",
  "RNN",
  "RNNMeanField",
  "RNNParams",
  "Readout",
  "init_readout",
  "log_gradient_norms_through_time",
  "lstm_mean_field",
  "lstm_step",
  "memory_loss",
  "memory_task",
  "rnn_mean_field",
  "rnn_step",
  "states",
  "to_params",
  "train_memory_task",
]


class RNNParams(NamedTuple):
  """Vanilla RNN parameters, ``z_t = W h_{t−1} + U x_t + b``.

  Attributes:
    w: recurrent weights ``[(M,) n, n]``.
    u: input weights ``[(M,) n, d]``.
    b: bias ``[(M,) n]``.
  """

  w: jax.Array
  u: jax.Array
  b: jax.Array


class LSTMParams(NamedTuple):
  """LSTM parameters, gates stacked in the order (input i, forget f, cell g, output o).

  ``[i; f; g; o] = W h_{t−1} + U x_t + b`` (before the gate nonlinearities), so
  rows ``n:2n`` belong to the forget gate.

  Attributes:
    w: recurrent weights ``[(M,) 4n, n]``.
    u: input weights ``[(M,) 4n, d]``.
    b: biases ``[(M,) 4n]``.
  """

  w: jax.Array
  u: jax.Array
  b: jax.Array


Params = RNNParams | LSTMParams


# --------------------------------------------------------------------------- pure core


def _dot(a: jax.Array, v: jax.Array, precision: Any) -> jax.Array:
  return jnp.matmul(a, v, precision=precision)


def rnn_step(
  params: RNNParams,
  h: jax.Array,
  x: jax.Array,
  *,
  activation: activations.Activation | str = "tanh",
  precision: Any = lax.Precision.HIGHEST,
) -> jax.Array:
  """One step ``h_t = φ(W h_{t−1} + U x_t + b)`` of ONE network (no member axis).

  Args:
    params: :class:`RNNParams` without a member axis.
    h: ``h_{t−1}``, shape ``(n,)``.
    x: ``x_t``, shape ``(d,)``.
    activation: φ (deterministic), default tanh.
    precision: matmul precision (a ``lax.Precision`` or preset).

  Returns:
    ``h_t``, shape ``(n,)``.

  Example:
    >>> import jax.numpy as jnp
    >>> from vanish.recurrent import RNNParams, rnn_step
    >>> p = RNNParams(w=jnp.eye(2), u=jnp.ones((2, 1)), b=jnp.zeros(2))
    >>> rnn_step(p, jnp.array([0.5, -0.5]), jnp.array([0.5]), activation="linear")
    Array([1., 0.], dtype=float32)
  """
  act = activations.get(activation)
  precision = _matmul_precision(precision)
  return act.fn(_dot(params.w, h, precision) + _dot(params.u, x, precision) + params.b)


def lstm_step(
  params: LSTMParams,
  state: tuple[jax.Array, jax.Array],
  x: jax.Array,
  *,
  precision: Any = lax.Precision.HIGHEST,
) -> tuple[jax.Array, jax.Array]:
  """One LSTM step of ONE network (Hochreiter & Schmidhuber 1997; Gers et al. 2000).

      i, f, o = σ(·),  g = tanh(·)  of  W h_{t−1} + U x_t + b   (stacked i, f, g, o),
      c_t = f ⊙ c_{t−1} + i ⊙ g,     h_t = o ⊙ tanh(c_t).

  Args:
    params: :class:`LSTMParams` without a member axis.
    state: ``(h_{t−1}, c_{t−1})``, each ``(n,)``.
    x: ``x_t``, shape ``(d,)``.
    precision: matmul precision.

  Returns:
    ``(h_t, c_t)``.

  Example:
    >>> import jax.numpy as jnp
    >>> from vanish.recurrent import LSTMParams, lstm_step
    >>> p = LSTMParams(w=jnp.zeros((4, 1)), u=jnp.zeros((4, 1)), b=jnp.zeros(4))
    >>> h, c = lstm_step(p, (jnp.zeros(1), jnp.ones(1)), jnp.zeros(1))
    >>> float(c[0])        # f = σ(0) = 1/2 keeps half the cell, i ⊙ g = 0
    0.5
  """
  precision = _matmul_precision(precision)
  h, c = state
  n = h.shape[-1]
  z = _dot(params.w, h, precision) + _dot(params.u, x, precision) + params.b
  i, f, g, o = (z[k * n : (k + 1) * n] for k in range(4))
  c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
  return jax.nn.sigmoid(o) * jnp.tanh(c), c


def _hidden_size(params: Params) -> int:
  n = params.w.shape[-1]
  return n


def _step_fn(params: Params, activation: activations.Activation, precision: Any) -> Callable:
  """``state, x -> state`` for one network; states are tuples ``(h,)`` or ``(h, c)``."""
  if isinstance(params, LSTMParams):
    return lambda s, x: lstm_step(params, s, x, precision=precision)
  return lambda s, x: (rnn_step(params, s[0], x, activation=activation, precision=precision),)


def _zero_state(params: Params, dtype: Any) -> tuple[jax.Array, ...]:
  n = _hidden_size(params)
  zero = jnp.zeros((n,), dtype)
  return (zero, zero) if isinstance(params, LSTMParams) else (zero,)


def states(
  params: Params,
  xs: jax.Array,
  state0: Any = None,
  *,
  activation: activations.Activation | str = "tanh",
  precision: Any = lax.Precision.HIGHEST,
) -> tuple[jax.Array, ...]:
  """The states ``s_1..s_T`` of ONE network over one input sequence, by ``lax.scan``.

  Args:
    params: :class:`RNNParams` or :class:`LSTMParams` without a member axis.
    xs: inputs ``(T, d)``.
    state0: ``h_0`` ``(n,)`` for the RNN, ``(h_0, c_0)`` for the LSTM; default zeros.
    activation: φ of the RNN (ignored by the LSTM).
    precision: matmul precision.

  Returns:
    ``(hs,)`` for the RNN or ``(hs, cs)`` for the LSTM, each ``(T, n)``.

  Example:
    >>> import jax.numpy as jnp
    >>> from vanish.recurrent import RNNParams, states
    >>> p = RNNParams(w=jnp.eye(1), u=jnp.ones((1, 1)), b=jnp.zeros(1))
    >>> states(p, jnp.ones((3, 1)), activation="linear")[0][:, 0]   # running sum
    Array([1., 2., 3.], dtype=float32)
  """
  act, precision = activations.get(activation), _matmul_precision(precision)
  return _scan_states(_step_fn(params, act, precision), _as_state(params, state0, xs.dtype), xs)


def _scan_states(step: Callable, s0: tuple[jax.Array, ...], xs: jax.Array) -> tuple[jax.Array, ...]:
  def body(s, x):
    s = step(s, x)
    return s, s

  _, out = lax.scan(body, s0, xs)
  return out


def _as_state(params: Params, state0: Any, dtype: Any) -> tuple[jax.Array, ...]:
  if state0 is None:
    return _zero_state(params, dtype)
  if isinstance(params, LSTMParams):
    h, c = state0
    return jnp.asarray(h, dtype), jnp.asarray(c, dtype)
  return (jnp.asarray(state0, dtype),)


# --------------------------------------------------------------------------- gradients through time


def _tree_log_norm(tree: tuple[jax.Array, ...]) -> tuple[jax.Array, tuple[jax.Array, ...]]:
  """``(log ‖v‖, v/‖v‖)`` of a tuple of vectors, jointly; a zero vector stays zero."""
  norm = jnp.sqrt(sum(jnp.sum(jnp.square(a)) for a in tree))
  positive = norm > 0
  log_norm = jnp.where(positive, jnp.log(jnp.where(positive, norm, 1)), -jnp.inf)
  return log_norm, tuple(a / jnp.where(positive, norm, 1) for a in tree)


def _safe_log(x: jax.Array) -> jax.Array:
  positive = x > 0
  return jnp.where(positive, jnp.log(jnp.where(positive, x, 1)), -jnp.inf)


WRT = ("hidden", "state", "input")


def _backward_through_time(params, xs, s0, cotangent, act, prec):
  """log ‖∂L/∂h_t‖, ‖∂L/∂s_t‖, ‖∂L/∂x_t‖ for t = 1..T, one network and sequence: ``(3, T)``.

  The adjoint ``a_t = ∂L/∂s_t`` obeys ``a_{t−1} = (∂s_t/∂s_{t−1})ᵀ a_t``, taken
  with ``jax.vjp`` of one step. It is stored as ``exp(ℓ_t) â_t`` with ``‖â_t‖ = 1``.
  """
  step = _step_fn(params, act, prec)

  def body(s, x):
    s_new = step(s, x)
    return s_new, s

  last, previous = lax.scan(body, s0, xs)  # previous[t−1] = s_{t−1}, t = 1..T
  del last
  c = (cotangent,) + tuple(jnp.zeros_like(a) for a in s0[1:])
  log_scale, a = _tree_log_norm(c)

  def back(carry, inputs):
    log_scale, a = carry
    s_prev, x = inputs
    _, vjp = jax.vjp(step, s_prev, x)
    a_prev, a_x = vjp(a)
    out = jnp.stack(
      [
        log_scale + _safe_log(jnp.linalg.norm(a[0])),
        log_scale,
        log_scale + _safe_log(jnp.linalg.norm(a_x)),
      ]
    )
    step_log, a_prev = _tree_log_norm(a_prev)
    return (log_scale + step_log, a_prev), out

  _, out = lax.scan(back, (log_scale, a), (previous, xs), reverse=True)
  return out.T


@functools.partial(
  jax.jit, static_argnames=("activation", "precision", "batched", "loss", "member_axis")
)
def _log_norms_through_time(
  params, xs, state0, cotangent, *, activation, precision, batched, loss, member_axis
):
  """All three norms ``[3, M, (batch,) T]`` (one compilation serves every ``wrt``)."""
  prec = _engine.lax_precision(precision)

  def one(p, x_seq, s0, c):
    s0 = _as_state(p, s0, x_seq.dtype)
    if loss is not None:
      final = _scan_states(_step_fn(p, activation, prec), s0, x_seq)[0][-1]
      c = jax.grad(loss)(final)
    return _backward_through_time(p, x_seq, s0, c, activation, prec)

  def member(p):
    if not batched:
      return one(p, xs, state0, cotangent)
    c_axis = 0 if cotangent is not None and cotangent.ndim == 2 else None
    s_axis = None if state0 is None else 0
    return jax.vmap(one, in_axes=(None, 0, s_axis, c_axis))(p, xs, state0, cotangent)

  out = member(params)[None] if not member_axis else jax.vmap(member)(params)
  return jnp.moveaxis(out, -2, 0)


def log_gradient_norms_through_time(
  model_or_params: Any,
  xs: Any,
  cotangent: Any = None,
  *,
  wrt: str = "hidden",
  state0: Any = None,
  activation: activations.Activation | str | None = None,
  precision: str = "highest",
) -> jax.Array:
  """``log ‖∂L/∂h_t‖`` for t = 1..T, with ``L`` a function of the last state ``h_T``.

  Backpropagation through time, in log space: the adjoint is renormalized at every
  step and its log length accumulated, so sequences of any length (10,000 steps
  in float32) give finite logs however fast the gradient vanishes or explodes.
  Ensembles (a leading member axis on every parameter, as ``nnx.vmap`` builds)
  are mapped with ``jax.vmap``; everything is one jit-compiled call.

  Args:
    model_or_params: an :class:`RNN` or :class:`LSTM` (single or an ``nnx.vmap``
      ensemble), or :class:`RNNParams` / :class:`LSTMParams` with or without a
      leading member axis M.
    xs: inputs ``(T, d)`` or ``(batch, T, d)``, shared by all members.
    cotangent: ``∂L/∂h_T``: an array ``(n,)`` or ``(batch, n)``, or a loss
      ``L(h_T) -> scalar`` whose gradient is taken; default all ones
      (``L = Σ_i h_{T,i}``). For the LSTM ``∂L/∂c_T = 0``.
    wrt: ``"hidden"`` for ``‖∂L/∂h_t‖`` (the partial derivative with respect to
      the hidden state); ``"state"`` for the whole recurrent state,
      ``‖(∂L/∂h_t, ∂L/∂c_t)‖`` for the LSTM (the same as ``"hidden"`` for the
      RNN); ``"input"`` for ``‖∂L/∂x_t‖``.
    state0: the initial state ``h_0`` (``(n,)`` or ``(batch, n)``), or ``(h_0, c_0)``
      for the LSTM; default zeros.
    activation: φ of an RNN given as params (default tanh); models carry their own.
    precision: matmul precision name, default ``"highest"``.

  Returns:
    ``[M, (batch,) T]`` natural logs, entry ``t − 1`` for time t (lag ``T − t``);
    M = 1 for a single model or params without member axis. ``−inf`` only where
    the gradient is exactly zero.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> from vanish import recurrent
    >>> lstm = recurrent.LSTM(3, 16, forget_bias=5.0, key=jax.random.key(0))
    >>> log_g = recurrent.log_gradient_norms_through_time(lstm, jnp.zeros((100, 3)))
    >>> log_g.shape, bool(log_g[0, 0] > log_g[0, -1] - 3)   # f ≈ σ(5): little decay
    ((1, 100), True)
  """
  if wrt not in WRT:
    raise ValueError(f"wrt must be 'hidden', 'state' or 'input', got {wrt!r}")
  _engine.check_precision(precision)
  params, act = _resolve(model_or_params, activation)
  member_axis = params.w.ndim == 3
  n = _hidden_size(params)
  d = params.u.shape[-1]
  dtype = params.w.dtype
  if not isinstance(xs, jax.Array) or all(dev.platform == "cpu" for dev in xs.devices()):
    if not np.all(np.isfinite(np.asarray(xs, np.float64))):
      raise ValueError("xs contains inf or NaN")
  xs = jnp.asarray(xs, dtype)
  if xs.ndim not in (2, 3) or xs.shape[-1] != d or xs.shape[-2] < 1:
    raise ValueError(f"xs must have shape (T, d) or (batch, T, d) with d = {d}, got {xs.shape}")
  batched = xs.ndim == 3
  loss = None
  if cotangent is None:
    cotangent = jnp.ones((n,), dtype)
  elif callable(cotangent):
    loss, cotangent = cotangent, None
  else:
    cotangent = jnp.asarray(cotangent, dtype)
    ok = [(n,)] + ([(xs.shape[0], n)] if batched else [])
    if cotangent.shape not in ok:
      raise ValueError(
        f"cotangent must have shape {' or '.join(map(str, ok))}, got {cotangent.shape}"
      )
  state0 = _check_state0(params, state0, xs, batched, dtype)
  return _log_norms_through_time(
    params,
    xs,
    state0,
    cotangent,
    activation=act,
    precision=precision,
    batched=batched,
    loss=loss,
    member_axis=member_axis,
  )[WRT.index(wrt)]


def _check_state0(params, state0, xs, batched, dtype, name="state0"):
  if state0 is None:
    return None
  n = _hidden_size(params)
  parts = state0 if isinstance(params, LSTMParams) else (state0,)
  if isinstance(params, LSTMParams) and (not isinstance(state0, (tuple, list)) or len(state0) != 2):
    raise ValueError(f"{name} of an LSTM must be a pair (h_0, c_0)")
  ok = [(n,)] + ([(xs.shape[0], n)] if batched else [])
  parts = tuple(jnp.asarray(a, dtype) for a in parts)
  for a in parts:
    if a.shape not in ok:
      raise ValueError(f"{name} must have shape {' or '.join(map(str, ok))}, got {a.shape}")
  if batched and any(a.ndim == 1 for a in parts):
    parts = tuple(jnp.broadcast_to(a, (xs.shape[0], n)) for a in parts)
  return parts if isinstance(params, LSTMParams) else parts[0]


def _resolve(model_or_params: Any, activation: Any) -> tuple[Params, activations.Activation]:
  if isinstance(model_or_params, (RNN, LSTM)):
    if activation is not None:
      raise ValueError("activation= is only for params; a model carries its own")
    act = model_or_params.activation if isinstance(model_or_params, RNN) else activations.tanh()
    return to_params(model_or_params), act
  if not isinstance(model_or_params, (RNNParams, LSTMParams)):
    raise TypeError(
      "model_or_params must be an RNN, LSTM, RNNParams or LSTMParams, "
      f"got {type(model_or_params).__name__}"
    )
  params = model_or_params
  _check_params(params)
  act = activations.get("tanh" if activation is None else activation)
  if act.stochastic:
    raise ValueError("activation: stochastic activations are not supported through time")
  return params, act


def _check_params(params: Params) -> None:
  w, u, b = (tuple(np.shape(a)) for a in params)
  gates = 4 if isinstance(params, LSTMParams) else 1
  name = type(params).__name__
  ok = len(w) in (2, 3) and len(u) == len(w) and len(b) == len(w) - 1
  if ok:
    lead, (rows, n), d = w[:-2], w[-2:], u[-1]
    ok = rows == gates * n and u[:-1] == lead + (rows,) and b == lead + (rows,) and d >= 1
  if not ok:
    raise ValueError(
      f"{name} shapes must be w [(M,) {gates}n, n], u [(M,) {gates}n, d], b [(M,) {gates}n]; "
      f"got w {w}, u {u}, b {b}"
    )


# --------------------------------------------------------------------------- NNX modules


def _keys(key: jax.Array | None, rngs: nnx.Rngs | None) -> jax.Array:
  if (key is None) == (rngs is None):
    raise ValueError("give exactly one of key= or rngs=")
  return rngs.params() if rngs is not None else key


def _check_sizes(inputs: int, hidden: int) -> None:
  for name, value in (("inputs", inputs), ("hidden", hidden)):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
      raise ValueError(f"{name} must be an integer >= 1, got {value!r}")


def _apply(params: Params, act, precision: str, xs: jax.Array, state0: Any) -> jax.Array:
  """Hidden states ``[(M,) (batch,) T, n]`` for a model's call."""
  return _forward(params, xs, state0, activation=act, precision=precision)


@functools.partial(jax.jit, static_argnames=("activation", "precision"))
def _forward(params, xs, state0, *, activation, precision):
  prec = _engine.lax_precision(precision)

  def one(p, x_seq, s0):
    return states(p, x_seq, s0, activation=activation, precision=prec)[0]

  def member(p):
    if xs.ndim == 2:
      return one(p, xs, state0)
    return jax.vmap(one, in_axes=(None, 0, None if state0 is None else 0))(p, xs, state0)

  return jax.vmap(member)(params) if params.w.ndim == 3 else member(params)


class RNN(nnx.Module):
  """A vanilla recurrent network ``h_t = φ(W h_{t−1} + U x_t + b)`` (Elman 1990).

  Args:
    inputs: input size d.
    hidden: hidden size n.
    weights: initializer of ``W`` ``(n, n)``, any from :mod:`vanish.init`, e.g.
      ``init.gaussian(σ_w²)`` or ``init.orthogonal(gain)``.
    input_weights: initializer of ``U`` ``(n, d)``; default ``init.gaussian(1.0)``.
    biases: initializer of ``b`` ``(n,)``; default zeros.
    activation: φ, default tanh (deterministic activations only).
    key: a typed key; or ``rngs``: an ``nnx.Rngs`` (use it with ``nnx.vmap``).
    precision: matmul precision of the forward pass.
    dtype: parameter dtype.

  Call with ``xs`` ``(T, d)`` or ``(batch, T, d)`` (and optionally ``h0``: ``(n,)``,
  shared by the batch, or ``(batch, n)``) to get the hidden states ``[(M,) (batch,) T, n]``.

  Example:
    >>> import jax
    >>> from flax import nnx
    >>> from vanish import init
    >>> from vanish.recurrent import RNN
    >>> rnn = RNN(2, 8, weights=init.orthogonal(1.0), key=jax.random.key(0))
    >>> rnn(jax.numpy.ones((5, 2))).shape
    (5, 8)
    >>> ens = nnx.vmap(lambda r: RNN(2, 8, rngs=r))(nnx.Rngs(0).split(3))
    >>> ens.w.shape, ens(jax.numpy.ones((4, 5, 2))).shape
    ((3, 8, 8), (3, 4, 5, 8))
  """

  def __init__(
    self,
    inputs: int,
    hidden: int,
    *,
    weights: Any = None,
    input_weights: Any = None,
    biases: Any = None,
    activation: activations.Activation | str = "tanh",
    key: jax.Array | None = None,
    rngs: nnx.Rngs | None = None,
    precision: str = "highest",
    dtype: Any = jnp.float32,
  ):
    _check_sizes(inputs, hidden)
    _engine.check_precision(precision)
    act = activations.get(activation)
    if act.stochastic:
      raise ValueError("activation: stochastic activations are not supported by RNN")
    weights = init.get(init.gaussian(1.0) if weights is None else weights)
    input_weights = init.get(init.gaussian(1.0) if input_weights is None else input_weights)
    biases = init.get(init.zeros() if biases is None else biases)
    kw, ku, kb = jax.random.split(_keys(key, rngs), 3)
    self.activation = act
    self.precision = precision
    self.w = nnx.Param(weights(kw, (hidden, hidden), dtype))
    self.u = nnx.Param(input_weights(ku, (hidden, inputs), dtype))
    self.b = nnx.Param(biases(kb, (hidden,), dtype))

  def __call__(self, xs: jax.Array, h0: jax.Array | None = None) -> jax.Array:
    xs = jnp.asarray(xs, self.w[...].dtype)
    _check_call_xs(xs, self.u[...].shape[-1])
    params = to_params(self)
    h0 = _check_state0(params, h0, xs, xs.ndim == 3, xs.dtype, "h0")  # (n,) broadcasts
    return _apply(params, self.activation, self.precision, xs, h0)


class LSTM(nnx.Module):
  """An LSTM with forget gate (Hochreiter & Schmidhuber 1997; Gers et al. 2000).

  Gates stacked (i, f, g, o) as in :class:`LSTMParams`; each of the four gate
  blocks of ``W`` ``(n, n)`` and ``U`` ``(n, d)`` is drawn by its initializer
  separately (so ``init.orthogonal`` gives four orthogonal blocks).

  Args:
    inputs: input size d.
    hidden: hidden size n.
    weights: initializer of each recurrent block; default ``init.gaussian(1.0)``.
    input_weights: initializer of each input block; default ``init.gaussian(1.0)``.
    biases: initializer of ``b`` ``(4n,)``; default zeros.
    forget_bias: added to the forget-gate biases (Gers et al. 2000; Jozefowicz,
      Zaremba & Sutskever 2015 recommend 1): f ≈ σ(forget_bias) at small inputs.
    key, rngs, precision, dtype: as for :class:`RNN`.

  Call with ``xs`` ``(T, d)`` or ``(batch, T, d)`` to get the hidden states
  ``[(M,) (batch,) T, n]`` (from ``(h_0, c_0) = 0`` or ``state0``, each ``(n,)`` or
  ``(batch, n)``).

  Example:
    >>> import jax
    >>> from vanish.recurrent import LSTM
    >>> lstm = LSTM(2, 8, forget_bias=1.0, key=jax.random.key(0))
    >>> lstm.w.shape, float(lstm.b[8:16].mean()), lstm(jax.numpy.ones((5, 2))).shape
    ((32, 8), 1.0, (5, 8))
  """

  def __init__(
    self,
    inputs: int,
    hidden: int,
    *,
    weights: Any = None,
    input_weights: Any = None,
    biases: Any = None,
    forget_bias: float = 1.0,
    key: jax.Array | None = None,
    rngs: nnx.Rngs | None = None,
    precision: str = "highest",
    dtype: Any = jnp.float32,
  ):
    _check_sizes(inputs, hidden)
    _engine.check_precision(precision)
    if isinstance(forget_bias, (bool, np.bool_)) or not isinstance(
      forget_bias, (int, float, np.integer, np.floating)
    ):
      raise TypeError(
        f"forget_bias must be a finite number, got {type(forget_bias).__name__} {forget_bias!r}"
      )
    forget_bias = float(forget_bias)
    if not math.isfinite(forget_bias):
      raise ValueError(f"forget_bias must be finite, got {forget_bias}")
    weights = init.get(init.gaussian(1.0) if weights is None else weights)
    input_weights = init.get(init.gaussian(1.0) if input_weights is None else input_weights)
    biases = init.get(init.zeros() if biases is None else biases)
    kw, ku, kb = jax.random.split(_keys(key, rngs), 3)
    n = hidden
    w = jnp.concatenate([weights(k, (n, n), dtype) for k in jax.random.split(kw, 4)])
    u = jnp.concatenate([input_weights(k, (n, inputs), dtype) for k in jax.random.split(ku, 4)])
    b = biases(kb, (4 * n,), dtype).at[n : 2 * n].add(forget_bias)
    self.activation = activations.tanh()
    self.precision = precision
    self.w = nnx.Param(w)
    self.u = nnx.Param(u)
    self.b = nnx.Param(b)

  def __call__(self, xs: jax.Array, state0: tuple[jax.Array, jax.Array] | None = None):
    xs = jnp.asarray(xs, self.w[...].dtype)
    _check_call_xs(xs, self.u[...].shape[-1])
    params = to_params(self)
    state0 = _check_state0(params, state0, xs, xs.ndim == 3, xs.dtype)
    return _apply(params, self.activation, self.precision, xs, state0)


def _check_call_xs(xs: jax.Array, d: int) -> None:
  if xs.ndim not in (2, 3) or xs.shape[-1] != d:
    raise ValueError(f"xs must have shape (T, d) or (batch, T, d) with d = {d}, got {xs.shape}")


def to_params(model: RNN | LSTM) -> Params:
  """The model's parameters as :class:`RNNParams` / :class:`LSTMParams` (member axis kept).

  Example:
    >>> import jax
    >>> from vanish.recurrent import RNN, to_params
    >>> to_params(RNN(3, 4, key=jax.random.key(0))).u.shape
    (4, 3)
  """
  if isinstance(model, RNN):
    return RNNParams(model.w[...], model.u[...], model.b[...])
  if isinstance(model, LSTM):
    return LSTMParams(model.w[...], model.u[...], model.b[...])
  raise TypeError(f"model must be an RNN or LSTM, got {type(model).__name__}")


# --------------------------------------------------------------------------- mean field


class RNNMeanField(NamedTuple):
  """Mean-field prediction for a vanilla RNN driven by random inputs.

  Attributes:
    mean_field: :func:`vanish.theory.mean_field` at ``(σ_w², σ_b² + input_variance)``
      (``q_star``: the stationary pre-activation variance; ``chi1``: χ₁).
    rate: ``½ log χ₁``, the predicted change of ``log ‖∂L/∂h_t‖`` per step of lag
      (negative: vanishing); nan where χ₁ is (q* diverges for an activation other than
      the piecewise-linear family).
  """

  mean_field: theory.MeanField
  rate: float


def rnn_mean_field(
  sigma_w2: float,
  *,
  input_variance: float,
  sigma_b2: float = 0.0,
  activation: activations.Activation | str = "tanh",
) -> RNNMeanField:
  """The per-step gradient rate ``½ log χ₁`` of a random RNN (see the module docstring).

  Args:
    sigma_w2: σ_w² of the recurrent weights (``gain²`` for ``init.orthogonal``).
    input_variance: ``σ_u² σ_x²``, the variance that ``U x_t`` adds to each
      pre-activation (``init.gaussian(σ_u²)`` input weights, ``E‖x_t‖²/d = σ_x²``).
    sigma_b2: σ_b² of the biases.
    activation: φ.

  Returns:
    :class:`RNNMeanField`.

  Example:
    >>> from vanish import recurrent, theory
    >>> crit = theory.critical_sigma_w2("tanh", 0.1)     # input variance 0.1, no bias
    >>> abs(recurrent.rnn_mean_field(crit, input_variance=0.1).rate) < 1e-6
    True
  """
  input_variance = _finite("input_variance", input_variance, minimum=0.0)
  sigma_b2 = _finite("sigma_b2", sigma_b2, minimum=0.0)
  mf = theory.mean_field(activation, sigma_w2, sigma_b2 + input_variance)
  chi1 = mf.chi1
  if math.isnan(chi1):  # no χ₁ even in the limit q → ∞ (a registered φ with unbounded φ')
    return RNNMeanField(mf, math.nan)
  rate = 0.5 * math.log(chi1) if chi1 > 0 else -math.inf
  return RNNMeanField(mf, rate)


class LSTMMeanField(NamedTuple):
  """Mean-field stationary state of a random LSTM and its cell-path gradient rate.

  Attributes:
    q_z: stationary variance of a gate pre-activation around its bias.
    q_c: stationary ``E[c²]``.
    q_h: stationary ``E[h²]``.
    mean_forget: ``E[f]``.
    rate: ``½ log E[f²]``, the per-step change of ``log ‖∂L/∂c_t‖`` along the
      cell path ``∂c_t/∂c_{t−1} = diag(f_t)`` (the paths through ``h`` neglected).
  """

  q_z: float
  q_c: float
  q_h: float
  mean_forget: float
  rate: float


_HERMITE = np.polynomial.hermite_e.hermegauss(81)


def _gauss(fn: Callable[[np.ndarray], np.ndarray], mean: float, var: float) -> float:
  z, weight = _HERMITE
  return float(np.sum(weight * fn(mean + math.sqrt(var) * z)) / math.sqrt(2 * math.pi))


def lstm_mean_field(
  sigma_w2: float,
  *,
  input_variance: float,
  forget_bias: float = 1.0,
  sigma_b2: float = 0.0,
  iterations: int = 500,
) -> LSTMMeanField:
  """Stationary mean field of a random LSTM (as in Chen et al. 2018 for gated RNNs).

  Every gate pre-activation is ``bias + N(0, q_z)`` with ``q_z = σ_w² q_h +
  input_variance + σ_b²``; under the mean-field independence assumptions the
  stationary moments solve

      q_c = E[i²] E[g²] / (1 − E[f²]),     q_h = E[o²] E[tanh(c)²],  c ~ N(0, q_c),

  iterated to the fixed point by Gauss–Hermite quadrature. The cell path of the
  backward pass multiplies the adjoint by ``diag(f_t)``, so along that path alone
  ``E‖∂L/∂c_t‖²`` falls by ``E[f²]`` per step: ``rate = ½ log E[f²]``.

  This is only the cell path. The loop ``c_{t−1} → h_{t−1} → (W) → c_t`` adds to
  it, and because the *same* W acts at every step its contributions add
  coherently (in amplitude, not in power as the independent-weights mean field
  assumes), so a random LSTM's gradient decays markedly slower than ``rate``
  (about −0.07 per step instead of −0.32 at forget bias 1, width 64; see
  ``experiments/rnn_through_time.py``).

  Args:
    sigma_w2: σ_w² of each recurrent gate block.
    input_variance: ``σ_u² σ_x²`` as in :func:`rnn_mean_field`.
    forget_bias: the forget-gate bias.
    sigma_b2: σ_b² of the random part of the biases.
    iterations: fixed-point iterations.

  Example:
    >>> from vanish.recurrent import lstm_mean_field
    >>> mf = lstm_mean_field(1.0, input_variance=0.1, forget_bias=5.0)
    >>> round(mf.mean_forget, 3), mf.rate > -0.01
    (0.992, True)
  """
  sigma_w2, input_variance, sigma_b2 = (
    _finite(name, value, minimum=0.0)
    for name, value in (
      ("sigma_w2", sigma_w2),
      ("input_variance", input_variance),
      ("sigma_b2", sigma_b2),
    )
  )
  forget_bias = _finite("forget_bias", forget_bias)
  iterations = _positive("iterations", iterations)

  def sig(u):
    return 1 / (1 + np.exp(-u))

  q_h = 0.0
  for _ in range(iterations):
    q_z = sigma_w2 * q_h + input_variance + sigma_b2
    f2 = _gauss(lambda u: sig(u) ** 2, forget_bias, q_z)
    q_c = _gauss(lambda u: sig(u) ** 2, 0.0, q_z) * _gauss(lambda u: np.tanh(u) ** 2, 0.0, q_z)
    q_c /= 1 - f2
    q_new = _gauss(lambda u: sig(u) ** 2, 0.0, q_z) * _gauss(lambda u: np.tanh(u) ** 2, 0.0, q_c)
    done = abs(q_new - q_h) < 1e-13
    q_h = q_new
    if done:
      break
  q_z = sigma_w2 * q_h + input_variance + sigma_b2
  f2 = _gauss(lambda u: sig(u) ** 2, forget_bias, q_z)
  return LSTMMeanField(
    q_z=q_z,
    q_c=q_c,
    q_h=q_h,
    mean_forget=_gauss(sig, forget_bias, q_z),
    rate=0.5 * math.log(f2),
  )


# --------------------------------------------------------------------------- the memory task


class Readout(NamedTuple):
  """A linear readout ``logits = v h + c`` of a hidden state.

  Attributes:
    v: ``[(M,) classes, n]``.
    c: ``[(M,) classes]``.
  """

  v: jax.Array
  c: jax.Array


def init_readout(
  key: jax.Array, *, hidden: int, classes: int = 2, members: int | None = None, dtype=jnp.float32
) -> Readout:
  """A readout with ``v ~ N(0, 1/n)`` and ``c = 0`` (a member axis M if ``members`` is given).

  Example:
    >>> import jax
    >>> from vanish import recurrent
    >>> recurrent.init_readout(jax.random.key(0), hidden=8, members=3).v.shape
    (3, 2, 8)
  """
  _check_key(key)
  classes, hidden = _positive("classes", classes), _positive("hidden", hidden)
  lead = () if members is None else (_positive("members", members),)
  v = init.normal(1.0)(key, (*lead, classes, hidden), dtype) / math.sqrt(hidden)
  return Readout(v, jnp.zeros((*lead, classes), dtype))


def memory_task(
  key: jax.Array, *, batch: int, length: int, noise: float = 1.0, dtype=jnp.float32
) -> tuple[jax.Array, jax.Array]:
  """Sequences whose label is the sign shown at step 1: a task that needs memory.

  Input ``x_t ∈ R²``: at t = 1, ``(s, 1)`` with the sign ``s = ±1`` and a marker 1;
  at every later step ``(ε_t, 0)`` with noise ``ε_t ~ N(0, noise²)``. The label is
  ``(s + 1) / 2``. Read out at step T, the state must carry ``s`` across ``T − 1``
  noisy updates: the latching problem of Bengio, Simard & Frasconi (1994) and the
  noisy long-lag tasks of Hochreiter & Schmidhuber (1997, §5). Any T ≤ ``length``
  can be asked of the same sequences.

  Args:
    key: a typed key.
    batch: number of sequences B.
    length: sequence length (the largest lag that can be asked).
    noise: standard deviation of the distractors (≥ 0).
    dtype: of the inputs.

  Returns:
    ``(xs [B, length, 2], labels [B])`` with int32 labels in {0, 1}.

  Example:
    >>> import jax
    >>> from vanish import recurrent
    >>> xs, labels = recurrent.memory_task(jax.random.key(0), batch=4, length=6)
    >>> xs.shape, bool(((xs[:, 0, 0] > 0) == (labels == 1)).all()), xs[:, :, 1].sum().item()
    ((4, 6, 2), True, 4.0)
  """
  _check_key(key)
  batch, length = _positive("batch", batch), _positive("length", length)
  noise = _checks.number("noise", noise, minimum=0)
  normals = init.normal(1.0)(key, (batch, length), dtype)  # one draw: sign from column 0
  labels = (normals[:, 0] > 0).astype(jnp.int32)
  signs = (2 * labels - 1).astype(dtype)
  values = jnp.concatenate([signs[:, None], noise * normals[:, 1:]], axis=1)
  marker = jnp.zeros((batch, length), dtype).at[:, 0].set(1)
  return jnp.stack([values, marker], axis=-1), labels


def _hidden_with_kicks(params, xs, kicks, activation, precision):
  """``h_1..h_T`` of ONE network on one sequence, ``kicks[t]`` added to ``h_t`` (zeros: none).

  The gradient of a loss with respect to ``kicks[t]`` is ``∂L/∂h_t``: the total
  derivative through every later step (for the LSTM through ``h_t``, not ``c_t``).
  """
  step = _step_fn(params, activation, precision)

  def body(s, inputs):
    x, kick = inputs
    s = step(s, x)
    s = (s[0] + kick,) + tuple(s[1:])
    return s, s[0]

  _, hs = lax.scan(body, _zero_state(params, xs.dtype), (xs, kicks))
  return hs


def memory_loss(
  params: Params,
  readout: Readout,
  xs: jax.Array,
  labels: jax.Array,
  lag: jax.Array | int,
  kicks: jax.Array | None = None,
  *,
  activation: activations.Activation | str = "tanh",
  precision: Any = lax.Precision.HIGHEST,
) -> tuple[jax.Array, jax.Array]:
  """Mean softmax cross-entropy of reading ``h_T`` (T = ``lag``) out, for ONE network.

  ``C = −(1/B) Σ_b log softmax(v h_T^{(b)} + c)[y_b]``.

  Args:
    params: :class:`RNNParams` or :class:`LSTMParams` without member axis.
    readout: :class:`Readout` without member axis.
    xs: ``[B, length, d]``.
    labels: ``[B]`` int.
    lag: T, 1 ≤ T ≤ length (may be traced).
    kicks: optional ``[B, length, n]`` added to every ``h_t``; the gradient of C
      with respect to them (at zero) is ``∂C/∂h_t`` for every sequence and t.
    activation: φ of the RNN (ignored by the LSTM).
    precision: matmul precision.

  Returns:
    ``(C, accuracy)``: scalars.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> from vanish import recurrent
    >>> rnn = recurrent.RNN(2, 4, key=jax.random.key(0))
    >>> out = recurrent.init_readout(jax.random.key(1), hidden=4)
    >>> xs, y = recurrent.memory_task(jax.random.key(2), batch=8, length=5)
    >>> loss, acc = recurrent.memory_loss(recurrent.to_params(rnn), out, xs, y, 3)
    >>> bool(0 < loss < 5), 0 <= float(acc) <= 1
    (True, True)
  """
  act = activations.get(activation)
  precision = _matmul_precision(precision)
  if not isinstance(readout, Readout):
    raise TypeError(f"readout must be a Readout, got {type(readout).__name__}")
  if kicks is None:
    kicks = jnp.zeros((*xs.shape[:2], _hidden_size(params)), xs.dtype)
  hs = jax.vmap(lambda x, k: _hidden_with_kicks(params, x, k, act, precision))(xs, kicks)
  h_last = lax.dynamic_index_in_dim(hs, jnp.asarray(lag) - 1, axis=1, keepdims=False)
  logits = jnp.matmul(h_last, readout.v.T, precision=precision) + readout.c[None, :]
  loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
  return loss, jnp.mean(jnp.argmax(logits, axis=-1) == labels)


class MemoryTaskResult(NamedTuple):
  """What :func:`train_memory_task` returns; K lags, M members, S steps.

  Attributes:
    lags: ``[K]`` the lags T.
    params: the trained recurrent params, leading axes ``[K, M]``.
    readout: the trained :class:`Readout`, leading axes ``[K, M]``.
    loss: ``[K, M, S]`` the cost of each step's fresh batch, before its update.
    accuracy: ``[K, M, S]`` the accuracy on that batch (a held-out estimate: every
      batch is new).
    log_grad_first: ``[K, M, S]`` ``log ‖∂C/∂h_1‖`` of each step's batch cost: how
      much of the gradient reaches the state that must store the sign.
    test_loss, test_accuracy: ``[K, M, 2]`` on the test set, at initialization and
      after training.
    log_grad: ``[K, M, 2, length]`` ``log ‖∂C/∂h_t‖`` of the test set's mean cost
      (Frobenius norm over sequences and units) at initialization and after
      training, entry ``t − 1`` for time t; ``−inf`` for t > T, where h_t does not
      affect C.
  """

  lags: np.ndarray
  params: Params
  readout: Readout
  loss: np.ndarray
  accuracy: np.ndarray
  log_grad_first: np.ndarray
  test_loss: np.ndarray
  test_accuracy: np.ndarray
  log_grad: np.ndarray


def _log_frobenius(g: jax.Array) -> jax.Array:
  """``log ‖g[:, t]‖`` over all axes but the time axis 1, scaled (no underflow): ``[length]``."""
  scale = jnp.max(jnp.abs(g), axis=(0, 2))
  safe = jnp.where(scale > 0, scale, 1)
  norm = jnp.sqrt(jnp.sum(jnp.square(g / safe[None, :, None]), axis=(0, 2)))
  return jnp.where(scale > 0, jnp.log(safe) + jnp.log(norm), -jnp.inf)


@functools.partial(
  jax.jit,
  static_argnames=("activation", "precision", "steps", "batch", "length", "noise", "test_batches"),
)
def _train_memory(
  params,
  readout,
  lags,
  key,
  learning_rate,
  *,
  activation,
  precision,
  steps,
  batch,
  length,
  noise,
  test_batches,
):
  """All (lag, member) runs; the test batches are iterations of the same scan.

  The scan visits the E test batches, the S training batches, then the test batches
  again, applying the update only on training batches: one compiled copy of the
  forward, backward and data generator serves training and both evaluations.
  """
  prec = _engine.lax_precision(precision)
  dtype = params.w.dtype
  tx = optax.adam(learning_rate)
  tests = steps + jnp.arange(test_batches)  # data index of the test batches
  order = jnp.concatenate([tests, jnp.arange(steps), tests])
  training = jnp.arange(order.shape[0]) >= test_batches
  training &= jnp.arange(order.shape[0]) < test_batches + steps

  def loss_fn(model, kicks, xs, labels, lag):
    core, out = model
    return memory_loss(core, out, xs, labels, lag, kicks, activation=activation, precision=prec)

  def one(core, out, lag):
    def step(carry, inputs):
      model, opt_state = carry
      index, train = inputs
      xs, labels = memory_task(
        jax.random.fold_in(key, index), batch=batch, length=length, noise=noise, dtype=dtype
      )
      kicks = jnp.zeros((batch, length, _hidden_size(model[0])), dtype)
      (loss, acc), (grads, kick_grads) = jax.value_and_grad(loss_fn, (0, 1), has_aux=True)(
        model, kicks, xs, labels, lag
      )
      updates, new_state = tx.update(grads, opt_state, model)
      new_model = optax.apply_updates(model, updates)
      keep = functools.partial(jnp.where, train)
      carry = jax.tree.map(keep, (new_model, new_state), (model, opt_state))
      return carry, (loss, acc, _log_frobenius(kick_grads))

    model = (core, out)
    (model, _), rows = lax.scan(step, (model, tx.init(model)), (order, training))
    loss, acc, log_grad = rows
    e = test_batches

    def test(sl):  # the test set's mean cost: means over equal batches, exact norm
      log_norm = jax.nn.logsumexp(2 * log_grad[sl], axis=0) / 2 - math.log(e)
      return loss[sl].mean(), acc[sl].mean(), log_norm

    evals = jax.tree.map(lambda a, b: jnp.stack([a, b]), test(slice(0, e)), test(slice(-e, None)))
    train_rows = slice(e, e + steps)
    return model, loss[train_rows], acc[train_rows], log_grad[train_rows, 0], evals

  per_lag = jax.vmap(one, in_axes=(0, 0, None))  # members
  return jax.vmap(per_lag, in_axes=(None, None, 0))(params, readout, lags)  # lags


def train_memory_task(
  model_or_params: Any,
  readout: Readout,
  lags: Any,
  *,
  key: jax.Array,
  steps: int,
  batch: int = 32,
  length: int | None = None,
  learning_rate: float = 1e-2,
  noise: float = 1.0,
  test_batches: int = 4,
  activation: activations.Activation | str | None = None,
  precision: str = "highest",
) -> MemoryTaskResult:
  """Trains an ensemble on :func:`memory_task` at every lag T, all in one compiled call.

  Every (lag, member) pair starts from the member's initial parameters and sees the
  same fresh batches (``memory_task(fold_in(key, i), ...)`` at step i), so lags and
  members differ only in what they are asked; optimizer: optax Adam (Kingma & Ba
  2015) on the recurrent weights and the readout together, cost :func:`memory_loss`.
  Before and after training the cost, accuracy and ``log ‖∂C/∂h_t‖`` (for every t)
  are measured on a test set of ``test_batches · batch`` sequences drawn like the
  training batches but never trained on: ``log_grad[..., 0]`` is how much of the
  cost's gradient reaches the state that holds the sign.

  Args:
    model_or_params: an :class:`RNN` or :class:`LSTM` ``nnx.vmap`` ensemble, or
      params with a leading member axis M.
    readout: :class:`Readout` with the member axis M (:func:`init_readout`).
    lags: the lags T to train on, ``[K]`` integers in 1..length.
    key: a typed key (data of every step and the test batch).
    steps: Adam steps S ≥ 1.
    batch: sequences per step.
    length: sequence length (default ``max(lags)``); fixed length and traced lags
      make one compilation serve every lag.
    learning_rate: Adam's η > 0.
    noise: the distractors' standard deviation.
    test_batches: the test set's size in batches.
    activation: φ of an RNN given as params (default tanh); models carry their own.
    precision: matmul precision name.

  Returns:
    :class:`MemoryTaskResult` (numpy arrays, params as jax arrays).

  Example:
    >>> import jax
    >>> from flax import nnx
    >>> from vanish import recurrent
    >>> lstm = nnx.vmap(lambda r: recurrent.LSTM(2, 8, rngs=r))(nnx.Rngs(0).split(2))
    >>> out = recurrent.init_readout(jax.random.key(1), hidden=8, members=2)
    >>> res = recurrent.train_memory_task(lstm, out, [3], key=jax.random.key(2), steps=100)
    >>> res.test_accuracy.shape, bool((res.test_accuracy[0, :, 1] > 0.9).all())
    ((1, 2, 2), True)
  """
  params, act = _resolve(model_or_params, activation)
  _check_key(key)
  _engine.check_precision(precision)
  if params.w.ndim != 3:
    raise ValueError("model_or_params needs a leading member axis M (an nnx.vmap ensemble)")
  members, n = params.w.shape[0], _hidden_size(params)
  if not isinstance(readout, Readout) or np.shape(readout.v) != (members, 2, n):
    raise ValueError(f"readout must be a Readout with v of shape ({members}, 2, {n})")
  lag_list = np.asarray(lags)
  if lag_list.ndim != 1 or lag_list.size == 0 or not np.issubdtype(lag_list.dtype, np.integer):
    raise ValueError(f"lags must be a non-empty 1-d sequence of integers, got {lags!r}")
  length = int(lag_list.max()) if length is None else _positive("length", length)
  if lag_list.min() < 1 or lag_list.max() > length:
    raise ValueError(f"lags must lie in 1..length = {length}, got {lag_list.tolist()}")
  steps, batch = _positive("steps", steps), _positive("batch", batch)
  test_batches = _positive("test_batches", test_batches)
  if params.u.shape[-1] != 2:
    raise ValueError(f"the memory task has 2 inputs; the network has {params.u.shape[-1]}")
  lr = _checks.number("learning_rate", learning_rate, minimum=0, strict=True)
  noise = _checks.number("noise", noise, minimum=0)
  dtype = params.w.dtype
  readout = Readout(jnp.asarray(readout.v, dtype), jnp.asarray(readout.c, dtype))
  model, loss, acc, log_first, evals = _train_memory(
    params,
    readout,
    jnp.asarray(lag_list, jnp.int32),
    key,
    jnp.asarray(lr, dtype),
    activation=act,
    precision=precision,
    steps=steps,
    batch=batch,
    length=length,
    noise=noise,
    test_batches=test_batches,
  )
  test_loss, test_acc, log_grad = (np.asarray(a) for a in evals)
  return MemoryTaskResult(
    lags=lag_list.astype(np.int64),
    params=model[0],
    readout=model[1],
    loss=np.asarray(loss),
    accuracy=np.asarray(acc),
    log_grad_first=np.asarray(log_first),
    test_loss=test_loss,
    test_accuracy=test_acc,
    log_grad=log_grad,
  )


def _positive(name: str, value: Any) -> int:
  if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
    raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
  return int(value)


def _finite(name: str, value: Any, minimum: float | None = None) -> float:
  """``float(value)``, checked finite (and ``>= minimum``), the error naming ``name``."""
  return _checks.number(name, value, minimum=-math.inf if minimum is None else minimum)


def _matmul_precision(precision: Any) -> Any:
  """A ``lax.Precision`` or ``DotAlgorithmPreset`` (or None) as is; a name validated."""
  if precision is None or isinstance(precision, (lax.Precision, lax.DotAlgorithmPreset)):
    return precision
  return _engine.lax_precision(_engine.check_precision(precision))
