"""What every experiment script shares: argument types and find-or-compute in the store."""

from __future__ import annotations

import argparse
import ast
import contextlib
import math
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from vanish import data, store


def integer(low: int, high: int | None = None) -> Callable[[str], int]:
  """argparse type: an integer in ``[low, high]`` (``>= low`` without ``high``); ``"1.5"`` and
  ``"x"`` are refused with the same message, which names the allowed range.

  Example:
    >>> integer(0, 9)("3")
    3
    >>> integer(2)("1")
    Traceback (most recent call last):
    argparse.ArgumentTypeError: must be an integer >= 2, got '1'
  """
  allowed = f">= {low}" if high is None else f"in [{low}, {high}]"

  def parse(text: str) -> int:
    try:
      value = int(text)
    except ValueError:
      value = None
    if value is None or value < low or (high is not None and value > high):
      raise argparse.ArgumentTypeError(f"must be an integer {allowed}, got {text!r}")
    return value

  parse.__name__ = f"integer {allowed}"
  return parse


positive_int = integer(1)  # argparse type: an integer >= 1
# jax.random.key keeps the low 32 bits of a seed (2**32 is the seed 0 again) and numpy's
# generators refuse negative ones: --seed takes the 2**32 distinct seeds.
SEED = integer(0, 2**32 - 1)


def positive_float(text: str) -> float:
  """argparse type: a finite number > 0."""
  value = float(text)
  if not (math.isfinite(value) and value > 0):
    raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text}")
  return value


def unit_fraction(text: str) -> float:
  """argparse type: a number in the open interval (0, 1), such as a threshold ε."""
  value = float(text)
  if not 0 < value < 1:
    raise argparse.ArgumentTypeError(f"must be in (0, 1), got {text}")
  return value


def add_epsilon(parser: argparse.ArgumentParser, what: str) -> None:
  """``--epsilon`` in (0, 1), default 1e-3: "vanished if ``what`` < ε, exploded if > 1/ε"."""
  parser.add_argument(
    "--epsilon",
    type=unit_fraction,
    default=1e-3,
    help=f"vanished if {what} < ε, exploded if > 1/ε (default 1e-3)",
  )


def add_size_overrides(
  parser: argparse.ArgumentParser,
  names: Iterable[str],
  types: Mapping[str, Callable[[str], Any]] | None = None,
  *,
  table: Mapping[str, Mapping[str, Any]] | None = None,
  descriptions: Mapping[str, str] | None = None,
) -> None:
  """``--<name>`` (``_`` written ``-``) for each size value, ``positive_int`` unless ``types`` says.

  With the size ``table`` (``{"quick": {...}, "full": {...}}``) the help shows each size's
  default; ``descriptions`` says what a value is (default: its name). :func:`size_values`
  then puts the given ones in place of the size's defaults.

  Example:
    >>> parser = argparse.ArgumentParser()
    >>> add_size_overrides(parser, ["depth"], table={"quick": {"depth": 3}, "full": {"depth": 9}},
    ...                    descriptions={"depth": "layers L"})
    >>> parser._actions[-1].help
    'layers L (default: 3 with --quick, 9 with --full)'
  """
  for name in names:
    what = (descriptions or {}).get(name, name.replace("_", " "))
    if table is not None:
      defaults = ", ".join(f"{table[size][name]} with --{size}" for size in table)
      what = f"{what} (default: {defaults})"
    parser.add_argument(
      f"--{name.replace('_', '-')}",
      type=(types or {}).get(name, positive_int),
      default=None,
      help=what if table is not None else f"{what} (overrides the size's value)",
    )


def size_values(
  args: argparse.Namespace, table: Mapping[str, Mapping[str, Any]], names: Iterable[str] = ()
) -> dict[str, Any]:
  """``table[args.size]`` with each of ``names`` replaced by ``args.<name>`` where that is given.

  ``names`` defaults to every key of the size (all overridable on the command line).
  """
  sizes = dict(table[args.size])
  for name in names or list(sizes):
    if getattr(args, name) is not None:
      sizes[name] = getattr(args, name)
  return sizes


