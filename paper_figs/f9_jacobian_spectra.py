"""Jacobian singular-value spectra versus depth at criticality: Gaussian weights spread the
spectrum of JJᵀ linearly in depth, orthogonal tanh weights keep it O(1) (dynamical isometry),
as free probability predicts.

(a–c) Densities of the squared singular values λ of ``J_l ⋯ J_1`` (exact, from
:func:`vanish.lyapunov_spectrum`) for linear, ReLU and tanh networks at criticality, Gaussian
(solid) vs orthogonal (dashed) weights, at a few depths (colors, key in (a); line styles, key in
(c)); the dotted line marks the predicted mean E[λ] = χ₁^l = 1; exactly zero values (dead ReLU
units) are left out. (d, e) Normalized variance m₂/m₁² − 1 of λ versus depth (about four
depths per doubling), Monte Carlo (95 %
bootstrap-t intervals over members, studentized on the log scale) against the free-probability
prediction l(μ₂/μ₁² − 1 − s₁) (Pennington, Schoenholz & Ganguli 2017, 2018; dashed), and for
linear Gaussian networks the exact finite-width value (dotted). (f) Mean of λ versus depth
(95 % Student t intervals over members) against χ₁^l = 1.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from matplotlib.lines import Line2D
from scipy import stats

from experiments import jacobian_spectra as experiment
from paper_figs import _style, figure_main
from vanish import store

MARKERS = {"gaussian": "o", "orthogonal": "s"}
LINES = {"gaussian": "-", "orthogonal": "--"}


def draw(*, quick: bool, out_dir: Path, store_root: Path, force: bool = False) -> list[Path]:
  path = experiment.ensure("quick" if quick else "full", store_root, force=force)
  run = store.load(path)
  a, config = run.arrays, run.config
  activations = config["activations"]
  density_depths = config["density_depths"]
  depths = np.asarray(config["depths"])  # the measured depths (a geometric grid)
  column = _style.current_layout() == "column"  # narrow panels: keys need room made for them
  fig, axes = _style.figure(2, 3, width=_style.PAGE, height=4.4, column_height=5.4)
  depth_colors = [_style.color("", i) for i in range(len(density_depths))]
  for ax, activation in zip(axes[0], activations, strict=False):
    for weights in experiment.WEIGHTS:
      log_sv = a[f"{activation}/{weights}/log_sv_at_density_depths"]
      for j, l in enumerate(density_depths):
        values = log_sv[:, j]
        values = 2 * values[experiment.nonzero(values, activation)] / np.log(10)
        if np.ptp(values) < 1e-3:  # orthogonal linear: every λ = 1, a spike
          ax.axvline(values.mean(), color=depth_colors[j], linestyle=LINES[weights], lw=1)
          continue
        ax.hist(
          values,
          bins=40,
          density=True,
          histtype="step",
          color=depth_colors[j],
          linestyle=LINES[weights],
          label=f"depth {l}" if weights == "gaussian" else None,
        )
    ax.axvline(0.0, **{**_style.THEORY_STYLE, "linestyle": ":"})
    ax.set_yscale("log")
    ax.set_xlabel(r"$\log_{10}\lambda$,  $\lambda=\sigma^2$")
    ax.set_ylabel("density")
    sigma_w2 = float(a[f"{activation}/sigma_w2"])
    ax.set_title(f"{_style.label(activation)}, $\\sigma_w^2 = {sigma_w2:.3g}$", loc="right")
  axes[0][0].legend(loc="upper left")
  line = {"color": "black", "linewidth": 1.0}
  axes[0][2].legend(
    handles=[
      Line2D([], [], linestyle="-", label="Gaussian W", **line),
      Line2D([], [], linestyle="--", label="orthogonal W", **line),
      Line2D([], [], linestyle=":", label=r"E$\lambda$ = 1", **line),
    ],
    loc="upper left",
  )
  for ax, weights in zip(axes[1][:2], experiment.WEIGHTS, strict=True):
    for i, activation in enumerate(activations):
      prefix = f"{activation}/{weights}"
      nv, ci = a[f"{prefix}/normalized_variance"], a[f"{prefix}/normalized_variance_ci"]
      c = _style.color(activation, i)
      _style.mc(
        ax,
        depths,
        nv,
        ci[:, 0],
        ci[:, 1],
        color=c,
        marker=MARKERS[weights],
        label=_style.label(activation),
      )
      _style.theory(
        ax,
        depths,
        a[f"{prefix}/theory_normalized_variance"],
        color=c,
        label="free probability" if i == len(activations) - 1 else None,
      )
      finite = a.get(f"{prefix}/finite_width_normalized_variance")
      if finite is not None:
        _style.theory(ax, depths, finite, color=c, linestyle=":", label="exact, width n")
    ax.set_xlabel("depth $l$")
    ax.set_ylabel(r"$m_2/m_1^2-1$")
    ax.set_title(f"{weights} weights, $n = {config['width']}$", loc="right")
    if weights == "orthogonal":
      ax.set_yscale("symlog", linthresh=0.01)
  if column:  # the key above the error bars
    axes[1][0].set_ylim(top=1.4 * axes[1][0].get_ylim()[1])
  axes[1][0].legend(loc="upper left")
  ax = axes[1][2]
  top = -np.inf
  for i, activation in enumerate(activations):
    for weights in experiment.WEIGHTS:
      m1 = a[f"{activation}/{weights}/m1"]
      mean = m1.mean(0)
      members = m1.shape[0]  # 95 % Student t interval of the mean over members
      half = stats.t.ppf(0.975, members - 1) * m1.std(0, ddof=1) / np.sqrt(members)
      top = max(top, float(np.max(mean + half)))
      _style.mc(
        ax,
        depths,
        mean,
        mean - half,
        mean + half,
        color=_style.color(activation, i),
        marker=MARKERS[weights],
        fillstyle="none" if weights == "orthogonal" else "full",
        label=_style.label(activation) if weights == "gaussian" else None,
      )
  _style.theory(ax, depths, np.ones_like(depths, float), label=r"$\chi_1^l=1$")
  ax.set_xlabel("depth $l$")
  ax.set_ylabel(r"$m_1=\mathrm{E}\,\lambda$")
  ax.set_title("filled: Gaussian, open: orth.", loc="right")
  rows = 2 if column else 1  # the key's rows above the error bars
  low, _ = ax.get_ylim()
  ax.set_ylim(low, top + 0.3 * rows * (top - low))
  ax.legend(ncol=4 // rows, loc="upper left", fontsize=5.5, columnspacing=0.8, handletextpad=0.3)
  _style.panel_labels(axes)
  return _style.save(fig, out_dir, "F9_jacobian_spectra", source=str(path))


main = figure_main(draw)

if __name__ == "__main__":
  sys.exit(main())
