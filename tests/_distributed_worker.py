"""One process of a multi-process run for ``tests/test_distributed.py`` (not a test itself).

Usage: ``python tests/_distributed_worker.py OUT.npz env`` (connect through the
``VANISH_*`` variables) or ``... OUT.npz args COORDINATOR NUM_PROCESSES PROCESS_ID``
(explicit arguments). Each process exposes 2 CPU devices, samples a 13-member
ensemble straight into member-sharded arrays over the devices of all processes,
runs ``log_gradient_norms`` and ``jacobian`` through :func:`vanish.sharding.sharded`
and saves what every process got, plus the rows it held itself, to ``OUT.npz``.
"""

import re
import sys
import time

LOCAL_DEVICES = 2
MEMBERS = 13


def main(argv: list[str]) -> int:
  start = time.perf_counter()
  out, mode, *rest = argv
  import jax

  import vanish as vn

  if mode == "env":
    vn.sharding.initialize(local_device_count=LOCAL_DEVICES, timeout=60)
  else:
    try:  # nothing configured and no cluster: a clear error, and nothing changed
      vn.sharding.initialize(local_device_count=LOCAL_DEVICES)
      raise AssertionError("initialize() without a configuration or a cluster was accepted")
    except ValueError as error:
      assert "No cluster" in str(error) and "VANISH_COORDINATOR" in str(error), error
    coordinator, processes, process = rest
    vn.sharding.initialize(
      coordinator, int(processes), int(process), local_device_count=LOCAL_DEVICES, timeout=60
    )
  vn.sharding.initialize()  # idempotent
  try:
    vn.sharding.initialize(process_id=jax.process_index() + 1)
    raise AssertionError("a second initialize with another process_id was accepted")
  except RuntimeError as error:
    assert "already initialized" in str(error), error
  jax.config.update("jax_numpy_rank_promotion", "raise")  # as tests/conftest.py
  jax.config.update("jax_numpy_dtype_promotion", "standard")

  import numpy as np
  from jax.experimental import multihost_utils

  # one segment, zero biases: the cheapest sampler to compile
  net = vn.MLP([6] * 5, "tanh", vn.init.gaussian(1.5))
  x = np.random.default_rng(1).standard_normal((3, 6)).astype(np.float32)
  mesh = vn.sharding.member_mesh()
  assert mesh.shape["members"] == jax.device_count() == LOCAL_DEVICES * jax.process_count()

  # Sampled in place: this process computes and holds only its own members.
  params = vn.sharding.init_sharded(net, jax.random.key(0), MEMBERS)
  mesh_sharding = params[0]["w"].sharding
  padded = params[0]["w"].shape[0]
  rows = vn.sharding.process_members(padded)
  held = sum(s.data.shape[0] for s in params[0]["w"].addressable_shards)
  assert held == len(rows) == padded // jax.process_count(), (held, rows, padded)
  # ... and computes only its own: every array of the compiled (per-device) sampler has
  # padded / devices members (the call above compiled it; this only reads the cache)
  sampler = vn.sharding._init_global.lower(
    jax.random.key(0), net=net, members=padded, dtype=np.dtype("float32"), sharding=mesh_sharding
  )
  sampler_shapes = sorted(set(re.findall(r"f32\[([\d,]+)\]", sampler.compile().as_text())))

  log_g = vn.sharding.sharded(vn.log_gradient_norms, net, params, x, members=MEMBERS)
  local = vn.sharding.sharded(vn.log_gradient_norms, net, params, x, gather=False)
  assert not local.is_fully_addressable
  mine = np.concatenate(
    [np.asarray(s.data) for s in sorted(local.addressable_shards, key=lambda s: s.index[0].start)]
  )
  # The whole ensemble gathered to every process, then sharded again from host copies
  # (padded with copies of member 0, as on one process).
  whole = multihost_utils.process_allgather(params, tiled=True)
  first = jax.tree.map(lambda leaf: leaf[:MEMBERS], whole)
  jac = vn.sharding.sharded(vn.jacobian, net, first, x)

  np.savez(
    out,
    log_g=np.asarray(log_g),
    jacobian=np.asarray(jac),
    mine=mine,
    rows=np.array([rows.start, rows.stop]),
    padded=padded,
    sampler_shapes=np.array(sampler_shapes),
    processes=jax.process_count(),
    devices=jax.device_count(),
    seconds=time.perf_counter() - start,
    **{f"params_{i}": np.asarray(leaf) for i, leaf in enumerate(jax.tree.leaves(whole))},
  )
  return 0


if __name__ == "__main__":
  sys.exit(main(sys.argv[1:]))