# The fields of a ``scale_map`` or ``phase_map`` result stored as ``map/<field>`` arrays.
MAP_FIELDS = (
  *("p_vanish", "p_stable", "p_explode", "p_vanish_ci", "p_stable_ci", "p_explode_ci"),
  *("mean_log_growth", "std_log_growth", "n_finite"),
)


def map_arrays(result: Any, fields: Sequence[str] = MAP_FIELDS) -> dict[str, Any]:
  """``{"map/<field>": result.<field>}`` for each of ``fields``."""
  return {f"map/{field}": getattr(result, field) for field in fields}


# Every run that ``cached_run`` found or computed in this process, in order: what
# ``vanish reproduce`` summarizes at the end (experiment, path, chunks computed, reused).
RUN_LOG: list[store.Outcome] = []

# The runs ``cached_run(force=True)`` recomputed in this process: ``--force`` recomputes each
# run once, however many figures ask for it (F4 and F5 share one experiment).
_FORCED: set[Path] = set()

_EXPERIMENTS = Path(__file__).resolve().parent


def experiment_modules(path: Path) -> set[str]:
  """The names ``x`` of the ``experiments.x`` modules that the file ``path`` imports
  (``from experiments.x import ...``, ``from experiments import x``, ``import experiments.x``),
  whether or not they exist (a name imported from ``experiments`` counts as a module)."""
  found = set()
  for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
    if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("experiments"):
      names = [node.module] + [f"{node.module}.{a.name}" for a in node.names if a.name != "*"]
    elif isinstance(node, ast.Import):
      names = [a.name for a in node.names]
    else:
      continue
    for name in names:
      parts = name.split(".")
      if parts[0] == "experiments" and len(parts) == 2:
        found.add(parts[1])
  return found


def missing_experiments(path: Path) -> list[str]:
  """The ``experiments.x`` modules that ``path`` imports, directly or through the experiment
  modules it imports, and that do not exist, sorted."""
  missing, seen, todo = set(), set(), [path]
  while todo:
    for name in experiment_modules(todo.pop()) - seen:
      seen.add(name)
      file = _module_file(name)
      if file is None:
        missing.add(f"experiments.{name}")
      else:
        todo.append(file)
  return sorted(missing)


def _module_file(name: str) -> Path | None:
  candidate = _EXPERIMENTS / f"{name}.py"
  return candidate if candidate.is_file() else None


def _experiment_imports(path: Path) -> set[Path]:
  """The ``experiments/*.py`` files that ``path`` imports."""
  return {file for x in experiment_modules(path) if (file := _module_file(x))}


def code_fingerprint(experiment: str, compute: Callable[..., Any] | None = None) -> str:
  """A fingerprint of the code that computes ``experiment``: every file of the ``vanish``
  package, ``experiments/<experiment>.py`` (and the module defining ``compute``) and the
  experiment modules they import, transitively. Figure scripts are not part of it: redrawing
  never needs a recompute.
  """
  import vanish

  package = Path(vanish.__file__).resolve().parent
  module = sys.modules.get(getattr(compute, "__module__", None) or "")
  seeds = {_EXPERIMENTS / f"{experiment}.py", _EXPERIMENTS / "_common.py"}
  if module is not None and getattr(module, "__file__", None):
    seeds.add(Path(module.__file__).resolve())
  files, todo = set(), [p for p in seeds if p.is_file() and p.parent == _EXPERIMENTS]
  while todo:
    path = todo.pop()
    if path not in files:
      files.add(path)
      todo.extend(_experiment_imports(path) - files)
  sources = [*package.rglob("*.py"), *files]
  return store.source_fingerprint(sources, root=package.parent)


