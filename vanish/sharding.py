"""Ensembles sharded over devices and hosts along the member axis, through JAX's own sharding.

Members are independent, so an ensemble shards with no communication: the
parameters are placed with ``NamedSharding(mesh, P("members"))`` and the
engine's jitted, vmapped chains are partitioned by XLA along that axis
(``shared/JAX_NOTES.md`` §3: an ``Auto`` mesh axis, which also works with the
``scan`` over depth inside the ``vmap``). Member counts that do not divide the
device count are padded and the padding is dropped from the results. Member
``m`` keeps its own parameters (``net.init``: ``fold_in(key, m)``) and noise key
(``fold_in(key, m)`` in the chains), so results do not depend on the device or
process count.

One process (all local devices):

Example:
  >>> import jax, vanish as vn
  >>> net = vn.MLP([8] * 11, "tanh")
  >>> params = net.init(jax.random.key(0), members=13)
  >>> log_g = vn.sharding.sharded(vn.log_gradient_norms, net, params, jax.numpy.ones(8))
  >>> log_g.shape
  (13, 10)

Several processes (hosts) with ``jax.distributed``: every process runs the same
script; :func:`initialize` connects them before any other JAX call, after which
``jax.devices()`` lists the devices of all processes and :func:`member_mesh`
spans them, each process holding a contiguous block of members.
:func:`init_sharded` samples the ensemble directly into that layout (each
process draws only its own members, so no host ever holds the whole ensemble),
and :func:`sharded` runs a chain on it and, by default, gathers the result to
every process (``gather=False`` keeps it a global array)::

  # run on every host, e.g. with VANISH_COORDINATOR=host0:12345,
  # VANISH_NUM_PROCESSES=4 and VANISH_PROCESS_ID=0..3 (or under Slurm / Open MPI)
  import jax, vanish as vn
  vn.sharding.initialize()              # first, before any other JAX call
  net = vn.MLP([128] * 101, "tanh", vn.init.gaussian(1.0))
  params = vn.sharding.init_sharded(net, jax.random.key(0), members=100_000)
  x = jax.numpy.ones(128)
  log_g = vn.sharding.sharded(vn.log_gradient_norms, net, params, x, members=100_000)
  # log_g: [100_000, 100] on every process, equal to the one-process result (same seed)

On CPU (testing several processes on one machine), cross-process collectives go
through gloo (``jax_cpu_collectives_implementation``), which :func:`initialize`
selects unless another implementation was chosen; ``local_device_count`` gives
each process several CPU devices.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import AxisType, NamedSharding
from jax.sharding import PartitionSpec as P

from vanish import _checks
from vanish.networks import Network

__all__ = [
  "free_memory",
  "init_sharded",
  "initialize",
  "member_mesh",
  "members_per_chunk",
  "pad_members",
  "process_members",
  "shard_members",
  "sharded",
]

AXIS = "members"
ENV = ("VANISH_COORDINATOR", "VANISH_NUM_PROCESSES", "VANISH_PROCESS_ID")


# --------------------------------------------------------------------------- processes


def initialize(
  coordinator_address: str | None = None,
  num_processes: int | None = None,
  process_id: int | None = None,
  *,
  local_device_count: int | None = None,
  timeout: int = 300,
) -> None:
  """Connects this process to the others of a multi-host run (``jax.distributed``).

  Call it first, before any other JAX computation, in every process. Each
  argument left ``None`` comes from the environment: ``VANISH_COORDINATOR``
  (``"host:port"`` of process 0), ``VANISH_NUM_PROCESSES`` and
  ``VANISH_PROCESS_ID``; ``JAX_COORDINATOR_ADDRESS`` is also read by JAX, and
  whatever is still missing is detected by JAX on Slurm, Open MPI, Cloud TPU and
  Kubernetes clusters. Calling it again with the same (or no) values does
  nothing. On CPU it selects gloo for cross-process collectives unless another
  implementation is configured.

  Args:
    coordinator_address: ``"host:port"`` where process 0 serves the coordinator;
      the same on every process.
    num_processes: the number of processes P ≥ 1.
    process_id: this process's index, ``0 <= process_id < num_processes``.
    local_device_count: CPU devices this process exposes (``jax_num_cpu_devices``,
      for several processes on one machine). JAX picks accelerator devices: all
      local ones, or one per process under Slurm / Open MPI.
    timeout: seconds to wait for all processes to connect, ≥ 1.

  Raises:
    ValueError: a malformed value (naming the argument or variable), or too little
      to connect with and no cluster detected.
    RuntimeError: already initialized with other values, or JAX already in use.

  Example:
    >>> initialize("localhost", 2, 0)
    Traceback (most recent call last):
    ...
    ValueError: coordinator_address must be 'host:port' with a port in 1..65535, got 'localhost'
  """
  coordinator_address = _from_env(coordinator_address, "coordinator_address", ENV[0], str)
  num_processes = _from_env(num_processes, "num_processes", ENV[1], int)
  process_id = _from_env(process_id, "process_id", ENV[2], int)
  if coordinator_address is not None:
    host, _, port = str(coordinator_address).rpartition(":")
    if not host or not port.isdigit() or not 1 <= int(port) <= 65535:
      raise ValueError(
        "coordinator_address must be 'host:port' with a port in 1..65535, got "
        f"{coordinator_address!r}"
      )
  _check_int("num_processes", num_processes, 1)
  _check_int("process_id", process_id, 0)
  if None not in (num_processes, process_id) and process_id >= num_processes:
    raise ValueError(
      f"process_id must be in 0..num_processes-1 = 0..{num_processes - 1}, got {process_id}"
    )
  _check_int("local_device_count", local_device_count, 1)
  _check_int("timeout", timeout, 1, optional=False)

  if jax.distributed.is_initialized():
    have = {"num_processes": jax.process_count(), "process_id": jax.process_index()}
    for name, value in (("num_processes", num_processes), ("process_id", process_id)):
      if value is not None and value != have[name]:
        raise RuntimeError(
          f"jax.distributed is already initialized with {name}={have[name]}, not {value}"
        )
    return
  if jax.config.jax_cpu_collectives_implementation is None:
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
  try:  # raises RuntimeError once JAX has computed anything, before connecting
    jax.distributed.initialize(
      coordinator_address, num_processes, process_id, initialization_timeout=int(timeout)
    )
  except ValueError as error:  # JAX's "... must be defined": nothing detected to fill it in
    raise ValueError(
      f"{error} No cluster (Slurm, Open MPI, Cloud TPU, Kubernetes) was detected: pass "
      "coordinator_address, num_processes and process_id, or set "
      f"{', '.join(ENV[:2])} and {ENV[2]}"
    ) from error
  if local_device_count is not None:  # no backend exists yet: initialize would have raised
    jax.config.update("jax_num_cpu_devices", int(local_device_count))


def _from_env(value: Any, name: str, variable: str, kind: type) -> Any:
  if value is not None or variable not in os.environ:
    return value
  text = os.environ[variable].strip()
  if kind is int:
    try:
      return int(text)
    except ValueError:
      raise ValueError(f"{variable} (for {name}) must be an integer, got {text!r}") from None
  return text


def _check_int(name: str, value: Any, minimum: int, optional: bool = True) -> None:
  if value is None and optional:
    return
  if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
    raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")


# --------------------------------------------------------------------------- layout


def member_mesh(devices: Sequence[jax.Device] | None = None) -> jax.sharding.Mesh:
  """A 1-D ``Auto`` mesh with the ``"members"`` axis over ``devices`` (default: all, on
  every process), grouped by process (in the given order within each) so that each
  process holds a contiguous block of members."""
  devices = list(jax.devices() if devices is None else devices)
  if not devices:
    raise ValueError("devices must not be empty")
  if len(set(devices)) != len(devices):
    raise ValueError("devices must not repeat a device")
  devices.sort(key=lambda d: d.process_index)  # stable: keeps the order within a process
  return jax.sharding.Mesh(np.array(devices), (AXIS,), axis_types=(AxisType.Auto,))


def process_members(members: int, mesh: jax.sharding.Mesh | None = None) -> range:
  """The members this process holds when ``members`` (a multiple of the mesh size) are
  sharded over ``mesh``: ``range(start, stop)``, empty if the mesh has none of its devices.

  Example:
    >>> process_members(16)   # one process: all of them
    range(0, 16)
  """
  members = _checks.integer("members", members)
  mesh = member_mesh() if mesh is None else mesh
  size = _check_members(members, mesh)
  rows = [
    index[0].indices(members)[:2]
    for index in _sharding(mesh).addressable_devices_indices_map((members,)).values()
  ]
  if not rows:
    return range(0, 0)
  start, stop = min(r[0] for r in rows), max(r[1] for r in rows)
  if stop - start != len(rows) * (members // size):  # member_mesh orders devices by process
    raise ValueError("mesh must give each process a contiguous block (use member_mesh)")
  return range(start, stop)


def pad_members(params: Any, multiple: int) -> tuple[Any, int]:
  """Pads the member axis to a multiple of ``multiple`` with copies of member 0.

  Returns:
    ``(padded_params, members)``: the original count, to slice results with.
  """
  multiple = _checks.integer("multiple", multiple)
  members = int(jax.tree.leaves(params)[0].shape[0])
  extra = -members % multiple
  if extra == 0:
    return params, members

  def pad(leaf):
    filler = jnp.broadcast_to(leaf[:1], (extra, *leaf.shape[1:]))
    return jnp.concatenate([leaf, filler], axis=0)

  return jax.tree.map(pad, params), members


def shard_members(params: Any, mesh: jax.sharding.Mesh | None = None) -> Any:
  """Places every leaf's leading (member) axis across ``mesh``; it must divide evenly.

  With several processes, ``params`` is either the same whole ensemble on every
  process (each keeps only its own members) or already global arrays.
  """
  mesh = member_mesh() if mesh is None else mesh
  members = int(jax.tree.leaves(params)[0].shape[0])
  _check_members(members, mesh)
  sharding = _sharding(mesh)
  if _single_process(mesh):
    return jax.device_put(params, sharding)

  def place(leaf):
    if isinstance(leaf, jax.Array) and not leaf.is_fully_addressable:
      return leaf if leaf.sharding == sharding else jax.device_put(leaf, sharding)
    host = np.asarray(leaf)
    return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])

  return jax.tree.map(place, params)


def init_sharded(
  net: Any,
  key: jax.Array,
  members: int,
  *,
  mesh: jax.sharding.Mesh | None = None,
  dtype: Any = jnp.float32,
) -> Any:
  """Samples ``net.init(key, members)`` straight into member-sharded (global) arrays.

  One jitted ``net.init`` with a member-sharded output: XLA partitions it so each
  device samples only its own members (as ``net.init(key, c, first=s)`` would), and
  no device or host ever holds the whole ensemble. The count is rounded up to a
  multiple of the mesh size with members ``M, M+1, …`` of the same ensemble; pass
  ``members=M`` to :func:`sharded` to drop them.

  Args:
    net: the network spec.
    key: a typed key; the same on every process.
    members: the ensemble size M ≥ 1.
    mesh: default :func:`member_mesh` over all devices of all processes.
    dtype: parameter dtype.

  Returns:
    ``net.init``'s pytree with ``ceil(M / D) · D`` members for D devices,
    member-sharded; member ``m`` equals member ``m`` of ``net.init(key, members)``.

  Example:
    >>> import vanish as vn
    >>> net = vn.MLP([4] * 3)
    >>> params = init_sharded(net, jax.random.key(0), members=13)   # 8 devices: 16
    >>> params[0]["w"].shape, len(params[0]["w"].sharding.device_set)
    ((16, 2, 4, 4), 8)
    >>> extra = net.init(jax.random.key(0), members=3, first=13)   # members 13, 14, 15
    >>> bool((params[0]["w"][13:] == extra[0]["w"]).all())
    True
  """
  if not isinstance(net, Network):
    raise TypeError(f"net must be a vanish network (e.g. vn.MLP), got {type(net).__name__}")
  if isinstance(members, bool) or int(members) != members or members < 1:
    raise ValueError(f"members must be an integer >= 1, got {members!r}")
  mesh = member_mesh() if mesh is None else mesh
  size = mesh.shape[AXIS]
  total = -(-int(members) // size) * size
  return _init_global(key, net=net, members=total, dtype=jnp.dtype(dtype), sharding=_sharding(mesh))


@functools.partial(jax.jit, static_argnames=("net", "members", "dtype", "sharding"))
def _init_global(key, *, net, members, dtype, sharding):
  # Every member's draw depends only on (key, m), so XLA partitions the sampler along
  # the member axis: each device computes only the members it keeps.
  return jax.lax.with_sharding_constraint(net.init(key, members, dtype=dtype), sharding)


def sharded(
  chain: Callable[..., Any],
  net: Any,
  params: Any,
  x: Any,
  *args: Any,
  mesh: jax.sharding.Mesh | None = None,
  members: int | None = None,
  gather: bool = True,
  **kwargs: Any,
) -> Any:
  """Runs ``chain(net, params, x, ...)`` (any engine function) with members sharded.

  Args:
    chain: e.g. :func:`vanish.log_gradient_norms` or :func:`vanish.lyapunov_spectrum`.
    net, params, x, *args, **kwargs: passed to ``chain``; ``params`` from
      ``net.init`` (the same on every process) or :func:`init_sharded`.
    mesh: default :func:`member_mesh` over all devices of all processes.
    members: the first members to keep, default all of ``params``.
    gather: return the result of members ``0 … members−1`` on every process (one
      process: the member-sharded result; several: gathered to each). ``False``
      returns the padded, member-sharded (global) result unsliced, rows ≥
      ``members`` being padding: slicing it would gather it.

  Returns:
    ``chain``'s result, ``[members, …]`` per leaf with ``gather``.
  """
  mesh = member_mesh() if mesh is None else mesh
  have = int(jax.tree.leaves(params)[0].shape[0])
  members = have if members is None else members
  if isinstance(members, bool) or int(members) != members or not 1 <= members <= have:
    raise ValueError(
      f"members must be an integer in 1..{have} (the ensemble size), got {members!r}"
    )
  padded, _ = pad_members(params, mesh.shape[AXIS])
  out = chain(net, shard_members(padded, mesh), x, *args, **kwargs)
  if not gather:
    return out
  if not _single_process(mesh):
    out = jax.tree.map(jnp.asarray, multihost_utils.process_allgather(out, tiled=True))
  return jax.tree.map(lambda leaf: leaf[: int(members)], out)


def _sharding(mesh: jax.sharding.Mesh) -> NamedSharding:
  return NamedSharding(mesh, P(AXIS))


def _single_process(mesh: jax.sharding.Mesh) -> bool:
  return all(d.process_index == jax.process_index() for d in mesh.devices.flat)


def _check_members(members: int, mesh: jax.sharding.Mesh) -> int:
  members = _checks.integer("members", members)
  size = mesh.shape[AXIS]
  if members % size:
    raise ValueError(
      f"members ({members}) must be a multiple of the mesh size ({size}); use pad_members first"
    )
  return size


# --------------------------------------------------------------------------- memory


def free_memory(device: jax.Device | None = None) -> int:
  """Bytes free on ``device`` (default: the first): accelerator memory not in use, or on
  a CPU its share of the host's available memory (``MemAvailable`` in ``/proc/meminfo``
  divided by the number of CPU devices, which all draw on it).

  Example:
    >>> free_memory() > 0
    True
  """
  device = jax.devices()[0] if device is None else device
  if device.platform != "cpu":
    stats = device.memory_stats() or {}
    if "bytes_limit" in stats:
      return int(stats["bytes_limit"] - stats.get("bytes_in_use", 0))
  return _host_available() // max(1, len(jax.local_devices(backend="cpu")))


def _host_available() -> int:
  try:
    with open("/proc/meminfo") as handle:
      for line in handle:
        if line.startswith("MemAvailable:"):
          return int(line.split()[1]) * 1024
  except OSError:
    pass
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
