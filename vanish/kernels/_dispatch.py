"""Which path a kernel call takes: the compiled Pallas kernel, the Pallas interpreter, or jnp.

Kernels are optional accelerators (issue 6, point 6): each has a pure-``jnp`` reference that is
its specification. ``use_kernel="auto"`` takes the compiled kernel only where it is supported
(an NVIDIA GPU of compute capability ≥ 8.0 with Pallas' Triton backend importable) and the
reference elsewhere; every call returns the path it took so results can record it.
"""

from __future__ import annotations

from typing import Any

import jax

__all__ = ["PATHS", "available", "resolve", "unavailable_reason"]

KERNEL, INTERPRET, REFERENCE = "pallas_triton", "pallas_interpret", "reference"
PATHS = (KERNEL, INTERPRET, REFERENCE)
MIN_COMPUTE_CAPABILITY = (8, 0)
_CHOICES = ("auto", "pallas", "interpret", "reference", True, False)


def unavailable_reason(device: Any = None) -> str | None:
  """Why the compiled kernels cannot run on ``device`` (default: the first device), or None."""
  device = jax.devices()[0] if device is None else device
  if device.platform != "gpu":
    return f"platform {device.platform!r} is not a GPU"
  version = str(getattr(device.client, "platform_version", "")).lower()
  if "rocm" in version or "hip" in version:
    return "ROCm GPUs are not supported (the kernels use PTX inline assembly)"
  capability = getattr(device, "compute_capability", None)
  try:
    major, minor = (int(v) for v in str(capability).split(".")[:2])
  except ValueError:
    return f"unknown compute capability {capability!r}"
  if (major, minor) < MIN_COMPUTE_CAPABILITY:
    return f"compute capability {major}.{minor} < {'.'.join(map(str, MIN_COMPUTE_CAPABILITY))}"
  try:
    from jax.experimental.pallas import triton  # noqa: F401
  except ImportError as error:  # pragma: no cover - depends on the jax build
    return f"Pallas' Triton backend is not importable ({error})"
  return None


def available(device: Any = None) -> bool:
  """Whether the compiled Pallas kernels can run on ``device`` (default: the first device).

  Example:
    >>> import jax
    >>> from vanish import kernels
    >>> kernels.available() == (kernels.unavailable_reason() is None)
    True
  """
  return unavailable_reason(device) is None


def resolve(use_kernel: Any) -> str:
  """The path for a ``use_kernel`` choice: one of :data:`PATHS`.

  Args:
    use_kernel: ``"auto"`` (the kernel where :func:`available`, else the reference),
      ``"pallas"`` or ``True`` (the kernel; raises if unavailable), ``"interpret"`` (the Pallas
      interpreter, any platform, slow: for tests), ``"reference"`` or ``False`` (pure jnp).

  Example:
    >>> from vanish import kernels
    >>> kernels.resolve("reference"), kernels.resolve("interpret")
    ('reference', 'pallas_interpret')
  """
  if not any(use_kernel is c or (isinstance(c, str) and use_kernel == c) for c in _CHOICES):
    raise ValueError(
      f"use_kernel must be 'auto', 'pallas', 'interpret', 'reference', True or False, "
      f"got {use_kernel!r}"
    )
  if use_kernel in ("reference",) or use_kernel is False:
    return REFERENCE
  if use_kernel == "interpret":
    return INTERPRET
  reason = unavailable_reason()
  if use_kernel == "auto":
    return REFERENCE if reason else KERNEL
  if reason:
    raise RuntimeError(f"use_kernel={use_kernel!r} but the kernel cannot run here: {reason}")
  return KERNEL


TRITON_CUSTOM_CALL = "__gpu$xla.gpu.triton"


def lower_for_cuda(fn: Any, *shapes: jax.ShapeDtypeStruct) -> str:
  """The StableHLO text of ``jax.jit(fn)`` exported for CUDA, on any machine (no GPU needed).

  This runs the Pallas → Triton IR lowering (unsupported primitives, block shapes, dtypes fail
  here); it does not run Triton's compiler to PTX, so register use and speed stay unchecked.
  """
  disabled = [jax.export.DisabledSafetyCheck.custom_call(TRITON_CUSTOM_CALL)]
  exported = jax.export.export(jax.jit(fn), platforms=["cuda"], disabled_checks=disabled)(*shapes)
  return exported.mlir_module()
