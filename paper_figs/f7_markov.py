"""The Markov model of the gradient during training: is vanishing a one-way street?

Ensembles of a tanh network (16 → 32 × 4 → 4) trained on a teacher–student task;
g = ‖∂C/∂b^1‖ / ‖∂C/∂b^L‖ of the full training set after every step (filled) or of the
applied mini-batch gradient (open), and ``[g ≈ 0]`` iff g < ε. (a) log₁₀ g over
training: median and 10–90 % band per setting; the dotted line is ε = 10⁻³. (b) The
escape probability P(≈ → ≉) with 95 % Wilson intervals against ε; the one-way street
claims it is ≈ 0 (below the dashed q0 = 0.01). (c) The vanishing rate P(≉ → ≈).
(d) Survival of the first-passage time into ``[g ≈ 0]`` at ε = 10⁻³ (full-set g), with
95 % intervals, against the geometric prediction (1 − p̂)^k of the fitted chain (dashed).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from matplotlib.lines import Line2D

from experiments import markov as experiment
from paper_figs import _style, figure_main
from vanish import store

EPSILON = 1e-3


def _rows(run, setting, signal):
  rows = [r for r in run.tables["markov"] if r["setting"] == setting and r["signal"] == signal]
  return sorted(rows, key=lambda r: float(r["threshold"]))


def _column(rows, name):
  return np.array([float(r[name]) for r in rows])


def draw(*, quick: bool, out_dir, store_root, force: bool = False) -> list[Path]:
  path = experiment.ensure("quick" if quick else "full", store_root, force=force)
  run = store.load(path)
  settings = list(run.config["settings"])
  fig, axes = _style.figure(2, 2, width=_style.PAGE, height=4.6)
  (traj, escape), (vanish, survival) = axes
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
    prefix = f"{name}/full_ratio/eps{EPSILON:g}"
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
        label=label,
        markersize=2.5,
      )
      _style.theory(survival, k, run.arrays[f"{prefix}/geometric_survival"], color=color)
  traj.axhline(np.log10(EPSILON), color="gray", linestyle=":", linewidth=0.8)
  traj.set(
    xlabel="training step", ylabel=r"$\log_{10} g$ (full set; $g = 0$ at $-25$)", ylim=(-26, 4)
  )
  escape.axhline(experiment.Q0, **_style.THEORY_STYLE)
  escape.annotate(
    "q0 (one-way street below)",
    (1e-6, experiment.Q0),
    xytext=(0, 3),
    textcoords="offset points",
    fontsize=7,
  )
  for ax, name in ((escape, "escape  P(≈ → ≉)"), (vanish, "vanishing  P(≉ → ≈)")):
    ax.set(xscale="log", xlabel="threshold ε", ylabel=name)
    ax.set_yscale("symlog", linthresh=1e-2)
    ax.set_ylim(0, 1.3)
  survival.plot([], [], **_style.THEORY_STYLE, label="geometric")
  survival.set(xlabel="step k", ylabel="P(τ > k),  ε = 1e-3", ylim=(0, 1.05))
  survival.legend(loc="upper right")
  handles = [
    Line2D([], [], color=_style.color(name, i), marker="o", label=experiment.LABELS.get(name, name))
    for i, name in enumerate(settings)
  ]
  handles += [
    Line2D([], [], color="gray", marker="o", linestyle="none", label="full set"),
    Line2D(
      [], [], color="gray", marker="o", markerfacecolor="none", linestyle="none", label="mini-batch"
    ),
  ]
  fig.legend(handles=handles, loc="outside upper center", ncol=len(handles))
  _style.panel_labels(axes)
  return _style.save(fig, out_dir, "F7_markov", source=str(path))


main = figure_main(draw)

if __name__ == "__main__":
  sys.exit(main())
