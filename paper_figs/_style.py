"""One style for every paper figure: sizes, colors, theory-versus-Monte-Carlo conventions, saving.

Conventions (so every figure reads the same):

* Monte Carlo is drawn with markers and 95 % error bars (``mc(ax, x, y, lo, hi)``),
  theory with lines (``theory(ax, x, y)``), black dashed unless a color is needed;
* each activation has one color in every figure (``color("tanh")``);
* one column is 3.4 in wide and two columns 7.0 in; text is 8 pt;
* every figure is written as a vector PDF and a 300 dpi PNG, atomically, by :func:`save`;
* every figure comes in two layouts (:func:`layout`): ``"page"``, as the script lays it out
  (a two-column ``figure*``), and ``"column"``, the same panels reflowed by :func:`figure`
  into at most two columns 3.4 in wide, at the same 8 pt text, so that it is readable
  printed at column width; :func:`save` warns (:class:`LayoutWarning`) when text collides.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import os
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
# fontTools, subsetting DejaVu into the PDFs, logs "'created' timestamp seems very low" for
# every figure (the font's header date); the figures are right, the lines are noise.
logging.getLogger("fontTools").setLevel(logging.ERROR)
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from vanish.store import write_atomic  # noqa: E402

COLUMN = 3.4  # inches: one column of a two-column paper
PAGE = 7.0  # inches: both columns
THEORY_STYLE = {"color": "black", "linestyle": "--", "linewidth": 1.0}

# One color per activation in every figure (Okabe–Ito palette, readable when color-blind).
_COLORS = {
  "sigmoid": "#E69F00",
  "tanh": "#0072B2",
  "tanh2x": "#D55E00",
  "scaled_tanh": "#D55E00",
  "relu": "#009E73",
  "lecun_tanh": "#CC79A7",
  "linear": "#000000",
  "erf": "#56B4E9",
}
_CYCLE = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#000000"]
LABELS = {
  "sigmoid": "sigmoid",
  "tanh": "tanh",
  "tanh2x": "tanh(2x)",
  "relu": "ReLU",
  "lecun_tanh": "LeCun tanh",
  "linear": "linear",
}

RC = {
  "font.size": 8,
  "axes.titlesize": 8,
  "axes.labelsize": 8,
  "legend.fontsize": 7,
  "xtick.labelsize": 7,
  "ytick.labelsize": 7,
  "axes.spines.top": False,
  "axes.spines.right": False,
  "axes.prop_cycle": matplotlib.cycler(color=_CYCLE),
  "lines.linewidth": 1.2,
  "lines.markersize": 3.5,
  "errorbar.capsize": 1.5,
  "legend.frameon": False,
  "savefig.bbox": "tight",
  "savefig.pad_inches": 0.02,
  "pdf.fonttype": 42,  # embed TrueType: editable text in the PDF
  "figure.constrained_layout.use": True,
}
# The column layout's panels are about 1.7 in wide: the same text, tighter legends.
RC_COLUMN = {
  "legend.fontsize": 6,
  "legend.handlelength": 1.5,
  "legend.handletextpad": 0.5,
  "legend.labelspacing": 0.3,
  "legend.borderaxespad": 0.3,
  "legend.columnspacing": 1.0,
  "lines.markersize": 3.0,
}


def color(name: str, index: int = 0) -> str:
  """The color of an activation (or of the ``index``-th series when it has none)."""
  return _COLORS.get(name, _CYCLE[index % len(_CYCLE)])


def label(name: str) -> str:
  """The printed name of an activation: ``"tanh2x"`` → ``"tanh(2x)"``."""
  return LABELS.get(name, name)


LAYOUTS = ("page", "column")
_LAYOUT = contextvars.ContextVar("paper_figs_layout", default="page")


class LayoutWarning(UserWarning):
  """A figure's text collides with other text or enters another panel."""


