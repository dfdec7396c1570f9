"""What every experiment script shares: argument types and find-or-compute in the store."""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from vanish import store


def positive_int(text: str) -> int:
  """argparse type: an integer ≥ 1."""
  value = int(text)
  if value < 1:
    raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {text}")
  return value


def cached_run(
  out: str,
  experiment: str,
  config: Mapping[str, Any],
  compute: Callable[[], Mapping[str, Any]],
  *,
  table: str,
  force: bool = False,
) -> Path:
  """Returns the stored run of ``config``, computing and saving it first if needed.

  Args:
    out: the store's root.
    experiment: the experiment's name.
    config: the full config (its hash names the run; ``precision`` is recorded).
    compute: returns ``{"arrays": {...}, "rows": [...]}`` and optionally ``"note"``.
    table: the CSV name for ``rows``.
    force: recompute even if the run exists.
  """
  existing = store.find(out, experiment, config)
  if existing and not force:
    print(f"reusing {existing}")
    return existing
  start = time.perf_counter()
  result = compute()
  elapsed = time.perf_counter() - start
  path = store.save(
    out,
    experiment,
    config,
    arrays=result["arrays"],
    tables={table: result["rows"]},
    precision=config.get("precision", "highest"),
    wall_time_s=elapsed,
  )
  print(f"wrote {path} in {elapsed:.1f} s{result.get('note', '')}")
  return path


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
