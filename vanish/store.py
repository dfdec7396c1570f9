"""A results store: one folder per run, written atomically, keyed by its config.

A run folder holds ``arrays.npz`` (every array), one CSV per table, and
``run.json`` (the config, its hash, the run metadata — versions, device,
precision — and the wall time). Everything opens without vanish (numpy, csv,
json). The folder is assembled under a temporary name and renamed into place,
so a reader sees either nothing or the whole run; a rerun with the same config
finds it and reuses it.

Example:
  >>> import tempfile, numpy as np
  >>> from vanish import store
  >>> root = tempfile.mkdtemp()
  >>> path = store.save(root, "demo", {"depth": 3}, arrays={"x": np.arange(3.0)},
  ...                   tables={"rows": [{"depth": 1, "p": 0.5}]}, precision="highest")
  >>> run = store.load(path)
  >>> run.arrays["x"].tolist(), run.config, run.tables["rows"][0]["p"]
  ([0.0, 1.0, 2.0], {'depth': 3}, '0.5')
  >>> store.find(root, "demo", {"depth": 3}) == path
  True
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from vanish.metadata import run_metadata, to_json

__all__ = ["Run", "config_hash", "find", "load", "run_folder", "save"]


class Run(NamedTuple):
  """A loaded run: its folder, config, arrays, tables (rows of strings) and metadata."""

  path: Path
  config: dict[str, Any]
  arrays: dict[str, np.ndarray]
  tables: dict[str, list[dict[str, str]]]
  metadata: dict[str, Any]


def config_hash(experiment: str, config: Mapping[str, Any]) -> str:
  """A short stable hash of ``(experiment, config)``: 12 hex digits of SHA-256."""
  text = json.dumps(
    {"experiment": experiment, "config": to_json(dict(config), where="config")}, sort_keys=True
  )
  return hashlib.sha256(text.encode()).hexdigest()[:12]


def run_folder(root: str | os.PathLike, experiment: str, config: Mapping[str, Any]) -> Path:
  """Where the run of ``config`` lives: ``root/experiment/<hash>``."""
  return Path(root) / experiment / config_hash(experiment, config)


def find(root: str | os.PathLike, experiment: str, config: Mapping[str, Any]) -> Path | None:
  """The finished run for ``config``, or None."""
  path = run_folder(root, experiment, config)
  return path if (path / "run.json").is_file() else None


def _write_csv(path: Path, rows: Sequence[Mapping[str, Any]]) -> None:
  fields = list(dict.fromkeys(key for row in rows for key in row))
  with open(path, "w", newline="") as handle:
    writer = csv.DictWriter(handle, fieldnames=fields)
    writer.writeheader()
    writer.writerows(rows)


def save(
  root: str | os.PathLike,
  experiment: str,
  config: Mapping[str, Any],
  *,
  arrays: Mapping[str, Any],
  tables: Mapping[str, Sequence[Mapping[str, Any]]] | None = None,
  precision: str,
  wall_time_s: float | None = None,
) -> Path:
  """Writes a run atomically and returns its folder.

  Args:
    root: the store's root folder (created if missing).
    experiment: the experiment's name (a folder under ``root``).
    config: the full config; its hash names the run.
    arrays: name → array, saved to ``arrays.npz``.
    tables: name → list of row dicts, saved to ``<name>.csv``.
    precision: the matmul precision used (recorded with the metadata).
    wall_time_s: the computation's wall time.

  Raises:
    OSError: the folder cannot be written (nothing partial is left behind).
  """
  final = run_folder(root, experiment, config)
  final.parent.mkdir(parents=True, exist_ok=True)
  staging = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
  try:
    np.savez(staging / "arrays.npz", **{k: np.asarray(v) for k, v in arrays.items()})
    for name, rows in (tables or {}).items():
      _write_csv(staging / f"{name}.csv", rows)
    record = {
      "experiment": experiment,
      "config_hash": final.name,
      "wall_time_s": wall_time_s,
      "metadata": {**run_metadata(precision), "config": to_json(dict(config), where="config")},
    }
    (staging / "run.json").write_text(json.dumps(record, indent=2, sort_keys=True))
    if final.exists():  # an older result for the same config: replace it whole
      shutil.rmtree(final)
    os.replace(staging, final)
  except BaseException:
    shutil.rmtree(staging, ignore_errors=True)
    raise
  return final


def load(path: str | os.PathLike) -> Run:
  """Reads a run folder written by :func:`save`."""
  path = Path(path)
  record = json.loads((path / "run.json").read_text())
  with np.load(path / "arrays.npz") as data:
    arrays = {k: data[k] for k in data.files}
  tables = {}
  for table in sorted(path.glob("*.csv")):
    with open(table, newline="") as handle:
      tables[table.stem] = list(csv.DictReader(handle))
  metadata = record["metadata"]
  return Run(path, metadata["config"], arrays, tables, metadata)
