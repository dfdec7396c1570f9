"""Every paper figure draws in quick mode from data in the results store (issue 5).

One ``vanish reproduce --quick`` draws all figures whose script exists (the same run as the
README's first command); each must then be a non-empty PDF and PNG, in the page and the
column layout, whose metadata names the store folder its data came from and whose text
collides nowhere, and a second run must reuse the store instead of recomputing. A figure
without a script must be reported as missing.

The store is a fresh temporary folder, unless ``VANISH_TEST_STORE`` names the store of a
``vanish reproduce --quick`` that has just run (CI runs the README's first command before
the tests and points here to its store, so the experiments are not computed twice; every
figure is still drawn again from that store).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import matplotlib.image
import pytest

from paper_figs import _style
from vanish import cli, store

ROOT = Path(__file__).resolve().parents[1]
READY = [name for name, figure in cli.figures().items() if figure.module]
COLUMN_WIDEST = 3.5  # inches: a column (3.4 in) and the tight bounding box's slack
TALLEST = 7.0  # inches: a figure, either layout, leaves room on its page for the caption


@pytest.fixture(scope="module")
def reproduced(tmp_path_factory):
  """The summary of one quick reproduction of every figure into a fresh store."""
  root = tmp_path_factory.mktemp("reproduce")
  store_root = os.environ.get("VANISH_TEST_STORE") or str(root / "store")
  status = cli.main(["reproduce", "--quick", "--store", store_root, "--out", str(root / "figs")])
  summary = json.loads((root / "figs" / "reproduce_summary.json").read_text())
  summary["status"] = status
  return {figure["figure"]: figure for figure in summary["figures"]} | {"_summary": summary}


@pytest.mark.parametrize("name", list(cli.figures()))
def test_each_figure_is_drawn_from_the_store_or_reported_missing(reproduced, name):
  record = reproduced[name]
  if name not in READY:
    assert record["status"] == "missing" and not record.get("files")
    return
  assert record["status"] == "drawn", record.get("reason")
  files = [Path(f) for f in record["files"]]
  stem = files[0].stem
  assert [f.name for f in files] == [
    f"{stem}.pdf",
    f"{stem}.png",
    f"{stem}_column.pdf",
    f"{stem}_column.png",
  ]
  assert all(f.name.startswith(f"{name}_") and f.stat().st_size > 5_000 for f in files)
  for png, widest in ((files[1], _style.PAGE), (files[3], COLUMN_WIDEST)):
    height, width = matplotlib.image.imread(png).shape[:2]
    assert width >= 600 and height >= 300  # 300 dpi
    assert width <= round(300 * widest), png.name  # no wider than its page or column
    assert height <= 300 * TALLEST, png.name
  # readable: no tick label, axis label, title or legend runs into another or another panel
  assert record["layout_warnings"] == []
  assert record["experiments"], "a figure must read its data from the store"
  for run in record["experiments"]:
    loaded = store.load(run["path"])  # a complete run folder: arrays, tables, config
    assert loaded.arrays and loaded.config["size"] == "quick"
  pdf = next(f for f in files if f.suffix == ".pdf").read_bytes()
  sources = [Path(run["path"]).name.encode() for run in record["experiments"]]
  assert any(source in pdf for source in sources)  # the data's store folder is in the metadata


def test_reproduce_exit_status_and_reuse(reproduced, tmp_path):
  summary = reproduced["_summary"]
  missing = [name for name in cli.figures() if name not in READY]
  assert summary["status"] == (2 if missing else 0)
  assert READY, "every figure F1–F13 has a script"
  first = READY[0]
  store_root = summary["store"]
  again = cli.main(["reproduce", "--only", first, "--store", store_root, "--out", str(tmp_path)])
  assert again == 0
  record = json.loads((tmp_path / "reproduce_summary.json").read_text())["figures"][0]
  assert record["status"] == "drawn"
  assert all(run["computed_chunks"] == 0 for run in record["experiments"])  # reused


def _fake_run(root: Path, name: str, metadata: dict) -> str:
  folder = root / "store" / name / "0123456789ab"
  folder.mkdir(parents=True)
  (folder / "run.json").write_text(json.dumps({"metadata": metadata}))
  return str(folder)


def _fake_summary(out: Path, size: str, figures: dict[str, str], **extra) -> None:
  """A reproduce_summary.json of ``figures`` (name → run folder) with 1200 × 600 px PNGs."""
  from PIL import Image

  out.mkdir(exist_ok=True)
  records = []
  for name, run in figures.items():
    png = out / f"{name}_demo.png"
    Image.new("RGB", (1200, 600), "white").save(png)
    column = out / f"{name}_demo_column.png"
    Image.new("RGB", (600, 900), "white").save(column)
    records.append(
      {
        "figure": name,
        "title": cli.FIGURES[name].title,
        "status": "drawn",
        "files": [str(png), str(column)],
        "experiments": [{"path": run, "computed_chunks": 0, "reused_chunks": 1}],
        "wall_time_s": 12.0,
      }
    )
  summary = {"command": "reproduce", "size": size, "figures": records, "wall_time_s": 30.0}
  summary |= extra
  (out / "reproduce_summary.json").write_text(json.dumps(summary))


def test_write_readme_full_captions_size_device_thumbnails_and_merge(tmp_path):
  import ast

  from PIL import Image

  from paper_figs import write_readme

  gpu = {"backend": "gpu", "devices": ["NVIDIA H100 80GB HBM3"], "device_count": 1}
  run_gpu = _fake_run(tmp_path, "gpu_run", gpu)
  run_cpu = _fake_run(tmp_path, "cpu_run", {"backend": "cpu", "devices": ["cpu"]})
  figs = tmp_path / "figs"
  _fake_summary(figs, "full", {"F2": run_gpu, "F6": run_gpu})
  readme_dir = tmp_path / "readme"
  readme = write_readme.write(figs, readme_dir=readme_dir).read_text()
  for name in ("F2", "F6"):
    (script,) = (ROOT / "paper_figs").glob(f"{name.lower()}_*.py")
    doc = ast.get_docstring(ast.parse(script.read_text()))
    panels = " ".join(doc.split("\n\n", 1)[1].split())  # the second paragraph: the panels
    assert "(a)" in panels and "(b)" in panels and panels in readme, name
    assert f"`vanish reproduce --full --only {name}`" in readme
    height, width = matplotlib.image.imread(readme_dir / "gallery" / f"{name}.png").shape[:2]
    assert (width, height) == (440, 220)  # 1200 px at 300 dpi -> 110 dpi
    with Image.open(readme_dir / "gallery" / f"{name}.png") as image:
      assert round(image.info["dpi"][0]) == 110
    with Image.open(readme_dir / "gallery" / f"{name}_column.png") as image:
      assert image.size == (220, 330)  # the column layout's thumbnail, linked below the caption
    assert f"[gallery/{name}_column.png](gallery/{name}_column.png)" in readme
  assert "on 1 × NVIDIA H100 80GB HBM3" in readme
  assert "--quick --only" not in readme and "--quick` on" not in readme and "2-core" not in readme
  # a later --only run on a CPU replaces F6 and keeps F2's entry from the first run
  figs2 = tmp_path / "figs2"
  _fake_summary(figs2, "quick", {"F6": run_cpu})
  readme = write_readme.write(figs2, readme_dir=readme_dir).read_text()
  assert "`vanish reproduce --full --only F2`" in readme
  assert "`vanish reproduce --quick --only F6`" in readme
  assert "--full --only F6" not in readme
  assert "`vanish reproduce --full` on 1 × NVIDIA H100 80GB HBM3 (F2)" in readme
  assert "`vanish reproduce --quick` on CPU (F6)" in readme
  assert "kept from earlier runs" in readme
  assert readme.index("## F2") < readme.index("## F6")
  assert "Not yet drawn by any run: F1, F3–F5, F7–F13." in readme


def test_f8_error_bars_are_a_t_interval_with_three_seeds_and_the_range_with_two():
  import numpy as np
  from scipy import stats

  from paper_figs import f8_trainability

  two = np.array([[0.2, 0.6], [0.5, 0.5]])
  mean, lo, hi, what = f8_trainability.seed_interval(two)
  np.testing.assert_allclose(mean, [0.4, 0.5])
  np.testing.assert_allclose(lo, [0.2, 0.5])
  np.testing.assert_allclose(hi, [0.6, 0.5])
  assert what == "min–max of 2 seeds"
  three = np.array([0.6, 0.7, 0.9])
  mean, lo, hi, what = f8_trainability.seed_interval(three)
  half = stats.t.ppf(0.975, 2) * np.std(three, ddof=1) / np.sqrt(3)  # 4.30 · s / √3
  assert half > 0.3 and what == "95 % t, 3 seeds"
  np.testing.assert_allclose(
    [mean, lo, hi], [2.2 / 3, 2.2 / 3 - half, 1.0]
  )  # clipped to accuracy ≤ 1


def test_write_readme_finds_the_runs_device_from_another_directory(tmp_path):
  """Run paths in the summary are relative to where ``reproduce`` ran; the store finds them."""
  from paper_figs import write_readme

  gpu = {"backend": "gpu", "devices": ["NVIDIA H100 80GB HBM3"], "device_count": 1}
  run = Path(_fake_run(tmp_path, "gpu_run", gpu))
  figs = tmp_path / "figs"
  relative = f"results/{run.parent.name}/{run.name}"  # as printed in another directory
  _fake_summary(figs, "full", {"F2": relative}, store=str(tmp_path / "store"))
  readme = write_readme.write(figs, readme_dir=tmp_path / "readme").read_text()
  assert "on 1 × NVIDIA H100 80GB HBM3" in readme
  assert "device not recorded" not in readme


def test_f6_mirror_point_computes_the_teachers_function_and_paths_are_counted_by_end():
  import numpy as np

  from paper_figs import f6_phase_map
  from vanish import parameter_map

  x = np.linspace(-1.0, 1.0, 5)
  teacher = parameter_map.tied_chain_outputs("tanh", 1.1, 0.0, x, depth=10)
  (w, b) = f6_phase_map.mirror_point([1.1, 0.0], 10)
  np.testing.assert_allclose(parameter_map.tied_chain_outputs("tanh", w, b, x, depth=10), teacher)
  odd = parameter_map.tied_chain_outputs("tanh", -1.1, 0.0, x, depth=9)
  np.testing.assert_allclose(odd, -parameter_map.tied_chain_outputs("tanh", 1.1, 0.0, x, depth=9))
  assert f6_phase_map.mirror_point([1.1, 0.0], 9) is None
  assert f6_phase_map.mirror_point([1.1, 0.3], 10) is None
  ends = np.array([[1.1, 0.0], [-1.1, 0.01], [-1.1, 0.0], [0.7, 0.05], [3.0, 1.0]])
  arrays = {
    "trajectories/w": np.stack([np.zeros(5), ends[:, 0]], axis=1),
    "trajectories/b": np.stack([np.zeros(5), ends[:, 1]], axis=1),
    "trajectories/solved": np.array([1, 1, 0, 0, 1], np.int8),
    "trajectories/teacher": np.array([1.1, 0.0]),
  }
  counts = f6_phase_map.path_ends(arrays, 10)
  assert counts == {"paths": 5, "solved": 3, "teacher": 1, "mirror": 1}


def test_f2_intervals_come_from_the_stored_moments_of_the_members():
  """The map stores each cell's finite-sample count and standard deviation; F2(f)'s interval
  is the Student t interval of the members' log-growths, recomputed here from the samples."""
  import jax
  import numpy as np
  from scipy import stats

  from paper_figs import f2_sigmoid_weights
  from vanish import phase_map, scale_map

  scale, sigma_b2 = np.array([0.5, 4.0, 200.0]), np.array([0.0, 1.0])
  shape = (sigma_b2.size, scale.size)
  sizes = {"width": 4, "depth": 6, "members": 7, "key": jax.random.key(7)}
  m = scale_map.weight_scale_map("sigmoid", scale, sigma_b2, **sizes)
  growth = np.asarray(
    phase_map.cell_log_growth(
      "sigmoid",
      np.broadcast_to(scale**2, shape),
      np.broadcast_to(sigma_b2[:, None], shape),
      **sizes,
    ),
    np.float64,
  )[..., 0]  # [rows, scales, members], −inf where the gradient underflowed
  finite = np.isfinite(growth)
  np.testing.assert_array_equal(m.n_finite, finite.sum(-1))
  lo, hi = f2_sigmoid_weights.mean_interval(m.mean_log_growth, m.std_log_growth, m.n_finite)
  for cell in np.ndindex(shape):
    sample = growth[cell][finite[cell]]
    if sample.size < 2:
      assert np.isnan(lo[cell]) and np.isnan(hi[cell])
      continue
    low, high = stats.t.interval(0.95, sample.size - 1, sample.mean(), stats.sem(sample))
    np.testing.assert_allclose([lo[cell], hi[cell]], [low, high], rtol=1e-5, atol=1e-5)
