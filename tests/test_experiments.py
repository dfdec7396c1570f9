"""Experiment scripts run end to end at tiny size and leave complete, reusable results."""

import json

import numpy as np

from experiments import probabilistic_model
from vanish import store


def test_probabilistic_model_writes_a_complete_reusable_run(tmp_path, capsys):
  argv = ["--quick", "--depth", "6", "--activations", "sigmoid", "relu", "--out", str(tmp_path)]
  assert probabilistic_model.main(argv) == 0
  assert "wrote" in capsys.readouterr().out
  [run_dir] = (tmp_path / "probabilistic_model").iterdir()
  run = store.load(run_dir)
  record = json.loads((run_dir / "run.json").read_text())
  assert record["metadata"]["precision"] == "highest"
  assert record["metadata"]["versions"]["jax"]
  assert run.config["depth"] == 6 and run.config["activations"] == ["sigmoid", "relu"]
  rows = run.tables["summary"]
  assert len(rows) == 2 * 2 * 6  # activations × chains × depths
  # the CSV and the arrays say the same thing
  p = np.array(
    [float(r["p_vanish"]) for r in rows if r["activation"] == "sigmoid" and r["chain"] == "scalar"]
  )
  np.testing.assert_allclose(p, run.arrays["sigmoid/scalar/p_vanish"])
  assert ((0 <= p) & (p <= 1)).all() and np.all(np.diff(p) >= -0.05)  # vanishing accumulates
  # a rerun with the same config reuses the stored result
  assert probabilistic_model.main(argv) == 0
  assert "reusing" in capsys.readouterr().out
  assert len(list((tmp_path / "probabilistic_model").iterdir())) == 1
