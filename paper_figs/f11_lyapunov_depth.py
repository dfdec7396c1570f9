"""Lyapunov spectra of random products thousands of layers deep: Benettin's repeated QR
reproduces Newman's exact exponents of Gaussian products within Monte Carlo error, and
converges to them at shallower depth than the exact log singular values of the product.

(a) The Lyapunov spectrum λ_i, i = 1..n, of linear Gaussian products (Benettin,
``refine=False``, at the full depth; 95 % intervals over products) against Newman (1986,
line), with tanh at criticality and He ReLU for contrast (ReLU's top exponent against
Hanin's per-layer law, star; below the product's rank, the fewest active units along the
chain, its exponents are −∞, here float32 rounding, off the scale). (b) The deviation of each
measured exponent from Newman's, in units of its standard error √(ψ'((n−i+1)/2)/(4LM));
the band is ±1.96. (c) The
estimated top exponent minus Newman's λ₁ versus depth: Benettin's sums (whose per-index
terms are unbiased; only sorting them biases shallow depths upward) reach the Monte Carlo
band (gray, ±1.96 standard errors) within tens of layers, the exact top log singular value
(``refine=True``) carries a slowly decaying positive bias (the input direction's overlap
with the top singular vector).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from experiments import lyapunov_depth as experiment
from paper_figs import _style, figure_main
from vanish import store


def draw(*, quick: bool, out_dir: Path, store_root: Path, force: bool = False) -> list[Path]:
  path = experiment.ensure("quick" if quick else "full", store_root, force=force)
  run = store.load(path)
  a, config = run.arrays, run.config
  n, members = config["width"], config["members"]
  index = np.arange(1, n + 1)
  fig, axes = _style.figure(1, 3, width=_style.PAGE, height=2.5, column_height=4.2)
  ax = axes[0][0]
  depths = {"linear": config["depth"], "tanh": config["depth"], "relu": config["relu_depth"]}
  for name in experiment.NETWORKS:
    ci = a[f"{name}/exponents_ci"]
    _style.mc(
      ax,
      index,
      a[f"{name}/exponents_mean"],
      ci[:, 0],
      ci[:, 1],
      color=_style.color(name),
      label=f"{_style.label(name)}, $L$ = {depths[name]:,}",
      markersize=2.5,
    )
  _style.theory(ax, index, a["linear/theory"], label="Newman")
  ax.plot(1, a["relu/theory"][0], "*", color="black", markersize=7, label="Hanin (ReLU top)")
  # page: the key in (a), below the data (room for its two rows, clear of the smallest
  # exponents); column: the key above the figure (a 1.7 in panel has no room for it), and a
  # smaller margin below the data
  page = _style.current_layout() == "page"
  low = (1.6 if page else 1.25) * min(a["linear/theory"].min(), a["tanh/exponents_mean"].min())
  ax.set_ylim(low, 0.1 * abs(low))
  ax.set_xlabel("index $i$")
  ax.set_ylabel(r"exponent $\lambda_i$")
  ax.set_title(f"$n$ = {n}, {members} products", loc="right")
  if page:
    ax.legend(loc="lower right", ncol=2, fontsize=5.5, columnspacing=0.8, handletextpad=0.3)
  else:
    fig.legend(*ax.get_legend_handles_labels(), loc="outside upper center", ncol=3)
  ax = axes[0][1]
  rows = [r for r in run.tables["exponents"] if r["network"] == "linear"]
  se = np.array([float(r["theory_se_per_product"]) for r in rows]) / np.sqrt(members)
  z = (a["linear/exponents_mean"] - a["linear/theory"]) / se
  ax.axhspan(-1.96, 1.96, color="0.9", zorder=0)
  ax.axhline(0, **_style.THEORY_STYLE)
  _style.mc(ax, index, z, color=_style.color("linear"))
  ax.set_xlabel("index $i$")
  ax.set_ylabel(r"$(\hat\lambda_i-\lambda_i^{\rm Newman})/\mathrm{se}$")
  ax.set_ylim(-4, 4)
  ax.set_title(f"linear, $L$ = {config['depth']:,}", loc="right")
  ax = axes[0][2]
  top = a["linear/theory"][0]
  series = [
    ("Benettin (refine=False)", "linear/depths", "linear/top_benettin", "o"),
    ("exact (refine=True)", "linear/exact_depths", "linear/top_exact", "s"),
  ]
  for i, (label, depth_key, key, marker) in enumerate(series):
    d, mean, ci = a[depth_key], a[f"{key}_mean"] - top, a[f"{key}_ci"] - top
    _style.mc(
      ax,
      d,
      mean,
      ci[:, 0],
      ci[:, 1],
      color=_style.color("", i),
      marker=marker,
      label=label,
      markersize=2.5,
    )
  grid = np.geomspace(1, config["depth"], 100)
  band = 1.96 * np.sqrt(float(rows[0]["theory_se_per_product"]) ** 2 * config["depth"] / grid)
  band = band / np.sqrt(members)
  ax.fill_between(grid, -band, band, color="0.9", zorder=0)
  ax.axhline(0, **_style.THEORY_STYLE)
  ax.set_xscale("log")
  ax.set_yscale("symlog", linthresh=1e-3)
  ax.set_xlabel("depth $L$")
  ax.set_ylabel(r"$\hat\lambda_1(L)-\lambda_1$")
  # page: in a decade of room below the band's narrow end, clear of the error bars; column:
  # below the panel, for which its labels are too wide
  if page:
    ax.set_ylim(bottom=-10 * band.max())
    ax.legend(fontsize=6, loc="lower right")
  else:
    ax.legend(fontsize=6, loc="upper center", bbox_to_anchor=(0.5, -0.4))
  _style.panel_labels(axes)
  return _style.save(fig, out_dir, "F11_lyapunov_depth", source=str(path))


main = figure_main(draw)

if __name__ == "__main__":
  sys.exit(main())
