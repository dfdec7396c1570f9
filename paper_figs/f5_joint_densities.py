"""Which layers make the product vanish: joint densities of (z_l, log|g_L|) and (w_l, log|g_L|).

The one-neuron chain of the seed analysis (Nielsen ch. 5; w, b, x ~ N(0, 1), L layers), with
g_L = Π_j f_j, f_j = w_j φ'(z_j). (a) The joint density of a middle layer's pre-activation z_l
and log|g_L| for tanh(2x) (log color scale);
grey lines at ±t₁ = ±(1/2)·artanh(√(3/4)) ≈ ±0.658, where φ'(z) = 2(1 − tanh²(2z)) falls below
1/2 and one factor cancels the best possible one. (b) How far one pre-activation moves
log|g_L|: E[log|g_L| | z_j] − E[log|g_L|] for each activation, pooled over the layers j, with
95 % intervals. (c) tanh(2x): the per-layer
log-rate (1/L) Σ_j log φ'(z_j) of the slope product against the fraction f of the L
pre-activations inside [−t₁, t₁] (median and 10–90 % band), and of |g_L| itself (grey); the
dashed line is the bound (2f − 1)·ln 2 (each slope ≤ 2 inside and < 1/2 outside), so the slope
product cannot reach 1 unless at least half of the pre-activations are inside — necessary, and in
this chain far from sufficient. (d), (e) As (a), (b) for the weight w_l; the dashed line in (e)
is the direct term log|w| − E log|w| = log|w| + (γ + ln 2)/2 alone. (f) The distribution of f
against the binomial law of independent layers (dashed), with the share of chains that meet the
necessary condition f ≥ 1/2.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
from matplotlib.colors import LogNorm
from matplotlib.ticker import MultipleLocator
from scipy import stats

from experiments import probabilistic_model
from paper_figs import _style, figure_main
from vanish import store

ORDER = ("sigmoid", "tanh", "tanh2x", "relu", "lecun_tanh")
EULER_GAMMA = 0.5772156649015329
MIN_PAIRS = 200  # conditional means only over bins holding at least this many (layer, chain) pairs
MIN_TRIALS = 20  # quantiles per inside-count only from this many chains


def _joint(arrays, name, kind):
  prefix = f"{name}/joint_{kind}"
  return (
    arrays[f"{prefix}/density"],
    arrays[f"{prefix}/x_edges"],
    arrays[f"{prefix}/log_g_edges"],
  )


def _draw_joint(ax, fig, arrays, name, kind):
  density, x_edges, g_edges = _joint(arrays, name, kind)
  positive = density[density > 0]
  mesh = ax.pcolormesh(
    x_edges,
    g_edges,
    np.where(density > 0, density, np.nan).T,
    norm=LogNorm(vmin=positive.max() * 1e-3, vmax=positive.max()),
    cmap="magma_r",
    rasterized=True,
  )
  if _style.current_layout() == "column":  # beneath the panel: at the side, it would narrow
    # every panel of its column (the layout's margins are shared along a column)
    bar = fig.colorbar(
      mesh, ax=ax, location="bottom", pad=0.03, fraction=0.05, shrink=0.55, anchor=(0.0, 1.0)
    )
    bar.ax.set_ylabel("density", rotation=0, ha="left", va="center", fontsize=7)
    bar.ax.yaxis.set_label_position("right")
  else:
    bar = fig.colorbar(mesh, ax=ax, pad=0.02, fraction=0.06)
    bar.set_label("density", fontsize=7)
  bar.ax.tick_params(labelsize=6)


def _draw_shift(ax, arrays, names, kind):
  for j, name in enumerate(names):
    prefix = f"{name}/conditional_{kind}"
    if f"{prefix}/shift" not in arrays:
      continue
    edges, count = arrays[f"{prefix}/edges"], arrays[f"{prefix}/count"]
    shift, sem = arrays[f"{prefix}/shift"], arrays[f"{prefix}/sem"]
    keep = count >= MIN_PAIRS
    if not keep.any():  # e.g. ReLU: every chain of depth L has an exactly zero factor
      continue
    x = 0.5 * (edges[1:] + edges[:-1]) + (j - (len(names) - 1) / 2) * 0.02  # dodge
    _style.mc(
      ax,
      x[keep],
      shift[keep],
      (shift - 1.96 * sem)[keep],
      (shift + 1.96 * sem)[keep],
      color=_style.color(name),
      ms=2,
      lw=0.9,
      linestyle="-",
      label=_style.label(name),
    )
  ax.axhline(0, color="0.6", lw=0.6, zorder=0)


def _t1_lines(ax, t1):
  for sign in (-1, 1):
    ax.axvline(sign * t1, color="0.45", lw=0.7, ls="-", zorder=0.5)


def _draw_rates(ax, arrays, name, depth):
  count = arrays[f"{name}/inside_t1/count"]
  trials = arrays[f"{name}/inside_t1/trials"]
  keep = trials >= MIN_TRIALS
  f = count[keep] / depth
  for field, c, lbl in (
    ("log_g_rate_quantiles", "0.55", r"$\log|g_L|\,/L$"),
    ("slope_rate_quantiles", _style.color(name), r"$\sum_j \log\varphi'(z_j)\,/L$"),
  ):
    q = arrays[f"{name}/inside_t1/{field}"][keep]
    low = np.where(np.isfinite(q[:, 0]), q[:, 0], -1e3)  # −inf: φ' underflowed
    ax.fill_between(f, low, q[:, 2], color=c, alpha=0.22, lw=0)
    _style.mc(ax, f, q[:, 1], color=c, ms=2.5, label=lbl, linestyle="-", lw=0.8)
  grid = np.linspace(0, 1, 101)
  _style.theory(ax, grid, (2 * grid - 1) * math.log(2), label=r"$(2f-1)\ln 2$")
  ax.axhline(0, color="0.6", lw=0.6, zorder=0)
  ax.axvline(0.5, color="0.45", lw=0.7, zorder=0.5)
  finite = arrays[f"{name}/inside_t1/slope_rate_quantiles"][keep]
  top = 1.0 if _style.current_layout() == "column" else 2.3  # on the page, room for the key
  ax.set_ylim(min(np.nanmin(finite[np.isfinite(finite)]) - 0.3, -1.0), top)
  ax.set_xlim(0, 1)


def _draw_inside_distribution(ax, arrays, name, depth):
  count = arrays[f"{name}/inside_t1/count"]
  trials = arrays[f"{name}/inside_t1/trials"]
  total = trials.sum()
  f = count / depth
  ax.bar(f, trials / total, width=0.8 / depth, color=_style.color(name), alpha=0.6, label="chains")
  p_hat = float((count * trials).sum() / (depth * total))
  _style.theory(
    ax, f, stats.binom.pmf(count, depth, p_hat), label=f"binomial, p = {p_hat:.2f}", marker="."
  )
  ax.axvspan(0.5, 1.0, color="0.9", zorder=0, lw=0)
  ax.axvline(0.5, color="0.45", lw=0.7, zorder=0.5)
  half = trials[count * 2 >= depth].sum()
  grows = arrays[f"{name}/inside_t1/slope_product_at_least_1"].sum()
  column = _style.current_layout() == "column"  # the key goes above the panel
  ax.text(
    0.985,
    0.97 if column else 0.64,
    f"P(f ≥ ½) = {half / total:.3f}\nP(Πφ′ ≥ 1) = {grows / total:.3f}\n{total} chains",
    transform=ax.transAxes,
    ha="right",
    va="top",
    fontsize=6 if column else 5.5,
    linespacing=1.3,
  )
  ax.set_xlim(0, 1)
  headroom = 2.5 if column else 1.6  # for the legend and the counts
  ax.set_ylim(0, headroom * (trials / total).max())


def draw(*, quick: bool, out_dir: str | Path, store_root: str | Path, force=False) -> list[Path]:
  """Draws F5 from the probabilistic-model run (computed first if missing)."""
  path = probabilistic_model.ensure("quick" if quick else "full", store_root, force=force)
  run = store.load(path)
  arrays, depth = run.arrays, int(run.config["depth"])
  names = [n for n in ORDER if n in run.config["activations"]]
  focus = "tanh2x"
  if focus not in names or f"{focus}/inside_t1/count" not in arrays:
    raise ValueError("F5 needs the tanh2x run of experiments.probabilistic_model (outputs ≥ 2)")
  t1 = float(arrays[f"{focus}/t1_tanh2x"])
  layer = depth // 2 + 1  # the stored joint densities are of the middle layer
  column = _style.current_layout() == "column"
  fig, axes = _style.figure(2, 3, width=_style.PAGE, height=4.7, column_height=6.5)
  (a, b, c), (d, e, f) = axes

  _draw_joint(a, fig, arrays, focus, "preactivation")
  _t1_lines(a, t1)
  a.set_xlabel(rf"pre-activation $z_{{{layer}}}$")
  a.set_ylabel(rf"$\log|g_{{{depth}}}|$")
  a.set_title(f"{_style.label(focus)}: layer {layer} of {depth}")
  _draw_shift(b, arrays, names, "preactivation")
  _t1_lines(b, t1)
  b.set_xlabel(r"pre-activation $z_j$")
  b.xaxis.set_major_locator(MultipleLocator(2))
  b.set_ylabel(_style.break_formula(rf"E[\log|g_{{{depth}}}|\,|\,z_j]", rf"- E\log|g_{{{depth}}}|"))
  b.set_title("effect of one pre-activation")
  if not column:
    b.legend(loc="lower center", ncols=2, fontsize=6.5, handlelength=1.2)
  _draw_rates(c, arrays, focus, depth)
  c.set_xlabel(r"fraction $f$ of $z_j$" + _style.line_break() + r"inside $[-t_1, t_1]$")
  c.set_ylabel("log-rate per layer")
  c.set_title(f"{_style.label(focus)}: half inside?")
  if not column:
    c.legend(loc="upper left", fontsize=6.5, handlelength=1.2)

  _draw_joint(d, fig, arrays, focus, "weight")
  d.set_xlabel(rf"weight $w_{{{layer}}}$")
  d.xaxis.set_major_locator(MultipleLocator(2))
  d.set_ylabel(rf"$\log|g_{{{depth}}}|$")
  d.set_title(f"{_style.label(focus)}: layer {layer} of {depth}")
  _draw_shift(e, arrays, names, "weight")
  w = np.linspace(-3.5, 3.5, 701)
  with np.errstate(divide="ignore"):
    direct = np.log(np.abs(w)) + (EULER_GAMMA + math.log(2)) / 2
  _style.theory(e, w, direct, label=r"$\log|w| + (\gamma + \ln 2)/2$")
  e.set_ylim(-4.5, 2.5)
  e.set_xlim(-3.6, 3.6)
  e.set_xlabel(r"weight $w_j$")
  e.xaxis.set_major_locator(MultipleLocator(2))
  e.set_ylabel(_style.break_formula(rf"E[\log|g_{{{depth}}}|\,|\,w_j]", rf"- E\log|g_{{{depth}}}|"))
  e.set_title("effect of one weight")
  direct_key = ([e.get_lines()[-1]], [e.get_lines()[-1].get_label()])
  if not column:
    e.legend(*direct_key, loc="lower center", fontsize=6.5)
  _draw_inside_distribution(f, arrays, focus, depth)
  f.set_xlabel(r"fraction $f$ of $z_j$" + _style.line_break() + r"inside $[-t_1, t_1]$")
  f.set_ylabel("share of chains")
  f.set_title(f"{_style.label(focus)}: share inside")
  if not column:
    f.legend(loc="upper left", fontsize=6.5, handlelength=1.2)
  _style.panel_labels(axes)
  if column:  # the keys go above the small panels; the panel labels of a row stay level
    _style.lift_title(a, _style.key_above(b, align="right", ncols=2, handlelength=1.2))
    _style.lift_title(d, _style.key_above(c, ncols=2, handlelength=1.2))
    lift = max(
      _style.key_above(e, handles=direct_key[0], labels=direct_key[1]),
      _style.key_above(f, handlelength=1.2),
    )
    _style.lift_title(e, lift)
    _style.lift_title(f, lift)
  return _style.save(fig, out_dir, "F5_joint_densities", source=str(path))


main = figure_main(draw)

if __name__ == "__main__":
  sys.exit(main())
