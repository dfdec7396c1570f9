"""Shared benchmark machinery: timing, device peaks, versions, JSON output.

Timing follows the usual rules for asynchronous devices: one warm-up call
(compilation, autotuning, handle creation), then each repeat is timed on the
host clock around the call *and* a ``block_until_ready`` (or a CUDA
synchronize for PyTorch), and the median is reported. Calls that take longer
than ``slow_s`` get at most ``max_slow_repeats`` repeats, and never more than
fit in ``entry_budget_s``.

Peak rates are the vendor datasheet's dense figures (no structured sparsity);
the one used for each entry is recorded next to it. On an unknown device (e.g.
the CPU in CI) the peaks are ``None`` and so are the percentages.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np

from vanish import store

# Dense datasheet peaks in TFLOP/s by arithmetic class, and HBM bandwidth in GB/s.
# "fp32" is the non-tensor-core SIMT rate, which is what XLA's precision="highest"
# float32 matmul runs on; "tf32" is XLA's precision="default" for float32 on GPU.
PEAKS: dict[str, dict[str, float]] = {
  "H100 SXM": {"bf16": 989.4, "tf32": 494.7, "fp32": 66.9, "hbm_gbs": 3350.0},
  "H100 NVL": {"bf16": 835.5, "tf32": 417.8, "fp32": 60.0, "hbm_gbs": 3900.0},
  "H100 PCIe": {"bf16": 756.5, "tf32": 378.0, "fp32": 51.2, "hbm_gbs": 2000.0},
  "H200": {"bf16": 989.4, "tf32": 494.7, "fp32": 66.9, "hbm_gbs": 4800.0},
}
PEAK_SOURCE = "NVIDIA datasheet, dense (no sparsity), boost clock"

# How each precision name maps onto the arithmetic class whose peak applies.
_PRECISION_CLASS = {
  "highest": "fp32",
  "float32": "fp32",
  "F32_F32_F32": "fp32",
  "torch_fp32": "fp32",
  "default": "tf32",
  "high": "tf32",
  "tensorfloat32": "tf32",
  "TF32_TF32_F32": "tf32",
  "bfloat16": "bf16",
  "BF16_BF16_F32": "bf16",
}


def peak_key(device_kind: str) -> str | None:
  """The :data:`PEAKS` row for a ``jax.Device.device_kind`` string, or None."""
  kind = device_kind.upper()
  if "H200" in kind:
    return "H200"
  if "H100" in kind:
    if "PCIE" in kind:
      return "H100 PCIe"
    if "NVL" in kind:
      return "H100 NVL"
    return "H100 SXM"
  return None


def precision_class(precision: str) -> str | None:
  """``"fp32"``, ``"tf32"`` or ``"bf16"`` for a precision name, None if unknown."""
  return _PRECISION_CLASS.get(precision)


def device_info() -> dict[str, Any]:
  """Platform, device kind and the peak table row used for percentages."""
  dev = jax.devices()[0]
  key = peak_key(dev.device_kind) if dev.platform == "gpu" else None
  return {
    "platform": dev.platform,
    "device_kind": dev.device_kind,
    "device_count": jax.device_count(),
    "peak_row": key,
    "peaks": PEAKS.get(key) if key else None,
    "peak_source": PEAK_SOURCE if key else None,
  }


def report_header(
  schema: int, benchmark: str, size: str, device: dict[str, Any] | None = None
) -> dict[str, Any]:
  """The metadata every report starts with: schema, benchmark, size, device, versions.

  Args:
    schema: the benchmark's report schema version.
    benchmark: its name (``"chains"``, ``"qr"``, …).
    size: the size it ran at.
    device: :func:`device_info` if already taken, else it is taken here.

  Returns:
    ``{"schema", "benchmark", "size", "device", "versions"}``, in that order.
  """
  return {
    "schema": schema,
    "benchmark": benchmark,
    "size": size,
    "device": device_info() if device is None else device,
    "versions": versions(),
  }


def argument_parser(doc: str, sizes: Sequence[str]) -> argparse.ArgumentParser:
  """A parser described by ``doc``'s first paragraph, with ``--size`` and ``--out``.

  ``--size`` is one of ``sizes`` (default ``"tiny"``); ``--out`` is the JSON report's
  path (default: print only). Each benchmark adds its own options.

  Example:
    >>> parser = argument_parser("Times X.", ["tiny", "paper"])
    >>> parser.description, parser.parse_args(["--size", "paper"]).size
    ('Times X.', 'paper')
  """
  parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
  parser.add_argument("--size", choices=list(sizes), default="tiny")
  parser.add_argument("--out", default=None, help="JSON path (default: print only)")
  return parser


def peak_tflops(device: dict[str, Any], precision: str) -> float | None:
  """Peak TFLOP/s for ``precision`` on ``device`` (from :func:`device_info`)."""
  cls = precision_class(precision)
  if device.get("peaks") is None or cls is None:
    return None
  return device["peaks"][cls]


def versions() -> dict[str, Any]:
  """Versions of everything that affects the numbers."""
  import jaxlib

  out: dict[str, Any] = {
    "python": platform.python_version(),
    "jax": jax.__version__,
    "jaxlib": jaxlib.__version__,
    "numpy": np.__version__,
  }
  try:
    import vanish

    out["vanish"] = vanish.__version__
  except ImportError:  # pragma: no cover
    out["vanish"] = None
  torch = optional_torch()
  out["torch"] = None if torch is None else torch.__version__
  return out


def optional_torch() -> Any:
  """``torch`` if importable, else None (the baselines that need it are skipped)."""
  try:
    import torch
  except ImportError:
    return None
  return torch


@dataclasses.dataclass
class Timing:
  """Wall times of the repeats after the warm-up, in seconds."""

  times: list[float]
  warmup_s: float

  @property
  def median(self) -> float:
    return statistics.median(self.times)

  @property
  def minimum(self) -> float:
    return min(self.times)

  def as_dict(self) -> dict[str, Any]:
    return {
      "median_s": self.median,
      "min_s": self.minimum,
      "repeats": len(self.times),
      "times_s": self.times,
      "warmup_s": self.warmup_s,
    }


def block(tree: Any) -> Any:
  """Waits for every JAX array in ``tree``."""
  return jax.block_until_ready(tree)


def time_fn(
  fn: Callable[[], Any],
  *,
  repeats: int,
  sync: Callable[[Any], Any] = block,
  slow_s: float = 0.5,
  max_slow_repeats: int = 3,
  entry_budget_s: float = 60.0,
) -> tuple[Timing, Any]:
  """Times ``fn()`` after one warm-up call.

  Args:
    fn: a zero-argument callable; its result is passed to ``sync``.
    repeats: the number of timed calls for fast functions.
    sync: waits until ``fn``'s result is computed (``block_until_ready`` by
      default; a CUDA synchronize for PyTorch).
    slow_s: calls slower than this get at most ``max_slow_repeats`` repeats.
    max_slow_repeats: see ``slow_s``.
    entry_budget_s: the timed repeats of a slow call stop once they would pass
      this many seconds (at least one repeat is always timed).

  Returns:
    ``(timing, result of the last call)``.
  """
  start = time.perf_counter()
  out = sync(fn())
  warmup = time.perf_counter() - start
  times: list[float] = []
  target = max(1, int(repeats))
  while len(times) < target:
    start = time.perf_counter()
    out = sync(fn())
    times.append(time.perf_counter() - start)
    if len(times) == 1 and times[0] > slow_s:
      target = max(1, min(target, max_slow_repeats, math.floor(entry_budget_s / times[0])))
  return Timing(times, warmup), out


def to_numpy(a: Any) -> np.ndarray:
  """A float64 NumPy copy of a JAX or PyTorch array."""
  if hasattr(a, "detach"):  # torch.Tensor
    a = a.detach().cpu().numpy()
  return np.asarray(a, dtype=np.float64)


def max_abs_diff(a: Any, b: Any) -> float:
  """``max |a − b|`` in float64 (NaN anywhere gives NaN)."""
  a, b = to_numpy(a), to_numpy(b)
  if a.shape != b.shape:
    raise ValueError(f"shape mismatch: {a.shape} vs {b.shape}")
  return float(np.max(np.abs(a - b))) if a.size else 0.0


def same_bits(a: Any, b: Any) -> bool:
  """Whether two pytrees of arrays are equal bit for bit (NaNs in the same places count)."""
  pairs = zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)
  return all(np.array_equal(np.asarray(u), np.asarray(v), equal_nan=True) for u, v in pairs)


def rel_diff(a: Any, b: Any) -> float:
  """``‖a − b‖ / ‖b‖`` (Frobenius, float64)."""
  a, b = to_numpy(a), to_numpy(b)
  if a.shape != b.shape:
    raise ValueError(f"shape mismatch: {a.shape} vs {b.shape}")
  denom = float(np.linalg.norm(b))
  return float(np.linalg.norm(a - b)) / denom if denom > 0 else float(np.linalg.norm(a - b))


def write_json_atomic(path: str | os.PathLike, obj: Any) -> None:
  """Writes ``obj`` as JSON to ``path`` atomically (:func:`vanish.store.write_atomic`)."""
  text = json.dumps(obj, indent=1, allow_nan=True, default=_json_default) + "\n"
  store.write_atomic(path, lambda handle: handle.write(text.encode()))


def _json_default(value: Any) -> Any:
  if isinstance(value, np.generic):
    return value.item()
  if isinstance(value, np.ndarray):
    return value.tolist()
  raise TypeError(f"not JSON serializable: {type(value).__name__}")


def format_table(rows: Sequence[Sequence[Any]], header: Sequence[str]) -> str:
  """A plain-text table with columns padded to their widest cell."""
  cells = [[str(h) for h in header]] + [["" if c is None else str(c) for c in r] for r in rows]
  widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
  lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in cells]
  lines.insert(1, "  ".join("-" * w for w in widths))
  return "\n".join(lines)


def fmt(value: float | None, spec: str = ".3g") -> str:
  """Formats a number, or ``-`` for None/NaN."""
  if value is None or (isinstance(value, float) and math.isnan(value)):
    return "-"
  return format(value, spec)
