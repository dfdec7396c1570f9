"""The ``vanish`` command line: ``reproduce``, ``run``, ``list``, ``info`` and ``demo``.

``vanish reproduce [--quick | --full] [--only F4 F6]`` runs what each paper figure
needs (through the results store, so finished experiments are reused and interrupted
ones resume) and draws it; ``vanish run NAME [options]`` runs one experiment with its
own options (``vanish run phase_map --help``); ``vanish list`` lists experiments and
figures. The experiments (``experiments/``) and figure scripts (``paper_figs/``) live in
the source checkout beside the package, where figure ``FN`` is drawn by
``paper_figs/fN_<topic>.py``: any such script is found (a new ``f14_<topic>.py`` is
figure F14, titled by its docstring's first line), and one of the paper's F1–F13
without its script is reported as missing, never faked. ``vanish demo`` prints Nielsen's
per-layer "speed of learning" ``‖∂C/∂b^l‖`` (*Neural Networks and Deep Learning*, ch. 5)
for a random ensemble.

Example:
  >>> from vanish.cli import main
  >>> main(["list", "--figures"])  # doctest: +ELLIPSIS
  F1   ... per-layer learning speeds at initialization ...
  0
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import json
import math
import re
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["FIGURES", "Figure", "demo_results", "figures", "main", "quantile"]

LOG10_E = 1 / math.log(10)
DEMO_KEY_STREAMS = {"params": 0, "input": 1, "noise": 2}
COMPARE_DEFAULT = ("sigmoid", "tanh", "relu", "lecun_tanh", "scaled_tanh")
# The usual N(0, σ_w²/fan_in) init: He et al. (2015) σ_w² = 2 for rectifiers, LeCun σ_w² = 1 else.
_HE_ACTIVATIONS = ("relu", "leaky_relu", "noisy_relu")
# Nielsen ch. 5: a first layer ~100x slower than the last is the vanishing problem.
VERDICT_FACTOR = 100.0
MAX_TABLE_ROWS = 40


# --------------------------------------------------------------------------- figures


@dataclasses.dataclass(frozen=True)
class Figure:
  """One paper figure (issue 5): its name and what it shows.

  Attributes:
    name: ``"F1"`` … ``"F13"``; used in file names and ``--only``.
    title: what the figure shows.
  """

  name: str
  title: str

  @property
  def module(self) -> str | None:
    """The figure script ``paper_figs.fN_<topic>`` in the source checkout, or None."""
    checkout()  # puts the checkout on sys.path
    found = figure_folder()
    script = figure_scripts().get(self.name)
    return f"{found[0]}.{script.stem}" if found and script else None


def _source_root() -> Path | None:
  """The folder above the package if it holds ``experiments/`` and ``paper_figs/``, else None."""
  root = Path(__file__).resolve().parents[1]
  if not all((root / d / "__init__.py").is_file() for d in ("experiments", "paper_figs")):
    return None
  return root


def checkout() -> Path | None:
  """The source checkout holding ``experiments/`` and ``paper_figs/``, or None.

  It is the folder above the package (an editable install, or running from the
  repository); it is put on ``sys.path`` so both import as packages.
  """
  root = _source_root()
  if root is None:
    return None
  if str(root) not in sys.path:
    sys.path.insert(0, str(root))
  return root


def experiment_names() -> list[str]:
  """The experiments in the checkout: ``experiments/<name>.py`` not starting with ``_``."""
  root = checkout()
  if root is None:
    return []
  return sorted(p.stem for p in (root / "experiments").glob("*.py") if not p.stem.startswith("_"))


def first_docstring_line(path: Path) -> str:
  """The first line of a Python file's module docstring, read without importing it."""
  try:
    doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"), filename=str(path)))
  except (OSError, SyntaxError, ValueError) as error:
    return f"(unreadable: {type(error).__name__})"
  return doc.strip().splitlines()[0] if doc and doc.strip() else "(no docstring)"


def figure_folder() -> tuple[str, Path] | None:
  """The package the figure scripts live in and its folder: ``paper_figs/`` of the checkout."""
  root = _source_root()
  return None if root is None else ("paper_figs", root / "paper_figs")


_SCRIPT_NAME = re.compile(r"f([1-9][0-9]*)_\w+\.py")