@contextlib.contextmanager
def layout(name: str) -> Iterator[None]:
  """Draws the figures made inside the block in layout ``name`` (``"page"`` or ``"column"``).

  :func:`figure` lays the panels out for it and :func:`save` names the files after it
  (``F4_….pdf`` for the page, ``F4_…_column.pdf`` for the column); the column layout's
  tighter legends (``RC_COLUMN``) hold inside the block only, as in ``plt.rc_context``.
  """
  if name not in LAYOUTS:
    raise ValueError(f"layout must be one of {', '.join(LAYOUTS)}; got {name!r}")
  token = _LAYOUT.set(name)
  try:
    with plt.rc_context(RC_COLUMN if name == "column" else {}):
      yield
  finally:
    _LAYOUT.reset(token)


def current_layout() -> str:
  """The layout being drawn: ``"page"`` (the default) or ``"column"``."""
  return _LAYOUT.get()


def column_grid(nrows: int, ncols: int, columns: int) -> list[tuple[int, int, int]]:
  """Where each panel of an ``nrows × ncols`` grid goes when reflowed into ``columns`` columns.

  Panels keep their reading order (row-major) and fill rows of ``columns``; a last row with
  fewer panels is centered. Positions are on a grid of ``2 · columns`` half-columns.

  Returns:
    ``(row, first half-column, end half-column)`` for each panel, row-major: panel
    ``i · ncols + j`` is ``axes[i, j]``.

  Example:
    >>> column_grid(1, 3, 2)  # three panels in a row → two, then one centered
    [(0, 0, 2), (0, 2, 4), (1, 1, 3)]
  """
  panels = nrows * ncols
  places = []
  for k in range(panels):
    row, slot = divmod(k, columns)
    in_row = min(columns, panels - row * columns)
    start = columns - in_row + 2 * slot
    places.append((row, start, start + 2))
  return places


def figure(
  nrows: int = 1,
  ncols: int = 1,
  *,
  width: float = COLUMN,
  height: float | None = None,
  column_ncols: int | None = None,
  column_height: float | None = None,
):
  """``plt.subplots(nrows, ncols, squeeze=False)`` in the paper's style and the current layout.

  Args:
    nrows, ncols: the panel grid of the page layout.
    width: the page layout's width (``PAGE`` for a two-column ``figure*``).
    height: the page layout's height; default 0.75 × the panel width per row.
    column_ncols: the column layout's number of columns (default ``min(ncols, 2)``).
    column_height: the column layout's height; default: each row as tall as in the page
      layout, scaled with the panel width by a factor in [0.75, 1].

  Returns:
    ``(fig, axes)``, ``axes`` an ``[nrows, ncols]`` array in both layouts: in the column
    layout a figure wider than a column has its panels reflowed (:func:`column_grid`), so a
    script indexes ``axes[i, j]`` the same way in both.
  """
  plt.rcParams.update(RC if current_layout() == "page" else {**RC, **RC_COLUMN})  # in layout()
  if height is None:
    height = 0.75 * width * nrows / ncols
  if current_layout() == "page" or width <= COLUMN:
    fig, axes = plt.subplots(nrows, ncols, figsize=(width, height), squeeze=False)
    return fig, axes
  columns = min(ncols, 2) if column_ncols is None else column_ncols
  if not 1 <= columns <= nrows * ncols:
    raise ValueError(f"column_ncols must be in [1, {nrows * ncols}]; got {columns}")
  places = column_grid(nrows, ncols, columns)
  rows = places[-1][0] + 1
  if column_height is None:
    shrink = min(max((COLUMN / columns) / (width / ncols), 0.75), 1.0)
    column_height = rows * shrink * height / nrows
  fig = plt.figure(figsize=(COLUMN, column_height))
  grid = fig.add_gridspec(rows, 2 * columns)
  axes = np.empty((nrows, ncols), dtype=object)
  for k, (row, start, end) in enumerate(places):
    axes[divmod(k, ncols)] = fig.add_subplot(grid[row, start:end])
  return fig, axes


def theory(ax, x, y, *, label: str | None = None, **style):
  """A theory curve: a line, black dashed unless ``style`` says otherwise."""
  return ax.plot(x, y, label=label, **{**THEORY_STYLE, **style})


def mc(ax, x, y, lo=None, hi=None, *, label: str | None = None, **style):
  """Monte Carlo points with their 95 % interval ``[lo, hi]`` as error bars."""
  x, y = np.asarray(x, float), np.asarray(y, float)
  style = {"marker": "o", "linestyle": "none", **style}
  if lo is None:
    return ax.plot(x, y, label=label, **style)
  yerr = np.stack([y - np.asarray(lo, float), np.asarray(hi, float) - y])
  return ax.errorbar(x, y, yerr=np.clip(yerr, 0, None), label=label, **style)


