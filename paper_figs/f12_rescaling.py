"""The rescaling equivalence: a tanh(n·x) network trained by SGD with rate η follows, step by
step, the tanh(x) network started from n times its weights and biases and trained with rate η·n²;
with the rate not rescaled, or with Adam at rate η, the two part at once, and Adam's equivalent
rate is η·n (exactly so only with ε/n).

Float64, 8×8 digits, a 64-32-32-10 network with tanh(n·) at every layer, quadratic cost. (a) The
relative parameter distance ‖β_t − n·α_t‖/‖n·α_t‖ of the tanh(x) run β_t from the mapped
tanh(n·x) run α_t. (b) The difference of their full-training-set costs. Grey: the tanh(n·x) SGD
run against itself restarted from a 1e-16 relative perturbation — the float tolerance, which
early training amplifies; the η·n² curve follows it. Gaps: costs exactly equal.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from experiments import rescaling
from paper_figs import _style, figure_main
from vanish import store

STYLES = {
  "sgd_rescaled": {"color": "#0072B2", "linestyle": "-"},
  "sgd_unscaled": {"color": "#0072B2", "linestyle": "--"},
  "adam_unscaled": {"color": "#D55E00", "linestyle": "--"},
  "adam_rescaled": {"color": "#D55E00", "linestyle": "-"},
  "adam_rescaled_eps": {"color": "#D55E00", "linestyle": ":"},
  "rounding_control": {"color": "0.6", "linestyle": "-", "linewidth": 3.0, "alpha": 0.6},
}


def shown_n(run) -> float:
  """The n drawn: 3 if it was run (not a power of two, so rounding shows), else the first."""
  ns = [float(n) for n in run.config["n"]]
  return 3.0 if 3.0 in ns else ns[0]


def draw(*, quick: bool, out_dir, store_root, force: bool = False) -> list[Path]:
  path = rescaling.ensure("quick" if quick else "full", store_root, force=force)
  run = store.load(path)
  n = shown_n(run)
  labels = {c.name: c.label for c in rescaling.CASES}
  labels["rounding_control"] = rescaling.CONTROL_LABEL
  column = _style.current_layout() == "column"
  fig, axes = _style.figure(1, 2, width=_style.PAGE, height=2.5, column_height=2.6)
  for ax, field, ylabel in (
    (axes[0, 0], "distance", "‖β_t − n·α_t‖ / ‖n·α_t‖"),
    (axes[0, 1], "cost_difference", "|C₁(β_t) − C_n(α_t)|"),
  ):
    for name in ("rounding_control", *(c.name for c in rescaling.CASES)):
      values = run.arrays[f"n{n:g}/{name}/{field}"]
      steps = np.arange(len(values))
      shown = np.where(values > 0, values, np.nan)  # exact zeros have no place on a log axis
      ax.plot(steps, shown, label=labels[name], **{"linewidth": 1.2, **STYLES[name]})
    ax.set_yscale("log")
    ax.set_xlabel("optimizer step t")
    ax.set_ylabel(ylabel)
  axes[0, 0].set_title(f"n = {n:g}, float64", fontsize=7)
  handles, names = axes[0, 0].get_legend_handles_labels()
  order = [names.index(labels[c]) for c in (*(c.name for c in rescaling.CASES), "rounding_control")]
  key = ([handles[i] for i in order], [names[i] for i in order])
  if column:  # below both panels: beside them it would squeeze them
    fig.legend(*key, loc="outside lower center", ncols=2, fontsize=6)
  else:
    axes[0, 1].legend(*key, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=6)
  _style.panel_labels(axes)
  return _style.save(fig, out_dir, "F12_rescaling", source=str(path))


main = figure_main(draw)

if __name__ == "__main__":
  sys.exit(main())
