"""Trainability versus depth: tanh networks (σ_b² = 0.05) on the 8×8 digits train, within a
fixed SGD budget, only where the depth L stays below about 6·ξ_c(σ_w²), the mean-field depth scale
of correlations, which diverges at the order-to-chaos transition (Schoenholz et al. 2017).

(a) Final training accuracy of every (σ_w², L) cell (mean over seeds; chance 10 %, the white tick
on the color bar), with the mean-field bound L = 6·ξ_c (dashed) and the critical σ_w² (dotted),
where ξ_c = ∞. Cells marked × have mean accuracy below the trainability threshold (legend).
(b) Training accuracy against depth for each σ_w²; the error bars are a 95 % Student-t interval of
the mean over seeds when there are at least 3 seeds (``--full``), and the range (min–max) of the
2 seeds of ``--quick``, which is too few for a useful interval — the panel says which. The
triangles above the axis mark L = 6·ξ_c for the σ_w² of the same color, where it falls within the
plotted depths. The bound is an upper limit: at the quick budget (4 epochs, width 32, 2 seeds)
every cell deeper than 6·ξ_c fails, but so do some deep cells below it, e.g. σ_w² = 3 and 4 at
L = 36 (6·ξ_c ≈ 54 and 42, above the plot), which 4 epochs do not train; the quick run cannot
tell whether they would train with more epochs.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from matplotlib.lines import Line2D
from scipy import stats

from experiments import trainability
from paper_figs import _style, figure_main
from vanish import store


def _edges(centers: np.ndarray) -> np.ndarray:
  """Cell edges halfway between centers (the outer ones mirrored)."""
  c = np.asarray(centers, float)
  inner = (c[1:] + c[:-1]) / 2
  return np.concatenate([[c[0] - (inner[0] - c[0])], inner, [c[-1] + (c[-1] - inner[-1])]])


def cell_table(rows, sigma_w2: np.ndarray, depths: np.ndarray, field: str) -> np.ndarray:
  """``[depths, σ_w²]`` array of ``field`` from the experiment's ``cells`` rows."""
  table = np.full((len(depths), len(sigma_w2)), np.nan)
  index_s = {float(s): i for i, s in enumerate(sigma_w2)}
  index_d = {int(d): i for i, d in enumerate(depths)}
  for row in rows:
    table[index_d[int(row["depth"])], index_s[float(row["sigma_w2"])]] = float(row[field])
  return table


def seed_interval(final: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, str]:
  """Mean over seeds and its error bar: a 95 % t interval with ≥ 3 seeds, else the range.

  Args:
    final: ``[..., seeds]`` final accuracies, one per seed.

  Returns:
    ``(mean, lo, hi, what)``, the first three ``[...]`` (clipped to [0, 1]) and ``what``
    the error bar's name for the figure.

  Example:
    >>> mean, lo, hi, what = seed_interval(np.array([[0.2, 0.4]]))
    >>> (mean.round(6).tolist(), lo.tolist(), hi.tolist(), what)
    ([0.3], [0.2], [0.4], 'min–max of 2 seeds')
  """
  final = np.asarray(final, float)
  seeds = final.shape[-1]
  mean = final.mean(-1)
  if seeds < 3:
    return mean, final.min(-1), final.max(-1), f"min–max of {seeds} seed{'s' * (seeds > 1)}"
  half = stats.t.ppf(0.975, seeds - 1) * final.std(-1, ddof=1) / np.sqrt(seeds)
  return mean, np.clip(mean - half, 0, 1), np.clip(mean + half, 0, 1), f"95 % t, {seeds} seeds"


