"""Ensembles sharded over devices along the member axis, through JAX's own sharding.

Members are independent, so an ensemble shards with no communication: the
parameters are placed with ``NamedSharding(mesh, P("members"))`` and the
engine's jitted, vmapped chains are partitioned by XLA along that axis
(``shared/JAX_NOTES.md`` §3: an ``Auto`` mesh axis, which also works with the
``scan`` over depth inside the ``vmap``). Member counts that do not divide the
device count are padded with copies of member 0 and the padding is dropped from
the results. Member ``m`` keeps its own parameters and noise key, so results do
not depend on the device count.

Example:
  >>> import jax, vanish as vn
  >>> net = vn.MLP([8] * 11, "tanh")
  >>> params = net.init(jax.random.key(0), members=13)
  >>> log_g = vn.sharding.sharded(vn.log_gradient_norms, net, params, jax.numpy.ones(8))
  >>> log_g.shape
  (13, 10)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
from jax.sharding import AxisType, NamedSharding
from jax.sharding import PartitionSpec as P

__all__ = ["member_mesh", "pad_members", "shard_members", "sharded"]

AXIS = "members"


def member_mesh(devices: Sequence[jax.Device] | None = None) -> jax.sharding.Mesh:
  """A 1-D mesh over ``devices`` (default: all) with the ``"members"`` axis."""
  devices = list(jax.devices() if devices is None else devices)
  if not devices:
    raise ValueError("devices must not be empty")
  return jax.make_mesh((len(devices),), (AXIS,), axis_types=(AxisType.Auto,), devices=devices)


def pad_members(params: Any, multiple: int) -> tuple[Any, int]:
  """Pads the member axis to a multiple of ``multiple`` with copies of member 0.

  Returns:
    ``(padded_params, members)``: the original count, to slice results with.
  """
  if int(multiple) != multiple or multiple < 1:
    raise ValueError(f"multiple must be an integer >= 1, got {multiple!r}")
  members = int(jax.tree.leaves(params)[0].shape[0])
  extra = -members % int(multiple)
  if extra == 0:
    return params, members

  def pad(leaf):
    filler = jnp.broadcast_to(leaf[:1], (extra, *leaf.shape[1:]))
    return jnp.concatenate([leaf, filler], axis=0)

  return jax.tree.map(pad, params), members


def shard_members(params: Any, mesh: jax.sharding.Mesh | None = None) -> Any:
  """Places every leaf's leading (member) axis across ``mesh``; it must divide evenly."""
  mesh = member_mesh() if mesh is None else mesh
  size = mesh.shape[AXIS]
  members = int(jax.tree.leaves(params)[0].shape[0])
  if members % size:
    raise ValueError(
      f"members ({members}) must be a multiple of the mesh size ({size}); use pad_members first"
    )
  return jax.device_put(params, NamedSharding(mesh, P(AXIS)))


def sharded(
  chain: Callable[..., Any],
  net: Any,
  params: Any,
  x: Any,
  *args: Any,
  mesh: jax.sharding.Mesh | None = None,
  **kwargs: Any,
) -> Any:
  """Runs ``chain(net, params, x, ...)`` (any engine function) with members sharded.

  Args:
    chain: e.g. :func:`vanish.log_gradient_norms` or :func:`vanish.lyapunov_spectrum`.
    net, params, x, *args, **kwargs: passed to ``chain``.
    mesh: default :func:`member_mesh` over all devices.

  Returns:
    ``chain``'s result for the original members (padding removed), member-sharded.
  """
  mesh = member_mesh() if mesh is None else mesh
  padded, members = pad_members(params, mesh.shape[AXIS])
  out = chain(net, shard_members(padded, mesh), x, *args, **kwargs)
  return jax.tree.map(lambda leaf: leaf[:members], out)
