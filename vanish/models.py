"""Flax NNX models that share the engine's parameterization.

An :class:`MLPModel` is a trainable ``nnx.Module`` built from a :class:`vanish.MLP`
spec. It samples its parameters with the spec's own ``net.init``, so a model and
``net.init`` agree draw for draw, and it stores them in the engine's layout: one
``nnx.Param`` pair per *segment* (a run of equal layers), ``w`` of shape
``[L_s, fan_out, fan_in]`` and ``b`` of shape ``[L_s, fan_out]``. Its forward pass
is the engine's own scan (:mod:`vanish._engine`), so a model computes exactly the
function that the Jacobian-chain functions analyse.

:func:`to_params` and :func:`from_params` convert between models and the
segment-stacked ``params`` of ``net.init`` (leading member axis M), so that
``vn.log_gradient_norms``, ``vn.lyapunov_spectrum`` and the rest can be called on
a model at any step of training. An *ensemble model* is the same module with a
leading member axis on every ``Param``, exactly what ``nnx.vmap`` builds; calling
it maps over the members.

Example:
  >>> import jax, jax.numpy as jnp, vanish as vn
  >>> from vanish import models
  >>> net = vn.MLP([4, 8, 8, 3], "tanh", weights=vn.init.gaussian(1.5))
  >>> model = models.MLPModel(net, key=jax.random.key(0))
  >>> model(jnp.ones((5, 4))).shape
  (5, 3)
  >>> params = models.to_params(model)            # member axis of size 1
  >>> [p["w"].shape for p in params]
  [(1, 1, 8, 4), (1, 1, 8, 8), (1, 1, 3, 8)]
  >>> bool(jnp.all(params[1]["w"] == net.init(jax.random.key(0))[1]["w"]))  # same draws
  True
  >>> vn.log_gradient_norms(net, params, jnp.ones(4)).shape   # chains on the model
  (1, 3)
  >>> ensemble = models.from_params(net, net.init(jax.random.key(1), members=6))
  >>> models.members(ensemble), ensemble(jnp.ones((5, 4))).shape
  (6, (6, 5, 3))
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from vanish import _engine
from vanish.networks import MLP, Network

__all__ = ["MLPModel", "SegmentParams", "apply", "ensemble", "from_params", "members", "to_params"]

Params = tuple[dict[str, jax.Array], ...]


def apply(net: Network, params: Sequence[dict[str, jax.Array]], x: jax.Array, precision: Any):
  """The network output ``h^L`` for ONE member (no member axis) and a batch of inputs.

  The pure function behind :class:`MLPModel` and :mod:`vanish.training`: the
  engine's per-segment scan, vmapped over the batch.

  Args:
    net: the network spec (deterministic activations only).
    params: one member's parameters, ``{"w": [L_s, fan_out, fan_in], "b": [L_s,
      fan_out]}`` per segment.
    x: inputs ``(n_0,)`` or ``(batch, n_0)``.
    precision: a ``lax.Precision`` (or preset) object or a validated name.

  Returns:
    ``(n_L,)`` or ``(batch, n_L)``.
  """
  if isinstance(precision, str):
    precision = _engine.lax_precision(_engine.check_precision(precision))

  def one(xb):
    out, _, _ = _engine.scan_layers(
      net, params, xb, None, precision, lambda *a: (a[-1], ()), (), scan_params=True
    )
    return out

  return one(x) if x.ndim == 1 else jax.vmap(one)(x)


class SegmentParams(nnx.Module):
  """One segment's stacked parameters: ``w`` ``[L_s, fan_out, fan_in]``, ``b`` ``[L_s, fan_out]``.

  In an ensemble model both carry a leading member axis M.
  """

  def __init__(self, w: jax.Array, b: jax.Array):
    self.w = nnx.Param(jnp.asarray(w))
    self.b = nnx.Param(jnp.asarray(b))


class MLPModel(nnx.Module):
  """A trainable fully connected network, ``h^l = φ(W^l h^{l−1} + b^l)``, from a spec.

  Give exactly one source of parameters:

  * ``key``: sample with ``net.init(key, members=1)`` (the model equals member 0);
  * ``rngs``: the Flax convention, ``key = rngs.params()`` then as above; use it
    to build ensembles with ``nnx.vmap`` (see :func:`ensemble` for one that agrees
    with ``net.init(key, members=M)``);
  * ``params``: one member's segment-stacked parameters (no member axis), or use
    :func:`from_params`.

  Args:
    net: a :class:`vanish.MLP` (its activation, widths, readout and initializers).
    key: a typed key from ``jax.random.key``.
    rngs: an ``nnx.Rngs``.
    params: segment dicts ``{"w": [L_s, fan_out, fan_in], "b": [L_s, fan_out]}``.
    precision: matmul precision of the forward pass, default ``"highest"`` (what
      the chain functions use).
    dtype: parameter dtype when sampling.

  Example:
    >>> import jax, vanish as vn
    >>> from flax import nnx
    >>> from vanish.models import MLPModel, members
    >>> net = vn.MLP([2, 16, 1], "relu", weights=vn.init.he())
    >>> stacked = nnx.vmap(lambda r: MLPModel(net, rngs=r))(nnx.Rngs(0).split(4))
    >>> members(stacked), stacked.segments[0].w.shape
    (4, (4, 1, 16, 2))
  """

  def __init__(
    self,
    net: MLP,
    *,
    key: jax.Array | None = None,
    rngs: nnx.Rngs | None = None,
    params: Sequence[dict[str, Any]] | None = None,
    precision: str = "highest",
    dtype: Any = jnp.float32,
  ):
    if not isinstance(net, MLP):
      raise TypeError(f"net must be a vanish.MLP, got {type(net).__name__}")
    if any(s.layer.activation.stochastic for s in net.segments):
      raise ValueError("net: stochastic activations (noisy ReLU) are not supported by MLPModel")
    if sum(source is not None for source in (key, rngs, params)) != 1:
      raise ValueError("give exactly one of key=, rngs= or params=")
    _engine.check_precision(precision)
    if params is None:
      if rngs is not None:
        key = rngs.params()
      params = jax.tree.map(lambda a: a[0], net.init(key, members=1, dtype=dtype))
    _check_params(net, params, member_axis=False)
    self.net = net
    self.precision = precision
    self.segments = nnx.List([SegmentParams(p["w"], p["b"]) for p in params])

  def __call__(self, x: jax.Array) -> jax.Array:
    """Outputs ``h^L`` for ``x`` of shape ``(n_0,)`` or ``(batch, n_0)``.

    Returns ``(batch,) n_L``; an ensemble model returns ``[M, (batch,) n_L]``.
    """
    x = jnp.asarray(x)
    params = tuple({"w": s.w[...], "b": s.b[...]} for s in self.segments)
    if x.ndim not in (1, 2) or x.shape[-1] != self.net.widths[0]:
      raise ValueError(
        f"x must have shape (n_0,) or (batch, n_0) with n_0 = {self.net.widths[0]}, got {x.shape}"
      )
    return _forward(self.net, params, x.astype(params[0]["w"].dtype), self.precision)


@functools.partial(jax.jit, static_argnames=("net", "precision"))
def _forward(net, params, x, precision):
  """One compiled forward pass (eager model calls would dispatch op by op)."""
  if params[0]["w"].ndim == 4:  # an ensemble: map over the member axis
    return jax.vmap(lambda p: apply(net, p, x, precision))(params)
  return apply(net, params, x, precision)


def members(model: MLPModel) -> int | None:
  """The ensemble size M of an ensemble model, or None for a single model."""
  w = model.segments[0].w
  return int(w.shape[0]) if w.ndim == 4 else None


def to_params(model: MLPModel) -> Params:
  """The model's parameters in ``net.init``'s format, ready for the chain functions.

  Args:
    model: a single model or an ensemble model (from :func:`from_params`,
      :func:`ensemble` or ``nnx.vmap``).

  Returns:
    One dict per segment, ``{"w": [M, L_s, fan_out, fan_in], "b": [M, L_s,
    fan_out]}``, with M = 1 for a single model.
  """
  if not isinstance(model, MLPModel):
    raise TypeError(f"model must be an MLPModel, got {type(model).__name__}")
  single = members(model) is None
  return tuple(
    {
      "w": s.w[...][None] if single else s.w[...],
      "b": s.b[...][None] if single else s.b[...],
    }
    for s in model.segments
  )


def from_params(
  net: MLP, params: Sequence[dict[str, Any]], member: int | None = None, *, precision="highest"
) -> MLPModel:
  """A model holding ``params`` from ``net.init`` (or :func:`to_params`).

  Args:
    net: the spec the parameters belong to.
    params: segment dicts with a leading member axis M.
    member: which member to take as a single model; None (default) keeps every
      member in an ensemble model (also when M = 1).
    precision: the model's forward precision.

  Returns:
    An :class:`MLPModel`; ``to_params(from_params(net, p)) == p``.
  """
  if not isinstance(net, MLP):
    raise TypeError(f"net must be a vanish.MLP, got {type(net).__name__}")
  _engine.check_precision(precision)
  _check_params(net, params, member_axis=True)
  m = int(np.shape(params[0]["w"])[0])
  if member is not None:
    if isinstance(member, bool) or int(member) != member or not -m <= member < m:
      raise ValueError(f"member must be an integer in [0, {m}), got {member!r}")
    one = tuple({"w": p["w"][member], "b": p["b"][member]} for p in params)
    return MLPModel(net, params=one, precision=precision)
  first = tuple({"w": p["w"][0], "b": p["b"][0]} for p in params)
  model = MLPModel(net, params=first, precision=precision)
  for segment, p in zip(model.segments, params, strict=True):
    segment.w = nnx.Param(jnp.asarray(p["w"]))
    segment.b = nnx.Param(jnp.asarray(p["b"]))
  return model


def ensemble(
  net: MLP, key: jax.Array, members: int, *, dtype: Any = jnp.float32, precision="highest"
) -> MLPModel:
  """An ensemble model whose member m equals member m of ``net.init(key, members)``."""
  _engine.check_precision(precision)  # before net.init compiles
  return from_params(net, net.init(key, members, dtype=dtype), precision=precision)


def _check_params(net: Network, params: Any, *, member_axis: bool) -> None:
  if not isinstance(params, (tuple, list)) or len(params) != len(net.segments):
    raise ValueError(
      f"params must have one dict per segment ({len(net.segments)}), as net.init returns"
    )
  count = None
  for segment, p in zip(net.segments, params, strict=True):
    if not isinstance(p, dict) or set(p) != {"w", "b"}:
      raise ValueError("params must be dicts with keys 'w' and 'b', as net.init returns")
    expected_w = (segment.depth, segment.fan_out, segment.fan_in)
    expected_b = (segment.depth, segment.fan_out)
    w, b = tuple(np.shape(p["w"])), tuple(np.shape(p["b"]))
    if member_axis:
      ok = len(w) == 4 and w[1:] == expected_w and b == (w[0],) + expected_b
      ok = ok and (count is None or w[0] == count)
      count = w[0] if len(w) == 4 else count
      where = "[members, "
    else:
      ok, where = w == expected_w and b == expected_b, "["
    if not ok:
      raise ValueError(
        f"params do not match the network: segment shapes w {w}, b {b}; expected w "
        f"{where}{', '.join(map(str, expected_w))}], b {where}{', '.join(map(str, expected_b))}]"
      )