def outcome_map(ax, arrays, x: str, y: str, *, depth: int, epsilon: float) -> None:
  """A map of P(explode) − P(vanish) (blue: vanishes, red: explodes) against mean field.

  Draws the measured P = ½ contours (solid), the mean-field lines χ₁ = 1 (dashed) and
  ((K − 1)/2)·log χ₁ = ±log ε (dotted), and a colorbar.

  Args:
    ax: the axis.
    arrays: a run's arrays: the map ``map/<x>`` ``[X]``, ``map/<y>`` ``[Y]``,
      ``map/p_vanish`` and ``map/p_explode`` ``[Y, X]``; mean field on a fine grid,
      ``theory/<x>`` ``[TX]``, ``theory/<y>`` ``[TY]`` and ``theory/chi1`` ``[TY, TX]``.
    x, y: the names of the map's two axes.
    depth: K, the depth the gradient crosses.
    epsilon: the vanish/explode threshold ε.
  """
  mx, my, pv, pe = (arrays[f"map/{k}"] for k in (x, y, "p_vanish", "p_explode"))
  mesh = ax.pcolormesh(
    mx, my, pe - pv, cmap="RdBu_r", vmin=-1, vmax=1, shading="nearest", rasterized=True
  )
  for p, c in ((pv, "#08306b"), (pe, "#67000d")):
    if np.ptp(p) > 0:  # a constant map has no P = ½ contour
      ax.contour(mx, my, p, levels=[0.5], colors=c, linewidths=1.0)
  tx, ty, chi1 = (arrays[f"theory/{k}"] for k in (x, y, "chi1"))
  log_eps = np.log(epsilon)
  lines = {"colors": "black", "linewidths": 1}
  ax.contour(tx, ty, np.log(chi1), levels=[0.0], linestyles="--", **lines)
  growth = 0.5 * (depth - 1) * np.log(chi1)
  ax.contour(tx, ty, growth, levels=[log_eps, -log_eps], linestyles=":", **lines)
  ax.figure.colorbar(mesh, ax=ax, fraction=0.05, pad=0.02).set_label("P(explode) − P(vanish)")


NBSP = "\N{NO-BREAK SPACE}"  # a space at which :func:`wrap` never breaks a title


def line_break() -> str:
  """Where a long axis label may break: nowhere on the page, onto a second line in a column."""
  return "\n" if current_layout() == "column" else " "


def break_formula(left: str, right: str) -> str:
  """The formula ``$left right$`` on one line on the page, broken before ``right`` in a column."""
  if current_layout() == "column":
    return f"${left}$\n${right}$"
  return f"${left} {right}$"


def _words(text: str) -> list[str]:
  """``text`` split at the spaces outside ``$…$`` (a formula is never broken)."""
  words, current, in_math = [], "", False
  for char in text:
    if char == "$":
      in_math = not in_math
    if char == " " and not in_math:
      words.append(current)
      current = ""
    else:
      current += char
  return [w for w in [*words, current] if w]


def wrap(text: str, width: float, *, fontsize: float, renderer) -> str:
  """``text`` with line breaks so that no line is wider than ``width`` points (when a word
  allows it); each line of ``text`` is wrapped on its own, and formulas stay whole."""
  prop = matplotlib.font_manager.FontProperties(size=fontsize)

  def points(line: str) -> float:
    w, _, _ = renderer.get_text_width_height_descent(line, prop, ismath="$" in line)
    return w * 72 / renderer.dpi

  wrapped = []
  for paragraph in text.split("\n"):
    line = ""
    for word in _words(paragraph):
      if line and points(f"{line} {word}") > width:
        wrapped.append(line)
        line = word
      else:
        line = f"{line} {word}" if line else word
    wrapped.append(line)
  return "\n".join(wrapped)


# Points left of a panel's axes for its y tick labels and y label (so not for its title).
_Y_DECORATIONS = 36.0


