"""A results store: one folder per run, written atomically, keyed by its config.

A run folder holds ``arrays.npz`` (every array), one CSV per table, and
``run.json`` (the config, its hash, the run metadata — versions, device,
precision — and the wall time). Everything opens without vanish (numpy, csv,
json). The folder is assembled under a temporary name, flushed to disk and renamed
into place, so a reader sees either nothing or the whole run; a rerun with the same
config finds it and reuses it. A run may also record the *code* that made it (a
fingerprint of its sources, :func:`source_fingerprint`): a run made by other code is
then not reused but recomputed, so an upgrade never serves stale numbers.

:func:`compute` is find-or-compute for experiments split into *chunks* (one
activation, one block of grid rows, …): each finished chunk is saved atomically
under ``root/experiment/.partial-<hash>/``, so a run that is killed resumes from
its last finished chunk, and the run folder is assembled when the last one ends.

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
import io
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, BinaryIO, NamedTuple

import numpy as np

from vanish.metadata import run_metadata, to_json
from vanish.progress import Progress

__all__ = [
  "Outcome",
  "Run",
  "compute",
  "config_hash",
  "find",
  "load",
  "run_folder",
  "save",
  "source_fingerprint",
  "write_atomic",
]


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


def source_fingerprint(files: Sequence[str | os.PathLike], *, root: str | os.PathLike) -> str:
  """12 hex digits of SHA-256 over ``files`` (their paths relative to ``root``, and contents).

  Moving the checkout keeps the fingerprint; editing, adding or removing a file changes it.

  Example:
    >>> import tempfile, pathlib
    >>> root = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (root / "a.py").write_text("x = 1")
    >>> before = source_fingerprint([root / "a.py"], root=root)
    >>> _ = (root / "a.py").write_text("x = 2")
    >>> before == source_fingerprint([root / "a.py"], root=root), len(before)
    (False, 12)
  """
  digest = hashlib.sha256()
  for path in sorted(Path(f) for f in files):
    digest.update(path.relative_to(root).as_posix().encode() + b"\0")
    digest.update(path.read_bytes() + b"\0")
  return digest.hexdigest()[:12]


def run_folder(root: str | os.PathLike, experiment: str, config: Mapping[str, Any]) -> Path:
  """Where the run of ``config`` lives: ``root/experiment/<hash>``."""
  return Path(root) / experiment / config_hash(experiment, config)


def _stored_code(path: Path) -> str | None:
  """The code fingerprint a finished run recorded (None: not recorded or unreadable)."""
  try:
    return json.loads((path / "run.json").read_text()).get("code")
  except (OSError, ValueError, AttributeError):
    return None


def find(
  root: str | os.PathLike,
  experiment: str,
  config: Mapping[str, Any],
  *,
  code: str | None = None,
) -> Path | None:
  """The finished run for ``config`` (made by ``code``, when given), or None."""
  path = run_folder(root, experiment, config)
  if not ((path / "run.json").is_file() and (path / "arrays.npz").is_file()):
    return None
  if code is not None and _stored_code(path) != code:
    return None
  return path


def _umask() -> int:
  mask = os.umask(0o022)
  os.umask(mask)
  return mask


def _readable(path: Path, *, folder: bool) -> None:
  """Gives ``path`` the permissions a plain ``open``/``mkdir`` would (``mkstemp`` and
  ``mkdtemp`` make them private to the owner)."""
  os.chmod(path, (0o777 if folder else 0o666) & ~_umask())


def _write_durably(path: Path, write: Callable[[BinaryIO], Any]) -> None:
  """``write(handle)`` into a new file at ``path`` (binary), flushed to disk."""
  with open(path, "wb") as handle:
    write(handle)
    handle.flush()
    os.fsync(handle.fileno())


def write_atomic(path: str | os.PathLike, write: Callable[[BinaryIO], Any]) -> Path:
  """Writes the file ``path`` all at once: a reader sees the old file or the new one, never part.

  ``write(handle)`` fills a temporary file beside ``path`` (opened binary), which is flushed to
  disk and renamed over ``path``; on any error the temporary file is removed and ``path`` is
  untouched. The folder is created if missing; permissions follow the umask.

  Example:
    >>> import json, tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "out" / "summary.json"
    >>> _ = write_atomic(path, lambda f: f.write(json.dumps({"ok": True}).encode()))
    >>> json.loads(path.read_text())
    {'ok': True}
  """
  path = Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
  os.close(fd)
  try:
    _readable(Path(temp), folder=False)
    _write_durably(Path(temp), write)
    os.replace(temp, path)
  except OSError as error:  # a full disk: say which file could not be written
    Path(temp).unlink(missing_ok=True)
    if error.filename is not None:
      raise
    raise OSError(error.errno, error.strerror or str(error), str(path)) from error
  except BaseException:
    Path(temp).unlink(missing_ok=True)
    raise
  return path


def _write_csv(path: Path, rows: Sequence[Mapping[str, Any]]) -> None:
  # Python scalars first: a row computed now (numpy float32, say) and the same row read back
  # from a saved chunk (a Python float) must be written alike; NaN and inf stay "nan", "inf".
  rows = [to_json(dict(row), where="table row", keep_nonfinite=True) for row in rows]
  fields = list(dict.fromkeys(key for row in rows for key in row))
  text = io.StringIO(newline="")
  writer = csv.DictWriter(text, fieldnames=fields)
  writer.writeheader()
  writer.writerows(rows)
  _write_durably(path, lambda handle: handle.write(text.getvalue().encode()))


def save(
  root: str | os.PathLike,
  experiment: str,
  config: Mapping[str, Any],
  *,
  arrays: Mapping[str, Any],
  tables: Mapping[str, Sequence[Mapping[str, Any]]] | None = None,
  precision: str,
  wall_time_s: float | None = None,
  code: str | None = None,
) -> Path:
  """Writes a run atomically and returns its folder.

  Args:
    root: the store's root folder (created if missing).
    experiment: the experiment's name (a folder under ``root``).
    config: the full config; its hash names the run.
    arrays: name → array, saved to ``arrays.npz``.
    tables: name → list of row dicts, saved to ``<name>.csv``; values are numbers
      (Python, numpy or JAX scalars; NaN and ±inf are written ``nan``, ``inf``, ``-inf``),
      strings, booleans or None.
    precision: the matmul precision used (recorded with the metadata).
    wall_time_s: the computation's wall time.
    code: a fingerprint of the code that made the run (:func:`source_fingerprint`).

  An older run of the same config is replaced: it is renamed aside, the new folder renamed
  in, and only then the old one deleted, so a crash never leaves neither.

  Raises:
    OSError: the folder cannot be written (nothing partial is left behind).
    TypeError: a table value has no JSON equivalent (the message names it).
  """
  final = run_folder(root, experiment, config)
  final.parent.mkdir(parents=True, exist_ok=True)
  staging = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
  try:
    _readable(staging, folder=True)
    arrays = {k: np.asarray(v) for k, v in arrays.items()}
    _write_durably(staging / "arrays.npz", lambda handle: np.savez(handle, **arrays))
    for name, rows in (tables or {}).items():
      _write_csv(staging / f"{name}.csv", rows)
    record = {
      "experiment": experiment,
      "config_hash": final.name,
      "code": code,
      "wall_time_s": wall_time_s,
      "metadata": {**run_metadata(precision), "config": to_json(dict(config), where="config")},
    }
    text = json.dumps(record, indent=2, sort_keys=True).encode()
    _write_durably(staging / "run.json", lambda handle: handle.write(text))
    if final.exists():  # an older result for the same config: swap it out, then delete it
      retired = Path(tempfile.mkdtemp(prefix=f".{final.name}.old.", dir=final.parent))
      os.replace(final, retired / final.name)
    os.replace(staging, final)
  except BaseException:
    shutil.rmtree(staging, ignore_errors=True)
    raise
  for old in final.parent.glob(f".{final.name}.old.*"):  # this swap's, and any a kill left
    shutil.rmtree(old, ignore_errors=True)
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


def _merge(results: list[Mapping[str, Any]]) -> dict[str, Any]:
  """The default run of chunk ``results``: their arrays (distinct names) and rows, in order."""
  arrays: dict[str, Any] = {}
  for result in results:
    clash = arrays.keys() & result["arrays"].keys()
    if clash:
      raise ValueError(f"chunks return the same array names: {sorted(clash)}")
    arrays.update(result["arrays"])
  return {"arrays": arrays, "rows": [row for result in results for row in result.get("rows", [])]}


class Outcome(NamedTuple):
  """What :func:`compute` did: the run's folder, and how many chunks it computed or reused."""

  path: Path
  computed: int
  reused: int


