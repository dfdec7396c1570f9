"""Writes ``paper_figs/README.md`` and its gallery from a ``vanish reproduce`` run.

Each figure's caption is its script's whole docstring (the one-line statement and the
description of every panel), so the README cannot drift from the code; the gallery holds
110-dpi PNG thumbnails (about a third of the 300-dpi figures' size) of the figures the run
drew, and the README records for each figure which run drew it: the size (``--quick`` or
``--full``, from ``reproduce_summary.json``), the device (from the stored runs' metadata),
the store folders and the time it took.

A ``vanish reproduce --only F6 F8`` run overwrites ``reproduce_summary.json`` with those
figures alone; the README then keeps the other figures' entries from the previous run
(``gallery/entries.json`` holds every figure's entry) and says which run drew which.

Run:  vanish reproduce --quick && python -m paper_figs.write_readme results/figures
"""

from __future__ import annotations

import ast
import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from PIL import Image

HERE = Path(__file__).resolve().parent
FIGURE_DPI = 300  # paper_figs._style.save writes the PNGs at 300 dpi
GALLERY_DPI = 110
ENTRIES = "entries.json"


def caption(script: Path) -> str:
  """A figure script's full caption: every paragraph of its docstring, joined into one.

  Example:
    >>> import tempfile
    >>> path = Path(tempfile.mkdtemp()) / "f0_demo.py"
    >>> _ = path.write_text('\"\"\"Short title.\\n\\n(a) One panel,\\n(b) another.\\n\"\"\"\\n')
    >>> caption(path)
    'Short title. (a) One panel, (b) another.'
  """
  doc = ast.get_docstring(ast.parse(script.read_text(encoding="utf-8"))) or ""
  return " ".join(" ".join(p.split()) for p in doc.split("\n\n") if p.strip())


def thumbnail(png: Path, target: Path, *, dpi: int = GALLERY_DPI) -> Path:
  """Writes ``png`` (drawn at 300 dpi) resampled to ``dpi`` as ``target``; returns it."""
  with Image.open(png) as image:
    scale = dpi / FIGURE_DPI
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    image.convert("RGB").resize(size, Image.Resampling.LANCZOS).save(
      target, dpi=(dpi, dpi), optimize=True
    )
  return target


def device(runs: Sequence[Mapping[str, Any]], store: Path | None = None) -> str:
  """The device the stored runs were computed on, from their ``run.json`` metadata.

  A run's ``path`` is as ``vanish reproduce`` printed it (relative to the directory it
  ran in); where that does not resolve, the run is looked up as ``<name>/<hash>`` in
  ``store``. ``"CPU"``, ``"1 × NVIDIA H100 80GB HBM3"``, several joined with ``" + "``,
  or ``"device not recorded"`` when no run folder (or metadata) can be read.
  """
  found = []
  for run in runs:
    folder = Path(run["path"])
    if not folder.is_dir() and store is not None:
      folder = store / folder.parent.name / folder.name
    try:
      meta = json.loads((folder / "run.json").read_text())["metadata"]
    except (OSError, KeyError, ValueError):
      continue
    if meta.get("backend") == "cpu":
      text = "CPU"
    else:
      kinds = ", ".join(sorted(set(meta.get("devices", [])))) or meta.get("backend", "?")
      text = f"{meta.get('device_count', '?')} × {kinds}"
    if text not in found:
      found.append(text)
  return " + ".join(found) if found else "device not recorded"


def _entry(
  record: Mapping[str, Any], size: str, figures_dir: Path, gallery: Path, store: Path | None
) -> dict:
  """One figure's README entry from its record in ``reproduce_summary.json``."""
  name = record["figure"]
  scripts = sorted(HERE.glob(f"{name.lower()}_*.py"))
  entry = {"figure": name, "title": record["title"], "size": size, "status": record["status"]}
  if not scripts or record["status"] != "drawn":
    return entry | {"reason": record.get("reason", record["status"])}
  pngs = [figures_dir / Path(f).name for f in record["files"] if f.endswith(".png")]
  page = [png for png in pngs if not png.stem.endswith("_column")]
  column = [png for png in pngs if png.stem.endswith("_column")]
  thumbnail((page or pngs)[0], gallery / f"{name}.png")
  if column:
    thumbnail(column[0], gallery / f"{name}_column.png")
  return entry | {
    "column": bool(column),
    "script": scripts[0].stem,
    "data": [
      f"{Path(r['path']).parent.name}/{Path(r['path']).name}" for r in record["experiments"]
    ],
    "device": device(record["experiments"], store),
    "wall_time_s": float(record["wall_time_s"]),
  }


def _section(entry: Mapping[str, Any]) -> list[str]:
  name = entry["figure"]
  lines = [f"## {name} — {entry['title']}", ""]
  if entry["status"] != "drawn":
    return lines + [f"Not drawn: {entry['reason']}.", ""]
  data = ", ".join(f"`{d}`" for d in entry["data"])
  column = (
    [f"One-column layout: [gallery/{name}_column.png](gallery/{name}_column.png).", ""]
    if entry.get("column")
    else []
  )
  return lines + [
    f"![{name}](gallery/{name}.png)",
    "",
    caption(HERE / f"{entry['script']}.py"),
    "",
    *column,
    f"Command: `vanish reproduce --{entry['size']} --only {name}` (or `python -m paper_figs."
    f"{entry['script']} --{entry['size']}`); data: {data}; drawn on {entry['device']} in"
    f" {entry['wall_time_s']:.0f} s.",
    "",
  ]


