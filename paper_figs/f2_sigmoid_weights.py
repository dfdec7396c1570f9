"""Large weights do not help sigmoid networks: the factor |w·σ'(w·a)| is at most |w|/4 and
reaches 1 only on a window of inputs narrower than 0.45 that shrinks like (2/|w|)·log|w|;
w = 100 with centered biases explodes exactly at the reference input but collapses a
distance δ away; no weight scale keeps one-neuron chains from vanishing (moderate scales,
s ≈ 1–3, delay it by a few layers; larger ones make it faster), and full-width sigmoid nets
vanish for small scales whatever the bias variance.

(a) log₁₀|w·σ'(w·a)| over (w, a), with the theory window where it is ≥ 1 (dashed).
(b) The window's width versus w: theory (line) and Monte Carlo (fraction of a ~ U(−½, ½),
95 % intervals). (c) One-neuron chains: log|g_K| versus depth K for w, b ~ N(0, 1) (mean,
under the σ' ≤ ¼ bound), w = 100 centered at the reference input (exact: factor 25) and
at inputs δ away (median), w ~ N(0, 100²) centered (mean vs theory). (d) One-neuron chains
with w ~ N(0, s²): P(|g_K| < ε) versus s, lowest at moderate s (s ≈ 0.7 at K = 2, ≈ 3 at
K = 5: the minimum moves to larger s with depth) and ≈ 1 at every s at the deepest K.
(e) Full-width sigmoid nets with weights N(0, s²/width): P(explode) − P(vanish) at depth K,
measured P = ½ contours (solid) and the mean-field lines χ₁ = 1 (dashed) and
χ₁^{(K−1)/2} = ε^{±1} (dotted); at --quick size the nets do not explode where the mean field
says they do (see (f)). (f) The log-growth log‖δ¹‖ − log‖δ^K‖ of one input per member,
averaged over the width-n members whose gradient did not underflow to 0 (all of them at
--quick size; the store keeps their number, n_finite) (points, 95 % t intervals over those
members), against the mean-field
((K − 1)/2)·ln χ₁ (lines); the dotted lines are the vanish and explode thresholds ±ln(1/ε). Up to
s ≈ 10 the points lie at most ≈ 3 below the lines, of the size of the first-order finite-width
correction −(K − 1)(3κ − 1)/(4n), κ = E σ'⁴/(E σ'²)². Beyond, the mean field fails at the
--quick width n = 24 (K = 24): the lines rise to +29 at s = 128, the points fall to ≈ −50. The
mean field takes infinitely many units with Gaussian preactivations of variance q* ≈ s²/2, so
that every layer multiplies ‖δ‖ by ≈ √χ₁; at large s only a fraction ≈ 5.7/s of the units is
unsaturated (|z| < 5, σ' > 0.007), about one of 24 at s = 128, so each layer's factor rests on a
few units and fluctuates wildly (the relative variance of its square, (3κ − 1)/n with κ ≈ 0.45 s,
is ≈ 7 at s = 128), and the mean of its logarithm falls far below ½ ln χ₁, lower than the
first-order correction puts it (−13 at s = 128). At --full width (n = 256, K = 50) the points
follow the lines further and lie ≈ 10 below them at s = 128 (51 against 61; first order: 53).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from scipy import stats

from experiments import sigmoid_weights as experiment
from paper_figs import _style, figure_main
from vanish import store


def _factor_panel(ax, fig, a):
  w, x = a["factor/w"], a["factor/a"]
  mesh = ax.pcolormesh(
    w,
    x,
    a["factor/log10"],
    cmap="viridis",
    vmin=-6,
    vmax=1.5,
    shading="nearest",
    rasterized=True,
  )
  ax.contour(w, x, a["factor/log10"], levels=[0.0], colors="white", linewidths=1.0)
  half = 0.5 * a["factor/width"]
  inside = half > 0
  _style.theory(ax, w[inside], half[inside], color="red", linewidth=0.8)
  _style.theory(ax, w[inside], -half[inside], color="red", linewidth=0.8)
  ax.set_xscale("log")
  ax.set_xlabel("weight w")
  ax.set_ylabel("input a (b = 0)")
  cbar = fig.colorbar(mesh, ax=ax, fraction=0.05, pad=0.02)
  cbar.set_label(r"$\log_{10}|w\,\sigma'(w a)|$")


def _map_panel(ax, a, cfg):
  _style.outcome_map(ax, a, "scale", "sigma_b2", depth=cfg["depth"], epsilon=cfg["epsilon"])
  ax.set_xscale("log")
  ax.set_xlabel(r"weight scale s" + _style.line_break() + r"($\sigma_w = s$)")
  ax.set_ylabel(r"$\sigma_b^2$")


def mean_interval(
  mean: np.ndarray, std: np.ndarray, n: np.ndarray, confidence: float = 0.95
) -> tuple[np.ndarray, np.ndarray]:
  """The t interval of a mean from the sample's standard deviation and size (NaN below 2).

  Example:
    >>> lo, hi = mean_interval(np.array([2.0]), np.array([1.0]), np.array([3]))
    >>> [round(float(v), 3) for v in (lo[0], hi[0])]
    [-0.484, 4.484]
  """
  n = np.asarray(n, np.float64)
  with np.errstate(invalid="ignore", divide="ignore"):
    half = stats.t.ppf(0.5 + confidence / 2, n - 1) * std / np.sqrt(n)
  return mean - half, mean + half


def draw(*, quick: bool, out_dir, store_root, force: bool = False) -> list[Path]:
  path = experiment.ensure("quick" if quick else "full", store_root, force=force)
  run = store.load(path)
  a, cfg = run.arrays, run.config
  depth = cfg["depth"]
  column = _style.current_layout() == "column"
  fig, axes = _style.figure(2, 3, width=_style.PAGE, height=4.8, column_height=6.4)
  (ax_f, ax_w, ax_c), (ax_s, ax_m, ax_g) = axes

  _factor_panel(ax_f, fig, a)

  w = a["factor/w"]
  _style.theory(ax_w, w, a["factor/width"], label="theory")
  ci = a["width_mc/width_ci"]
  _style.mc(ax_w, a["width_mc/w"], a["width_mc/width"], ci[:, 0], ci[:, 1], label="Monte Carlo")
  ax_w.set_xscale("log")
  ax_w.set_xlim(1, 200)
  ax_w.set_xlabel("weight w")
  ax_w.set_ylabel("width of" + _style.line_break() + r"$\{a: |w\sigma'(wa)| \geq 1\}$")
  if not column:
    ax_w.legend(loc="lower right")

  k = a["chains/depth"]
  c_usual, c_ref, c_gauss = _style.color("sigmoid"), "#D55E00", "#0072B2"
  ci = a["chains/usual_mean_ci"]
  _style.mc(
    ax_c,
    k,
    a["chains/usual_mean"],
    ci[:, 0],
    ci[:, 1],
    color=c_usual,
    markersize=2,
    label="w, b ~ N(0,1)",
  )
  _style.theory(ax_c, k, a["chains/usual_bound"], color=c_usual, label=r"$\sigma'\leq1/4$ bound")
  _style.theory(ax_c, k, a["chains/centered_theory"], color=c_ref)
  _style.mc(
    ax_c, k, a["chains/centered_reference"], color=c_ref, markersize=2, label="w = 100, centered"
  )
  ci = a["chains/gaussian_centered_mean_ci"]
  _style.theory(ax_c, k, a["chains/gaussian_centered_theory"], color=c_gauss)
  _style.mc(
    ax_c,
    k,
    a["chains/gaussian_centered_mean"],
    ci[:, 0],
    ci[:, 1],
    color=c_gauss,
    markersize=2,
    label=r"w ~ N(0, 100²), centered",
  )
  deltas = ", ".join(f"{d:.0e}".replace("e-0", "e-") for d in a["chains/deltas"])
  for i in range(a["chains/deltas"].size):
    ax_c.plot(
      k,
      a["chains/near_quartiles"][1, i],
      color=c_ref,
      linewidth=0.8,
      alpha=1 - 0.3 * i,
      linestyle="-",
      label=rf"w = 100, input $\pm\delta${_style.line_break()}({deltas})" if i == 0 else None,
    )
  ax_c.set_ylim(-120, 90 if column else 190)  # on the page, room for the key
  ax_c.set_xlabel("depth K")
  ax_c.set_ylabel(r"$\log|g_K|$")
  if not column:
    ax_c.legend(loc="upper left", fontsize=6)

  scale = a["scale_sweep/scale"]
  for j, kk in enumerate(sorted({k for k in (2, 3, 5, depth) if k <= depth})):
    ci = a["scale_sweep/p_vanish_ci"][:, kk - 1]
    _style.mc(
      ax_s,
      scale,
      a["scale_sweep/p_vanish"][:, kk - 1],
      ci[:, 0],
      ci[:, 1],
      color=_style.color("", j),
      linestyle="-",
      label=f"K = {kk}",
    )
  ax_s.set_xscale("log")
  ax_s.set_ylim(-0.02, 1.02)
  ax_s.set_xlabel("weight scale s" + _style.line_break() + "(w ~ N(0, s²))")
  ax_s.set_ylabel(rf"P($|g_K|$ < {cfg['epsilon']:g})")
  if not column:
    ax_s.legend(loc="lower right", fontsize=6)

  _map_panel(ax_m, a, cfg)

  # measured mean log-growth across depth vs the mean-field ((K − 1)/2) log χ₁
  rows = [0, a["map/sigma_b2"].size - 1]
  lo, hi = mean_interval(
    *(a[f"map/{f}"][rows] for f in ("mean_log_growth", "std_log_growth", "n_finite"))
  )
  for j, i in enumerate(rows):
    b2 = a["map/sigma_b2"][i]
    t = int(np.argmin(np.abs(a["theory/sigma_b2"] - b2)))
    c = _style.color("", j)
    _style.theory(
      ax_g,
      a["theory/scale"],
      0.5 * (depth - 1) * np.log(a["theory/chi1"][t]),
      color=c,
      label=r"mean field $\frac{K-1}{2}\ln\chi_1$" if j == 0 else None,
    )
    _style.mc(
      ax_g,
      a["map/scale"],
      a["map/mean_log_growth"][i],
      lo[j],
      hi[j],
      color=c,
      label=rf"$\sigma_b^2$ = {b2:g}",
    )
  threshold = rf"$\pm\ln(1/\varepsilon)$, $\varepsilon$ = {cfg['epsilon']:g}"
  for sign, label in ((1, threshold), (-1, None)):
    ax_g.axhline(
      sign * np.log(cfg["epsilon"]), color="grey", linestyle=":", linewidth=0.8, label=label
    )
  ax_g.set_xscale("log")
  ax_g.set_xlabel(r"weight scale s" + _style.line_break() + r"($\sigma_w = s$)")
  ax_g.set_ylabel(_style.break_formula(r"\log\|\delta^1\|", r"- \log\|\delta^K\|"))
  low, high = ax_g.get_ylim()
  if not column:
    ax_g.set_ylim(low, high + 0.4 * (high - low))  # the key above the thresholds
    ax_g.legend(loc="upper left", fontsize=6)
  _style.panel_labels(axes)
  if column:  # the keys of (b), (c), (d) and (f) do not fit in their small panels
    _style.lift_title(ax_f, _style.key_above(ax_w, align="right", ncols=1))
    lift = max(_style.key_above(ax_c, ncols=1), _style.key_above(ax_s, align="right", ncols=2))
    _style.lift_title(ax_c, lift)
    _style.lift_title(ax_s, lift)
    _style.lift_title(
      ax_m, _style.key_above(ax_g, align="right", ncols=1)
    )  # the row's labels aligned
  return _style.save(fig, out_dir, "F2_sigmoid_weights", source=str(path))


main = figure_main(draw)

if __name__ == "__main__":
  sys.exit(main())