def cached_run(
  out: str | Path,
  experiment: str,
  config: Mapping[str, Any],
  compute: Callable[..., Mapping[str, Any]],
  *,
  table: str,
  force: bool = False,
  chunks: Sequence[Any] | None = None,
  combine: Callable[[list[Mapping[str, Any]]], Mapping[str, Any]] | None = None,
) -> Path:
  """Returns the stored run of ``config``, computing and saving it first if needed.

  Args:
    out: the store's root.
    experiment: the experiment's name.
    config: the full config (its hash names the run; ``precision`` is recorded).
    compute: returns ``{"arrays": {...}, "rows": [...]}``; called with no argument, or
      with one chunk at a time when ``chunks`` is given.
    table: the CSV name for ``rows``.
    force: recompute even if the run exists (once per process: a run that several
      figures share is recomputed for the first).
    chunks: split the work into these chunks; each finished chunk is saved, so a killed
      run resumes from the last one (see :func:`vanish.store.compute`).
    combine: how the chunks' results make the run (:func:`vanish.store.compute`).

  A stored run (or saved chunk) made by other code (:func:`code_fingerprint`) is recomputed.
  """
  start = time.perf_counter()
  code = code_fingerprint(experiment, compute)
  folder = store.run_folder(out, experiment, config)
  force = force and folder not in _FORCED
  if (
    not force
    and store.find(out, experiment, config)
    and not store.find(out, experiment, config, code=code)
  ):
    print(f"{folder} was made by other code: recomputing it")
  outcome = store.compute(
    out,
    experiment,
    config,
    (lambda _: compute()) if chunks is None else compute,
    chunks=(None,) if chunks is None else chunks,
    table=table,
    precision=config.get("precision", "highest"),
    force=force,
    code=code,
    combine=combine,
  )
  if force:
    _FORCED.add(folder)
  RUN_LOG.append(outcome)
  if outcome.computed == 0:
    print(f"reusing {outcome.path}")
  else:
    resumed = f" (resumed: {outcome.reused} chunk(s) reused)" if outcome.reused else ""
    print(f"wrote {outcome.path} in {time.perf_counter() - start:.1f} s{resumed}")
  return outcome.path


def cached_parts(
  args: argparse.Namespace,
  experiment: str,
  config: Mapping[str, Any],
  parts: Mapping[str, Callable[[argparse.Namespace], Mapping[str, Any]]],
  *,
  table: str,
) -> Path:
  """:func:`cached_run` with one chunk per part: ``parts[name](args)`` computes chunk ``name``."""
  return cached_run(
    args.out,
    experiment,
    config,
    lambda name: parts[name](args),
    table=table,
    force=args.force,
    chunks=list(parts),
  )


def default_ensure(
  parse_args: Callable[[Sequence[str]], argparse.Namespace],
  cached: Callable[[argparse.Namespace], Path],
) -> Callable[..., Path]:
  """An experiment's ``ensure(size="quick", out="results", *, force=False) -> Path``.

  ``ensure`` runs (or finds in the store) the ``size`` configuration with the default
  options and returns its run folder; the figure scripts call it.
  """

  def ensure(size: str = "quick", out: str | Path = "results", *, force: bool = False) -> Path:
    """Runs (or finds) the ``size`` configuration with default options; returns its folder."""
    return cached(parse_args([f"--{size}", "--out", str(out), *(["--force"] if force else [])]))

  return ensure


# The program name experiment parsers show in ``usage:`` (``vanish run`` sets it, see
# :func:`invoked_as`); None: ``python -m experiments.<name>`` when run that way.
_PROG: str | None = None


@contextlib.contextmanager
def invoked_as(prog: str) -> Iterator[None]:
  """Experiment parsers made inside this block call themselves ``prog`` (``vanish run NAME``)."""
  global _PROG
  previous, _PROG = _PROG, prog
  try:
    yield
  finally:
    _PROG = previous


def _prog() -> str | None:
  if _PROG is not None:
    return _PROG
  spec = getattr(sys.modules.get("__main__"), "__spec__", None)
  if spec is not None and spec.name.startswith("experiments."):
    return f"python -m {spec.name}"  # argparse would say "__main__.py"
  return None


