"""How likely is vanishing? The distribution of log|g| with depth, Monte Carlo against theory.

Top row, the one-neuron chain of the seed analysis (Nielsen ch. 5; w, b, x ~ N(0, 1)), where
g_K = Π_{j≤K} f_j and log|g_K| is a sum of per-layer log-factors. (a) Mean ± one standard
deviation of log|g_K| (markers and band) against the central-limit model with independent layers
(dashed: Σ E log|f_j|; dotted: ± (Σ Var log|f_j|)^{1/2}). (b) P(|g_K| < ε), ε = 10⁻³, with 95 %
Wilson intervals, and the CLT's Gaussian prediction (dashed). (c) The density of log|g_K| for
tanh(2x) at three depths: histogram and kernel estimate against the CLT Gaussian (dashed), scaled
by the fraction of chains not exactly zero in float32; the grey line is log ε. ReLU chains die (a
factor is exactly 0): they have no CLT, and their moments are shown only while most chains are
alive. Bottom row, full-width networks (n = 64) at their usual initialization, with the gradient
log‖δ^{L−K+1}‖ − log‖δ^L‖ after crossing K − 1 layers. (d) Mean ± one standard deviation against
mean-field theory (dashed, ½(K − 1) ln χ₁ at q*; Schoenholz et al. 2017) and, for ReLU at He
initialization, Hanin's finite-width law (dotted: mean ± std); the y-axis is linear within ±10
and logarithmic beyond. The tanh-type means fall below the dashed lines mostly by the
finite-width term −(3κ − 1)/(4n) per layer, κ = E φ'⁴/(E φ'²)² (a mean of logs lies below the log
of the mean), and by the inputs' q⁰ = 1 ≠ q* (for tanh at σ_b = 0, q* = 0 is approached only
slowly). (e) P(vanish) (filled) and P(explode) (|g| > 1/ε, open) with 95 % Wilson intervals.
(f) The ReLU density against Hanin's log-normal law. The bands in (a) and (d) are the spread of
the samples, not an uncertainty of the means: the means' standard errors are at most 0.18 in (a)
(16,384 chains) and 0.07 in (d) (256 nets) at --quick size, smaller still at --full size, far
smaller than the markers, so the means carry no error bars.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
from matplotlib.lines import Line2D
from scipy import stats

from experiments import probabilistic_model
from paper_figs import _style, figure_main
from vanish import activations, store, theory

ORDER = ("sigmoid", "tanh", "tanh2x", "relu", "lecun_tanh")
MARK_EVERY = 5  # Monte Carlo markers at K = 1, 5, 10, …: the curves stay readable


def init_variances(name: str) -> tuple[float, float]:
  """``(σ_w², σ_b²)`` of the experiment's full-width initialization of ``name``.

  Example:
    >>> init_variances("relu"), init_variances("sigmoid")
    ((2.0, 0.0), (1.0, 1.0))
  """
  _, weights, biases = probabilistic_model.ACTIVATIONS[name]
  if weights.name != "gaussian":
    raise ValueError(f"{name}: mean field needs gaussian(σ_w²) weights, got {weights.name}")
  sigma_w2 = weights.param("sigma_w2")
  if biases.name == "normal":
    sigma_b2 = biases.param("std") ** 2
  elif biases.name == "constant" and biases.param("value") == 0:
    sigma_b2 = 0.0
  else:
    raise ValueError(f"{name}: mean field needs normal or zero biases, got {biases.name}")
  return float(sigma_w2), float(sigma_b2)


def mean_field_log_growth(name: str, depth: int) -> np.ndarray:
  """``[depth]`` the mean-field ½(K − 1) ln χ₁ of log‖δ^{L−K+1}‖/‖δ^L‖, K = 1..depth.

  Example:
    >>> mean_field_log_growth("relu", 3).tolist()
    [0.0, 0.0, 0.0]
  """
  activation = activations.get(probabilistic_model.ACTIVATIONS[name][0])
  chi1 = theory.mean_field(activation, *init_variances(name)).chi1
  return 0.5 * math.log(chi1) * np.arange(depth)


def hanin_relu_law(width: int, depth: int) -> tuple[np.ndarray, np.ndarray]:
  """Mean and std of log‖δ^{L−K+1}‖/‖δ^L‖ for a He-initialized ReLU net, K = 1..depth.

  Each layer crossed multiplies ‖δ‖² by (2/n)·χ²(k), k ~ Binomial(n, 1/2) active units
  (Hanin 2018; :func:`vanish.theory.relu_gradient_moments` for K − 1 layers of width n);
  the logs of the norms are half the logs of the squares.

  Example:
    >>> mean, std = hanin_relu_law(64, 3)
    >>> float(mean[0]), float(std[0]), bool(mean[2] < mean[1] < 0)
    (0.0, 0.0, True)
  """
  mean, std = np.zeros(depth), np.zeros(depth)
  for k in range(2, depth + 1):
    moments = theory.relu_gradient_moments([width] * k)
    mean[k - 1], std[k - 1] = moments.log_mean / 2, math.sqrt(moments.log_var) / 2
  return mean, std


def _marks(depth: int, *, geometric: bool = False) -> np.ndarray:
  """0-based indices of the depths that get Monte Carlo markers."""
  if geometric:
    return np.unique(np.round(np.geomspace(1, depth, 16)).astype(int)) - 1
  return np.unique(np.r_[0, np.arange(MARK_EVERY - 1, depth, MARK_EVERY)])


def _rebin(density: np.ndarray, edges: np.ndarray, factor: int):
  """Merges ``factor`` neighbouring histogram bins (densities averaged)."""
  bins = density.size // factor * factor
  return density[:bins].reshape(-1, factor).mean(axis=1), edges[: bins + 1 : factor]


def _draw_moments(ax, arrays, names, chain, depth, theory_fn) -> None:
  ks = np.arange(1, depth + 1)
  marks = _marks(depth)
  for name in names:
    c = _style.color(name)
    mean, std = arrays[f"{name}/{chain}/mean"], arrays[f"{name}/{chain}/std"]
    ok = np.isfinite(mean) & (arrays[f"{name}/{chain}/p_zero"] < 0.5)  # most chains alive
    ax.fill_between(ks[ok], (mean - std)[ok], (mean + std)[ok], color=c, alpha=0.18, lw=0)
    m = marks[ok[marks]]
    _style.mc(ax, ks[m], mean[m], color=c, label=_style.label(name), ms=3)
    theory_fn(ax, name, ks, c)


def _scalar_theory(arrays):
  def draw(ax, name, ks, c):
    if f"{name}/clt/mean" not in arrays:
      return
    mean = arrays[f"{name}/clt/mean"]
    spread = np.sqrt(arrays[f"{name}/clt/var_independent"])
    _style.theory(ax, ks, mean, color=c, linewidth=0.9)
    for sign in (-1, 1):
      _style.theory(ax, ks, mean + sign * spread, color=c, linestyle=":", linewidth=0.8)

  return draw


def _layer_theory(width):
  def draw(ax, name, ks, c):
    _style.theory(ax, ks, mean_field_log_growth(name, ks.size), color=c, linewidth=0.9)
    if name == "relu" and probabilistic_model.ACTIVATIONS["relu"][1].param("sigma_w2") == 2.0:
      mean, std = hanin_relu_law(width, ks.size)
      for band in (mean - std, mean + std):
        _style.theory(ax, ks, band, color=c, linestyle=":", linewidth=0.8)

  return draw


def _draw_probability(ax, arrays, names, chain, depth, *, explode: bool) -> None:
  ks = np.arange(1, depth + 1)
  marks = _marks(depth, geometric=not explode)
  for name in names:
    c = _style.color(name)
    p, ci = arrays[f"{name}/{chain}/p_vanish"], arrays[f"{name}/{chain}/p_vanish_ci"]
    _style.mc(ax, ks[marks], p[marks], ci[marks, 0], ci[marks, 1], color=c, ms=3)
    if f"{name}/clt/p_vanish" in arrays and chain == "scalar":
      _style.theory(ax, ks, arrays[f"{name}/clt/p_vanish"], color=c, linewidth=0.9)
    if explode:
      p, ci = arrays[f"{name}/{chain}/p_explode"], arrays[f"{name}/{chain}/p_explode_ci"]
      if p.max() > 0:
        _style.mc(
          ax,
          ks[marks],
          p[marks],
          ci[marks, 0],
          ci[marks, 1],
          color=c,
          mfc="white",
          ms=3,
          linestyle=":",
        )
  ax.set_ylim(-0.03, 1.03)


def _draw_densities(ax, arrays, name, chain, ks, gaussian, samples: int) -> None:
  edges = arrays[f"{name}/{chain}/bin_edges"]
  grid = arrays[f"{name}/{chain}/density_grid"]
  shades = _style.plt.get_cmap("Greys")(np.linspace(0.45, 0.9, len(ks)))
  lows, highs = [], []
  for k, shade in zip(ks, shades, strict=True):
    mean, std = gaussian(k)
    # bins of ~8/√S std of the narrowest law: coarse enough for small ensembles
    target = 8 * min(s for _, s in map(gaussian, ks)) / math.sqrt(samples)
    factor = max(1, round(target / (edges[1] - edges[0])))
    hist, hist_edges = _rebin(arrays[f"{name}/{chain}/histogram"][k - 1], edges, factor)
    ax.stairs(hist, hist_edges, color=_style.color(name), alpha=0.3, fill=True, lw=0)
    ax.plot(grid, arrays[f"{name}/{chain}/density"][k - 1], color=shade, lw=1.0, label=f"K = {k}")
    finite = 1 - arrays[f"{name}/{chain}/p_zero"][k - 1]
    _style.theory(ax, grid, finite * stats.norm.pdf(grid, mean, std), linewidth=0.9)
    lows.append(mean - 4 * std)
    highs.append(mean + 4 * std)
  ax.set_xlim(min(lows), max(highs))
  ax.set_ylim(bottom=0)


def draw(*, quick: bool, out_dir: str | Path, store_root: str | Path, force=False) -> list[Path]:
  """Draws F4 from the probabilistic-model run (computed first if missing)."""
  path = probabilistic_model.ensure("quick" if quick else "full", store_root, force=force)
  run = store.load(path)
  arrays, depth = run.arrays, int(run.config["depth"])
  width, log_eps = int(run.config["width"]), math.log(float(run.config["epsilon"]))
  names = [n for n in ORDER if n in run.config["activations"]]
  column = _style.current_layout() == "column"  # narrow panels: keys need room made for them
  fig, axes = _style.figure(2, 3, width=_style.PAGE, height=4.7, column_height=6.0)
  (a, b, c), (d, e, f) = axes

  _draw_moments(a, arrays, names, "scalar", depth, _scalar_theory(arrays))
  a.set_ylabel(r"$\log|g_K|$")
  a.set_title("one-neuron chain")
  _draw_probability(b, arrays, names, "scalar", depth, explode=False)
  b.set_ylabel(r"$P(|g_K| < \varepsilon)$")
  b.set_title(rf"one-neuron chain, $\varepsilon = 10^{{{log_eps / math.log(10):.0f}}}$")
  b.set_xscale("log")

  focus = "tanh2x" if "tanh2x" in names else names[0]
  if f"{focus}/clt/mean" in arrays:
    ks = sorted({max(1, depth // 5), max(1, depth // 2), depth})

    def clt_gaussian(k):
      var = arrays[f"{focus}/clt/var_independent"][k - 1]
      return arrays[f"{focus}/clt/mean"][k - 1], math.sqrt(var)

    samples = int(run.config["chain_members"]) * int(run.config["chain_inputs"])
    _draw_densities(c, arrays, focus, "scalar", ks, clt_gaussian, samples)
    c.axvline(log_eps, color="0.5", lw=0.6, ls="-", zorder=0)
    c.set_xlabel(r"$\log|g_K|$")
    c.set_ylabel("density")
    c.set_title(f"{_style.label(focus)} chain vs CLT")
    c.legend(loc="upper left")

  _draw_moments(d, arrays, names, "layers", depth, _layer_theory(width))
  d.set_yscale("symlog", linthresh=10, linscale=1.5)
  d.set_ylabel(r"$\log\|\delta^{L-K+1}\| - \log\|\delta^L\|$")
  d.set_title(f"width {width}")
  _draw_probability(e, arrays, names, "layers", depth, explode=True)
  e.set_ylabel("probability")
  e.set_title(rf"width {width}: vanish ($\bullet$), explode ($\circ$)")

  if "relu" in names:
    hanin_mean, hanin_std = hanin_relu_law(width, depth)
    ks = sorted({max(2, depth // 5), max(2, depth // 2), depth})
    samples = int(run.config["members"]) * int(run.config["inputs"])

    def hanin(k):
      return hanin_mean[k - 1], hanin_std[k - 1]

    _draw_densities(f, arrays, "relu", "layers", ks, hanin, samples)
    f.set_xlabel(r"$\log\|\delta^{L-K+1}\| - \log\|\delta^L\|$")
    f.set_ylabel("density")
    f.set_title(f"ReLU, width {width}, vs Hanin")
    if column:  # the key above the peaks
      f.set_ylim(top=1.5 * f.get_ylim()[1])
    f.legend(loc="upper left")

  for ax in (a, b, d, e):
    ax.set_xlabel("depth K")
  for ax in (a, d, e):
    ax.set_xlim(0, depth + 1)
  b.set_xlim(0.8, depth * 1.2)
  handles = [
    Line2D([], [], **_style.THEORY_STYLE),
    Line2D([], [], color="black", linestyle=":", linewidth=0.8),
  ]
  if column:  # the key below the curves
    low, high = a.get_ylim()
    a.set_ylim(low - 0.3 * (high - low), high)
  a.legend(handles, ["CLT mean", "CLT ± std"], loc="lower left")
  # the colors' key where (e) is empty, between P = 0 and P = 1
  e.legend(*a.get_legend_handles_labels(), loc="upper left", bbox_to_anchor=(0, 0.93))
  b.legend(handles[:1], ["CLT"], loc="lower right")
  d.legend(
    handles,
    ["mean field\n½(K−1) ln χ₁", "Hanin ± std"],
    loc="upper left",
    bbox_to_anchor=(0.16, 0.56),
    fontsize=6.5,
  )
  _style.panel_labels(axes)
  return _style.save(fig, out_dir, "F4_log_g_distribution", source=str(path))


main = figure_main(draw)

if __name__ == "__main__":
  sys.exit(main())
