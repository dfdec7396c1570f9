"""What every experiment script shares: argument types and find-or-compute in the store."""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from vanish import store


def positive_int(text: str) -> int:
  """argparse type: an integer ≥ 1."""
  value = int(text)
  if value < 1:
    raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {text}")
  return value


# Every run that ``cached_run`` found or computed in this process, in order: what
# ``vanish reproduce`` summarizes at the end (experiment, path, chunks computed, reused).
RUN_LOG: list[store.Outcome] = []


def cached_run(
  out: str | Path,
  experiment: str,
  config: Mapping[str, Any],
  compute: Callable[..., Mapping[str, Any]],
  *,
  table: str,
  force: bool = False,
  chunks: Sequence[Any] | None = None,
) -> Path:
  """Returns the stored run of ``config``, computing and saving it first if needed.

  Args:
    out: the store's root.
    experiment: the experiment's name.
    config: the full config (its hash names the run; ``precision`` is recorded).
    compute: returns ``{"arrays": {...}, "rows": [...]}``; called with no argument, or
      with one chunk at a time when ``chunks`` is given.
    table: the CSV name for ``rows``.
    force: recompute even if the run exists.
    chunks: split the work into these chunks; each finished chunk is saved, so a killed
      run resumes from the last one (see :func:`vanish.store.compute`).
  """
  start = time.perf_counter()
  outcome = store.compute(
    out,
    experiment,
    config,
    (lambda _: compute()) if chunks is None else compute,
    chunks=(None,) if chunks is None else chunks,
    table=table,
    precision=config.get("precision", "highest"),
    force=force,
  )
  RUN_LOG.append(outcome)
  if outcome.computed == 0:
    print(f"reusing {outcome.path}")
  else:
    resumed = f" (resumed: {outcome.reused} chunk(s) reused)" if outcome.reused else ""
    print(f"wrote {outcome.path} in {time.perf_counter() - start:.1f} s{resumed}")
  return outcome.path


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


def experiment_parser(doc: str, *, quick_help: str, full_help: str) -> argparse.ArgumentParser:
  """The options every experiment has: ``--quick | --full``, ``--seed``, ``--out``, ``--force``."""
  parser = argparse.ArgumentParser(
    description=doc.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
  )
  size = parser.add_mutually_exclusive_group()
  size.add_argument("--quick", action="store_const", const="quick", dest="size", help=quick_help)
  size.add_argument("--full", action="store_const", const="full", dest="size", help=full_help)
  parser.set_defaults(size="quick")
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--out", default="results", help="results store root (default results/)")
  parser.add_argument("--force", action="store_true", help="recompute even if a result exists")
  return parser