def _partial_folder(root: str | os.PathLike, experiment: str, config: Mapping[str, Any]) -> Path:
  final = run_folder(root, experiment, config)
  return final.parent / f".partial-{final.name}"


_CHUNK_FORMAT = 2  # 2: table rows keep NaN and ±inf (format 1 turned them into null)


def _save_chunk(
  folder: Path, index: int, chunk: Any, result: Mapping[str, Any], wall: float, code: str | None
):
  """Writes chunk ``index`` as ``<index>.npz`` + ``<index>.json``; the JSON (written last) marks
  it finished."""
  # The rows keep NaN and inf (json's NaN/Infinity tokens): a resumed run's tables must equal
  # an uninterrupted run's, and to_json's default would turn them into None (an empty cell).
  rows = to_json(list(result.get("rows", [])), where="rows", keep_nonfinite=True)
  record = {
    "format": _CHUNK_FORMAT,
    "chunk": to_json(chunk),
    "code": code,
    "rows": rows,
    "wall_time_s": wall,
  }
  arrays = {k: np.asarray(v) for k, v in result["arrays"].items()}
  write_atomic(folder / f"{index}.npz", lambda handle: np.savez(handle, **arrays))
  text = json.dumps(record)
  write_atomic(folder / f"{index}.json", lambda handle: handle.write(text.encode()))