def figure_scripts() -> dict[str, Path]:
  """``{"FN": paper_figs/fN_<topic>.py}`` for every figure script found, in order of N."""
  found = figure_folder()
  if found is None:
    return {}
  scripts: dict[int, Path] = {}
  for path in sorted(found[1].glob("f*_*.py")):
    match = _SCRIPT_NAME.fullmatch(path.name)
    if match:
      scripts.setdefault(int(match.group(1)), path)
  return {f"F{n}": scripts[n] for n in sorted(scripts)}


def figures() -> dict[str, Figure]:
  """The paper's figures, in order of N: F1–F13 (:data:`FIGURES`, listed even when a script is
  missing) and every other ``paper_figs/fN_<topic>.py``, titled by its docstring's first line."""
  found = dict(FIGURES)
  for name, path in figure_scripts().items():
    found.setdefault(name, Figure(name, first_docstring_line(path)))
  return dict(sorted(found.items(), key=lambda item: int(item[0][1:])))


# The paper's figures F1–F13 and their titles: reported as missing while a script is absent.
FIGURES: dict[str, Figure] = {
  f.name: f
  for f in [
    Figure(
      "F1",
      "per-layer learning speeds at initialization (sigmoid 2/3/4 layers, tanh, ReLU, LeCun tanh)",
    ),
    Figure("F2", "why large weights don't help sigmoid: σ' ≤ 1/4 and |w·σ'(w·a + b)|"),
    Figure("F3", "tanh(n·x): derivatives, thresholds t1(n), t2(n), depth-K, exploding region"),
    Figure("F4", "distribution of log|g| versus depth: Monte Carlo vs CLT/mean field; P(vanish)"),
    Figure("F5", "joint densities (g, x) and (g, w)"),
    Figure("F6", "phase map over (σ_w², σ_b²) with the critical line; initial-weight map"),
    Figure("F7", "the Markov model: transition estimates and absorption times"),
    Figure("F8", "trainability versus depth and σ_w² with 6·ξ_c"),
    Figure("F9", "Jacobian singular-value spectra versus depth: Gaussian vs orthogonal"),
    Figure("F10", "finite width: variance of log squared gradient versus Σ 1/n_l (ReLU)"),
    Figure("F11", "Lyapunov spectra at depth up to 10,000 versus Newman's formula"),
    Figure("F12", "the tanh(n·x) rescaling equivalence in training"),
    Figure("F13", "vanishing gradients through time in a vanilla RNN"),
  ]
}


# --------------------------------------------------------------------------- argument types


def _positive_int(name: str) -> Callable[[str], int]:
  def parse(text: str) -> int:
    try:
      value = int(text)
    except ValueError:
      raise argparse.ArgumentTypeError(f"{name} must be an integer >= 1, got {text!r}") from None
    if value < 1:
      raise argparse.ArgumentTypeError(f"{name} must be an integer >= 1, got {value}")
    return value

  return parse


def _nonnegative_float(name: str) -> Callable[[str], float]:
  def parse(text: str) -> float:
    try:
      value = float(text)
    except ValueError:
      raise argparse.ArgumentTypeError(f"{name} must be a number >= 0, got {text!r}") from None
    if not (math.isfinite(value) and value >= 0):
      raise argparse.ArgumentTypeError(f"{name} must be a finite number >= 0, got {text}")
    return value

  return parse


def _nonnegative_int(name: str) -> Callable[[str], int]:
  def parse(text: str) -> int:
    try:
      value = int(text)
    except ValueError:
      raise argparse.ArgumentTypeError(f"{name} must be an integer >= 0, got {text!r}") from None
    if value < 0:
      raise argparse.ArgumentTypeError(f"{name} must be an integer >= 0, got {value}")
    return value

  return parse


def _figure_name(text: str) -> str:
  name, known = text.upper(), figures()
  if name not in known:
    raise argparse.ArgumentTypeError(f"unknown figure {text!r}; known: {', '.join(known)}")
  return name


# --------------------------------------------------------------------------- statistics


