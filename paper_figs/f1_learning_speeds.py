"""Early layers learn slower: the per-layer learning speeds ‖∂C/∂b^l‖ of Nielsen's networks.

(a) At initialization the speed of a sigmoid network's hidden layers falls geometrically
towards the input, for 2, 3 and 4 hidden layers (2 and 4 in --quick) of 30 units (weights
N(0, 1/n_in), biases N(0, 1)), on 8×8 digits; open markers on dotted lines are Nielsen's MNIST
values (ch. 5) for the same depths. (b) With the same initial weights and biases, tanh, ReLU,
LeCun's 1.7159·tanh(2x/3) and tanh(2x) narrow the spread from the first to the last hidden layer
from about 100× (sigmoid) to a few-fold. (c) The speeds of the 4-hidden-layer sigmoid network during
SGD training (η = 0.1, batches of 10): the gap persists. (d) The ratio of the first to the last
hidden layer's speed during training (1: equal speeds). Points are geometric means over the
ensemble with 95 % intervals (t over members, in log space); speeds are of the full training
set's cost, as Nielsen measures them.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from scipy import stats

from experiments import learning_speeds
from paper_figs import _style, figure_main
from vanish import store

ORDER = ("sigmoid", "tanh", "relu", "lecun_tanh", "tanh2x")


def geometric_mean_ci(values: np.ndarray, confidence: float = 0.95) -> np.ndarray:
  """Geometric mean over axis 0 with a t-interval in log space.

  Args:
    values: ``[M, ...]`` positive samples (M ≥ 2 members).
    confidence: the interval's level in (0, 1).

  Returns:
    ``[3, ...]``: geometric mean, lower and upper bound.

  Example:
    >>> mean, lo, hi = geometric_mean_ci(np.array([1.0, 10.0, 100.0]))
    >>> round(float(mean), 6), bool(lo < 1.0 < 100.0 < hi)
    (10.0, True)
  """
  logs = np.log(np.asarray(values, np.float64))
  members = logs.shape[0]
  if members < 2:
    raise ValueError(f"values needs at least 2 members along axis 0, got shape {logs.shape}")
  if not 0 < confidence < 1:
    raise ValueError(f"confidence must be in (0, 1), got {confidence}")
  mean = logs.mean(axis=0)
  half = stats.t.ppf(0.5 + confidence / 2, members - 1) * logs.std(axis=0, ddof=1)
  half = half / np.sqrt(members)
  return np.exp(np.stack([mean, mean - half, mean + half]))


def _speeds(run: store.Run, name: str, hidden: int) -> np.ndarray:
  """``[M, T + 1, hidden]`` full-set speeds of the hidden layers (the readout dropped)."""
  return run.arrays[f"{name}/hidden{hidden}/eval_bias_speed"][..., :hidden]


def _draw_depths(ax, run: store.Run, hidden_layers: list[int]) -> None:
  shades = _layer_shades(max(hidden_layers))
  for hidden in hidden_layers:
    mean, lo, hi = geometric_mean_ci(_speeds(run, "sigmoid", hidden)[:, 0])
    layers = np.arange(1, hidden + 1)
    shade = shades[hidden - 1]
    _style.mc(ax, layers, mean, lo, hi, label=f"{hidden} hidden", color=shade, linestyle="-")
    reference = learning_speeds.NIELSEN_SIGMOID.get(hidden)
    if reference:
      ax.plot(layers, reference, color=shade, marker="o", mfc="white", ls=":", lw=0.9, zorder=3)
  ax.plot([], [], color="0.3", marker="o", mfc="white", ls=":", lw=0.9, label="Nielsen, MNIST")
  ax.set_title("sigmoid, at initialization")


def _draw_activations(ax, run: store.Run, names: list[str], hidden: int) -> None:
  layers = np.arange(1, hidden + 1)
  for j, name in enumerate(names):
    mean, lo, hi = geometric_mean_ci(_speeds(run, name, hidden)[:, 0])
    offset = (j - (len(names) - 1) / 2) * 0.06  # dodge the error bars
    _style.mc(
      ax,
      layers + offset,
      mean,
      lo,
      hi,
      label=_style.label(name),
      color=_style.color(name),
      linestyle="-",
    )
  ax.set_title(f"{hidden} hidden layers, at initialization")


def _draw_training(ax, run: store.Run, hidden: int) -> None:
  speeds = _speeds(run, "sigmoid", hidden)
  epochs = np.arange(speeds.shape[1])
  shades = _layer_shades(hidden)
  for l in range(hidden):
    mean, lo, hi = geometric_mean_ci(speeds[..., l])
    ax.fill_between(epochs, lo, hi, color=shades[l], alpha=0.2, lw=0)
    ax.plot(epochs, mean, color=shades[l], marker="o", ms=2.5, label=f"hidden layer {l + 1}")
  ax.set_title(f"sigmoid, {hidden} hidden layers, training")


def _layer_shades(hidden: int) -> list[str]:
  cmap = _style.plt.get_cmap("YlOrBr")
  return [cmap(v) for v in np.linspace(0.45, 0.95, hidden)]


def _draw_ratio(ax, run: store.Run, names: list[str], hidden: int) -> None:
  for name in names:
    speeds = _speeds(run, name, hidden)
    mean, lo, hi = geometric_mean_ci(speeds[..., 0] / speeds[..., -1])
    epochs = np.arange(speeds.shape[1])
    ax.fill_between(epochs, lo, hi, color=_style.color(name), alpha=0.15, lw=0)
    ax.plot(epochs, mean, color=_style.color(name), marker="o", ms=2.5, label=_style.label(name))
  ax.axhline(1.0, color="0.6", lw=0.6, ls="-", zorder=0)
  ax.set_title(f"{hidden} hidden layers: first / last")


def draw(*, quick: bool, out_dir: str | Path, store_root: str | Path, force=False) -> list[Path]:
  """Draws F1 from the learning-speeds run (computed first if missing)."""
  path = learning_speeds.ensure("quick" if quick else "full", store_root, force=force)
  run = store.load(path)
  hidden_layers = sorted(int(h) for h in run.config["hidden"])
  names = [n for n in ORDER if n in run.config["activations"]]
  if "sigmoid" not in names:
    raise ValueError("F1 needs the sigmoid runs of experiments.learning_speeds")
  deepest = hidden_layers[-1]
  column = _style.current_layout() == "column"
  fig, axes = _style.figure(2, 2, width=_style.PAGE, height=4.6, column_height=5.6)
  (a, b), (c, d) = axes
  _draw_depths(a, run, hidden_layers)
  _draw_activations(b, run, names, deepest)
  _draw_training(c, run, deepest)
  _draw_ratio(d, run, names, deepest)
  for ax in (a, b):
    ax.set_xlabel("hidden layer l" + _style.line_break() + "(1 = next to the input)")
    ax.set_xticks(np.arange(1, deepest + 1))
  for ax in (a, b, c):
    ax.set_yscale("log")
    ax.set_ylabel(r"learning speed $\|\partial C/\partial b^l\|$")
  d.set_yscale("log")
  d.set_ylabel("speed of hidden layer 1 / last")
  epochs = run.arrays[f"sigmoid/hidden{deepest}/eval_step"].size - 1
  for ax in (c, d):
    ax.set_xlabel("epoch")
    ax.set_xticks(np.arange(0, epochs + 1, max(1, epochs // 6)))
  _style.panel_labels(axes)
  if column:  # the panels are too small to hold their keys: each goes above its panel
    _style.key_above(a, ncols=2)
    for ax in (b, d):  # the right column's keys end at the figure's edge
      _style.key_above(ax, align="right", ncols=2, columnspacing=0.8)
    handles, labels = c.get_legend_handles_labels()
    labels = [text.removeprefix("hidden layer ") for text in labels]
    _style.key_above(
      c,
      handles=handles,
      labels=labels,
      title="hidden layer",
      title_fontsize=_style.plt.rcParams["legend.fontsize"],
      ncols=len(labels),
    )
  else:
    a.legend(loc="lower right")
    b.legend(loc="lower right", ncols=2)
    c.legend(loc="best", ncols=2)
    d.legend(loc="best", ncols=2)
  return _style.save(fig, out_dir, "F1_learning_speeds", source=str(path))


main = figure_main(draw)

if __name__ == "__main__":
  sys.exit(main())
