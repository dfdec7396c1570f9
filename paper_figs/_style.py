"""One style for every paper figure: sizes, colors, theory-versus-Monte-Carlo conventions, saving.

Conventions (so every figure reads the same):

* Monte Carlo is drawn with markers and 95 % error bars (``mc(ax, x, y, lo, hi)``),
  theory with lines (``theory(ax, x, y)``), black dashed unless a color is needed;
* each activation has one color in every figure (``color("tanh")``);
* one column is 3.4 in wide and two columns 7.0 in; text is 8 pt;
* every figure is written as a vector PDF and a 300 dpi PNG, atomically, by :func:`save`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
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


def color(name: str, index: int = 0) -> str:
  """The color of an activation (or of the ``index``-th series when it has none)."""
  return _COLORS.get(name, _CYCLE[index % len(_CYCLE)])


def label(name: str) -> str:
  """The printed name of an activation: ``"tanh2x"`` → ``"tanh(2x)"``."""
  return LABELS.get(name, name)


def figure(
  nrows: int = 1, ncols: int = 1, *, width: float = COLUMN, height: float | None = None, **kw
):
  """``plt.subplots`` in the paper's style; height defaults to 0.75 × width per row / columns."""
  plt.rcParams.update(RC)
  if height is None:
    height = 0.75 * width * nrows / ncols if ncols > 1 else 0.75 * width * nrows
  fig, axes = plt.subplots(nrows, ncols, figsize=(width, height), squeeze=False, **kw)
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


def panel_labels(axes: Sequence, *, start: str = "a") -> None:
  """Writes (a), (b), … in the upper-left corner of each axis."""
  for i, ax in enumerate(np.ravel(axes)):
    ax.text(
      -0.02,
      1.02,
      f"({chr(ord(start) + i)})",
      transform=ax.transAxes,
      ha="right",
      va="bottom",
      fontweight="bold",
    )


def save(fig, out_dir: str | os.PathLike, name: str, *, source: str | None = None) -> list[Path]:
  """Writes ``out_dir/name.pdf`` and ``out_dir/name.png`` atomically; closes ``fig``.

  Args:
    fig: the figure.
    out_dir: the folder (created if missing).
    name: the file stem, starting with the figure's name (``"F4_log_g_distribution"``).
    source: the store folder(s) the data came from, recorded in the PDF metadata.

  Returns:
    The two paths.
  """
  out_dir = Path(out_dir)
  out_dir.mkdir(parents=True, exist_ok=True)
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