def quantile(values: np.ndarray, q: float) -> float:
  """The linearly interpolated ``q``-quantile of a 1-d sample that may contain ``±inf``.

  Equal to ``np.quantile(values, q)`` on finite data; ``−inf`` entries (a gradient
  that is exactly zero, e.g. a dead ReLU layer) are ordered below every number
  instead of turning the interpolation into NaN.

  Example:
    >>> quantile(np.array([3.0, 1.0, 2.0, 4.0]), 0.5)
    2.5
    >>> quantile(np.array([-np.inf, -np.inf, 1.0, 2.0]), 0.1)
    -inf
  """
  s = np.sort(np.asarray(values, np.float64).ravel())
  if s.size == 0 or np.isnan(s).any():
    return math.nan
  position = q * (s.size - 1)
  lo, hi = math.floor(position), math.ceil(position)
  t = position - lo
  if t == 0 or s[lo] == s[hi]:
    return float(s[lo])
  if math.isinf(s[lo]) or math.isinf(s[hi]):
    return float(s[lo] if t < 1 and s[lo] == -math.inf else s[hi])
  return float(s[lo] + t * (s[hi] - s[lo]))


# --------------------------------------------------------------------------- demo


def usual_sigma_w2(activation: str) -> float:
  """σ_w² of the usual init: 2 (He) for rectifiers, 1 (LeCun) otherwise."""
  return 2.0 if activation in _HE_ACTIVATIONS else 1.0


def demo_results(
  activation: str,
  *,
  depth: int,
  width: int,
  members: int,
  sigma_w2: float,
  sigma_b2: float,
  seed: int,
  precision: str = "highest",
) -> dict[str, Any]:
  """Nielsen's per-layer learning speeds ``‖∂C/∂b^l‖`` for an ensemble of random MLPs.

  The network is ``vn.MLP(widths=[width] * (depth + 1), activation)`` with weights
  ``N(0, σ_w²/fan_in)`` and biases ``N(0, σ_b²)``; ``C = Σ_i a^L_i`` (cotangent of
  ones). With ``key = jax.random.key(seed)`` the parameters come from
  ``fold_in(key, 0)``, the single input ``x ~ N(0, I)`` from ``fold_in(key, 1)`` and
  the activation noise (noisy ReLU only) from ``fold_in(key, 2)``.

  Returns:
    A dict with ``log_norms`` (``[members, depth]`` natural logs, as a numpy array),
    per-layer ``layers`` statistics in log10 (median, 10% and 90% quantiles over
    members), ``median_norm = 10**median_log10`` per layer, and ``ratio_first_last``,
    the log10 quantiles of the per-member ratio ``‖δ^1‖/‖δ^L‖`` over the members whose
    gradient is not identically zero (``dead_members`` counts the others).
  """
  import jax

  import vanish as vn

  key = jax.random.key(seed)
  act = vn.activations.get(activation)
  net = vn.MLP(
    widths=[width] * (depth + 1),
    activation=act,
    weights=vn.init.gaussian(sigma_w2=sigma_w2),
    biases=vn.init.normal(std=math.sqrt(sigma_b2)),
  )
  params = net.init(jax.random.fold_in(key, DEMO_KEY_STREAMS["params"]), members=members)
  x = jax.random.normal(jax.random.fold_in(key, DEMO_KEY_STREAMS["input"]), (width,))
  noise = jax.random.fold_in(key, DEMO_KEY_STREAMS["noise"]) if act.stochastic else None
  log_norms = np.asarray(vn.log_gradient_norms(net, params, x, key=noise, precision=precision))
  log10 = log_norms * LOG10_E
  layers = []
  for l in range(depth):
    column = log10[:, l]
    median = quantile(column, 0.5)
    layers.append(
      {
        "layer": l + 1,
        "median_log10": median,
        "q10_log10": quantile(column, 0.1),
        "q90_log10": quantile(column, 0.9),
        "median_norm": 10.0**median if median > -math.inf else 0.0,
      }
    )
  # Both norms are exactly 0 only when the whole gradient is (all-dead ReLU members): no ratio.
  dead = np.isneginf(log10[:, -1]) & np.isneginf(log10[:, 0])
  ratio_log10 = log10[~dead, 0] - log10[~dead, -1]
  return {
    "activation": activation_label(act),
    "log_norms": log_norms,
    "layers": layers,
    "ratio_first_last": {
      "median_log10": quantile(ratio_log10, 0.5),
      "q10_log10": quantile(ratio_log10, 0.1),
      "q90_log10": quantile(ratio_log10, 0.9),
      "dead_members": int(dead.sum()),
    },
  }