def experiment_parser(doc: str, *, quick_help: str, full_help: str) -> argparse.ArgumentParser:
  """The options every experiment has: ``--quick | --full``, ``--seed``, ``--out``, ``--force``."""
  parser = argparse.ArgumentParser(
    prog=_prog(),
    description=doc.split("\n\n")[0],
    formatter_class=argparse.RawDescriptionHelpFormatter,
  )
  size = parser.add_mutually_exclusive_group()
  size.add_argument("--quick", action="store_const", const="quick", dest="size", help=quick_help)
  size.add_argument("--full", action="store_const", const="full", dest="size", help=full_help)
  parser.set_defaults(size="quick")
  parser.add_argument(
    "--seed",
    type=SEED,
    default=0,
    help="seed of jax.random.key, from which every random draw of the run comes "
    "(0 to 2**32 - 1, default 0)",
  )
  parser.add_argument("--out", default="results", help="results store root (default results/)")
  parser.add_argument(
    "--force", action="store_true", help="recompute even if a result exists in the store"
  )
  return parser


# ------------------------------------------------------------ trained on the 8×8 digits


# The images of data.digits()'s training split: it holds out round(0.2 · 1797) = 359 of the
# 1797 images whatever the seed. Known without loading them, so options are checked at once.
DIGITS_TRAIN = 1438
TRAIN_SIZE = integer(1, DIGITS_TRAIN)  # argparse type of --train-size


def check_batch_size(
  parser: argparse.ArgumentParser, args: argparse.Namespace, batch_size: int | None = None
) -> None:
  """``parser.error`` unless the batch size (``args.batch_size`` unless given) is at most the
  training images: ``--train-size`` if given, else the digits' :data:`DIGITS_TRAIN`."""
  batch_size = args.batch_size if batch_size is None else batch_size
  images = args.train_size or DIGITS_TRAIN
  if batch_size > images:
    where = "--train-size" if args.train_size else "the digits' training images"
    parser.error(f"--batch-size must be in [1, {images}] ({where}), got {batch_size}")


def parse_sgd_args(
  parser: argparse.ArgumentParser, argv: Sequence[str] | None
) -> argparse.Namespace:
  """Adds the SGD options to ``parser``, parses ``argv`` and checks them.

  The options: ``--learning-rate`` η (finite, > 0; default 0.1), ``--batch-size`` (default 10;
  at most the training images) and ``--train-size`` N (train on the first N ≤
  :data:`DIGITS_TRAIN` images only; for tests). Used by :mod:`experiments.activation_depth` and
  :mod:`experiments.learning_speeds`.
  """
  parser.add_argument("--learning-rate", type=positive_float, default=0.1, help="η (default 0.1)")
  parser.add_argument("--batch-size", type=positive_int, default=10, help="default 10")
  parser.add_argument(
    "--train-size", type=TRAIN_SIZE, help="use only the first N training images (tests)"
  )
  args = parser.parse_args(argv)
  check_batch_size(parser, args)
  return args


def digits_sets(args: argparse.Namespace) -> tuple[data.Dataset, data.Dataset]:
  """The 8×8 digits ``(train, test)`` split by ``args.seed``; x ``[N, 64]``, y ``[N]``.

  With ``args.train_size`` set, the training set is cut to its first that many images.
  """
  train_set, test_set = data.digits(seed=args.seed)
  if args.train_size:
    train_set = data.Dataset(train_set.x[: args.train_size], train_set.y[: args.train_size])
  return train_set, test_set


def first_last_ratio(speeds: np.ndarray) -> np.ndarray:
  """Geometric mean over members of speed(first hidden) / speed(last hidden).

  Args:
    speeds: ``[M, T, L]`` per-layer speeds (layer L is the readout).

  Returns:
    ``[T]``; NaN where a speed is 0 in some member (a dead layer).

  Example:
    >>> s = np.array([[[1.0, 5.0, 10.0, 7.0]], [[4.0, 5.0, 10.0, 7.0]]])
    >>> first_last_ratio(s).round(3)   # sqrt(0.1 * 0.4)
    array([0.2])
  """
  with np.errstate(divide="ignore", invalid="ignore"):
    logs = np.log(speeds[..., 0]) - np.log(speeds[..., -2])
  logs = np.where(np.isfinite(logs), logs, np.nan)
  return np.exp(np.mean(logs, axis=0))
