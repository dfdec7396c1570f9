"""Network specifications and vectorized ensemble sampling.

A network is a sequence of *segments*: runs of consecutive layers with the same
layer type and shape. Each segment's parameters are stacked along a depth axis so
that a chain is one ``lax.scan`` per segment, however deep the network — depth
10,000 compiles as fast as depth 10. ``widths=[64] + [256] * 100`` is two
segments: one 64→256 layer and 99 layers 256→256.

``net.init(key, members=M)`` samples M independent networks in one vectorized
call. Member ``m``'s parameters depend only on ``(key, m)``, never on how the
ensemble is chunked or sharded: layer ``i`` of member ``m`` is
``initializer(fold_in(fold_in(fold_in(key, m), stream), i), shape)`` with stream 0
for weights and 1 for biases, drawn for all members and layers at once by
:func:`vanish.init.sample`.

Example:
  >>> import jax, vanish as vn
  >>> net = vn.MLP(widths=[4, 8, 8, 2], activation="tanh", weights=vn.init.gaussian(1.5))
  >>> params = net.init(jax.random.key(0), members=3)
  >>> [p["w"].shape for p in params]
  [(3, 1, 8, 4), (3, 1, 8, 8), (3, 1, 2, 8)]
  >>> net.depth, net.segments[1].depth
  (3, 1)
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from vanish import _checks
from vanish import activations as _activations
from vanish import init as _init
from vanish.layers import Dense, Layer, Residual

__all__ = ["MLP", "Network", "ResidualMLP", "Segment"]

_WEIGHT_STREAM, _BIAS_STREAM = 0, 1


@dataclasses.dataclass(frozen=True)
class Segment:
  """``depth`` consecutive copies of ``layer``, each ``fan_in → fan_out``; first index ``start``."""

  layer: Layer
  depth: int
  fan_in: int
  fan_out: int
  start: int


def _check_widths(widths: Any) -> tuple[int, ...]:
  try:
    values = tuple(widths)
  except TypeError:
    raise TypeError(f"widths must be a sequence of ints, got {type(widths).__name__}") from None
  if len(values) < 2:
    raise ValueError(f"widths needs at least 2 entries (input and one layer), got {list(values)}")
  return tuple(_checks.integer(f"widths[{i}]", w) for i, w in enumerate(values))


def _group(kinds: Sequence[tuple[Layer, int, int]]) -> tuple[Segment, ...]:
  segments: list[Segment] = []
  for index, (layer, fan_in, fan_out) in enumerate(kinds):
    last = segments[-1] if segments else None
    if last and (last.layer, last.fan_in, last.fan_out) == (layer, fan_in, fan_out):
      segments[-1] = dataclasses.replace(last, depth=last.depth + 1)
    else:
      segments.append(Segment(layer, 1, fan_in, fan_out, index))
  return tuple(segments)


@dataclasses.dataclass(frozen=True)
class Network:
  """Base class: a hashable spec (usable as a static jit argument) plus ``init``.

  Subclasses set ``widths``, ``weights``, ``biases`` and ``segments``.
  """

  widths: tuple[int, ...]
  weights: Any
  biases: Any
  segments: tuple[Segment, ...] = dataclasses.field(init=False, repr=False)

  @property
  def depth(self) -> int:
    """Number of layers L."""
    return len(self.widths) - 1

  @property
  def layers(self) -> tuple[Layer, ...]:
    """One entry per layer (for inspection; chains work per segment)."""
    return tuple(s.layer for s in self.segments for _ in range(s.depth))

  def init(
    self, key: jax.Array, members: int = 1, *, dtype: Any = jnp.float32, first: int = 0
  ) -> tuple[dict[str, jax.Array], ...]:
    """Samples an ensemble of ``members`` networks.

    Args:
      key: a typed key from ``jax.random.key`` (threefry, the default implementation).
      members: ensemble size M ≥ 1.
      dtype: parameter dtype (``jnp.float64`` under ``jax.enable_x64`` for
        reference checks).
      first: index of the first member: ``init(key, M, first=s)`` is members
        ``s … s + M − 1`` of any larger ensemble, so a big ensemble can be sampled
        chunk by chunk (one compilation for every chunk of the same size).

    Returns:
      One dict per segment, ``{"w": [M, L_s, fan_out, fan_in], "b": [M, L_s,
      fan_out]}``.
    """
    members = _checks.integer("members", members)
    first = _checks.integer("first", first, minimum=0)
    if first + members > 2**32:  # member indices are uint32
      raise ValueError(f"first + members must be <= 2**32, got {first} + {members}")
    _check_key(key)
    dtype = jnp.dtype(dtype)
    if not jnp.issubdtype(dtype, jnp.floating):
      raise TypeError(f"dtype must be a floating dtype, got {dtype}")
    if isinstance(self.biases, _init.Centered):  # the biases depend on the whole network
      return _init_members(self, key, members, dtype, jnp.uint32(first))
    # Otherwise sampling depends only on the initializers and the segment shapes: networks
    # that differ in activation or layer type share one compiled sampler.
    return _init_members(_Sampler.of(self), key, members, dtype, jnp.uint32(first))

  def _init_member(self, key: jax.Array, dtype: Any) -> tuple[dict[str, jax.Array], ...]:
    sampler = _Sampler(self.weights, self.biases, self.segments)  # centered biases need layers
    return sampler._init_member(key, dtype, centered=self._centered_biases)

  def _centered_biases(self, segment: Segment, w: jax.Array, dtype: Any) -> jax.Array:
    raise ValueError(f"biases=centered(...) is not supported by {type(self).__name__}")


@dataclasses.dataclass(frozen=True)
class _Sampler:
  """What sampling a network's parameters depends on: initializers and segment shapes."""

  weights: Any
  biases: Any
  segments: tuple[Segment, ...]

  @classmethod
  def of(cls, net: Network) -> _Sampler:
    """The network's sampler without its layers (they do not matter unless biases are centered)."""
    shapes = tuple(dataclasses.replace(s, layer=None) for s in net.segments)
    return cls(net.weights, net.biases, shapes)

  def _init_member(self, key: jax.Array, dtype: Any, centered=None):
    keys = _init._fold_in(key, jnp.asarray([_WEIGHT_STREAM, _BIAS_STREAM], jnp.uint32))
    weight_key, bias_key = keys[0], keys[1]
    params = []
    for segment in self.segments:
      index = segment.start + jnp.arange(segment.depth, dtype=jnp.uint32)
      w = _sample_per_layer(
        self.weights, weight_key, index, (segment.fan_out, segment.fan_in), dtype
      )
      if isinstance(self.biases, _init.Centered):
        b = centered(segment, w, dtype)
      else:
        b = _sample_per_layer(self.biases, bias_key, index, (segment.fan_out,), dtype)
      params.append({"w": w.astype(dtype), "b": b.astype(dtype)})
    return tuple(params)


