"""The phase-map experiment runs end to end at tiny size and leaves a complete, reusable run."""

import json

import numpy as np

from experiments import phase_map as experiment
from vanish import store

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
