"""The learning-speeds experiment runs end to end at tiny size; its run is complete and reused."""

import numpy as np

from experiments import learning_speeds
from vanish import store


def test_learning_speeds_writes_a_complete_reusable_run(tmp_path, capsys):
  argv = [
    "--quick",
    "--hidden",
    "3",
    "--activations",
    "sigmoid",
    "relu",
    "--epochs",
    "1",
    "--members",
    "3",
    "--train-size",
    "200",
    "--out",
    str(tmp_path),
  ]
  assert learning_speeds.main(argv) == 0
  out = capsys.readouterr().out
  assert "wrote" in out and "Nielsen (MNIST) sigmoid, 3 hidden" in out
  [run_dir] = (tmp_path / "learning_speeds").iterdir()
  run = store.load(run_dir)
  assert run.config["hidden"] == [3] and run.config["learning_rate"] == 0.1
  rows = run.tables["speeds"]
  assert len(rows) == 2 * 2  # activations × (initialization + 1 epoch)

  speeds = run.arrays["sigmoid/hidden3/eval_bias_speed"]  # [members, 1 + epochs, layers]
  assert speeds.shape == (3, 2, 4) and run.arrays["sigmoid/hidden3/bias_speed"].shape == (3, 1, 4)
  at_init = next(r for r in rows if r["activation"] == "sigmoid" and r["epoch"] == "0")
  np.testing.assert_allclose(
    [float(at_init[f"speed_h{l}"]) for l in (1, 2, 3)], speeds[:, 0, :3].mean(axis=0), rtol=1e-6
  )
  # Nielsen's finding: in a sigmoid net the first hidden layer learns several times slower
  ratio = float(at_init["ratio_first_last"])
  expected = np.exp(np.log(speeds[:, 0, 0] / speeds[:, 0, 2]).mean())
  np.testing.assert_allclose(ratio, expected, rtol=1e-5)
  assert ratio < 0.2
  # a rerun with the same config reuses the stored result
  assert learning_speeds.main(argv) == 0
  assert "reusing" in capsys.readouterr().out