@functools.partial(jax.jit, static_argnums=(0, 2, 3))
def _init_members(
  sampler: Network | _Sampler, key: jax.Array, members: int, dtype: Any, first: jax.Array
):
  """One compiled sampler per (sampler, M, dtype); member m draws from ``fold_in(key, m)``."""
  index = first + jnp.arange(members, dtype=jnp.uint32)
  member_keys = _init._fold_in(key, index)
  return jax.vmap(sampler._init_member, in_axes=(0, None))(member_keys, dtype)


def _sample_per_layer(initializer, key, index, shape, dtype):
  """Layer ``i`` draws from ``fold_in(key, i)``: independent of how layers are grouped."""
  return _init.sample(initializer, _init._fold_in(key, index), shape, dtype)


def _check_key(key: Any) -> None:
  if not (isinstance(key, jax.Array) and jnp.issubdtype(key.dtype, jax.dtypes.prng_key)):
    raise TypeError(
      "key must be a typed PRNG key from jax.random.key(seed), got "
      f"{getattr(key, 'dtype', type(key).__name__)}"
    )
  if key.shape != ():
    raise ValueError(f"key must be a single key (shape ()), got shape {key.shape}")
  if not _init._is_threefry(key):
    raise TypeError(
      f"key must use the default threefry2x32 implementation, got {jax.random.key_impl(key)}: "
      "other implementations (e.g. rbg) draw differently under vmap than alone, so member m "
      "would not be the draw of its own key fold_in(key, m)"
    )


def _resolve_initializers(weights: Any, biases: Any) -> tuple[Any, Any]:
  return _init.get(weights), _init.get(biases)