def panel_labels(axes: Sequence, *, start: str = "a") -> None:
  """Writes **(a)**, **(b)**, … as each axis's left-aligned title, before its own title.

  The panel's titles (set before, at any ``loc``) move to the left after its label, so the
  two never collide and the layout makes room for both above the tick labels; they are
  wrapped to the panel's share of the figure, less its y axis' labels (a :data:`NBSP` never
  breaks). Every label and title of the figure gets one size: the smallest of its titles.
  """
  axes = list(np.ravel(axes))
  titles = [[t for t in (ax._left_title, ax.title, ax._right_title) if t.get_text()] for ax in axes]
  size = min((t.get_fontsize() for ts in titles for t in ts), default=None)
  size = min(size or plt.rcParams["axes.titlesize"], plt.rcParams["axes.titlesize"])
  for i, (ax, texts) in enumerate(zip(axes, titles, strict=True)):
    tag = f"$\\mathbf{{({chr(ord(start) + i)})}}$"
    text = " ".join([tag, *(t.get_text() for t in texts)])
    fig = ax.get_figure()
    spec = ax.get_subplotspec()
    cell = len(spec.colspan) / spec.get_gridspec().ncols * fig.get_figwidth() * 72
    text = wrap(text, cell - _Y_DECORATIONS, fontsize=size, renderer=fig.canvas.get_renderer())
    for loc in ("center", "right"):
      ax.set_title("", loc=loc)
    ax.set_title(text, loc="left", fontsize=size)


def key_above(ax, *, align: str = "center", **legend_options) -> float:
  """Draws ``ax``'s legend above the panel and lifts the panel's title above the legend.

  Call it after :func:`panel_labels`. The legend is centered on the panel or aligned
  with its ``"left"`` or ``"right"`` edge; one wider than the panel reaches over the margin
  beside it without widening it (that would narrow every panel of the column).

  Returns:
    How far the legend reaches above the panel, in points (for :func:`lift_title` of the
    panels beside it).
  """
  x = {"left": 0.0, "center": 0.5, "right": 1.0}[align]
  legend_options = {"borderaxespad": 0.8, **legend_options}  # clear of the top tick label
  legend = ax.legend(loc=f"lower {align}", bbox_to_anchor=(x, 1.0), **legend_options)
  legend.set_in_layout(False)
  fig = ax.get_figure()
  top = legend.get_window_extent(fig.canvas.get_renderer()).y1 - ax.bbox.y1
  lift_title(ax, top * 72 / fig.dpi)
  return top * 72 / fig.dpi


def lift_title(ax, points: float) -> None:
  """Raises ``ax``'s (left) title by ``points``: the layout makes room for a key beneath it."""
  title = ax.get_title(loc="left")
  size = ax._left_title.get_fontsize()
  ax.set_title(title, loc="left", fontsize=size, pad=points + plt.rcParams["axes.titlepad"])


def _visible_tick_labels(axis) -> list:
  """The tick labels ``axis`` draws: non-empty, visible, at a tick inside the view."""
  low, high = sorted(axis.get_view_interval())
  slack = 1e-9 * max(abs(low), abs(high), 1.0)
  labels = []
  for tick in (*axis.get_major_ticks(), *axis.get_minor_ticks()):
    if not (tick.get_visible() and low - slack <= tick.get_loc() <= high + slack):
      continue
    labels += [t for t in (tick.label1, tick.label2) if t.get_visible() and t.get_text()]
  return labels


def _texts(fig) -> list[tuple[object, str, object]]:
  """Every visible text of ``fig`` as ``(owning axes or None, what, artist)``; a legend is one."""
  found = []
  for ax in fig.axes:
    texts = [*_visible_tick_labels(ax.xaxis), *_visible_tick_labels(ax.yaxis)]
    texts += [ax.xaxis.label, ax.yaxis.label, ax.title, ax._left_title, ax._right_title]
    texts += ax.texts
    found += [(ax, repr(t.get_text()), t) for t in texts if t.get_visible() and t.get_text()]
    if (legend := ax.get_legend()) is not None and legend.get_visible():
      found.append((ax, "a legend", legend))
  found += [(None, repr(t.get_text()), t) for t in fig.texts if t.get_visible() and t.get_text()]
  found += [(None, "the figure legend", legend) for legend in fig.legends]
  return found