def draw(*, quick: bool, out_dir, store_root, force: bool = False) -> list[Path]:
  path = trainability.ensure("quick" if quick else "full", store_root, force=force)
  run = store.load(path)
  a, rows = run.arrays, run.tables["cells"]
  sw, depths = a["sigma_w2"], a["depths"]
  accuracy = cell_table(rows, sw, depths, "train_accuracy")
  final = np.stack([a[f"depth{int(d)}/train_accuracy"][:, :, -1] for d in depths])  # [L, S, seeds]
  final = np.nan_to_num(final, nan=0.0)  # a diverged seed counts as 0, as in the cells table
  _, low, high, bars = seed_interval(final)
  threshold = float(run.config["threshold"])
  six_xi_c = cell_table(rows, sw, depths, "six_xi_c")[0]

  # the column layout stacks (a) above (b): side by side, 1.7 in leave no room for (a)'s color
  # bar and (b)'s key
  fig, axes = _style.figure(1, 2, width=_style.PAGE, height=2.7, column_ncols=1, column_height=4.6)
  fig.get_layout_engine().set(wspace=0.06)  # (a)'s colorbar label clear of (b)'s y label
  ax = axes[0, 0]
  mesh = ax.pcolormesh(
    _edges(sw), _edges(depths), accuracy, cmap="viridis", vmin=0.0, vmax=1.0, shading="flat"
  )
  bar = fig.colorbar(mesh, ax=ax, pad=0.02)
  bar.set_label("training accuracy")
  bar.ax.axhline(trainability.CHANCE, color="white", linewidth=1.0)
  failed = np.argwhere(accuracy < threshold)
  ax.plot(
    sw[failed[:, 1]],
    depths[failed[:, 0]],
    "x",
    color="white",
    markersize=3,
    alpha=0.8,
    linestyle="none",
    label=f"accuracy < {threshold:g}",
  )
  ts, xi = a["theory/sigma_w2"], a["theory/xi_c"]
  y_top = _edges(depths)[-1]
  bound = np.where(np.isfinite(xi), 6 * xi, np.inf)
  _style.theory(ax, ts, np.minimum(bound, 10 * y_top), label="L = 6·ξ_c", color="white")
  critical = float(a["theory/critical_sigma_w2"])
  ax.axvline(critical, color="white", linestyle=":", linewidth=1.0, label="χ₁ = 1")
  ax.set_xlim(_edges(sw)[0], _edges(sw)[-1])
  ax.set_ylim(_edges(depths)[0], y_top)
  ax.set_xlabel("weight variance σ_w²")
  ax.set_ylabel("depth L")
  ax.legend(
    loc="lower right", fontsize=6, frameon=True, framealpha=0.6, facecolor="0.3", labelcolor="white"
  )

  ax = axes[0, 1]
  for i, s in enumerate(sw):
    style = {"color": _style.color("", i), "marker": "o", "linestyle": "-", "linewidth": 0.8}
    _style.mc(ax, depths, accuracy[:, i], low[:, i], high[:, i], label=f"{s:g}", **style)
    x = six_xi_c[i]
    if depths[0] <= x <= depths[-1]:
      ax.plot([x], [1.02], marker="v", color=style["color"], clip_on=False, markersize=4)
  ax.axhline(trainability.CHANCE, **_style.THEORY_STYLE)
  ax.text(depths[0], trainability.CHANCE + 0.02, "chance", ha="left", va="bottom", fontsize=6)
  ax.set_ylim(0, 1.0)
  ax.set_xlabel("depth L")
  ax.set_ylabel("training accuracy")
  ax.legend(
    handles=[
      *ax.get_legend_handles_labels()[0],
      Line2D([], [], color="0.4", marker="v", linestyle="none", markersize=4, label="L = 6·ξ_c"),
    ],
    title="σ_w²",
    fontsize=6,
    title_fontsize=6,
    # page: a column right of (b); column: rows below it, so that (b) is as wide as (a) and
    # (a)'s color bar stays beside (a) (the two panels share the right margin)
    **(
      {"loc": "center left", "bbox_to_anchor": (1.0, 0.5)}
      if _style.current_layout() == "page"
      else {"loc": "upper center", "bbox_to_anchor": (0.5, -0.26), "ncol": 5}
    ),
  )
  ax.text(
    0.99, 0.99, f"error bars: {bars}", transform=ax.transAxes, ha="right", va="top", fontsize=6
  )
  _style.panel_labels(axes)
  return _style.save(fig, out_dir, "F8_trainability", source=str(path))


main = figure_main(draw)

if __name__ == "__main__":
  sys.exit(main())
