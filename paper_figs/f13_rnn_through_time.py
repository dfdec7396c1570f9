"""Vanishing gradients through time in a vanilla tanh RNN, with the LSTM as the gated comparison.

(a) The mean of ``log ‖∂L/∂h_t‖`` relative to the last step, against the lag ``T − t``, for
random tanh RNNs driven by Gaussian inputs (95 % Student-t intervals over members, each
member's input sequences averaged): the gradient vanishes in the ordered phase, stays flat at
the critical σ_w² (Gaussian or orthogonal ``W``) and explodes in the chaotic phase. Dashed
lines: the mean-field slope ``½ log χ₁`` at the stationary state q* of the length map with the
input variance folded into the bias variance. (b) LSTMs at forget-gate bias 1 and 5: their
gradient decays far slower than along the cell path alone (dotted, ``½ log E f²``; at bias 5,
after a drop over the first lags, it even grows slightly), because the loop through ``h``
reuses the same weights at every step.
(c) Measured rate per step against the mean-field number (colors and markers as in (a) and (b)).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from experiments import rnn_through_time
from paper_figs import _style, figure_main
from vanish import store

RNN_LABELS = {
  "ordered": "ordered",
  "critical": "critical",
  "chaotic": "chaotic",
  "orthogonal": "orthogonal, critical",
}
LSTM_COLORS = ("#000000", "#56B4E9")


def _points(steps: int, count: int = 14) -> np.ndarray:
  return np.unique(np.linspace(0, steps - 1, count).round().astype(int))


def draw(*, quick: bool, out_dir, store_root, force: bool = False) -> list[Path]:
  path = rnn_through_time.ensure("quick" if quick else "full", store_root, force=force)
  run = store.load(path)
  a, rows = run.arrays, {r["setting"]: r for r in run.tables["rates"]}
  # in a column, one panel a row: the keys of (a) and (b) need a panel's width above the curves
  fig, axes = _style.figure(1, 3, width=_style.PAGE, height=2.3, column_ncols=1, column_height=5.4)
  ax_rnn, ax_lstm, ax_rate = axes[0]

  lags = a["rnn/lags"]
  steps = len(lags)
  pick = _points(steps)
  anchor = steps // 10  # where the rate fit starts
  for i, name in enumerate(n for n in RNN_LABELS if f"{n}/mean" in a):
    color = _style.color(name, i)
    r = rows[name]
    label = f"{RNN_LABELS[name]}, σ_w² = {float(r['sigma_w2']):.2f}"
    marker = "s" if name == "orthogonal" else "o"
    _style.mc(
      ax_rnn,
      lags[pick],
      a[f"{name}/mean"][pick],
      a[f"{name}/lo"][pick],
      a[f"{name}/hi"][pick],
      color=color,
      marker=marker,
      label=label,
      markerfacecolor="none" if name == "orthogonal" else color,
    )
    y0 = a[f"{name}/mean"][anchor]
    _style.theory(ax_rnn, lags, y0 + float(r["theory_rate"]) * (lags - anchor), color=color)
  _style.theory(ax_rnn, [], [], label="mean field ½ log χ₁")
  ax_rnn.set_xlabel("lag T − t (steps)")
  ax_rnn.set_ylabel("log ‖∂L/∂h_t‖ − log ‖∂L/∂h_T‖")
  ax_rnn.set_title("vanilla tanh RNN")
  low, high = ax_rnn.get_ylim()
  ax_rnn.set_ylim(low, high + 0.7 * (high - low))  # room for the legend above the curves
  ax_rnn.legend(loc="upper left", fontsize=6)

  lstm = [n for n in rows if rows[n]["model"] == "lstm"]
  for i, name in enumerate(lstm):
    color = LSTM_COLORS[i % len(LSTM_COLORS)]
    r = rows[name]
    _style.mc(
      ax_lstm,
      lags[pick],
      a[f"{name}/mean"][pick],
      a[f"{name}/lo"][pick],
      a[f"{name}/hi"][pick],
      color=color,
      marker="^",
      label=f"LSTM, forget bias {float(r['forget_bias']):g}",
    )
    cell = float(r["theory_rate"]) * lags
    _style.theory(ax_lstm, lags, cell, color=color, linestyle=":")
  if "critical/mean" in a:
    _style.mc(
      ax_lstm,
      lags[pick],
      a["critical/mean"][pick],
      color=_style.color("critical", 1),
      marker="o",
      label="RNN, critical",
    )
  _style.theory(ax_lstm, [], [], linestyle=":", label="cell path ½ log E f²")
  low = max(ax_lstm.get_ylim()[0], 1.5 * min(a[f"{n}/lo"].min() for n in lstm))
  high = max(a[f"{n}/hi"].max() for n in lstm)
  ax_lstm.set_ylim(low, high + 0.6 * (high - low))  # room for the legend above the curves
  ax_lstm.set_xlabel("lag T − t (steps)")
  ax_lstm.set_ylabel("log ‖∂L/∂(h_t, c_t)‖ (relative)")
  ax_lstm.set_title("gated: LSTM")
  ax_lstm.legend(loc="upper right", fontsize=6)

  lows, highs = [], []
  for i, (name, r) in enumerate(rows.items()):
    is_rnn = r["model"] == "rnn"
    x, y = float(r["theory_rate"]), float(r["measured_rate"])
    lo, hi = float(r["rate_lo"]), float(r["rate_hi"])
    lows += [x, lo]
    highs += [x, hi]
    _style.mc(
      ax_rate,
      [x],
      [y],
      [lo],
      [hi],
      color=_style.color(name, i) if is_rnn else LSTM_COLORS[lstm.index(name) % len(LSTM_COLORS)],
      marker="o" if is_rnn and name != "orthogonal" else ("s" if is_rnn else "^"),
      label=RNN_LABELS[name] if is_rnn else f"LSTM, forget bias {float(r['forget_bias']):g}",
    )
  span = np.array([min(lows), max(highs)])
  span = span + np.array([-0.05, 0.05]) * (span[1] - span[0])
  (diagonal,) = _style.theory(ax_rate, span, span, label="measured = mean field")
  ax_rate.axhline(0, color="0.8", linewidth=0.6, zorder=0)
  ax_rate.set_xlabel("mean-field rate per step")
  ax_rate.set_ylabel("measured rate per step")
  ax_rate.set_title(f"width {run.config['hidden']}, {steps} steps")
  ax_rate.legend([diagonal], ["measured = mean field"], loc="lower right", fontsize=6)
  _style.panel_labels(axes[0])
  return _style.save(fig, out_dir, "F13_rnn_through_time", source=str(path))


main = figure_main(draw)

if __name__ == "__main__":
  sys.exit(main())
