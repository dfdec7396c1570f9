"""Where gradients vanish or explode: the (σ_w², σ_b²) phase map of deep tanh networks against
the mean-field critical line χ₁ = 1 and its finite-depth boundaries, and the map over actual
initial weights and biases of tiny tanh networks, with gradient-descent trajectories from initial
to final values.

The key above the panels holds (a)'s, (b)'s and (c)'s markings. (a) Wide networks: P(vanish),
P(stable), P(explode) per cell, blended as colors (blue: vanishes, near white: stable, vermillion:
explodes; a cell with mixed outcomes gets the probability-weighted mix of the three); the measured
P = ½ boundaries (markers) against the mean-field boundaries χ₁ = ε^{±2/(L−1)} (dashed), their
finite-width correction (dotted) and the critical line χ₁ = 1 (solid). (b) The tied one-neuron chain
(every weight w, every bias b) at depth K: the outcome over the inputs, colored as in (a), with
gradient-descent paths on a teacher–student task (○ start, × end, ★ teacher (w*, b*) = (1.1, 0));
black paths are solved: their loss fell 1000×. With b* = 0 and K even, the mirror point
☆ = (−w*, b*) computes the teacher's function exactly (tanh is odd), and every solved path ends
there, none at ★, in the --quick run (23 of 45 paths) and at --full size (249 of 561); of the paths
that start at w > 0 most are not solved, many stalling near (0.7, ±0.05). The panel's title counts
its run's paths. (c) The loss along those paths, colored by the initial outcome. (d) The same chain
at depth 10,000: log|g|/K, the attractor's log-multiplier, is below 0 everywhere except on the
bifurcation lines of the iterated map (dashed: period doubling for w < −1, fold for w > 1). (e, f)
Width-2 and width-3 networks on the slice W_l = w·Ŵ_l, b_l = b: P(stable) over random Ŵ and inputs.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from experiments import parameter_map as parameter_map_experiment
from experiments import phase_map as phase_map_experiment
from paper_figs import _style, figure_main
from vanish import store

VANISH_RGB = np.array([0.0, 0.447, 0.698])  # Okabe–Ito blue
STABLE_RGB = np.array([0.95, 0.95, 0.95])  # near white: nothing wrong there
EXPLODE_RGB = np.array([0.835, 0.369, 0.0])  # vermillion
# (c): the loss curves' colors by initial outcome
LOSS_COLORS = {-1: ("initially vanishing", "#0072B2"), 0: ("initially stable", "#009E73")}
NBSP = _style.NBSP
MAX_BOUNDARY_MARKERS = 25  # (a): measured P = ½ markers per boundary, at most this many
SPARSE_PATHS = 100  # (b): up to this many paths are drawn at full line width


def outcome_rgb(p_vanish, p_stable, p_explode) -> np.ndarray:
  """``[..., 3]`` colors: outcome probabilities blended (blue vanish, white stable, red explode)."""
  p = np.stack([p_vanish, p_stable, p_explode], axis=-1)
  colors = np.stack([VANISH_RGB, STABLE_RGB, EXPLODE_RGB])
  return np.clip(p @ colors, 0, 1)


def _extent(x, y):
  dx = (x[-1] - x[0]) / max(len(x) - 1, 1) / 2
  dy = (y[-1] - y[0]) / max(len(y) - 1, 1) / 2
  return (x[0] - dx, x[-1] + dx, y[0] - dy, y[-1] + dy)


def _computed(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """The points of a theory line on the rows where it was computed (``theory_stride``)."""
  ok = np.isfinite(x) & np.isfinite(y)
  return x[ok], y[ok]


def _phase_panel(ax, a) -> None:
  sw, sb = a["sigma_w2"], a["sigma_b2"]
  rgb = outcome_rgb(a["map/p_vanish"], a["map/p_stable"], a["map/p_explode"])
  ax.imshow(rgb, origin="lower", aspect="auto", extent=_extent(sw, sb), interpolation="nearest")
  _style.theory(ax, *_computed(a["mean_field/critical"], sb), label="χ₁ = 1", linestyle="-")
  _style.theory(ax, *_computed(a["mean_field/vanish"], sb), label="χ₁ = ε^(±2/(L−1))")
  _style.theory(ax, *_computed(a["mean_field/explode"], sb))
  finite = {"linestyle": ":", "color": "0.3"}
  _style.theory(ax, *_computed(a["mean_field_finite/vanish"], sb), label="finite width", **finite)
  _style.theory(ax, *_computed(a["mean_field_finite/explode"], sb), **finite)
  every = slice(None, None, -(-len(sb) // MAX_BOUNDARY_MARKERS))  # --full: 200 rows
  for name, label in (("vanish", "measured P = ½"), ("explode", None)):
    measured = a[f"empirical/{name}"][every]
    _style.mc(ax, measured, sb[every], label=label, color="white", mec="black", ms=3.5)
  ax.set_xlim(sw[0], sw[-1])
  ax.set_ylim(sb[0], sb[-1])
  ax.set_xlabel("σ_w²")
  ax.set_ylabel("σ_b²")


def _key(fig) -> None:
  """One legend above the figure for (a), (b) and (c): the outcome colors and every marking.

  Five columns on the page; in the column layout two, the first holding the colors and (a)'s
  markings, the second (b)'s and (c)'s.
  """
  line = {"color": "black", "linewidth": 1.0}
  patch = {"edgecolor": "0.5", "linewidth": 0.5}
  handles = [
    Patch(facecolor=VANISH_RGB, label="vanishes", **patch),
    Patch(facecolor=STABLE_RGB, label="stable", **patch),
    Patch(facecolor=EXPLODE_RGB, label="explodes (mixtures blend)", **patch),
    Line2D([], [], linestyle="-", label="(a) χ₁ = 1", **line),
    Line2D([], [], linestyle="--", label="(a) χ₁ = ε^(±2/(L−1))", **line),
    Line2D([], [], linestyle=":", color="0.3", label="(a) finite width"),
    Line2D([], [], marker="o", mfc="white", mec="black", ls="none", label="(a) measured P = ½"),
    Line2D([], [], marker="o", mfc="none", mec="black", ms=3, ls="none", label="(b) start"),
    Line2D([], [], marker="x", color="#D55E00", ms=3.5, ls="none", label="(b) end"),
    Line2D([], [], marker="*", color="gold", mec="black", ms=7, ls="none", label="(b) teacher"),
    Line2D(
      [], [], marker="*", mfc="white", mec="black", ms=7, ls="none", label="(b) mirror (−w*, b*)"
    ),
    Line2D([], [], color="black", linewidth=0.8, label="(b) solved: loss ÷ 1000"),
    Line2D([], [], color="0.55", linewidth=0.8, label="(b) not solved"),
    *(Line2D([], [], color=c, linewidth=0.8, label=f"(c) {n}") for n, c in LOSS_COLORS.values()),
  ]
  if _style.current_layout() == "page":
    fig.legend(handles=handles, loc="outside upper center", ncol=5, fontsize=6.5, columnspacing=1.2)
  else:
    handles.insert(7, Line2D([], [], linestyle="none", label=" "))  # (b) starts column 2
    fig.legend(handles=handles, loc="outside upper center", ncol=2, fontsize=6)


def mirror_point(teacher, depth: int) -> np.ndarray | None:
  """The tied tanh chain's other exact solution (−w*, b*), when there is one, else None.

  tanh is odd, so with b* = 0 the weight −w* flips the sign of every layer's output and
  the K-th output is (−1)^K times the teacher's: the same function at even K.

  Example:
    >>> mirror_point([1.1, 0.0], 10).tolist(), mirror_point([1.1, 0.0], 9)
    ([-1.1, 0.0], None)
  """
  w, b = (float(v) for v in teacher)
  return np.array([-w, b]) if b == 0 and depth % 2 == 0 and w != 0 else None


def path_ends(a, depth: int, *, tol: float = 0.05) -> dict[str, int]:
  """Counts of (b)'s paths: all, loss reduced 1000×, and of those the ones ending within
  ``tol`` (in w and b) of the teacher and of its mirror (:func:`mirror_point`)."""
  solved = a["trajectories/solved"].astype(bool)
  end = np.stack([a["trajectories/w"][:, -1], a["trajectories/b"][:, -1]], axis=1)

  def near(point) -> np.ndarray:
    if point is None:
      return np.zeros(len(end), bool)
    return np.all(np.abs(end - np.asarray(point)) < tol, axis=1)

  teacher = a["trajectories/teacher"]
  return {
    "paths": int(solved.size),
    "solved": int(solved.sum()),
    "teacher": int((solved & near(teacher)).sum()),
    "mirror": int((solved & near(mirror_point(teacher, depth))).sum()),
  }


def _tied_panel(ax, a, depth_index: int) -> None:
  w, b = a["tied/w"], a["tied/b"]
  rgb = outcome_rgb(
    a["tied/p_vanish"][depth_index],
    a["tied/p_stable"][depth_index],
    a["tied/p_explode"][depth_index],
  )
  ax.imshow(rgb, origin="lower", aspect="auto", extent=_extent(w, b), interpolation="nearest")
  ax.set_xlabel("initial weight w (all layers)")
  ax.set_ylabel("initial bias b")


def _trajectories(ax, a, depth: int) -> None:
  tw, tb = a["trajectories/w"], a["trajectories/b"]
  solved = a["trajectories/solved"].astype(bool)
  # thinner lines and marks as the start grid gets denser (--full: 33 × 17 = 561 paths)
  thin = min(1.0, math.sqrt(SPARSE_PATHS / tw.shape[0]))
  for s in range(tw.shape[0]):
    color = "black" if solved[s] else "0.55"
    ax.plot(tw[s], tb[s], color=color, linewidth=0.5 * thin, alpha=0.9)
  mark = {"linestyle": "none", "ms": 2 * thin}
  ax.plot(tw[:, 0], tb[:, 0], "o", mfc="none", mec="black", mew=0.4 * thin, **mark)
  ax.plot(tw[:, -1], tb[:, -1], "x", color="#D55E00", mew=0.6 * thin, **mark)
  teacher = a["trajectories/teacher"]
  ax.plot(*teacher, "*", color="gold", mec="black", ms=7, mew=0.5, linestyle="none")
  mirror = mirror_point(teacher, depth)
  if mirror is not None:
    ax.plot(*mirror, "*", mfc="white", mec="black", ms=7, mew=0.5, linestyle="none")


def _loss_panel(ax, a) -> None:
  loss, initial = a["trajectories/loss"], a["trajectories/initial_outcome"]
  steps = np.arange(loss.shape[1])
  for code, (_, color) in LOSS_COLORS.items():  # their key is in the figure's (_key)
    for s in np.flatnonzero(initial == code):
      ax.plot(steps[1:], loss[s, 1:], color=color, linewidth=0.5, alpha=0.6)
  ax.set_xscale("log")
  ax.set_yscale("log")
  ax.set_xlabel("gradient-descent" + _style.line_break() + "step")
  ax.set_ylabel("loss")


def _lyapunov_panel(ax, a, depth_index: int) -> None:
  w, b = a["tied/w"], a["tied/b"]
  depth = a["tied/depths"][depth_index]
  rate = a["tied/median_log_g"][depth_index] / depth
  image = ax.imshow(
    rate,
    origin="lower",
    aspect="auto",
    extent=_extent(w, b),
    cmap=matplotlib.colormaps["magma"].with_extremes(bad="black", under="black"),
    vmin=-3,
    vmax=0,
  )
  fig = ax.figure
  fig.colorbar(image, ax=ax, label="log|g_K| / K", shrink=0.9)
  low, high = a["tied/critical_low"], a["tied/critical_high"]
  for curve in (low, high):
    _style.theory(ax, w, curve, color="cyan", linewidth=0.8)
  ax.set_xlim(w[0], w[-1])
  ax.set_ylim(b[0], b[-1])
  ax.set_xlabel("weight w")
  ax.set_ylabel("bias b")
  ax.set_title(f"tied chain, K{NBSP}={NBSP}{depth:,}", fontsize=7)


def _slice_panel(ax, a, width: int):
  prefix = f"slice_width{width}"
  w, b = a[f"{prefix}/w"], a[f"{prefix}/b"]
  image = ax.imshow(
    a[f"{prefix}/p_stable"],
    origin="lower",
    aspect="auto",
    extent=_extent(w, b),
    cmap="viridis",
    vmin=0,
    vmax=1,
    interpolation="nearest",
  )
  ax.set_xlabel("weight scale w\n(W = w·Ŵ)")
  ax.set_ylabel("bias b")
  ax.set_title(f"width {width}", fontsize=7)
  return image


def draw(*, quick: bool, out_dir, store_root, force: bool = False) -> list[Path]:
  size = "quick" if quick else "full"
  phase_path = phase_map_experiment.ensure(size, store_root, force=force)
  tiny_path = parameter_map_experiment.ensure(size, store_root, force=force)
  phase = store.load(phase_path)
  tiny = store.load(tiny_path)
  p, t = phase.arrays, tiny.arrays
  depth = int(tiny.config["depth"])
  fig, axes = _style.figure(2, 3, width=_style.PAGE, height=0.62 * _style.PAGE, column_height=6.4)
  _phase_panel(axes[0, 0], p)
  c = phase.config
  setting = f"n = {c['width']}, L = {c['depth']}, ε = {c['epsilon']:g}"
  axes[0, 0].set_title(setting.replace(" = ", f"{NBSP}={NBSP}"), fontsize=7)
  _tied_panel(axes[0, 1], t, 0)
  _trajectories(axes[0, 1], t, depth)
  axes[0, 1].set_xlim(t["tied/w"][0], t["tied/w"][-1])
  axes[0, 1].set_ylim(t["tied/b"][0], t["tied/b"][-1])
  n = path_ends(t, depth)
  axes[0, 1].set_title(
    f"tied chain, K{NBSP}={NBSP}{depth}\n{n['solved']}/{n['paths']} solved:"
    f" {n['teacher']}{NBSP}at{NBSP}★, {n['mirror']}{NBSP}at{NBSP}☆",
    fontsize=6.5,
  )
  _loss_panel(axes[0, 2], t)
  _lyapunov_panel(axes[1, 0], t, 1)
  widths = [int(n) for n in tiny.config["widths"]][:2]
  image = None
  for ax, width in zip(axes[1, 1:], widths, strict=False):
    image = _slice_panel(ax, t, width)
  if image is not None:
    fig.colorbar(image, ax=list(axes[1, 1:]), label="P(stable)", shrink=0.9)
  _key(fig)
  _style.panel_labels(axes)
  return _style.save(fig, out_dir, "F6_phase_map", source=f"{phase_path}; {tiny_path}")


main = figure_main(draw)

if __name__ == "__main__":
  sys.exit(main())