def _load_chunk(folder: Path, index: int, chunk: Any, code: str | None) -> dict[str, Any] | None:
  """The saved result of chunk ``index`` if it is finished, is the same chunk and was made by
  the same code, else None."""
  record_path = folder / f"{index}.json"
  if not record_path.is_file():
    return None
  try:
    record = json.loads(record_path.read_text())
    if record.get("format") != _CHUNK_FORMAT:  # older rows held None where NaN was: recompute
      return None
    if record["chunk"] != to_json(chunk) or record.get("code") != code:
      return None
    with np.load(folder / f"{index}.npz") as data:
      arrays = {k: data[k] for k in data.files}
  except Exception:  # a torn, empty or foreign file (BadZipFile, EOFError, ...): recompute it
    return None
  return {"arrays": arrays, "rows": record["rows"], "wall_time_s": record["wall_time_s"]}


def compute(
  root: str | os.PathLike,
  experiment: str,
  config: Mapping[str, Any],
  compute_chunk: Callable[[Any], Mapping[str, Any]],
  *,
  chunks: Sequence[Any] = (None,),
  table: str = "rows",
  precision: str = "highest",
  force: bool = False,
  label: str | None = None,
  code: str | None = None,
  combine: Callable[[list[Mapping[str, Any]]], Mapping[str, Any]] | None = None,
) -> Outcome:
  """Finds the run of ``config`` or computes it chunk by chunk, resuming an interrupted run.

  Args:
    root: the store's root folder.
    experiment: the experiment's name.
    config: the full config; its hash names the run. Every chunk is part of it.
    compute_chunk: ``compute_chunk(chunk) -> {"arrays": {name: array}, "rows": [dict]}``;
      array names must differ between chunks (prefix them with the chunk).
    chunks: the chunks, JSON-serializable (default: one chunk, ``None``).
    table: the CSV name for the concatenated rows.
    precision: the matmul precision used (recorded).
    force: recompute every chunk, ignoring a finished run and saved chunks.
    label: the progress bar's label (default: the experiment's name).
    code: a fingerprint of the code that computes the run (:func:`source_fingerprint`): a
      finished run or saved chunk made by other code is recomputed, not reused.
    combine: ``combine(results) -> {"arrays": ..., "rows": ...}``, the run made from the
      chunks' results in chunk order (default: their arrays merged, the names distinct,
      and their rows concatenated), e.g. blocks of grid rows joined into whole arrays.

  Returns:
    An :class:`Outcome`: the run's folder and the number of chunks computed and reused
    (``reused == len(chunks)`` and ``computed == 0`` when the whole run was found).

  Raises:
    ValueError: ``chunks`` is empty or two chunks return the same array name.

  Example:
    >>> import tempfile, numpy as np
    >>> root = tempfile.mkdtemp()
    >>> def square(k):
    ...   return {"arrays": {f"x{k}": np.array(k * k)}, "rows": [{"k": k, "k2": k * k}]}
    >>> first = compute(root, "squares", {"n": 3}, square, chunks=[1, 2, 3], label="squares")
    >>> again = compute(root, "squares", {"n": 3}, square, chunks=[1, 2, 3])
    >>> first.computed, again.reused, int(load(again.path).arrays["x3"])
    (3, 3, 9)
  """
  chunks = list(chunks)
  if not chunks:
    raise ValueError("chunks must hold at least one chunk")
  existing = find(root, experiment, config, code=code)
  if existing and not force:
    return Outcome(existing, 0, len(chunks))
  partial = _partial_folder(root, experiment, config)
  if force:
    shutil.rmtree(partial, ignore_errors=True)
  results = [_load_chunk(partial, index, chunk, code) for index, chunk in enumerate(chunks)]
  reused = sum(result is not None for result in results)
  with Progress(label or experiment, total=len(chunks), initial=reused) as bar:
    for index, chunk in enumerate(chunks):
      if results[index] is None:
        start = time.perf_counter()
        result = dict(compute_chunk(chunk))
        result["wall_time_s"] = time.perf_counter() - start
        _save_chunk(partial, index, chunk, result, result["wall_time_s"], code)
        results[index] = result
        bar.update()
  run = (combine or _merge)(results)
  arrays, rows = run["arrays"], list(run.get("rows", []))
  path = save(
    root,
    experiment,
    config,
    arrays=arrays,
    tables={table: rows} if rows else None,
    precision=precision,
    wall_time_s=sum(result["wall_time_s"] for result in results),
    code=code,
  )
  shutil.rmtree(partial, ignore_errors=True)
  return Outcome(path, len(chunks) - reused, reused)
