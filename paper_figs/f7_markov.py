"""Markov model of the gradient in training: a one-way street only where the gradient is exactly 0.

Ensembles of a tanh network (16 → 32 × 4 → 4) under SGD (η = 1, 10, 100) and Adam, and of a narrow
ReLU network (16 → 8 × 6 → 4, He init) under SGD with η = 1, trained on a teacher–student task; g =
‖∂C/∂b^1‖ / ‖∂C/∂b^L‖ of the full training set after every step (filled) or of the applied
mini-batch gradient (open), and ``[g ≈ 0]`` iff g < ε. (a) log₁₀ g over training: median and 10–90 %
band per setting (g = 0 drawn at 10⁻²⁵); the dotted line is ε = 10⁻⁴. (b) The escape probability P(≈
→ ≉) with 95 % Wilson intervals against ε; the one-way street claims it is ≈ 0 (below the dashed q0
= 0.01). (c) The vanishing rate P(≉ → ≈). (d) Survival of the first-passage time into ``[g ≈ 0]`` at
ε = 10⁻⁴ (full-set g), with 95 % intervals, against the geometric prediction (1 − p̂)^k of the
fitted chain (dashed). (e) The test per setting at ε = 10⁻⁴: P̂(≈ → ≉) with its 95 % interval and
the one-sided 95 % upper bound (bar); above each estimate the verdict and the count escapes/vanished
states: ✓ where the one-way street holds (H0: q ≤ q0 not rejected), ✗ where it is rejected. Only the
ReLU net's full-set g, where ``[g ≈ 0]`` is a dead layer with an exactly zero gradient, never
escapes. (f) The share of members in ``[g ≈ 0]`` (ε = 10⁻⁴, full set): it only grows where the state
absorbs.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from matplotlib.lines import Line2D

from experiments import markov as experiment
from paper_figs import _style, figure_main
from vanish import store

EPSILON = 1e-4
FOREST_TOP = 20.0  # (e)'s y-axis runs to 1 and leaves a band above for the verdicts


def _rows(run, setting, signal):
  rows = [r for r in run.tables["markov"] if r["setting"] == setting and r["signal"] == signal]
  return sorted(rows, key=lambda r: float(r["threshold"]))


def _column(rows, name):
  return np.array([float(r[name]) for r in rows])


def _short(name):
  """A tick label: the setting's label on three lines (five fit in a 1.7 in panel)."""
  network, optimizer, rate = experiment.SETTINGS[name]
  return f"{network}\n{'Adam' if optimizer == 'adam' else 'SGD'}\n{rate:g}"


def _forest(ax, run, name, i, color):
  """Setting ``i``'s escape estimate at EPSILON, full set (filled) and mini-batch (open).

  Its notes, rotated, are one text of two lines at ``i`` (full set left, mini-batch right):
  the verdicts above 1, "never ≈ 0" near 0 (a blank line where the other signal's note is
  elsewhere).
  """
  notes = {}  # the note's y → {signal: line}
  signals = (("full_ratio", -0.15, color), ("minibatch_ratio", 0.15, "none"))
  for signal, dx, fill in signals:
    (row,) = [r for r in _rows(run, name, signal) if float(r["threshold"]) == EPSILON]
    x = i + dx
    if int(row["n_vanished"]) == 0:
      notes.setdefault(0.001, {})[signal] = "never ≈ 0"
      continue
    q = float(row["q_escape"])
    _style.mc(
      ax,
      [x],
      [q],
      [float(row["q_escape_lo"])],
      [float(row["q_escape_hi"])],
      color=color,
      markerfacecolor=fill,
    )
    ax.plot([x - 0.08, x + 0.08], [float(row["q_escape_upper95"])] * 2, color=color, lw=1.5)
    verdict = "✗" if row["one_way_rejected"] == "True" else "✓"
    notes.setdefault(1.3, {})[signal] = f"{verdict} {row['escapes']}/{row['n_vanished']}"
  for y, lines in notes.items():
    text = "\n".join(lines.get(signal, " ") for signal, _, _ in signals)
    ax.text(i, y, text, ha="center", va="bottom", rotation=90, fontsize=5, color=color)


