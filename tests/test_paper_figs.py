"""Every paper figure draws in quick mode from data in the results store (issue 5).

One ``vanish reproduce --quick`` draws all figures whose script exists (the same run as the
README's first command); each must then be a non-empty PDF and PNG whose metadata names the
store folder its data came from, and a second run must reuse the store instead of
recomputing. A figure without a script must be reported as missing.

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

from vanish import cli, store

ROOT = Path(__file__).resolve().parents[1]
READY = [name for name, figure in cli.FIGURES.items() if figure.module]


@pytest.fixture(scope="module")
def reproduced(tmp_path_factory):
  """The summary of one quick reproduction of every figure into a fresh store."""
  root = tmp_path_factory.mktemp("reproduce")
  store_root = os.environ.get("VANISH_TEST_STORE") or str(root / "store")
  status = cli.main(["reproduce", "--quick", "--store", store_root, "--out", str(root / "figs")])
  summary = json.loads((root / "figs" / "reproduce_summary.json").read_text())
  summary["status"] = status
  return {figure["figure"]: figure for figure in summary["figures"]} | {"_summary": summary}


@pytest.mark.parametrize("name", list(cli.FIGURES))
def test_each_figure_is_drawn_from_the_store_or_reported_missing(reproduced, name):
  record = reproduced[name]
  if name not in READY:
    assert record["status"] == "missing" and not record.get("files")
    return
  assert record["status"] == "drawn", record.get("reason")
  files = [Path(f) for f in record["files"]]
  assert sorted(f.suffix for f in files) == [".pdf", ".png"]
  assert all(f.name.startswith(f"{name}_") and f.stat().st_size > 5_000 for f in files)
  png = next(f for f in files if f.suffix == ".png")
  height, width = matplotlib.image.imread(png).shape[:2]
  assert width >= 600 and height >= 300  # 300 dpi at column width or more
  assert record["experiments"], "a figure must read its data from the store"
  for run in record["experiments"]:
    loaded = store.load(run["path"])  # a complete run folder: arrays, tables, config
    assert loaded.arrays and loaded.config["size"] == "quick"
  pdf = next(f for f in files if f.suffix == ".pdf").read_bytes()
  sources = [Path(run["path"]).name.encode() for run in record["experiments"]]
  assert any(source in pdf for source in sources)  # the data's store folder is in the metadata


def test_reproduce_exit_status_and_reuse(reproduced, tmp_path):
  summary = reproduced["_summary"]
  missing = [name for name in cli.FIGURES if name not in READY]
  assert summary["status"] == (2 if missing else 0)
  assert READY, "every figure F1–F13 has a script"
  first = READY[0]
  store_root = summary["store"]
  again = cli.main(["reproduce", "--only", first, "--store", store_root, "--out", str(tmp_path)])
  assert again == 0
  record = json.loads((tmp_path / "reproduce_summary.json").read_text())["figures"][0]
  assert record["status"] == "drawn"
  assert all(run["computed_chunks"] == 0 for run in record["experiments"])  # reused
