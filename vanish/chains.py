"""Jacobian chains of random-network ensembles: pre-activations, gradients, Jacobians.

Every function takes a network spec, its ensemble parameters from ``net.init``
(leading member axis M) and an input ``x`` of shape ``(n_0,)`` or ``(batch,
n_0)``; outputs carry the axes ``[M, (batch,) ...]``. Each is one jit-compiled,
vmapped call — no Python loop over members, inputs or layers.

The backpropagated gradient is Nielsen's (ch. 2, eq. BP2)

    δ^L = Σ'(z^L) ∇_a C,    δ^l = Σ'(z^l) (W^{l+1})ᵀ δ^{l+1},    ∂C/∂b^l = δ^l,

computed in log space: the direction is renormalized at every layer and its log
length accumulated, so depth 10,000 neither overflows nor underflows.

Example:
  >>> import jax, jax.numpy as jnp, vanish as vn
  >>> net = vn.MLP(widths=[8] * 31, activation="sigmoid", weights=vn.init.normal(1.0),
  ...              biases=vn.init.normal(1.0))
  >>> params = net.init(jax.random.key(0), members=16)
  >>> x = jax.random.normal(jax.random.key(1), (8,))
  >>> log_speed = vn.log_gradient_norms(net, params, x)   # [16, 30]
  >>> bool((log_speed[:, 0] < log_speed[:, -1]).mean() > 0.9)  # early layers learn slower
  True
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from vanish import _engine
from vanish.networks import Network

__all__ = [
  "jacobian",
  "log_gradient_norms",
  "outputs",
  "preactivations",
  "scalar_chain",
]

Params = Sequence[dict[str, jax.Array]]


def check_call(net: Any, params: Any, x: Any, key: Any, precision: Any) -> tuple[jax.Array, bool]:
  """Validates a chain call before any compilation; returns ``(x, batched)``."""
  if not isinstance(net, Network):
    raise TypeError(f"net must be a vanish network (e.g. vn.MLP), got {type(net).__name__}")
  _engine.check_precision(precision)
  if not isinstance(params, (tuple, list)) or len(params) != len(net.segments):
    raise ValueError(
      f"params must be the output of net.init (a tuple of {len(net.segments)} segment dicts)"
    )
  members, dtype = None, None
  for segment, p in zip(net.segments, params, strict=True):
    if not isinstance(p, dict) or set(p) != {"w", "b"}:
      raise ValueError("params must be the output of net.init (dicts with keys 'w' and 'b')")
    for name, expected in (
      ("weights", (segment.depth, segment.fan_out, segment.fan_in)),
      ("biases", (segment.depth, segment.fan_out)),
    ):
      array = p[name[0]]
      shape = tuple(np.shape(array))
      if shape[1:] != expected or (members is not None and shape[0] != members):
        raise ValueError(
          f"params do not match the network: segment {name} have shape {shape}, expected "
          f"[members, {', '.join(map(str, expected))}]"
        )
      members = shape[0]
      kind = array.dtype if hasattr(array, "dtype") else np.asarray(array).dtype
      if not jnp.issubdtype(kind, jnp.floating) or (dtype is not None and kind != dtype):
        raise TypeError(
          f"params must be real floating arrays of one dtype (as net.init makes them), got "
          f"{name} of dtype {kind}" + (f" beside {dtype}" if dtype is not None else "")
        )
      dtype = kind
  check_finite("x", x)
  x = jnp.asarray(x)
  if jnp.issubdtype(x.dtype, jnp.complexfloating):
    raise TypeError(f"x must be real, got dtype {x.dtype}")
  if not jnp.issubdtype(x.dtype, jnp.floating):
    x = x.astype(params[0]["w"].dtype)
  if x.ndim not in (1, 2) or x.shape[-1] != net.widths[0]:
    raise ValueError(
      f"x must have shape (n_0,) or (batch, n_0) with n_0 = {net.widths[0]}, got {x.shape}"
    )
  stochastic = any(s.layer.activation.stochastic for s in net.segments)
  if stochastic and key is None:
    raise ValueError("the network's activation is stochastic: pass key=jax.random.key(...)")
  if key is not None:
    from vanish.networks import _check_key

    _check_key(key)
  return x.astype(params[0]["w"].dtype), x.ndim == 2


def check_finite(name: str, value: Any) -> None:
  """Raises ``ValueError`` naming ``name`` if host data holds inf or NaN (device data is not
  checked: that would force a sync)."""
  on_accelerator = isinstance(value, jax.Array) and any(
    d.platform != "cpu" for d in value.devices()
  )
  if not on_accelerator and not np.all(np.isfinite(np.asarray(value).astype(np.complex128))):
    raise ValueError(f"{name} contains inf or NaN")


def ensemble_map(
  per_input: Callable[..., Any],
  params: Params,
  x: jax.Array,
  key: jax.Array | None,
  batched: bool,
  *extra: Any,
) -> Any:
  """``vmap`` over members (axis 0 of params) and, if ``batched``, over inputs.

  Member ``m`` uses noise key ``fold_in(key, m)`` and input ``b`` of it
  ``fold_in(fold_in(key, m), b)``, independent of chunking.
  """
  members = jnp.arange(params[0]["w"].shape[0])

  def member(p, m, *extra):
    k = None if key is None else jax.random.fold_in(key, m)
    if not batched:
      return per_input(p, x, k, *extra)
    batch = jnp.arange(x.shape[0])

    def one(xb, b, *extra):
      return per_input(p, xb, None if k is None else jax.random.fold_in(k, b), *extra)

    in_axes = (0, 0) + tuple(0 if e is not None and jnp.ndim(e) == 2 else None for e in extra)
    return jax.vmap(one, in_axes=in_axes)(x, batch, *extra)

  return jax.vmap(member, in_axes=(0, 0) + (None,) * len(extra))(params, members, *extra)


# --------------------------------------------------------------------------- forward


@functools.partial(jax.jit, static_argnames=("net", "precision", "batched"))
def _preactivations(net, params, x, key, *, precision, batched):
  prec = _engine.lax_precision(precision)

  def per_input(p, xb, k):
    _, outs = _engine.trace(net, p, xb, k, prec)
    return [pre for _, pre, _ in outs]

  return ensemble_map(per_input, params, x, key, batched)


def preactivations(
  net: Network,
  params: Params,
  x: jax.Array,
  *,
  key: jax.Array | None = None,
  precision: str = "highest",
) -> jax.Array | list[jax.Array]:
  """Per-layer pre-activations ``z^l = W^l h^{l−1} + b^l`` (the argument of φ).

  Args:
    net: the network spec.
    params: ``net.init(key, members=M)``.
    x: input ``(n_0,)`` or ``(batch, n_0)``.
    key: noise key, required for stochastic activations (noisy ReLU).
    precision: matmul precision, default ``"highest"`` (true float32 on GPU).

  Returns:
    ``[M, (batch,) L, n]`` when all layer widths ``n_1..n_L`` are equal, else a
    list of L arrays ``[M, (batch,) n_l]``. For residual networks the argument
    of φ in layer l is the incoming state ``h^{l−1}``.
  """
  x, batched = check_call(net, params, x, key, precision)
  per_segment = _preactivations(net, params, x, key, precision=precision, batched=batched)
  return _join_layers(per_segment, batched)


def _join_layers(per_segment: list[jax.Array], batched: bool) -> jax.Array | list[jax.Array]:
  axis = 2 if batched else 1
  if len({a.shape[-1] for a in per_segment}) == 1:
    return jnp.concatenate(per_segment, axis=axis)
  return [a.take(i, axis=axis) for a in per_segment for i in range(a.shape[axis])]


@functools.partial(jax.jit, static_argnames=("net", "precision", "batched"))
def _outputs(net, params, x, key, *, precision, batched):
  prec = _engine.lax_precision(precision)

  def per_input(p, xb, k):
    out, _, _ = _engine.scan_layers(net, p, xb, k, prec, lambda *a: (a[-1], ()), ())
    return out

  return ensemble_map(per_input, params, x, key, batched)


def outputs(
  net: Network,
  params: Params,
  x: jax.Array,
  *,
  key: jax.Array | None = None,
  precision: str = "highest",
) -> jax.Array:
  """The network outputs ``h^L``: ``[M, (batch,) n_L]``."""
  x, batched = check_call(net, params, x, key, precision)
  return _outputs(net, params, x, key, precision=precision, batched=batched)


# --------------------------------------------------------------------------- backward


def _backward_log_norms(net, p, xb, k, cotangent, prec, wrt):
  """log ‖∂C/∂b^l‖ (or ‖∂C/∂W^l‖) for l = 1..L, one network and one input."""
  _, outs = _engine.trace(net, p, xb, k, prec)
  log_scale, g = _engine.safe_log_norm(cotangent)
  per_segment = []
  for segment, p_s, (h_in, _, slope) in reversed(list(zip(net.segments, p, outs, strict=True))):
    layer = segment.layer

    def step(state, inputs, layer=layer, p_s=p_s, start=segment.start):
      log_scale, g = state
      h_l, slope_l, i = inputs
      p_l, index = _engine.layer_params(p_s, i), start + i
      log_scale = log_scale + layer.slope_log_scale(slope_l)  # the actions are of e^{-s} J
      if wrt == "bias":
        local = jnp.linalg.norm(layer.bias_cotangent(p_l, slope_l, g))
      else:
        local = layer.weight_cotangent_norm(p_l, h_l, slope_l, g, _engine.layer_key(k, index))
      log_norm = log_scale + jnp.log(local)
      step_log, g = _engine.safe_log_norm(layer.input_cotangent(p_l, slope_l, g, prec))
      return (log_scale + step_log, g), log_norm

    inputs = (h_in, slope, jnp.arange(segment.depth))  # layer_params: p_s is not scanned
    if segment.fan_in != segment.fan_out:
      (log_scale, g), log_norms = step((log_scale, g), jax.tree.map(lambda a: a[0], inputs))
      log_norms = log_norms[None]
    else:
      (log_scale, g), log_norms = lax.scan(step, (log_scale, g), inputs, reverse=True)
    per_segment.append(log_norms)
  return _nan_if_overflowed(jnp.concatenate(per_segment[::-1]), net, outs)


def _nan_if_overflowed(result: jax.Array, net: Network, outs) -> jax.Array:
  """``result``, or all NaN if the forward pass overflowed into a NaN pre-activation.

  Past ``inf − inf`` a unit's sign and slope are undefined (``NaN > 0`` is False, so a
  ReLU would silently read as off), so nothing computed from them is reported as a
  number; the public functions warn (:func:`vanish._engine.warn_if_nan`). A NaN
  pre-activation reaches the last layer (every later ``W h`` sums it), so only that one
  is checked: the other layers' pre-activations need not be kept. Networks of identity
  layers only (:attr:`~vanish.activations.Activation.constant_derivative`) cannot be
  misled and are not checked.
  """
  if all(segment.layer.activation.constant_derivative for segment in net.segments):
    return result
  last_z = outs[-1][1][-1]
  return jnp.where(jnp.any(jnp.isnan(last_z)), jnp.nan, result)


@functools.partial(jax.jit, static_argnames=("net", "precision", "batched", "wrt", "loss"))
def _log_gradient_norms(net, params, x, key, cotangent, *, precision, batched, wrt, loss):
  prec = _engine.lax_precision(precision)

  def per_input(p, xb, k, c):
    if loss is not None:
      out, _, _ = _engine.scan_layers(net, p, xb, k, prec, lambda *a: (a[-1], ()), ())
      c = jax.grad(loss)(out)
    return _backward_log_norms(net, p, xb, k, c, prec, wrt)

  return ensemble_map(per_input, params, x, key, batched, cotangent)


def log_gradient_norms(
  net: Network,
  params: Params,
  x: jax.Array,
  cotangent: jax.Array | Callable[[jax.Array], jax.Array] | None = None,
  *,
  wrt: str = "bias",
  key: jax.Array | None = None,
  precision: str = "highest",
) -> jax.Array:
  """Nielsen's per-layer "speed of learning", ``log ‖∂C/∂b^l‖``, l = 1..L.

  Args:
    net: the network spec.
    params: ``net.init(key, members=M)``.
    x: input ``(n_0,)`` or ``(batch, n_0)``.
    cotangent: ``∇_a C`` at the output: an array ``(n_L,)`` or ``(batch, n_L)``;
      or a loss ``C(output) -> scalar`` whose gradient is taken; default all
      ones (``C = Σ_i a^L_i``).
    wrt: ``"bias"`` for ``‖∂C/∂b^l‖ = ‖δ^l‖`` or ``"weight"`` for the Frobenius
      norm ``‖∂C/∂W^l‖ = ‖δ^l‖ ‖a^{l−1}‖``.
    key: noise key, required for stochastic activations.
    precision: matmul precision, default ``"highest"``.

  Returns:
    ``[M, (batch,) L]`` natural logs; ``−inf`` only where the gradient is exactly
    zero (e.g. a layer of dead ReLUs), also where every unit of a sigmoid or tanh
    layer saturates (the slopes are carried in log space). NaN only for members whose
    forward pass overflowed float32 (unbounded activations with large weights at large
    depth), and then with a :class:`~vanish._engine.ForwardOverflowWarning`.
  """
  x, batched = check_call(net, params, x, key, precision)
  if wrt not in ("bias", "weight"):
    raise ValueError(f"wrt must be 'bias' or 'weight', got {wrt!r}")
  loss = None
  n_out = net.widths[-1]
  if cotangent is None:
    cotangent = jnp.ones((n_out,), x.dtype)
  elif callable(cotangent):
    loss, cotangent = cotangent, None
  else:
    check_finite("cotangent", cotangent)
    cotangent = jnp.asarray(cotangent, x.dtype)
    ok_shapes = [(n_out,)] + ([(x.shape[0], n_out)] if batched else [])
    if cotangent.shape not in ok_shapes:
      raise ValueError(
        f"cotangent must have shape {' or '.join(map(str, ok_shapes))}, got {cotangent.shape}"
      )
  out = _log_gradient_norms(
    net, params, x, key, cotangent, precision=precision, batched=batched, wrt=wrt, loss=loss
  )
  return _engine.warn_if_nan(out, "log_gradient_norms")


# --------------------------------------------------------------------------- Jacobian


@functools.partial(jax.jit, static_argnames=("net", "precision", "batched"))
def _jacobian(net, params, x, key, *, precision, batched):
  prec = _engine.lax_precision(precision)

  def per_input(p, xb, k):
    def chain(layer, p_l, h_in, pre, slope, jac):
      scale = jnp.exp(layer.slope_log_scale(slope))
      return scale * layer.jacobian_action(p_l, slope, jac, prec), ()

    eye = jnp.eye(net.widths[0], dtype=xb.dtype)
    _, jac, _ = _engine.scan_layers(net, p, xb, k, prec, chain, eye)
    return jac

  return ensemble_map(per_input, params, x, key, batched)


def jacobian(
  net: Network,
  params: Params,
  x: jax.Array,
  *,
  key: jax.Array | None = None,
  precision: str = "highest",
) -> jax.Array:
  """The input–output Jacobian ``∂h^L/∂x = J_L ⋯ J_1``, built by the chain ``J ← D W J``.

  For shallow networks: the product over- or underflows once ``log σ_max``
  leaves the dtype's range; use :func:`vanish.lyapunov_spectrum` for deep ones.

  Returns:
    ``[M, (batch,) n_L, n_0]``.
  """
  x, batched = check_call(net, params, x, key, precision)
  return _jacobian(net, params, x, key, precision=precision, batched=batched)


# --------------------------------------------------------------------------- scalar chain


def one_neuron_factors(net, p, xb, k, prec):
  """The chain's factors for one network and input, in log space.

  ``factor_1 = σ'(z_1)`` (the bias enters directly); ``factor_j = w_j σ'(z_j)``, j ≥ 2.

  Returns:
    ``(log_abs_factor, sign, preactivation, weight)``, each ``[L]``. ``log |σ'(z)|`` comes
    from the activation's closed form where it has one
    (:meth:`~vanish.activations.Activation.log_abs_derivative`), so a factor is ``−inf``
    only where it is exactly 0 (a zero weight, a dead ReLU), never because ``σ'(z)``
    underflowed (σ'(z) = 0 in float32 once |z| ≳ 90, tanh' once |z| ≳ 9).
  """
  _, outs = _engine.trace(net, p, xb, k, prec)
  log_d, sign_d = [], []
  for _, _, (slope, log_scale) in outs:  # Dense slopes: φ'(z)·e^{−s} and s, [L_s, 1], [L_s]
    log_abs = jnp.log(jnp.abs(slope[:, 0])) + log_scale  # width 1: exactly log |φ'(z)|
    log_d.append(log_abs)
    sign_d.append(
      jnp.where(jnp.isfinite(log_abs), jnp.where(jnp.signbit(slope[:, 0]), -1.0, 1.0), 0.0)
    )
  weights = jnp.concatenate([p_s["w"][:, 0, 0] for p_s in p])
  pre = jnp.concatenate([z[:, 0] for _, z, _ in outs])
  w = jnp.concatenate([jnp.ones_like(weights[:1]), weights[1:]])
  log_abs = _nan_if_overflowed(jnp.concatenate(log_d) + jnp.log(jnp.abs(w)), net, outs)
  sign = jnp.concatenate(sign_d) * jnp.sign(w)
  return log_abs, sign, pre, weights


def check_one_neuron(net: Network) -> None:
  """The one-neuron chain needs a :class:`~vanish.MLP` with every width 1."""
  if any(w != 1 for w in net.widths):
    raise ValueError(f"scalar_chain needs every width equal to 1, got widths={list(net.widths)}")
  if any(type(s.layer).__name__ != "Dense" for s in net.segments):
    raise ValueError("scalar_chain needs a vn.MLP (dense layers)")


@functools.partial(jax.jit, static_argnames=("net", "precision", "batched"))
def _scalar_chain(net, params, x, key, *, precision, batched):
  prec = _engine.lax_precision(precision)

  def per_input(p, xb, k):
    log_abs, sign, _, _ = one_neuron_factors(net, p, xb, k, prec)
    return jnp.cumsum(log_abs), jnp.cumprod(sign)

  return ensemble_map(per_input, params, x, key, batched)


def scalar_chain(
  net: Network,
  params: Params,
  x: jax.Array,
  *,
  key: jax.Array | None = None,
  precision: str = "highest",
) -> tuple[jax.Array, jax.Array]:
  """The one-neuron-per-layer chain of the seed analysis (Nielsen ch. 5).

  For ``z_j = w_j a_{j−1} + b_j``, ``a_j = σ(z_j)`` the gradient at depth K is

      g_K = ∂a_K/∂b_1 = σ'(z_1) · w_2 σ'(z_2) ⋯ w_K σ'(z_K),

  i.e. ``∂C/∂b_1`` of a K-layer chain with ``∂C/∂a_K = 1``. It is returned as
  ``log |g_K|`` and ``sign g_K``, summed in log space so that no depth overflows.

  Args:
    net: an :class:`~vanish.MLP` with every width equal to 1.
    params, x, key, precision: as for :func:`log_gradient_norms`; ``x`` has shape
      ``(1,)`` or ``(batch, 1)``.

  Returns:
    ``(log_abs_g, sign_g)``, each ``[M, (batch,) L]``; ``log_abs_g`` is ``−inf``
    exactly where a factor is 0 (then the sign is 0). ``log |σ'(z)|`` is taken in
    closed form, so a saturated unit (σ'(z) below float32's range) gives a finite,
    very negative log instead of an underflowed 0.

  Example:
    >>> import jax, vanish as vn
    >>> net = vn.MLP(widths=[1] * 51, activation="sigmoid", weights=vn.init.normal(1.0),
    ...              biases=vn.init.normal(1.0))
    >>> log_g, sign = vn.scalar_chain(net, net.init(jax.random.key(0), 1000), jax.numpy.ones(1))
    >>> log_g.shape
    (1000, 50)
    >>> bool(jax.numpy.median(log_g[:, -1]) < -50)   # |w σ'| < 1/4 per layer: vanishing
    True
  """
  check_one_neuron(net)
  x, batched = check_call(net, params, x, key, precision)
  log_abs, sign = _scalar_chain(net, params, x, key, precision=precision, batched=batched)
  return _engine.warn_if_nan(log_abs, "scalar_chain"), sign
