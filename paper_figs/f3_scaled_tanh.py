"""tanh(n·x) does not fix vanishing gradients: a factor n·tanh'(n·x) exceeds 1 only on a
narrow interval |x| < t_explode(n), one factor beyond t_K(n) cancels K − 1 maximal ones, the
one-neuron chain vanishes for every n, and in full-width nets n only moves the initialization
along the rays n²(σ_w², σ_b²) of the tanh phase map.

(a) n·tanh'(n·x) for n = 1, 2, 4, 8; a factor above the dotted line 1 amplifies the
gradient. (b) Thresholds versus n (lines: ``vanish.theory``; points: Monte Carlo, the
fraction of x ~ U(−A, A) past the level times A, 95 % intervals); the dotted vertical line is
the slope n ≈ 1.81 at which t₁, the half-width of the "good" interval where one factor does
not cancel a maximal one, is largest (``vanish.theory.scaled_tanh_widest_good_n``; the seed
analysis's n = 2 is the best integer, t₁ = 0.658 against 0.663). (c) The one-neuron chain
(w, b, x ~ N(0, 1)): P(|g_K| < ε) at depths K versus n. (d) Full-width tanh(n·x) nets at fixed
σ_b²: P(explode) − P(vanish) of the gradient's growth across depth K (blue: vanishes, red:
explodes, white: stable), measured contours P = ½ (solid) and the mean-field lines χ₁ = 1 and
χ₁^{(K−1)/2} = ε^{±1} (dashed, dotted), keyed above the panel.
"""

from __future__ import annotations

import sys
from pathlib import Path

from matplotlib.lines import Line2D

from experiments import scaled_tanh as experiment
from paper_figs import _style, figure_main
from vanish import store


def _map_panel(ax, a, cfg):
  _style.outcome_map(ax, a, "n", "sigma_w2", depth=cfg["depth"], epsilon=cfg["epsilon"])
  ax.set_xscale("log")
  ax.set_yscale("log")
  ax.set_xlabel("slope n")
  ax.set_ylabel(r"$\sigma_w^2$")
  ax.text(0.05, 0.08, "vanish", transform=ax.transAxes, color="white", fontsize=7)
  ax.text(0.74, 0.85, "explode", transform=ax.transAxes, color="#67000d", fontsize=7, ha="center")


def _map_key(ax, cfg) -> float:
  """Keys the map above the panel (inside it every corner holds data), its title the nets'.

  Returns:
    How far a column layout's key reaches above the panel, in points (:func:`key_above`);
    0 on the page, where the key sits beside the panel label.
  """
  line = {"linewidth": 1.0}
  handles = [
    Line2D([], [], color="#08306b", label="P(vanish) = ½", **line),
    Line2D([], [], color="#67000d", label="P(explode) = ½", **line),
    Line2D([], [], color="black", linestyle="--", label="χ₁ = 1", **line),
    Line2D(
      [], [], color="black", linestyle=":", label=r"$\chi_1^{(K-1)/2} = \varepsilon^{\pm1}$", **line
    ),
  ]
  nets = rf"tanh($n\cdot x$) nets, $\sigma_b^2$ = {cfg['sigma_b2']:g}, K = {cfg['depth']}"
  if _style.current_layout() == "column":  # a narrow key, the panel label lifted above it
    title = nets.replace(" nets, ", " nets,\n")
    return _style.key_above(
      ax, align="right", handles=handles, title=title, title_fontsize=7, handlelength=1.8
    )
  ax.legend(
    handles=handles,
    title=nets,
    title_fontsize=8,
    loc="lower center",
    bbox_to_anchor=(0.5, 1.0),
    ncol=2,
    fontsize=6,
    handlelength=1.8,
    columnspacing=1.0,
    borderaxespad=0.2,
  )
  return 0.0


