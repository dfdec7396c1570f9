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

__all__ = [
  "free_memory",
  "member_mesh",
  "members_per_chunk",
  "pad_members",
  "shard_members",
  "sharded",
]

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


def free_memory(device: jax.Device | None = None) -> int:
  """Bytes free on ``device`` (default: the first): accelerator memory not in use, or on
  a CPU the host's available memory (``MemAvailable`` in ``/proc/meminfo``).

  Example:
    >>> free_memory() > 0
    True
  """
  device = jax.devices()[0] if device is None else device
  if device.platform != "cpu":
    stats = device.memory_stats() or {}
    if "bytes_limit" in stats:
      return int(stats["bytes_limit"] - stats.get("bytes_in_use", 0))
  try:
    with open("/proc/meminfo") as handle:
      for line in handle:
        if line.startswith("MemAvailable:"):
          return int(line.split()[1]) * 1024
  except OSError:
    pass
  import os

  return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))


def members_per_chunk(
  members: int, bytes_per_member: int, *, fraction: float = 0.25, budget: int | None = None
) -> int:
  """The largest divisor of ``members`` whose chunk fits in ``fraction`` of the free memory.

  A divisor, so every chunk has the same shape and compiles once. Use it to run an
  ensemble too big for the device chunk by chunk (with ``net.init(key, c, first=s)``).

  Args:
    members: the ensemble size M ≥ 1.
    bytes_per_member: the memory one member needs (parameters, traces), > 0.
    fraction: the share of :func:`free_memory` a chunk may use, in (0, 1].
    budget: bytes a chunk may use, instead of ``fraction`` of the free memory.

  Example:
    >>> members_per_chunk(512, bytes_per_member=50 * 256 * 256 * 4 * 3, budget=8 * 2**30)
    128
    >>> members_per_chunk(7, bytes_per_member=10, budget=35)   # divisors of 7: 1 and 7
    1
  """
  if isinstance(members, bool) or int(members) != members or members < 1:
    raise ValueError(f"members must be an integer >= 1, got {members!r}")
  if not bytes_per_member > 0:
    raise ValueError(f"bytes_per_member must be > 0, got {bytes_per_member!r}")
  if budget is None:
    if not 0 < fraction <= 1:
      raise ValueError(f"fraction must be in (0, 1], got {fraction!r}")
    budget = int(fraction * free_memory())
  fit = max(1, budget // bytes_per_member)
  return max(d for d in range(1, int(members) + 1) if members % d == 0 and d <= fit)
