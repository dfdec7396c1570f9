"""The results store: atomic run folders, reuse by config hash, and resume after a killed run.

A run is computed in chunks; every finished chunk is on disk before the next starts, so a
process killed with SIGKILL in the middle of chunk k leaves chunks 0..k−1 for the rerun,
which computes only the rest and assembles a run identical to an uninterrupted one.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from vanish import store

ROOT = Path(__file__).resolve().parents[1]


def _chunk(k):
  return {"arrays": {f"a{k}": np.full(3, float(k))}, "rows": [{"k": k, "square": k * k}]}


def test_compute_assembles_chunks_into_one_run_that_opens_without_vanish(tmp_path):
  outcome = store.compute(tmp_path, "exp", {"n": 3}, _chunk, chunks=[1, 2, 3], table="t")
  assert (outcome.computed, outcome.reused) == (3, 0)
  assert sorted(p.name for p in outcome.path.iterdir()) == ["arrays.npz", "run.json", "t.csv"]
  with np.load(outcome.path / "arrays.npz") as data:
    assert sorted(data.files) == ["a1", "a2", "a3"] and data["a2"].tolist() == [2.0] * 3
  assert (outcome.path / "t.csv").read_text().splitlines() == ["k,square", "1,1", "2,4", "3,9"]
  record = json.loads((outcome.path / "run.json").read_text())
  assert record["metadata"]["config"] == {"n": 3} and record["metadata"]["precision"] == "highest"
  assert record["wall_time_s"] >= 0
  assert [p.name for p in (tmp_path / "exp").iterdir()] == [outcome.path.name]  # no partials


def test_a_failed_run_resumes_from_its_last_finished_chunk(tmp_path):
  calls = []

  def flaky(k):
    calls.append(k)
    if k == 3 and calls.count(3) == 1:
      raise RuntimeError("interrupted")
    return _chunk(k)

  with pytest.raises(RuntimeError, match="interrupted"):
    store.compute(tmp_path, "exp", {"n": 4}, flaky, chunks=[1, 2, 3, 4])
  assert store.find(tmp_path, "exp", {"n": 4}) is None  # nothing half-written is visible
  outcome = store.compute(tmp_path, "exp", {"n": 4}, flaky, chunks=[1, 2, 3, 4])
  assert calls == [1, 2, 3, 3, 4] and (outcome.computed, outcome.reused) == (2, 2)
  again = store.compute(tmp_path, "exp", {"n": 4}, flaky, chunks=[1, 2, 3, 4])
  assert (again.computed, again.reused) == (0, 4) and calls == [1, 2, 3, 3, 4]
  forced = store.compute(tmp_path, "exp", {"n": 4}, flaky, chunks=[1, 2, 3, 4], force=True)
  assert forced.computed == 4 and calls[-4:] == [1, 2, 3, 4]


def _nonfinite_chunk(k):
  # NaN and inf (an estimate with no data, an infinite absorption time) and a float32 scalar:
  # what experiments/markov.py's rows hold. Its F7 failed on a resumed --full run on the H100
  # (session 10) because saved chunks had turned NaN into null, read back as an empty cell.
  row = {"k": k, "q": np.float64(np.nan), "t": np.inf, "lo": -np.inf, "p": np.float32(0.1) * k}
  return {"arrays": {f"a{k}": np.full(2, float(k))}, "rows": [row]}


def _interrupt_nonfinite_run_at_chunk_2(root):
  """Runs chunks [1, 2] of _nonfinite_chunk into ``root``; chunk 2 fails, chunk 1 is saved."""

  def fails_at_2(k):
    if k == 2:
      raise RuntimeError("interrupted")
    return _nonfinite_chunk(k)

  with pytest.raises(RuntimeError, match="interrupted"):
    store.compute(root, "exp", {}, fails_at_2, chunks=[1, 2], table="t")


def test_a_resumed_runs_tables_equal_an_uninterrupted_runs_with_nan_inf_and_float32(tmp_path):
  _interrupt_nonfinite_run_at_chunk_2(tmp_path / "resumed")
  resumed = store.compute(
    tmp_path / "resumed", "exp", {}, _nonfinite_chunk, chunks=[1, 2], table="t"
  )
  assert (resumed.computed, resumed.reused) == (1, 1)
  whole = store.compute(tmp_path / "whole", "exp", {}, _nonfinite_chunk, chunks=[1, 2], table="t")
  text = (resumed.path / "t.csv").read_text()
  assert text == (whole.path / "t.csv").read_text()
  rows = store.load(resumed.path).tables["t"]
  assert [float(r["q"]) for r in rows] != [float(r["q"]) for r in rows]  # NaN, not ""
  assert [(float(r["t"]), float(r["lo"])) for r in rows] == [(np.inf, -np.inf)] * 2
  assert float(rows[0]["p"]) == float(np.float32(0.1))  # the float32 value, exactly


def test_chunks_saved_in_the_older_format_are_recomputed(tmp_path):
  _interrupt_nonfinite_run_at_chunk_2(tmp_path)
  (saved,) = (tmp_path / "exp").glob(".partial-*/0.json")
  record = json.loads(saved.read_text())
  assert record["format"] == 2 and math.isnan(record["rows"][0]["q"])
  del record["format"]  # as written before session 10 (NaN turned into null)
  record["rows"][0]["q"] = None
  saved.write_text(json.dumps(record))
  outcome = store.compute(tmp_path, "exp", {}, _nonfinite_chunk, chunks=[1, 2], table="t")
  assert (outcome.computed, outcome.reused) == (2, 0)
  assert [r["q"] for r in store.load(outcome.path).tables["t"]] == ["nan", "nan"]


def test_a_saved_chunk_of_a_different_chunk_list_is_not_reused(tmp_path):
  def fails_at_2(k):
    if k == 2:
      raise RuntimeError("interrupted")
    return _chunk(k)

  with pytest.raises(RuntimeError):
    store.compute(tmp_path, "exp", {"n": 2}, fails_at_2, chunks=[1, 2])
  outcome = store.compute(tmp_path, "exp", {"n": 2}, _chunk, chunks=[5, 6])  # same config hash
  assert outcome.computed == 2
  assert sorted(store.load(outcome.path).arrays) == ["a5", "a6"]


def test_duplicate_array_names_across_chunks_are_an_error(tmp_path):
  with pytest.raises(ValueError, match="same array names"):
    store.compute(tmp_path, "exp", {}, lambda k: {"arrays": {"x": np.zeros(1)}}, chunks=[1, 2])
  with pytest.raises(ValueError, match="at least one chunk"):
    store.compute(tmp_path, "exp", {}, _chunk, chunks=[])


KILLED_RUN = textwrap.dedent(
  """
  import os, signal, sys, time
  import numpy as np
  from vanish import store

  root, marker = sys.argv[1], sys.argv[2]

  def chunk(k):
    with open(marker, "a") as f:
      f.write(f"{k}\\n")
    if k == 2 and os.environ.get("KILL_AT_2"):
      os.kill(os.getpid(), signal.SIGKILL)  # no cleanup, no exception handlers
    return {"arrays": {f"a{k}": np.arange(4.0) * k}, "rows": [{"k": k}]}

  outcome = store.compute(root, "killed", {"n": 4}, chunk, chunks=[0, 1, 2, 3])
  print(outcome.computed, outcome.reused)
  """
)


def test_a_sigkilled_run_resumes_and_equals_an_uninterrupted_one(tmp_path):
  script = tmp_path / "run.py"
  script.write_text(KILLED_RUN)
  marker = tmp_path / "calls.txt"
  env = {**os.environ, "JAX_PLATFORMS": "cpu", "VANISH_PROGRESS": "0", "KILL_AT_2": "1"}
  killed = subprocess.run(
    [sys.executable, str(script), str(tmp_path / "s"), str(marker)], env=env, cwd=ROOT
  )
  assert killed.returncode == -signal.SIGKILL
  assert store.find(tmp_path / "s", "killed", {"n": 4}) is None
  del env["KILL_AT_2"]
  resumed = subprocess.run(
    [sys.executable, str(script), str(tmp_path / "s"), str(marker)],
    env=env,
    cwd=ROOT,
    capture_output=True,
    text=True,
    check=True,
  )
  assert resumed.stdout.split() == ["2", "2"]  # chunks 2 and 3 computed, 0 and 1 reused
  assert marker.read_text().split() == ["0", "1", "2", "2", "3"]
  run = store.load(store.find(tmp_path / "s", "killed", {"n": 4}))
  reference = store.compute(tmp_path / "ref", "killed", {"n": 4}, _arange_chunk, chunks=range(4))
  expected = store.load(reference.path)
  assert run.arrays.keys() == expected.arrays.keys()
  for name in run.arrays:
    np.testing.assert_array_equal(run.arrays[name], expected.arrays[name])
  assert run.tables == expected.tables
  assert [p.name for p in (tmp_path / "s" / "killed").iterdir()] == [run.path.name]


def _arange_chunk(k):
  return {"arrays": {f"a{k}": np.arange(4.0) * k}, "rows": [{"k": k}]}


def test_a_full_disk_leaves_no_partial_file_and_the_rerun_resumes(tmp_path, monkeypatch):
  """ENOSPC while writing chunk 2: no torn chunk or run is visible; the rerun resumes at 2."""
  import errno

  real_savez = np.savez
  failures = {"left": 1}

  def savez_on_a_full_disk(file, **arrays):
    if "a2" in arrays and failures["left"]:
      failures["left"] -= 1
      file.write(b"PK\x03\x04 half a zip")  # some bytes reach the disk, then it is full
      raise OSError(errno.ENOSPC, "No space left on device")
    return real_savez(file, **arrays)

  monkeypatch.setattr(np, "savez", savez_on_a_full_disk)
  with pytest.raises(OSError, match="No space left") as raised:
    store.compute(tmp_path, "exp", {"n": 3}, _chunk, chunks=[1, 2, 3])
  partial = next((tmp_path / "exp").glob(".partial-*"))
  assert raised.value.errno == errno.ENOSPC and raised.value.filename == str(partial / "1.npz")
  assert sorted(p.name for p in partial.iterdir()) == ["0.json", "0.npz"]  # no temp, no torn 1.*
  assert store.find(tmp_path, "exp", {"n": 3}) is None
  calls = []
  outcome = store.compute(
    tmp_path, "exp", {"n": 3}, lambda k: calls.append(k) or _chunk(k), chunks=[1, 2, 3]
  )
  assert calls == [2, 3] and (outcome.computed, outcome.reused) == (2, 1)
  assert store.load(outcome.path).arrays["a2"].tolist() == [2.0] * 3


def test_a_run_made_by_other_code_is_recomputed_not_reused(tmp_path):
  calls = []

  def counted(k):
    calls.append(k)
    return _chunk(k)

  first = store.compute(tmp_path, "exp", {"n": 2}, counted, chunks=[1, 2], code="aaaa")
  same = store.compute(tmp_path, "exp", {"n": 2}, counted, chunks=[1, 2], code="aaaa")
  assert (same.computed, same.reused, calls) == (0, 2, [1, 2])
  assert store.find(tmp_path, "exp", {"n": 2}, code="bbbb") is None
  upgraded = store.compute(tmp_path, "exp", {"n": 2}, counted, chunks=[1, 2], code="bbbb")
  assert upgraded.path == first.path and upgraded.computed == 2 and calls == [1, 2, 1, 2]
  assert json.loads((upgraded.path / "run.json").read_text())["code"] == "bbbb"
  assert [p.name for p in (tmp_path / "exp").iterdir()] == [first.path.name]  # old one gone


def test_saved_chunks_of_other_code_are_not_resumed(tmp_path):
  def fails_at_2(k):
    if k == 2:
      raise RuntimeError("interrupted")
    return _chunk(k)

  with pytest.raises(RuntimeError):
    store.compute(tmp_path, "exp", {"n": 2}, fails_at_2, chunks=[1, 2], code="old")
  outcome = store.compute(tmp_path, "exp", {"n": 2}, _chunk, chunks=[1, 2], code="new")
  assert (outcome.computed, outcome.reused) == (2, 0)


def test_a_folder_without_its_arrays_is_not_a_finished_run(tmp_path):
  path = store.compute(tmp_path, "exp", {"n": 1}, _chunk, chunks=[1]).path
  (path / "arrays.npz").unlink()
  assert store.find(tmp_path, "exp", {"n": 1}) is None
  assert store.compute(tmp_path, "exp", {"n": 1}, _chunk, chunks=[1]).computed == 1


def test_stored_files_follow_the_umask_not_owner_only(tmp_path):
  old = os.umask(0o022)
  try:
    calls = []

    def fails_at_2(k):
      calls.append(k)
      if k == 2 and calls.count(2) == 1:
        raise RuntimeError("interrupted")
      return _chunk(k)

    with pytest.raises(RuntimeError):
      store.compute(tmp_path, "exp", {"n": 2}, fails_at_2, chunks=[1, 2])
    partial = next((tmp_path / "exp").glob(".partial-*"))
    chunk_modes = {p.name: p.stat().st_mode & 0o777 for p in partial.iterdir()}
    path = store.compute(tmp_path, "exp", {"n": 2}, fails_at_2, chunks=[1, 2]).path
  finally:
    os.umask(old)
  assert chunk_modes == {"0.json": 0o644, "0.npz": 0o644}
  assert path.stat().st_mode & 0o777 == 0o755
  assert {p.name: p.stat().st_mode & 0o777 for p in path.iterdir()} == {
    "arrays.npz": 0o644,
    "rows.csv": 0o644,
    "run.json": 0o644,
  }


def test_force_recomputes_a_shared_run_once_per_process(tmp_path, monkeypatch):
  from experiments import _common

  monkeypatch.setattr(_common, "_FORCED", set())
  calls = []

  def compute():
    calls.append(1)
    return _chunk(7)

  for _ in range(3):  # three figures asking for the same run under --force
    _common.cached_run(tmp_path, "shared", {"n": 1}, compute, table="rows", force=True)
  assert len(calls) == 1
  run = store.load(store.find(tmp_path, "shared", {"n": 1}))
  assert json.loads((run.path / "run.json").read_text())["code"] == _common.code_fingerprint(
    "shared", compute
  )


def test_progress_after_a_resume_estimates_from_this_runs_items_only():
  import io

  from vanish.progress import Progress

  stream = io.StringIO()
  with Progress("chunks", total=4, stream=stream, initial=3) as bar:
    first = stream.getvalue()
    bar.update()
  assert "3/4" in first and "left" not in first  # no rate yet: nothing computed in this run
  with pytest.raises(ValueError, match="initial"):
    Progress("chunks", total=2, initial=3)


@pytest.mark.parametrize("torn", [b"", b"PK\x03\x04 half a zip"])
def test_a_torn_chunk_file_is_recomputed_not_fatal(tmp_path, torn):
  def fails_at_2(k):
    if k == 2:
      raise RuntimeError("interrupted")
    return _chunk(k)

  with pytest.raises(RuntimeError):
    store.compute(tmp_path, "exp", {"n": 2}, fails_at_2, chunks=[1, 2])
  partial = next((tmp_path / "exp").glob(".partial-*"))
  (partial / "0.npz").write_bytes(torn)  # e.g. a disk that lost the file's blocks
  outcome = store.compute(tmp_path, "exp", {"n": 2}, _chunk, chunks=[1, 2])
  assert (outcome.computed, outcome.reused) == (2, 0)
  assert store.load(outcome.path).arrays["a1"].tolist() == [1.0] * 3
