"""The paper's figures F1–F13, each drawn by one module from the results store.

Every figure module ``paper_figs/fN_<topic>.py`` follows one contract:

* its docstring's first paragraph is the figure's caption;
* ``draw(*, quick, out_dir, store_root, force=False) -> list[Path]`` finds or runs the
  experiments it needs through their ``experiments.<name>.ensure(size, store_root,
  force=...)`` (so the data always comes from the store), draws the figure in the style
  of :mod:`paper_figs._style` and returns the files it wrote (``FN_<topic>.pdf`` and
  ``.png`` in ``out_dir``, ``FN_<topic>_column.*`` in the column layout);
* ``main = figure_main(draw)`` makes ``python -m paper_figs.fN_<topic> [--quick|--full]``
  work on its own.

``vanish reproduce`` (and ``python -m paper_figs.make_all``) draws every figure, by default in
both layouts (:func:`draw_layouts`).
"""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

LAYOUT_CHOICES = {"both": ("page", "column"), "page": ("page",), "column": ("column",)}


def draw_layouts(
  draw: Callable[..., list[Path]], layouts: Sequence[str], **options
) -> tuple[list[Path], list[str]]:
  """Calls ``draw(**options)`` once in each layout of :mod:`paper_figs._style`.

  Returns:
    The files written, and the messages of the :class:`~paper_figs._style.LayoutWarning`
    (text collisions) raised meanwhile. Other warnings are issued again, as usual; if
    ``draw`` raises, the layout warnings before it are issued again too.
  """
  from paper_figs import _style

  files, error = [], None
  with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always", _style.LayoutWarning)
    try:
      for layout in layouts:
        with _style.layout(layout):
          files += draw(**options)
    except Exception as raised:
      error = raised
  collisions = [str(w.message) for w in caught if issubclass(w.category, _style.LayoutWarning)]
  for w in caught:  # outside the block: inside it, they would be recorded again
    if error is not None or not issubclass(w.category, _style.LayoutWarning):
      warnings.warn_explicit(w.message, w.category, w.filename, w.lineno, source=w.source)
  if error is not None:
    raise error
  return files, collisions


def figure_main(draw: Callable[..., list[Path]]) -> Callable[[Sequence[str] | None], int]:
  """A ``main(argv)`` for one figure module: ``--quick | --full``, ``--out``, ``--store``."""

  def main(argv: Sequence[str] | None = None) -> int:
    module = sys.modules[draw.__module__]
    parser = argparse.ArgumentParser(description=(module.__doc__ or "").split("\n\n")[0])
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="small sizes (CPU; the default)")
    size.add_argument("--full", action="store_true", help="paper-scale sizes (one GPU)")
    parser.add_argument("--out", type=Path, help="figure folder (default: STORE/figures)")
    parser.add_argument("--store", type=Path, default=Path("results"), help="results store root")
    parser.add_argument("--force", action="store_true", help="recompute the experiments")
    parser.add_argument(
      "--layout",
      choices=list(LAYOUT_CHOICES),
      default="both",
      help="page: 7 in wide; column: 3.4 in, panels reflowed (default: both)",
    )
    args = parser.parse_args(argv)
    out = args.store / "figures" if args.out is None else args.out
    files, collisions = draw_layouts(
      draw,
      LAYOUT_CHOICES[args.layout],
      quick=not args.full,
      out_dir=out,
      store_root=args.store,
      force=args.force,
    )
    for path in files:
      print(f"wrote {path}")
    for collision in collisions:
      print(f"layout warning: {collision}", file=sys.stderr)
    return 0

  return main
