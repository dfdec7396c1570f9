"""Ensembles sharded over processes with ``jax.distributed`` equal one-process results.

Two real Python processes (``tests/_distributed_worker.py``) with 2 CPU devices each
connect through a coordinator on a free localhost port (one from the ``VANISH_*``
variables, one from explicit arguments), sample 13 members over the 4 devices of
both and compute ``log_gradient_norms`` and ``jacobian``; this test process computes
the same unsharded and compares (to 1e-6; the sampled parameters bitwise).
"""

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import pytest

import vanish as vn

WORKER = Path(__file__).with_name("_distributed_worker.py")
PROCESSES = 2
MEMBERS = 13
TIMEOUT = 180  # seconds for the whole run: a hang fails instead of blocking CI


def _free_port() -> int:
  with socket.socket() as probe:
    probe.bind(("localhost", 0))
    return probe.getsockname()[1]


def _launch(tmp_path: Path) -> list[subprocess.Popen]:
  coordinator = f"localhost:{_free_port()}"
  dropped = ("VANISH_", "JAX_NUM_CPU", "JAX_COORDINATOR", "SLURM_", "OMPI_")  # no cluster here
  env = {k: v for k, v in os.environ.items() if not k.startswith(dropped)}
  env.update(JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="2")
  root = str(Path(__file__).parents[1])
  env["PYTHONPATH"] = os.pathsep.join([root, *filter(None, [env.get("PYTHONPATH")])])
  procs = []
  for i in range(PROCESSES):
    out = str(tmp_path / f"{i}.npz")
    if i == 0:  # from the environment
      args = [out, "env"]
      extra = dict(
        VANISH_COORDINATOR=coordinator,
        VANISH_NUM_PROCESSES=str(PROCESSES),
        VANISH_PROCESS_ID=str(i),
      )
    else:  # from arguments
      args, extra = [out, "args", coordinator, str(PROCESSES), str(i)], {}
    with open(tmp_path / f"{i}.log", "w") as log:
      procs.append(
        subprocess.Popen(
          [sys.executable, str(WORKER), *args],
          env={**env, **extra},
          cwd=root,
          stdout=log,
          stderr=subprocess.STDOUT,
        )
      )
  return procs


def _wait(procs: list[subprocess.Popen], tmp_path: Path) -> None:
  """Waits for all workers; the first failure or the timeout ends them all (the others
  would wait for it in a collective)."""
  deadline = time.monotonic() + TIMEOUT
  while None in (codes := [p.poll() for p in procs]):
    if any(codes) or time.monotonic() > deadline:
      for proc in procs:
        if proc.poll() is None:
          proc.kill()
          proc.wait()
      break
    time.sleep(0.05)
  failed = [i for i, p in enumerate(procs) if p.returncode]
  if failed:
    timed_out = time.monotonic() > deadline
    logs = "\n".join(
      f"--- worker {i} (exit {procs[i].returncode}):\n{(tmp_path / f'{i}.log').read_text()[-3000:]}"
      for i in failed
    )
    what = f"timed out after {TIMEOUT} s" if timed_out else "failed"
    pytest.fail(f"distributed workers {what}:\n{logs}")


def test_two_processes_equal_one_process(tmp_path):
  procs = _launch(tmp_path)
  try:  # the reference, computed while the workers run
    net = vn.MLP([6] * 5, "tanh", vn.init.gaussian(1.5))
    params = net.init(jax.random.key(0), members=MEMBERS)
    x = np.random.default_rng(1).standard_normal((3, 6)).astype(np.float32)
    log_g = np.asarray(vn.log_gradient_norms(net, params, x))
    jac = np.asarray(vn.jacobian(net, params, x))
  finally:
    _wait(procs, tmp_path)
  padded = -(-MEMBERS // (2 * PROCESSES)) * 2 * PROCESSES  # 16 over 4 devices
  block = padded // PROCESSES
  for i in range(PROCESSES):
    got = dict(np.load(tmp_path / f"{i}.npz"))
    assert (got["processes"], got["devices"], got["padded"]) == (PROCESSES, 2 * PROCESSES, padded)
    for j, leaf in enumerate(jax.tree.leaves(params)):  # sampled in place, bitwise
      np.testing.assert_array_equal(got[f"params_{j}"][:MEMBERS], np.asarray(leaf))
    assert got["log_g"].shape == (MEMBERS, 3, 4) and got["jacobian"].shape == (MEMBERS, 3, 6, 6)
    np.testing.assert_allclose(got["log_g"], log_g, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(got["jacobian"], jac, rtol=1e-6, atol=1e-6)
    # init_sharded: each device sampled only its own members (its compiled program's arrays)
    leading = {int(shape.split(",")[0]) for shape in got["sampler_shapes"]}
    assert leading == {padded // (2 * PROCESSES)}, got["sampler_shapes"]
    # gather=False: each process held only its own contiguous block of members
    np.testing.assert_array_equal(got["rows"], [i * block, (i + 1) * block])
    mine = got["mine"][: max(0, MEMBERS - i * block)]  # rows >= MEMBERS: no reference here
    np.testing.assert_allclose(mine, log_g[i * block : i * block + len(mine)], rtol=1e-6, atol=1e-6)


def test_initialize_rejects_bad_values_before_connecting(monkeypatch):
  initialize = vn.sharding.initialize
  with pytest.raises(ValueError, match="coordinator_address must be 'host:port'"):
    initialize("localhost:99999", 2, 0)
  with pytest.raises(ValueError, match="num_processes must be an integer >= 1"):
    initialize("localhost:1234", 0, 0)
  with pytest.raises(ValueError, match="process_id must be in 0..num_processes-1 = 0..1"):
    initialize("localhost:1234", 2, 2)
  with pytest.raises(ValueError, match="local_device_count must be an integer >= 1"):
    initialize("localhost:1234", 2, 0, local_device_count=0)
  monkeypatch.setenv("VANISH_NUM_PROCESSES", "two")
  with pytest.raises(ValueError, match="VANISH_NUM_PROCESSES .for num_processes. must be an int"):
    initialize()
  assert not jax.distributed.is_initialized()
  monkeypatch.delenv("VANISH_NUM_PROCESSES")
  assert jax.device_count() == 8  # JAX is in use in this process: too late to connect
  with pytest.raises(RuntimeError, match="must be called before any JAX"):
    initialize("localhost:1234", 1, 0, local_device_count=2)
  assert not jax.distributed.is_initialized() and jax.device_count() == 8