def text_collisions(fig, *, tolerance: float = 0.5) -> list[str]:
  """What makes ``fig`` hard to read: texts that overlap, and texts inside another panel.

  Draws ``fig`` (without rendering) and compares the boxes of its tick labels, axis labels,
  titles, panel labels, annotations and legends (each legend as one box). Two boxes collide
  when they overlap by more than ``tolerance`` points both ways; a text collides with a
  panel that is not its own (nor that panel's colorbar) the same way.

  A text kept out of the layout (``set_in_layout(False)``, as :func:`key_above`'s legends)
  that runs off the figure is reported too: the saved file would cut it.

  Returns:
    One line per collision, e.g. ``"'0.001' (panel 3) overlaps '0.01' (panel 3)"`` (panels
    numbered as in ``fig.axes``, colorbars included); empty when none.
  """
  fig.draw_without_rendering()
  renderer = fig.canvas.get_renderer()
  pad = tolerance * fig.dpi / 72
  panel = {ax: i for i, ax in enumerate(fig.axes)}

  def overlap(a, b) -> bool:
    return min(a.x1, b.x1) - max(a.x0, b.x0) > pad and min(a.y1, b.y1) - max(a.y0, b.y0) > pad

  texts = [
    (ax, what, t.get_window_extent(renderer), t.get_in_layout()) for ax, what, t in _texts(fig)
  ]
  figure_box = fig.bbox.padded(pad)
  found = []
  for i, (ax, what, box, in_layout) in enumerate(texts):
    where = f" (panel {panel[ax] + 1})" if ax is not None else ""
    if (
      not in_layout
      and matplotlib.transforms.Bbox.union([box, figure_box]).bounds != figure_box.bounds
    ):
      found.append(f"{what}{where} runs off the figure")
    found += [
      f"{what}{where} overlaps {other}" + (f" (panel {panel[b] + 1})" if b is not None else "")
      for b, other, other_box, _ in texts[i + 1 :]
      if overlap(box, other_box)
    ]
    for other_ax in fig.axes:
      if other_ax is ax or _is_colorbar_of(other_ax, ax) or _is_colorbar_of(ax, other_ax):
        continue
      if other_ax.get_visible() and overlap(box, other_ax.get_window_extent(renderer)):
        found.append(f"{what}{where} enters panel {panel[other_ax] + 1}")
  return found


def _is_colorbar_of(cax, ax) -> bool:
  """Whether ``cax`` holds a colorbar drawn beside the panel ``ax``."""
  if ax is None or getattr(cax, "_colorbar", None) is None:
    return False
  return ax in getattr(cax, "_colorbar_info", {}).get("parents", [ax])


def save(fig, out_dir: str | os.PathLike, name: str, *, source: str | None = None) -> list[Path]:
  """Writes ``out_dir/name.pdf`` and ``out_dir/name.png`` atomically; closes ``fig``.

  In the column layout (:func:`layout`) the files are ``name_column.pdf`` and ``.png``.
  Text that collides (:func:`text_collisions`) is reported as a :class:`LayoutWarning`.

  Args:
    fig: the figure.
    out_dir: the folder (created if missing).
    name: the file stem, starting with the figure's name (``"F4_log_g_distribution"``).
    source: the store folder(s) the data came from, recorded in the PDF metadata.

  Returns:
    The two paths.
  """
  if current_layout() != "page":
    name = f"{name}_{current_layout()}"
  out_dir = Path(out_dir)
  out_dir.mkdir(parents=True, exist_ok=True)
  for collision in text_collisions(fig):
    warnings.warn(f"{name}: {collision}", LayoutWarning, stacklevel=2)
  paths = []
  for suffix, extra in ((".pdf", {}), (".png", {"dpi": 300})):
    metadata = {"Title": name, "Creator": "vanish paper_figs"}
    if source and suffix == ".pdf":
      metadata["Subject"] = f"data: {source}"
    elif source:
      metadata["Source"] = str(source)
    paths.append(
      write_atomic(
        out_dir / f"{name}{suffix}",
        lambda handle, suffix=suffix, metadata=metadata, extra=extra: fig.savefig(
          handle, format=suffix[1:], metadata=metadata, **extra
        ),
      )
    )
  plt.close(fig)
  return paths