def activation_label(act: Any) -> str:
  """``"tanh"``, ``"scaled_tanh(n=2)"``: an activation's name and parameters."""
  args = ", ".join(f"{k}={v:g}" for k, v in act.params)
  return f"{act.name}({args})" if args else act.name


def _sci(log10_value: float) -> str:
  """``10**log10_value`` in scientific notation, also far outside float range."""
  if math.isnan(log10_value):
    return "n/a"
  if log10_value == -math.inf:
    return "0"
  if log10_value == math.inf:
    return "inf"
  exponent = math.floor(log10_value)
  mantissa = 10 ** (log10_value - exponent)
  if mantissa >= 9.995:  # rounding would print 10.00e..
    mantissa, exponent = 1.0, exponent + 1
  return f"{mantissa:.2f}e{exponent:+03d}"


def _verdict(ratio_log10: float) -> str:
  bound = math.log10(VERDICT_FACTOR)
  if math.isnan(ratio_log10):
    return "undefined"
  if ratio_log10 < -bound:
    return "vanishing"
  if ratio_log10 > bound:
    return "exploding"
  return "balanced"


def _rows_to_show(depth: int) -> list[int]:
  if depth <= MAX_TABLE_ROWS:
    return list(range(depth))
  picks = np.unique(np.round(np.linspace(0, depth - 1, MAX_TABLE_ROWS // 2)).astype(int))
  return [int(i) for i in picks]


def _print_layer_table(result: dict[str, Any], depth: int) -> None:
  print(f"{'layer':>6} {'median log10':>13} {'10%':>8} {'90%':>8}   {'median ‖∂C/∂b‖':>16}")
  rows = _rows_to_show(depth)
  for i in rows:
    row = result["layers"][i]
    print(
      f"{row['layer']:>6} {row['median_log10']:>13.3f} {row['q10_log10']:>8.3f} "
      f"{row['q90_log10']:>8.3f}   {_sci(row['median_log10']):>16}"
    )
  if len(rows) < depth:
    print(f"(showing {len(rows)} of {depth} layers; --json PATH writes all of them)")


def _write_json_atomic(path: Path, payload: dict[str, Any]) -> None:
  """Writes ``payload`` as JSON to ``path`` atomically (:func:`vanish.store.write_atomic`)."""
  from vanish.store import write_atomic

  text = json.dumps(payload, indent=1, allow_nan=False) + "\n"
  write_atomic(path, lambda handle: handle.write(text.encode("utf-8")))


def _run_demo(args: argparse.Namespace) -> int:
  import jax

  from vanish.metadata import run_metadata, to_json

  start = time.perf_counter()
  sigma_w2 = usual_sigma_w2(args.activation) if args.sigma_w2 is None else args.sigma_w2
  compare = list(dict.fromkeys(COMPARE_DEFAULT if args.compare == [] else args.compare or []))
  config = {
    "activation": args.activation,
    "depth": args.depth,
    "width": args.width,
    "members": args.members,
    "sigma_w2": sigma_w2,
    "sigma_b2": args.sigma_b2,
    "seed": args.seed,
    "compare": compare,
    "cotangent": "ones (C = sum of outputs)",
    "input": "x ~ N(0, I), one input shared by all members",
    "key_streams": DEMO_KEY_STREAMS,
  }
  meta = run_metadata(args.precision, **config)
  device = jax.devices()[0]
  sizes = dict(depth=args.depth, width=args.width, members=args.members, seed=args.seed)
  result = demo_results(
    args.activation, sigma_w2=sigma_w2, sigma_b2=args.sigma_b2, precision=args.precision, **sizes
  )

  print(
    f"vanish demo: {result['activation']} MLP, {args.depth} layers of width {args.width}, "
    f"{args.members} members; W ~ N(0, {sigma_w2:g}/fan_in), "
    + (f"b ~ N(0, {args.sigma_b2:g})" if args.sigma_b2 > 0 else "b = 0")
  )
  print(
    f"device: {device.platform} ({device.device_kind}, {len(jax.devices())} device(s)); "
    f"matmul precision: {args.precision}; dtype: float32; seed: {args.seed}"
  )
  print(
    "Speed of learning ‖∂C/∂b^l‖ per layer (Nielsen ch. 5), C = Σ outputs; quantiles over members:"
  )
  _print_layer_table(result, args.depth)
  ratio = result["ratio_first_last"]
  dead = (
    f"; {ratio['dead_members']} member(s) with an all-zero gradient left out"
    if ratio["dead_members"]
    else ""
  )
  print(
    f"first/last layer ‖δ^1‖/‖δ^{args.depth}‖: median {_sci(ratio['median_log10'])} "
    f"(10%: {_sci(ratio['q10_log10'])}, 90%: {_sci(ratio['q90_log10'])}) "
    f"-> {_verdict(ratio['median_log10'])}{dead}"
  )

  comparison = []
  if compare:
    print()
    print(f"Comparison at the usual inits (same depth, width, members, σ_b² = {args.sigma_b2:g}):")
    print(
      f"{'activation':<24} {'σ_w²':>5} {'log10 ‖δ^1‖':>12} {'log10 ‖δ^L‖':>12} "
      f"{'‖δ^1‖/‖δ^L‖':>12}  verdict"
    )
    for name in compare:
      w2 = usual_sigma_w2(name)
      if (name, w2) == (args.activation, sigma_w2):
        other = result  # the same ensemble as the table above
      else:
        other = demo_results(
          name, sigma_w2=w2, sigma_b2=args.sigma_b2, precision=args.precision, **sizes
        )
      layers = other["layers"]
      ratio_log10 = other["ratio_first_last"]["median_log10"]
      comparison.append(
        {
          "activation": other["activation"],
          "sigma_w2": w2,
          "first_median_log10": layers[0]["median_log10"],
          "last_median_log10": layers[-1]["median_log10"],
          "ratio_first_last": other["ratio_first_last"],
          "verdict": _verdict(ratio_log10),
        }
      )
      print(
        f"{other['activation']:<24} {w2:>5g} {layers[0]['median_log10']:>12.3f} "
        f"{layers[-1]['median_log10']:>12.3f} {_sci(ratio_log10):>12}  {_verdict(ratio_log10)}"
      )
    print(
      f"(medians over members; vanishing/exploding: the first layer learns more than "
      f"{VERDICT_FACTOR:g}x slower/faster than the last)"
    )

  wall = time.perf_counter() - start
  print(f"wall time: {wall:.2f} s")
  if args.json is not None:
    payload = {
      "command": "demo",
      "config": config,
      "metadata": meta,
      "wall_time_s": wall,
      "activation": result["activation"],
      "layers": result["layers"],
      "ratio_first_last": result["ratio_first_last"],
      "log_gradient_norms": result["log_norms"],
      "log_gradient_norms_doc": "[members][layer] natural log of ||dC/db^l||; null = exactly 0",
      "comparison": comparison,
    }
    _write_json_atomic(args.json, to_json(payload, where="results"))
    print(f"wrote {args.json}")
  return 0


# --------------------------------------------------------------------------- info


def _run_info(args: argparse.Namespace) -> int:
  import jax

  from vanish.metadata import run_metadata

  meta = run_metadata(args.precision)
  if args.json:
    print(json.dumps(meta, indent=1))
    return 0
  print("vanish " + meta["versions"]["vanish"])
  print("versions:  " + ", ".join(f"{k} {v}" for k, v in meta["versions"].items() if k != "vanish"))
  print(f"platform:  {meta['platform']}")
  print(f"backend:   {meta['backend']}")
  kinds = sorted(set(meta["devices"]))
  print(f"devices:   {meta['device_count']} x {', '.join(kinds)}")
  for d in jax.devices():
    print(f"           {d}")
  print(
    f"precision: {meta['precision']} (vanish default; JAX global default_matmul_precision="
    f"{meta['default_matmul_precision']})"
  )
  print(f"x64:       {meta['x64']} (float64 reference paths use `with jax.enable_x64(True)`)")
  print(f"time:      {meta['timestamp']}")
  return 0


# --------------------------------------------------------------------------- reproduce


def _no_checkout() -> int:
  print(
    "vanish reproduce/run need the source checkout (experiments/ and paper_figs/ beside the "
    "package): git clone the repository and `pip install -e .` there.",
    file=sys.stderr,
  )
  return 2


def _draw_figure(figure: Figure, args: argparse.Namespace) -> dict[str, Any]:
  """Draws one figure; returns what happened (status, files, experiments run or reused)."""
  import importlib

  from experiments._common import RUN_LOG

  record: dict[str, Any] = {
    "figure": figure.name,
    "title": figure.title,
    "experiments": [],
    "layout_warnings": [],
  }
  status, reason = _figure_status(figure)
  if status == "missing":  # not landed: reported, never faked
    return record | {"status": "missing", "reason": reason, "wall_time_s": 0.0}
  module_name = figure.module
  first_run = len(RUN_LOG)
  start = time.perf_counter()
  try:
    from paper_figs import LAYOUT_CHOICES, draw_layouts

    module = importlib.import_module(module_name)
    files, collisions = draw_layouts(
      module.draw,
      LAYOUT_CHOICES[args.layout],
      quick=args.size == "quick",
      out_dir=Path(args.out),
      store_root=Path(args.store),
      force=args.force,
    )
    record |= {"status": "drawn", "files": [str(f) for f in files]}
    record["layout_warnings"] = collisions
  except Exception as error:  # report it, draw the other figures, exit 1 at the end
    record |= {"status": "failed", "reason": f"{type(error).__name__}: {error}"}
  first_of_each = {}  # the second layout's draw finds the runs the first one made
  for o in RUN_LOG[first_run:]:
    first_of_each.setdefault(str(o.path), o)
  record["experiments"] = [
    {
      "experiment": o.path.parent.name,
      "path": path,
      "computed_chunks": o.computed,
      "reused_chunks": o.reused,
    }
    for path, o in first_of_each.items()
  ]
  record["wall_time_s"] = time.perf_counter() - start
  return record


def _run_reproduce(args: argparse.Namespace) -> int:
  known = figures()
  names = list(dict.fromkeys(args.only)) if args.only else list(known)
  if args.list:
    return _list_figures(names, known)
  if checkout() is None:
    return _no_checkout()
  if args.out is None:
    args.out = str(Path(args.store) / "figures")
  start = time.perf_counter()
  print(
    f"vanish reproduce --{args.size}: {len(names)} figure(s) -> {args.out} (store: {args.store})"
  )
  records = []
  for index, name in enumerate(names, 1):
    figure = known[name]
    print(f"[{index}/{len(names)}] {name}: {figure.title}", flush=True)
    record = _draw_figure(figure, args)
    records.append(record)
    if record["status"] == "drawn":
      print(f"  drawn in {record['wall_time_s']:.1f} s: {', '.join(record['files'])}")
      for collision in record["layout_warnings"]:
        print(f"  layout warning: {collision}")
    else:
      print(f"  {record['status']}: {record['reason']}")
  wall = time.perf_counter() - start
  by_status = {
    s: [r["figure"] for r in records if r["status"] == s] for s in ("drawn", "missing", "failed")
  }
  runs = [e for r in records for e in r["experiments"]]
  computed = sorted({e["path"] for e in runs if e["computed_chunks"]})
  reused = sorted({e["path"] for e in runs if not e["computed_chunks"]} - set(computed))
  experiments = {
    "computed": _experiment_names(computed, runs),
    "reused": _experiment_names(reused, runs),
  }
  print(f"\nsummary ({wall:.1f} s wall time):")
  for status, names_ in by_status.items():
    if names_:
      print(f"  {status:<8} {len(names_):>2}: {' '.join(names_)}")
  print(
    f"  experiments computed: {len(experiments['computed'])}, "
    f"reused from the store: {len(experiments['reused'])}"
  )
  for what, label in (("computed", "computed:"), ("reused", "reused:  ")):
    if experiments[what]:
      print(f"    {label} {' '.join(experiments[what])}")
  print(f"  figures in {args.out}/, results in {args.store}/")
  summary = {
    "command": "reproduce",
    "size": args.size,
    "layout": args.layout,
    "experiments": experiments,
    "figures": records,
    "wall_time_s": wall,
    "store": str(Path(args.store).resolve()),  # readable from any working directory
  }
  _write_json_atomic(Path(args.out) / "reproduce_summary.json", summary)
  if by_status["missing"]:
    print(
      "missing figures are never faked: their experiment or script has not landed.", file=sys.stderr
    )
  if by_status["failed"]:
    return 1
  return 2 if by_status["missing"] else 0


def _experiment_names(paths: Sequence[str], runs: Sequence[dict[str, Any]]) -> list[str]:
  """The experiments of the run folders ``paths``, each once (a run's folder is
  ``store/<experiment>/<config hash>``)."""
  name_of = {e["path"]: e["experiment"] for e in runs}
  return sorted({name_of[path] for path in paths})


def _figure_status(figure: Figure) -> tuple[str, str]:
  """``("ready", "")``, or ``("missing", why)``: no script, or an experiment module that the
  script imports (directly or through other experiments) does not exist. Read from the
  sources, before anything runs: ``reproduce --list`` and ``reproduce`` say the same."""
  import importlib.util

  module = figure.module
  if module is None:
    return "missing", f"no paper_figs/{figure.name.lower()}_*.py"
  from experiments._common import missing_experiments

  spec = importlib.util.find_spec(module)
  absent = missing_experiments(Path(spec.origin)) if spec and spec.origin else []
  if not absent:
    return "ready", ""
  files = ", ".join(f"{name.replace('.', '/')}.py" for name in absent)
  return "missing", f"no {files} (imported by {module})"


def _list_figures(names: Sequence[str], known: dict[str, Figure]) -> int:
  for name in names:
    figure = known[name]
    status, why = _figure_status(figure)
    print(f"{name:<4} {status:<8} {figure.title}" + (f" — {why}" if why else ""))
  return 0


def _run_list(args: argparse.Namespace) -> int:
  if not args.figures:
    names = experiment_names()
    print("experiments (vanish run NAME --help):" if names else "experiments: no source checkout")
    root = checkout()
    width = max(map(len, names), default=0)
    for name in names:
      about = first_docstring_line(root / "experiments" / f"{name}.py")
      print(f"  {name:<{width}}  {about}")
    print("figures (vanish reproduce --only FIG):")
  return _list_figures(list(figures()), figures())


def _run_experiment(args: argparse.Namespace) -> int:
  import importlib

  if checkout() is None:
    return _no_checkout()
  known = experiment_names()
  if args.experiment not in known:
    print(f"unknown experiment {args.experiment!r}; known: {', '.join(known)}", file=sys.stderr)
    return 2
  from experiments._common import invoked_as

  module = importlib.import_module(f"experiments.{args.experiment}")
  with invoked_as(f"vanish run {args.experiment}"):
    return module.main(args.options)


# --------------------------------------------------------------------------- parser


def _precisions() -> tuple[str, ...]:
  from vanish._engine import PRECISIONS

  return PRECISIONS


def build_parser() -> argparse.ArgumentParser:
  """The ``vanish`` argument parser (subcommands ``info``, ``demo``, ``reproduce``)."""
  from vanish import __version__, activations

  parser = argparse.ArgumentParser(
    prog="vanish",
    description="vanishing and exploding gradients in deep networks, computed with JAX",
  )
  parser.add_argument("--version", action="version", version=f"vanish {__version__}")
  commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

  info = commands.add_parser(
    "info",
    help="devices, versions and default precision",
    description="Print the devices, package versions and numerics settings vanish records.",
  )
  info.add_argument(
    "--precision",
    choices=_precisions(),
    default="highest",
    help="matmul precision to report (default: highest)",
  )
  info.add_argument("--json", action="store_true", help="print the metadata as JSON")
  info.set_defaults(run=_run_info)

  known = activations.available()
  demo = commands.add_parser(
    "demo",
    help="per-layer gradient norms of a random MLP ensemble (Nielsen ch. 5)",
    description=(
      "Sample an ensemble of random MLPs and print Nielsen's per-layer speed of learning "
      "||dC/db^l|| (median and 10%/90% quantiles over members), the first/last-layer "
      "ratio, and a comparison of activations at their usual inits."
    ),
  )
  demo.add_argument(
    "--activation",
    default="tanh",
    choices=known,
    metavar="NAME",
    help=f"activation (default: tanh); one of: {', '.join(known)}",
  )
  demo.add_argument(
    "--depth", type=_positive_int("depth"), default=30, help="number of layers L >= 1 (default: 30)"
  )
  demo.add_argument(
    "--width",
    type=_positive_int("width"),
    default=64,
    help="width of the input and every layer, >= 1 (default: 64)",
  )
  demo.add_argument(
    "--members",
    type=_positive_int("members"),
    default=256,
    help="ensemble size >= 1 (default: 256)",
  )
  demo.add_argument(
    "--sigma-w2",
    type=_nonnegative_float("sigma-w2"),
    default=None,
    help="weight variance σ_w² >= 0 in N(0, σ_w²/fan_in) "
    "(default: the usual init, 2 for ReLU-like activations, else 1)",
  )
  demo.add_argument(
    "--sigma-b2",
    type=_nonnegative_float("sigma-b2"),
    default=0.0,
    help="bias variance σ_b² >= 0 (default: 0)",
  )
  demo.add_argument(
    "--seed", type=_nonnegative_int("seed"), default=0, help="seed of jax.random.key (default: 0)"
  )
  demo.add_argument(
    "--precision",
    choices=_precisions(),
    default="highest",
    help="matmul precision (default: highest)",
  )
  demo.add_argument(
    "--compare",
    nargs="*",
    default=None,
    choices=known,
    metavar="NAME",
    help="also compare activations at their usual inits in a summary table; "
    f"with no names: {' '.join(COMPARE_DEFAULT)} (scaled_tanh is tanh(2x)). "
    "Each activation compiles its own network: ~3 s more per name on a CPU",
  )
  demo.add_argument(
    "--json",
    type=Path,
    default=None,
    metavar="PATH",
    help="also write config, metadata and all results to PATH (atomically)",
  )
  demo.set_defaults(run=_run_demo)

  reproduce = commands.add_parser(
    "reproduce",
    help="run the experiments and draw the paper's figures F1-F13",
    description=(
      "Run what each paper figure needs (finished experiments are reused from the store, "
      "interrupted ones resume) and draw it as PDF and PNG. A figure whose script (or the "
      "experiment module it imports) has not landed is reported as missing, never faked. "
      "Exit status: 0 all drawn, 1 a figure failed, 2 a figure is missing."
    ),
  )
  size = reproduce.add_mutually_exclusive_group()
  size.add_argument(
    "--quick",
    action="store_const",
    const="quick",
    dest="size",
    help="small sizes: every figure in minutes on a 2-core CPU (the default)",
  )
  size.add_argument(
    "--full",
    action="store_const",
    const="full",
    dest="size",
    help="paper-scale sizes for one GPU",
  )
  reproduce.set_defaults(size="quick")
  reproduce.add_argument(
    "--only",
    nargs="+",
    type=_figure_name,
    metavar="FIG",
    help=f"figures to make (default: all of {' '.join(figures())})",
  )
  reproduce.add_argument(
    "--out",
    metavar="DIR",
    help="figure folder (default: STORE/figures, beside the results they are drawn from)",
  )
  reproduce.add_argument(
    "--store", default="results", metavar="DIR", help="results store root (default: results)"
  )
  reproduce.add_argument(
    "--force", action="store_true", help="recompute the experiments even if stored"
  )
  reproduce.add_argument(
    "--layout",
    choices=["both", "page", "column"],
    default="both",
    help="page: 7 in wide (two columns); column: 3.4 in, the panels reflowed, as "
    "FN_<topic>_column.pdf/png (default: both)",
  )
  reproduce.add_argument(
    "--list", action="store_true", help="list the figures and whether each is ready, then exit"
  )
  reproduce.set_defaults(run=_run_reproduce)

  run = commands.add_parser(
    "run",
    help="run one experiment with its own options",
    description="Run one experiment of experiments/ by name; options after the name go to it "
    "(`vanish run phase_map --help` lists them).",
    add_help=True,
  )
  run.add_argument("experiment", metavar="NAME", help="the experiment (see `vanish list`)")
  options = run.add_argument(
    "options", nargs=argparse.REMAINDER, help="the experiment's own options (optional)"
  )
  options.required = False  # argparse marks a REMAINDER positional required
  run.set_defaults(run=_run_experiment)

  listing = commands.add_parser(
    "list", help="list the experiments and figures", description="List experiments and figures."
  )
  listing.add_argument("--figures", action="store_true", help="only the figures")
  listing.set_defaults(run=_run_list)
  return parser


def main(argv: Sequence[str] | None = None) -> int:
  """Entry point of the ``vanish`` console script and ``python -m vanish``.

  Args:
    argv: the arguments without the program name; ``None`` reads ``sys.argv``.

  Returns:
    The exit status: 0 on success, 1 when a figure failed, 2 when ``reproduce`` has
    missing figures.
    Invalid arguments raise ``SystemExit(2)`` with a message naming the parameter.
  """
  args = build_parser().parse_args(None if argv is None else list(argv))
  return args.run(args)
