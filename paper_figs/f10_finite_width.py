"""Finite width: the log squared gradient of a He-initialized ReLU net fluctuates with variance
set by β = Σ 1/n_l, whatever the depth and width separately, following Hanin's exact law
(and 5β only for wide layers).

(a) Var[log ‖Ju‖²] versus β for constant widths (colors) and non-constant profiles (black
diamonds), Monte Carlo with 95 % intervals (fourth-moment formula), Hanin's exact law for
each profile (open circles) and its large-width form 5β (dashed). (b) The mean,
E[log ‖Ju‖²] − log(n_L/n₀), against the exact law and −(5/2)β. (c) The distribution of
log ‖Ju‖² for profiles of equal β = 1 but different width and depth, against Gaussians
with the exact mean and variance (dashed, in each profile's color).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from experiments import finite_width as experiment
from paper_figs import _style, figure_main
from vanish import store


def _width_class(row: dict) -> str:
  widths = set(row["widths"].split()[1:])
  return f"n = {widths.pop()}" if len(widths) == 1 else "mixed"


def draw(*, quick: bool, out_dir: Path, store_root: Path, force: bool = False) -> list[Path]:
  path = experiment.ensure("quick" if quick else "full", store_root, force=force)
  run = store.load(path)
  rows = run.tables["variance"]
  f = lambda r, k: float(r[k])  # noqa: E731
  classes = sorted({_width_class(r) for r in rows}, key=lambda c: (c == "mixed", len(c), c))
  fig, axes = _style.figure(1, 3, width=_style.PAGE, height=2.5)
  b_max = max(f(r, "beta") for r in rows)
  betas = np.linspace(0, 1.05 * b_max, 50)
  for i, cls in enumerate(classes):
    sel = sorted((r for r in rows if _width_class(r) == cls), key=lambda r: f(r, "beta"))
    beta = [f(r, "beta") for r in sel]
    style = {"color": "black", "marker": "D"} if cls == "mixed" else {"color": _style.color("", i)}
    _style.mc(
      axes[0][0],
      beta,
      [f(r, "log_var") for r in sel],
      [f(r, "log_var_lo") for r in sel],
      [f(r, "log_var_hi") for r in sel],
      label=cls,
      **style,
    )
    axes[0][0].plot(
      beta,
      [f(r, "theory_log_var") for r in sel],
      linestyle="none",
      marker="o",
      markersize=6,
      fillstyle="none",
      color=style["color"],
    )
    shifted = [f(r, "log_mean") - f(r, "log_mean_offset") for r in sel]
    half = [1.96 * f(r, "log_mean_se") for r in sel]
    _style.mc(axes[0][1], beta, shifted, np.subtract(shifted, half), np.add(shifted, half), **style)
    axes[0][1].plot(
      beta,
      [f(r, "theory_log_mean") - f(r, "log_mean_offset") for r in sel],
      linestyle="none",
      marker="o",
      markersize=6,
      fillstyle="none",
      color=style["color"],
    )
  axes[0][0].plot([], [], "o", color="gray", fillstyle="none", markersize=6, label="exact law")
  _style.theory(axes[0][0], betas, 5 * betas, label=r"$5\beta$")
  _style.theory(axes[0][1], betas, -2.5 * betas, label=r"$-\frac{5}{2}\beta$")
  axes[0][0].set_ylabel(r"Var$[\log\|Ju\|^2]$")
  axes[0][1].set_ylabel(r"E$[\log\|Ju\|^2]-\log(n_L/n_0)$")
  axes[0][0].legend(loc="upper left", fontsize=6)
  axes[0][1].legend(loc="lower left")
  for ax in axes[0][:2]:
    ax.set_xlabel(r"$\beta=\sum_l 1/n_l$")
  ax = axes[0][2]
  target = 1.0
  chosen = [r for r in rows if abs(f(r, "beta") - target) < 1e-9]
  for i, r in enumerate(sorted(chosen, key=lambda r: int(r["depth"]))):
    logs = run.arrays[f"{r['profile']}/log_squared_gradient"] - f(r, "log_mean_offset")
    c = _style.color("", i)
    ax.hist(
      logs,
      bins=50,
      density=True,
      histtype="step",
      color=c,
      label=f"{r['profile'].replace('_', ', ').replace('n', 'n=').replace('L', 'L=')}",
    )
    grid = np.linspace(logs.min(), logs.max(), 200)
    mu, var = f(r, "theory_log_mean") - f(r, "log_mean_offset"), f(r, "theory_log_var")
    _style.theory(
      ax, grid, np.exp(-((grid - mu) ** 2) / (2 * var)) / np.sqrt(2 * np.pi * var), color=c
    )
  _style.theory(ax, [], [], label="Gaussian, exact law")
  ax.set_ylim(0, 1.6 * ax.get_ylim()[1])  # room for the legend above the histograms
  ax.set_xlabel(r"$\log\|Ju\|^2-\log(n_L/n_0)$")
  ax.set_ylabel("density")
  ax.set_title(rf"$\beta$ = {target:g}", loc="right")
  ax.legend(loc="upper left", fontsize=6)
  _style.panel_labels(axes)
  return _style.save(fig, out_dir, "F10_finite_width", source=str(path))


main = figure_main(draw)

if __name__ == "__main__":
  sys.exit(main())
