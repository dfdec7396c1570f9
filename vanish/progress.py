"""A dependency-free progress bar for long runs: one line on stderr, redrawn in place.

On a terminal the line is redrawn at most 10 times a second; elsewhere (CI logs,
pipes) a line is printed at the start, at every 25 % and at the end, so logs stay
short. ``VANISH_PROGRESS=0`` silences it.

Example:
  >>> import io
  >>> stream = io.StringIO()
  >>> with Progress("chunks", total=4, stream=stream) as bar:
  ...   for _ in range(4):
  ...     bar.update()
  >>> print(stream.getvalue().splitlines()[-1])  # doctest: +ELLIPSIS
  chunks: 4/4 [##############################] 100% ... s
"""

from __future__ import annotations

import os
import sys
import time
from typing import TextIO

__all__ = ["Progress"]

_BAR = 30
_REFRESH_S = 0.1


class Progress:
  """Counts finished items out of ``total`` and shows the rate and remaining time.

  Args:
    label: what is being counted (``"phase_map chunks"``).
    total: the number of items, ≥ 0.
    stream: where to draw (default ``sys.stderr``).
    initial: items already done (a resumed run).
  """

  def __init__(self, label: str, total: int, *, stream: TextIO | None = None, initial: int = 0):
    if total < 0:
      raise ValueError(f"total must be >= 0, got {total}")
    if not 0 <= initial <= total:
      raise ValueError(f"initial must be in [0, total={total}], got {initial}")
    self.label, self.total, self.done, self._initial = label, total, initial, initial
    self.stream = sys.stderr if stream is None else stream
    self.enabled = os.environ.get("VANISH_PROGRESS", "1") != "0"
    self.interactive = bool(getattr(self.stream, "isatty", lambda: False)())
    self._start = time.perf_counter()
    self._drawn_at = -1.0
    self._quarter = -1

  def __enter__(self) -> Progress:
    self._draw(force=True)
    return self

  def __exit__(self, *exc) -> None:
    if self.interactive and self.enabled:
      self.stream.write("\n")
      self.stream.flush()

  def update(self, count: int = 1) -> None:
    """Marks ``count`` more items as done."""
    self.done += count
    self._draw(force=self.done >= self.total)

  def _line(self) -> str:
    fraction = self.done / self.total if self.total else 1.0
    filled = round(_BAR * fraction)
    elapsed = time.perf_counter() - self._start
    text = (
      f"{self.label}: {self.done}/{self.total} [{'#' * filled}{'.' * (_BAR - filled)}] "
      f"{100 * fraction:3.0f}% {elapsed:.1f} s"
    )
    if self.done < self.total and self.done > self._initial:  # the rate of this run's items
      text += f", ~{elapsed / (self.done - self._initial) * (self.total - self.done):.0f} s left"
    return text

  def _draw(self, *, force: bool = False) -> None:
    if not self.enabled:
      return
    now = time.perf_counter()
    if self.interactive:
      if force or now - self._drawn_at >= _REFRESH_S:
        self.stream.write("\r" + self._line())
        self.stream.flush()
        self._drawn_at = now
      return
    quarter = 4 * self.done // self.total if self.total else 4
    if force or quarter > self._quarter:
      if quarter != self._quarter or force:
        self.stream.write(self._line() + "\n")
        self.stream.flush()
      self._quarter = quarter
