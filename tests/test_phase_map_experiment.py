"""The phase-map experiment runs end to end at tiny size and leaves a complete, reusable run,
computed block of σ_b² rows by block: a killed run resumes, and the blocking changes nothing."""

import json

import numpy as np
import pytest

from experiments import _common
from experiments import phase_map as experiment
from vanish import store


@pytest.fixture(autouse=True)
def fixed_code(monkeypatch):
  """Pins the code fingerprint: other edits to the checkout during a test must not force a
  recompute (the fingerprint itself is tested in tests/test_store.py)."""
  monkeypatch.setattr(_common, "code_fingerprint", lambda *args: "test-code")


TINY = [
  "--quick",
  "--width",
  "16",
  "--depth",
  "8",
  "--members",
  "8",
  "--sigma-w2-points",
  "6",
  "--sigma-b2-points",
  "3",
  "--sigma-w2-max",
  "12",
  "--epsilon",
  "0.1",
]


def test_phase_map_experiment_writes_a_complete_reusable_run(tmp_path, capsys):
  argv = [*TINY, "--out", str(tmp_path)]
  assert experiment.main(argv) == 0
  out = capsys.readouterr().out
  assert "wrote" in out and "minus mean-field boundary" in out and "critical line" in out
  [run_dir] = (tmp_path / "phase_map").iterdir()
  run = store.load(run_dir)
  record = json.loads((run_dir / "run.json").read_text())
  assert record["metadata"]["precision"] == "highest"
  assert run.config["width"] == 16 and run.config["activation"] == "tanh"
  a = run.arrays
  np.testing.assert_allclose(a["sigma_w2"], [2, 4, 6, 8, 10, 12])
  np.testing.assert_allclose(a["sigma_b2"], [0, 0.55, 1.1])
  for name in ("p_vanish", "p_stable", "p_explode", "mean_log_growth", "std_log_growth"):
    assert a[f"map/{name}"].shape == (3, 6)
  assert a["map/p_vanish_ci"].shape == (3, 6, 2)
  np.testing.assert_allclose(a["map/p_vanish"] + a["map/p_stable"] + a["map/p_explode"], 1)
  # the CSV has one row per σ_b² and says what the arrays say
  rows = run.tables["boundaries"]
  assert [float(r["sigma_b2"]) for r in rows] == a["sigma_b2"].tolist()
  for key in ("vanish", "explode"):
    csv = np.array([float(r[f"empirical_{key}"]) for r in rows])
    np.testing.assert_allclose(csv, a[f"empirical/{key}"])
    theory = np.array([float(r[f"mean_field_{key}"]) for r in rows])
    np.testing.assert_allclose(theory, a[f"mean_field/{key}"])
    diff = np.array([float(r[f"{key}_diff_sigma_w2"]) for r in rows])
    np.testing.assert_allclose(diff, a[f"empirical/{key}"] - a[f"mean_field/{key}"])
  # σ_b² = 0: χ₁ = σ_w² below 1, so the vanishing boundary is exactly ε^{2/(L−1)}
  np.testing.assert_allclose(a["mean_field/vanish"][0], 0.1 ** (2 / 7), rtol=1e-8)
  np.testing.assert_allclose(a["mean_field/critical"][0], 1.0)
  # a rerun with the same config reuses the stored result
  assert experiment.main(argv) == 0
  assert "reusing" in capsys.readouterr().out
  assert len(list((tmp_path / "phase_map").iterdir())) == 1


def test_row_blocks_are_equal_and_cover_the_grid():
  assert experiment.row_blocks(200, 10) == [[i, i + 10] for i in range(0, 200, 10)]
  assert experiment.row_blocks(12, 5) == [[0, 4], [4, 8], [8, 12]]  # a divisor: equal shapes
  assert experiment.row_blocks(3, 8) == [[0, 3]]
  args = experiment.parse_args(["--quick"])
  assert args.rows_per_chunk == 4 and experiment.compute_batch(args) == 4 * 24
  args = experiment.parse_args(["--quick", "--rows-per-chunk", "3", "--chunk-size", "50"])
  assert experiment.compute_batch(args) == 36  # 72 cells in two even batches


def test_a_killed_run_resumes_and_equals_a_one_chunk_run(tmp_path, monkeypatch, capsys):
  """Three one-row chunks, killed after the first, then resumed, give bitwise the arrays and
  CSV of a single three-row chunk (same vmapped batch: the cells' draws never depend on the
  chunk they are in)."""
  common = [*TINY, "--theory-stride", "3", "--chunk-size", "6"]
  calls = []
  run_block = experiment.run_block

  def dies_after_one_block(args, block):
    if calls:
      raise KeyboardInterrupt  # as if killed during the second block
    calls.append(block)
    return run_block(args, block)

  monkeypatch.setattr(experiment, "run_block", dies_after_one_block)
  chunked = [*common, "--rows-per-chunk", "1", "--out", str(tmp_path / "chunked")]
  with pytest.raises(KeyboardInterrupt):
    experiment.main(chunked)
  assert calls == [[0, 1]]
  assert not list((tmp_path / "chunked" / "phase_map").glob("[!.]*"))  # no finished run

  def counted(args, block):
    calls.append(block)
    return run_block(args, block)

  monkeypatch.setattr(experiment, "run_block", counted)
  assert experiment.main(chunked) == 0
  assert calls == [[0, 1], [1, 2], [2, 3]]  # the first block was reused, not recomputed
  assert "resumed: 1 chunk(s) reused" in capsys.readouterr().out
  [resumed] = (tmp_path / "chunked" / "phase_map").iterdir()  # no partial folder left

  assert experiment.main([*common, "--rows-per-chunk", "3", "--out", str(tmp_path / "one")]) == 0
  assert calls[3:] == [[0, 3]]
  [whole] = (tmp_path / "one" / "phase_map").iterdir()
  assert resumed.name == whole.name  # the same config
  a, b = store.load(resumed), store.load(whole)
  timings = {"map_seconds", "theory_seconds"}
  assert a.arrays.keys() == b.arrays.keys() and "map/mean_log_growth" in a.arrays
  for name in a.arrays.keys() - timings:
    np.testing.assert_array_equal(a.arrays[name], b.arrays[name], err_msg=name)
  assert a.tables == b.tables and len(a.tables["boundaries"]) == 3
  assert np.isfinite(a.arrays["mean_field/critical"]).tolist() == [True, False, False]