def draw(*, quick: bool, out_dir, store_root, force: bool = False) -> list[Path]:
  path = experiment.ensure("quick" if quick else "full", store_root, force=force)
  run = store.load(path)
  settings = [name for name in experiment.SETTINGS if name in run.config["settings"]]
  fig, axes = _style.figure(2, 3, width=_style.PAGE, height=4.8, column_height=6.0)
  (traj, escape, vanish), (survival, forest, share) = axes
  for i, name in enumerate(settings):
    color, label = _style.color(name, i), experiment.LABELS.get(name, name)
    log_g = run.arrays[f"{name}/full_ratio/log_g"].astype(np.float64) / np.log(10)
    steps = np.arange(log_g.shape[1])
    clipped = np.clip(log_g, -25, None)  # an underflowed norm (g = 0) is drawn at 1e-25
    lo, mid, hi = np.percentile(clipped, [10, 50, 90], axis=0)
    traj.plot(steps, mid, color=color)
    traj.fill_between(steps, lo, hi, color=color, alpha=0.15, linewidth=0)
    for signal, fill in (("full_ratio", color), ("minibatch_ratio", "none")):
      rows = _rows(run, name, signal)
      eps = _column(rows, "threshold")
      shift = 1.12 if signal == "minibatch_ratio" else 1 / 1.12  # keep error bars apart
      for ax, key in ((escape, "q_escape"), (vanish, "p_vanish")):
        y = _column(rows, key)
        keep = np.isfinite(y)
        _style.mc(
          ax,
          eps[keep] * shift,
          y[keep],
          _column(rows, f"{key}_lo")[keep],
          _column(rows, f"{key}_hi")[keep],
          color=color,
          markerfacecolor=fill,
          label=label if signal == "full_ratio" else None,
        )
    _forest(forest, run, name, i, color)
    prefix = f"{name}/full_ratio/eps{EPSILON:g}"
    share.plot(run.arrays[f"{prefix}/vanished_fraction"], color=color)
    surv, band = run.arrays[f"{prefix}/survival"], run.arrays[f"{prefix}/survival_interval"]
    if np.isfinite(surv).all() and surv[-1] < 1:
      k = np.arange(len(surv))
      every = max(1, len(k) // 25)
      _style.mc(
        survival,
        k[::every],
        surv[::every],
        band[::every, 0],
        band[::every, 1],
        color=color,
        markersize=2.5,
      )
      _style.theory(survival, k, run.arrays[f"{prefix}/geometric_survival"], color=color)
  traj.axhline(np.log10(EPSILON), color="gray", linestyle=":", linewidth=0.8)
  traj.set(xlabel="training step", ylabel=r"$\log_{10} g$ (full set)", ylim=(-26, 4))
  traj.set_title(r"$g = 0$ drawn at $-25$", fontsize=7)
  escape.axhline(experiment.Q0, **_style.THEORY_STYLE)
  escape.annotate(  # below the line at the right, where no estimate is
    "q0: one-way street below",
    (1, experiment.Q0),
    xycoords=("axes fraction", "data"),
    xytext=(0, -2),
    textcoords="offset points",
    ha="right",
    va="top",
    fontsize=6,
  )
  for ax, name in ((escape, "escape  P(≈ → ≉)"), (vanish, "vanishing  P(≉ → ≈)")):
    ax.set(xscale="log", xlabel="threshold ε", ylabel=name)
    ax.set_yscale("symlog", linthresh=1e-2)
    ax.set_ylim(0, 1.3)
  survival.set(xlabel="step k", ylabel=f"P(τ > k),  ε = {EPSILON:g}", ylim=(0, 1.05))
  survival.set_title("dashed: geometric", fontsize=7)  # a key inside would hide the error bars
  forest.axhline(experiment.Q0, **_style.THEORY_STYLE)
  forest.set_yscale("symlog", linthresh=1e-2)
  forest.spines["left"].set_bounds(0, 1)  # above 1: the verdicts' band
  forest.set_yticks([0, 1e-2, 1e-1, 1])
  forest.set_yticks([], minor=True)
  forest.set(
    ylim=(0, FOREST_TOP),
    ylabel=f"escape  P(≈ → ≉),  ε = {EPSILON:g}",
    xlim=(-0.6, len(settings) - 0.4),
  )
  forest.set_xticks(range(len(settings)), [_short(n) for n in settings], fontsize=5.5)
  share.set(xlabel="training step", ylabel=f"share in [g ≈ 0],  ε = {EPSILON:g}", ylim=(0, 1))
  handles = [
    Line2D([], [], color="gray", marker="o", linestyle="none", label="full set"),
    Line2D(
      [], [], color="gray", marker="o", markerfacecolor="none", linestyle="none", label="mini-batch"
    ),
  ]
  handles += [
    Line2D([], [], color=_style.color(name, i), marker="o", label=experiment.LABELS.get(name, name))
    for i, name in enumerate(settings)
  ]
  # filled column by column, the first holding full set / mini-batch: two rows on the page
  # (one row of every label is wider than it), three in a column (a blank under mini-batch)
  if _style.current_layout() == "page":
    fig.legend(handles=handles, loc="outside upper center", ncol=-(-len(handles) // 2))
  else:
    handles.insert(2, Line2D([], [], linestyle="none", label=" "))
    fig.legend(handles=handles, loc="outside upper center", ncol=-(-len(handles) // 3))
  _style.panel_labels(axes)
  return _style.save(fig, out_dir, "F7_markov", source=str(path))


main = figure_main(draw)

if __name__ == "__main__":
  sys.exit(main())