def figure_list(names: Sequence[str], order: Sequence[str]) -> str:
  """Figure names with consecutive runs (in ``order``) shortened: ``"F1–F5, F8"``.

  Example:
    >>> figure_list(["F1", "F2", "F3", "F5", "F6", "F9"], [f"F{i}" for i in range(1, 14)])
    'F1–F3, F5, F6, F9'
  """
  index = {name: i for i, name in enumerate(order)}
  spans: list[list[str]] = []
  for name in sorted(names, key=index.__getitem__):
    if spans and index[name] == index[spans[-1][-1]] + 1:
      spans[-1].append(name)
    else:
      spans.append([name])
  return ", ".join(f"{span[0]}–{span[-1]}" if len(span) > 2 else ", ".join(span) for span in spans)


def _runs_line(entries: Sequence[Mapping[str, Any]], order: Sequence[str]) -> str:
  """Which size and device drew which figures, e.g. ``--quick` on CPU (F1–F13)``."""
  groups: dict[tuple[str, str], list[str]] = {}
  for e in entries:
    if e["status"] == "drawn":
      groups.setdefault((e["size"], e["device"]), []).append(e["figure"])
  return "; ".join(
    f"`vanish reproduce --{size}` on {dev} ({figure_list(names, order)})"
    for (size, dev), names in groups.items()
  )


def write(figures_dir: Path, *, readme_dir: Path = HERE) -> Path:
  """Writes ``readme_dir/README.md`` and ``readme_dir/gallery/`` from a reproduce run.

  Figures of the run replace their entries; the other figures keep theirs from
  ``gallery/entries.json`` (a ``--only`` run redraws some figures, not all).

  Args:
    figures_dir: the run's ``--out`` folder, holding ``reproduce_summary.json``.
    readme_dir: where README.md and gallery/ go (the package folder).

  Returns:
    The README's path.
  """
  from vanish.cli import figures

  known = figures()  # F1–F13 and any other paper_figs/fN_*.py

  summary_path = Path(figures_dir) / "reproduce_summary.json"
  if not summary_path.exists():
    raise FileNotFoundError(f"{summary_path} is missing: run `vanish reproduce` first")
  summary = json.loads(summary_path.read_text())
  gallery = Path(readme_dir) / "gallery"
  gallery.mkdir(parents=True, exist_ok=True)
  index = gallery / ENTRIES
  entries = json.loads(index.read_text()) if index.exists() else {}
  store = Path(summary["store"]) if "store" in summary else None
  for record in summary["figures"]:
    entries[record["figure"]] = _entry(record, summary["size"], Path(figures_dir), gallery, store)
  index.write_text(json.dumps(entries, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
  order = [name for name in known if name in entries]
  ordered = [entries[name] for name in order]
  drawn = [e for e in ordered if e["status"] == "drawn"]
  this_run = [r["figure"] for r in summary["figures"]]
  lines = [
    "# paper_figs — the figures of the vanish paper",
    "",
    "Every figure is drawn by one script `fN_<topic>.py` from the results store (never from",
    "numbers in the script): `vanish reproduce --quick` draws them all on a CPU,",
    "`vanish reproduce --full` at paper scale on one GPU, `--only F4 F6` some of them.",
    f"The images below come from {_runs_line(ordered, list(known))};"
    f" drawing them took {sum(e['wall_time_s'] for e in drawn) / 60:.1f} min in all"
    " (experiments included, unless reused from the store).",
    f"The latest run drew {figure_list(this_run, list(known))}"
    + ("; the other entries are kept from earlier runs." if len(this_run) < len(ordered) else "."),
    "This page is written by `python -m paper_figs.write_readme results/figures` from that run;",
    "each caption is the figure script's docstring, and the gallery holds 110-dpi thumbnails",
    "(the full 300-dpi PNG and the PDF are in the run's figure folder).",
    "Each figure comes in two layouts: `FN_<topic>.pdf`, 7 in wide, for a two-column",
    "`figure*` (shown here), and `FN_<topic>_column.pdf`, 3.4 in wide with the same 8 pt",
    "text and its panels reflowed into at most two columns, for one column",
    "(`vanish reproduce --layout page|column|both`; every drawing is checked for",
    "colliding text).",
    "",
  ]
  missing = [name for name in known if name not in entries]
  if missing:
    lines += [f"Not yet drawn by any run: {figure_list(missing, list(known))}.", ""]
  for entry in ordered:
    lines += _section(entry)
  target = Path(readme_dir) / "README.md"
  target.write_text("\n".join(lines), encoding="utf-8")
  return target


if __name__ == "__main__":
  print(f"wrote {write(Path(sys.argv[1] if len(sys.argv) > 1 else 'results/figures'))}")