@dataclasses.dataclass(frozen=True, init=False)
class MLP(Network):
  """A fully connected network ``h^l = φ(W^l h^{l−1} + b^l)``, l = 1..L.

  Args:
    widths: ``[n_0, n_1, …, n_L]``, any per-layer widths ≥ 1.
    activation: a name from :func:`vanish.activations.available` or an
      :class:`~vanish.activations.Activation`.
    weights: a weight initializer; default ``gaussian(1.0)`` = N(0, 1/fan_in).
    biases: a bias initializer; default ``zeros()``. ``init.centered(x)`` zeros
      every pre-activation at ``x`` (the seed's large-weights scheme).
    readout: ``"activation"`` (default: φ at every layer, as in Nielsen and the
      mean-field papers) or ``"linear"`` (last layer without φ).

  Example:
    >>> import vanish as vn
    >>> vn.MLP(widths=[2, 3, 1], activation="sigmoid").depth
    2
  """

  activation: _activations.Activation
  readout: str

  def __init__(
    self,
    widths: Sequence[int],
    activation: str | _activations.Activation = "tanh",
    weights: Any = None,
    biases: Any = None,
    readout: str = "activation",
  ):
    widths = _check_widths(widths)
    act = _activations.get(activation)
    if readout not in ("activation", "linear"):
      raise ValueError(f"readout must be 'activation' or 'linear', got {readout!r}")
    weights, biases = _resolve_initializers(
      _init.gaussian(1.0) if weights is None else weights,
      _init.zeros() if biases is None else biases,
    )
    if isinstance(biases, _init.Centered) and len(biases.reference) not in (1, widths[0]):
      raise ValueError(
        f"centered biases: reference has {len(biases.reference)} entries, "
        f"expected 1 or n_0 = {widths[0]}"
      )
    hidden, last = Dense(act), Dense(_activations.linear() if readout == "linear" else act)
    kinds = [
      (hidden if l < len(widths) - 2 else last, widths[l], widths[l + 1])
      for l in range(len(widths) - 1)
    ]
    for name, value in [
      ("widths", widths),
      ("weights", weights),
      ("biases", biases),
      ("activation", act),
      ("readout", readout),
      ("segments", _group(kinds)),
    ]:
      object.__setattr__(self, name, value)

  def _centered_biases(self, segment, w, dtype):
    # z^1 = 0 at x_ref makes every later input φ(0)·1, so b^l = −W^l φ(0)·1 for l ≥ 2;
    # φ is the hidden activation (the layer before), also for a linear readout.
    resting = self.activation(jnp.zeros((), dtype))
    incoming = jnp.full((segment.depth, segment.fan_in), resting, dtype)
    if segment.start == 0:
      reference = jnp.asarray(self.biases.reference, dtype)
      incoming = incoming.at[0].set(jnp.broadcast_to(reference, (segment.fan_in,)))
    return -jnp.einsum("lij,lj->li", w, incoming, precision="highest")


@dataclasses.dataclass(frozen=True, init=False)
class ResidualMLP(Network):
  """A residual network ``h^l = h^{l−1} + α (W^l φ(h^{l−1}) + b^l)`` of constant width.

  Args:
    width: the state width n (input and every layer).
    depth: number of residual layers L ≥ 1.
    activation, weights, biases: as for :class:`MLP`.
    alpha: the branch scale α > 0 (e.g. 1/√L keeps the variance bounded).

  Example:
    >>> import vanish as vn
    >>> vn.ResidualMLP(width=8, depth=100, activation="relu", alpha=0.1).widths[:3]
    (8, 8, 8)
  """

  activation: _activations.Activation
  alpha: float

  def __init__(
    self,
    width: int,
    depth: int,
    activation: str | _activations.Activation = "tanh",
    weights: Any = None,
    biases: Any = None,
    alpha: float = 1.0,
  ):
    depth = _checks.integer("depth", depth)
    widths = _check_widths([width] * (depth + 1))
    alpha = _checks.number("alpha", alpha, minimum=0, strict=True)
    act = _activations.get(activation)
    weights, biases = _resolve_initializers(
      _init.gaussian(1.0) if weights is None else weights,
      _init.zeros() if biases is None else biases,
    )
    layer = Residual(act, alpha)
    segments = _group([(layer, widths[0], widths[0])] * depth)
    for name, value in [
      ("widths", widths),
      ("weights", weights),
      ("biases", biases),
      ("activation", act),
      ("alpha", alpha),
      ("segments", segments),
    ]:
      object.__setattr__(self, name, value)


def member_count(params: Sequence[dict[str, jax.Array]]) -> int:
  """The ensemble size M of ``params`` from ``net.init``."""
  return int(np.shape(params[0]["w"])[0])
