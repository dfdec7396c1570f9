"""Writes ``paper_figs/README.md`` and its gallery from a ``vanish reproduce`` run.

Each figure's caption is its script's docstring (first paragraph), so the README cannot
drift from the code; the gallery holds 110-dpi PNG copies of the figures that run drew,
and the README records which run (quick or full), from which store folders, and how long
each figure took.

Run:  vanish reproduce --quick && python -m paper_figs.write_readme results/figures
"""

from __future__ import annotations

import ast
import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.image  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402

HERE = Path(__file__).resolve().parent
GALLERY_DPI = 110


def caption(script: Path) -> str:
  """A figure script's docstring's first paragraph, and its second when the first is a title."""
  doc = ast.get_docstring(ast.parse(script.read_text(encoding="utf-8"))) or ""
  paragraphs = [" ".join(p.split()) for p in doc.split("\n\n") if p.strip()]
  if len(paragraphs) > 1 and len(paragraphs[0]) < 150:
    return f"{paragraphs[0]} {paragraphs[1]}"
  return paragraphs[0] if paragraphs else ""


def _thumbnail(png: Path, target: Path) -> None:
  image = matplotlib.image.imread(png)
  height, width = image.shape[:2]
  fig = plt.figure(figsize=(width / 300, height / 300), dpi=GALLERY_DPI)
  fig.figimage(image, resize=True)
  fig.savefig(target, dpi=GALLERY_DPI)
  plt.close(fig)


def write(figures_dir: Path) -> Path:
  summary = json.loads((figures_dir / "reproduce_summary.json").read_text())
  gallery = HERE / "gallery"
  gallery.mkdir(exist_ok=True)
  lines = [
    "# paper_figs — the figures of the vanish paper",
    "",
    "Every figure is drawn by one script `fN_<topic>.py` from the results store (never from",
    "numbers in the script): `vanish reproduce --quick` draws them all on a CPU,",
    "`vanish reproduce --full` at paper scale on one GPU, `--only F4 F6` some of them.",
    f"The images below come from `vanish reproduce --{summary['size']}` "
    f"({summary['wall_time_s'] / 60:.1f} min in all, 2-core CPU); this page is written by",
    "`python -m paper_figs.write_readme results/figures` from that run, and each caption",
    "is taken from the figure script's docstring.",
    "",
  ]
  for record in summary["figures"]:
    name = record["figure"]
    scripts = sorted(HERE.glob(f"{name.lower()}_*.py"))
    lines.append(f"## {name} — {record['title']}")
    lines.append("")
    if not scripts or record["status"] != "drawn":
      lines += [f"Not drawn: {record.get('reason', record['status'])}.", ""]
      continue
    png = figures_dir / next(Path(f).name for f in record["files"] if f.endswith(".png"))
    _thumbnail(png, gallery / f"{name}.png")
    experiments = ", ".join(
      f"`{Path(run['path']).parent.name}/{Path(run['path']).name}`" for run in record["experiments"]
    )
    lines += [
      f"![{name}](gallery/{name}.png)",
      "",
      caption(scripts[0]),
      "",
      f"Command: `vanish reproduce --only {name}` (or `python -m paper_figs.{scripts[0].stem}"
      f" --quick`); data: {experiments}; {record['wall_time_s']:.0f} s.",
      "",
    ]
  target = HERE / "README.md"
  target.write_text("\n".join(lines), encoding="utf-8")
  return target


if __name__ == "__main__":
  print(f"wrote {write(Path(sys.argv[1] if len(sys.argv) > 1 else 'results/figures'))}")