def draw(*, quick: bool, out_dir, store_root, force: bool = False) -> list[Path]:
  path = experiment.ensure("quick" if quick else "full", store_root, force=force)
  run = store.load(path)
  a, cfg = run.arrays, run.config
  depth = cfg["depth"]
  column = _style.current_layout() == "column"
  fig, axes = _style.figure(2, 2, width=_style.PAGE, height=5.2, column_height=5.9)
  (ax_d, ax_t), (ax_c, ax_m) = axes

  x = a["derivative/x"]
  for i, n in enumerate(a["derivative/n"]):
    _style.theory(
      ax_d,
      x,
      a["derivative/value"][i],
      label=f"n = {n:g}",
      color=_style.color("", i),
      linestyle="-",
    )
  ax_d.axhline(1.0, color="grey", linestyle=":", linewidth=0.8)
  ax_d.set_yscale("log")
  ax_d.set_ylim(1e-3, 10)
  ax_d.set_xlabel("pre-activation x")
  ax_d.set_ylabel(r"factor $n\,\tanh'(n x)$")
  if not column:
    ax_d.legend(loc="lower center", ncol=2)

  tn = a["thresholds/n"]
  series = [
    ("explode", r"$t_{\rm explode}$: factor > 1", 0),
    ("t1", r"$t_1$: factor < 1/n", 1),
    ("t10", r"$t_{10}$: factor < $n^{-9}$", 2),
    ("tK", rf"$t_{{{depth}}}$: factor < $n^{{-{depth - 1}}}$", 3),
  ]
  for name, text, i in series:
    c = _style.color("", i)
    _style.theory(ax_t, tn, a[f"thresholds/{name}"], color=c, linestyle="-", label=text)
    ci = a[f"thresholds_mc/{name}_ci"]
    _style.mc(
      ax_t,
      a["thresholds_mc/n"],
      a[f"thresholds_mc/{name}"],
      ci[:, 0],
      ci[:, 1],
      color=c,
      markersize=2.5,
    )
  widest = float(a["thresholds/widest_good_n"])
  ax_t.axvline(
    widest, color="grey", linestyle=":", linewidth=0.8, label=rf"largest $t_1$: n = {widest:.2f}"
  )
  ax_t.set_xscale("log")
  ax_t.set_yscale("log")
  ax_t.set_ylim(0.02, 10)
  ax_t.set_xlabel("slope n")
  ax_t.set_ylabel("threshold |x|")
  if not column:
    ax_t.legend(loc="lower left", fontsize=6)
  ax_t.set_title("lines: theory; points: Monte Carlo")

  cn = a["chain/n"]
  for j, k in enumerate(sorted({k for k in (2, 5, 10, depth) if k <= depth})):
    ci = a["chain/p_vanish_ci"][:, k - 1]
    _style.mc(
      ax_c,
      cn,
      a["chain/p_vanish"][:, k - 1],
      ci[:, 0],
      ci[:, 1],
      color=_style.color("", j),
      label=f"K = {k}",
      linestyle="-",
    )
  ax_c.set_xscale("log")
  ax_c.set_ylim(-0.02, 1.02)
  ax_c.set_xlabel("slope n")
  ax_c.set_ylabel(rf"P($|g_K|$ < {cfg['epsilon']:g})")
  nbsp = _style.NBSP  # the distribution stays on one line when the title wraps
  ax_c.set_title(f"one-neuron chain, w, b, x{nbsp}~{nbsp}N(0,{nbsp}1)")
  if not column:
    ax_c.legend(loc="lower right")

  _map_panel(ax_m, a, cfg)
  _style.panel_labels(axes)
  if column:  # the keys go above the small panels; the panel labels of a row stay level
    lift = max(_style.key_above(ax_d, ncols=2), _style.key_above(ax_t, align="right"))
    _style.lift_title(ax_d, lift)
    _style.lift_title(ax_t, lift)
    lift = max(_map_key(ax_m, cfg), _style.key_above(ax_c, ncols=2))
    _style.lift_title(ax_c, lift)
    _style.lift_title(ax_m, lift)
  else:
    _map_key(ax_m, cfg)
  return _style.save(fig, out_dir, "F3_scaled_tanh", source=str(path))


main = figure_main(draw)

if __name__ == "__main__":
  sys.exit(main())
