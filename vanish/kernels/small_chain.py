"""The Jacobian chain of small-width ensembles with each member's ``J`` on chip across all layers.

For an MLP of constant width N (``widths = [N] * (L + 1)``, φ at every layer) the chain of
:func:`vanish.jacobian` is, for l = 1..L,

    z^l = W^l h^{l−1} + b^l,    h^l = φ(z^l),    J^l = diag(φ'(z^l)) W^l J^{l−1},    J^0 = I,

and the result is ``J^L = ∂h^L/∂x``, ``[M, N, N]``. Plain JAX runs it as a ``lax.scan`` over
layers of a ``vmap`` over members: per layer several kernels, each a pass over the whole
``[M, N, N]`` ensemble, plus a relayout of the weights to layer-major
(``benchmarks/README.md``, profile point 1). At N ≤ 64 that is launch- and memory-bound.

The Pallas kernel gives each member one program that keeps ``h`` and ``J`` in registers for all
L layers and reads that member's ``W^l, b^l`` once, in the member-major ``[M, L, N, N]`` layout
``net.init`` produces (contiguous per member, no relayout). The matmul is ``jnp.dot`` (Triton
``tl.dot``: N ≥ 16 and a power of 2, hence N ∈ {16, 32, 64}); the matvec for ``z`` is a
multiply and a row sum. The reference (the specification) is :func:`vanish.jacobian`.

Example:
  >>> import jax.numpy as jnp, vanish as vn
  >>> from vanish.kernels import small_chain
  >>> small_chain.kernel_unsupported_reason(vn.MLP(widths=[32] * 51), jnp.ones(32), "highest")
  >>> small_chain.kernel_unsupported_reason(vn.MLP(widths=[8] * 51), jnp.ones(8), "highest")
  'width 8 is not one of (16, 32, 64)'

  ``small_chain.jacobian(net, params, x)`` returns ``(jacobian [M, N, N], path)``; on a CPU
  ``path`` is ``"reference"`` (:func:`vanish.jacobian`) unless ``use_kernel="interpret"``.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax import lax
from jax.experimental import pallas as pl

from vanish import _checks, _engine
from vanish.chains import jacobian as _reference_jacobian
from vanish.kernels import _dispatch
from vanish.networks import MLP

__all__ = ["WIDTHS", "JacobianChain", "jacobian", "kernel_unsupported_reason"]

WIDTHS = (16, 32, 64)  # tl.dot needs every dim >= 16 and power-of-2 blocks; J of N = 128 spills
PRECISIONS = ("highest", "default")
# Calls the kernel can compute but "auto" leaves to the reference because it measured slower
# there (H100, benchmarks/results/kernels_h100.json): at N = 64 and "highest" 144.5 ms against
# the plain chain's 11.6 ms for 4096 members × depth 50 (3.0× faster at "default").
AUTO_SLOWER = {(64, "highest"): "12× slower than the reference on the H100"}


class JacobianChain(NamedTuple):
  """What :func:`jacobian` returns.

  Attributes:
    jacobian: ``[M, N, N]`` (``[M, batch, N, N]`` for batched inputs on the reference path).
    path: ``"pallas_triton"``, ``"pallas_interpret"`` or ``"reference"``.
  """

  jacobian: jax.Array
  path: str


def kernel_unsupported_reason(net: Any, x: Any, precision: str) -> str | None:
  """Why the kernel cannot compute this call (the reference can), or None.

  Raises ValueError for a precision that no path knows (see :func:`vanish.jacobian`).
  """
  _engine.check_precision(precision)
  if not isinstance(net, MLP):
    return f"net is a {type(net).__name__}, not a vn.MLP"
  if net.readout != "activation":
    return "readout='linear' (the kernel applies φ at every layer)"
  if len(net.segments) != 1:
    return "the widths are not constant (the kernel needs widths = [N] * (L + 1))"
  if net.activation.stochastic:
    return f"the activation {net.activation!r} is stochastic"
  if net.widths[0] not in WIDTHS:
    return f"width {net.widths[0]} is not one of {WIDTHS}"
  if jnp.ndim(x) != 1:
    return "x is batched (the kernel takes one input)"
  if precision not in PRECISIONS:
    return f"precision {precision!r} is not one of {PRECISIONS}"
  return None


def _kernel_body(x_ref, w_ref, b_ref, out_ref, *, depth, width, act, precision):
  """One program = one member: ``h`` and ``J`` stay in registers for all ``depth`` layers."""
  rows = lax.broadcasted_iota(jnp.int32, (width, width), 0)
  cols = lax.broadcasted_iota(jnp.int32, (width, width), 1)
  eye = (rows == cols).astype(jnp.float32)

  def layer(l, carry):
    h, jac = carry
    w = w_ref[l]  # [N, N], read once
    z = jnp.sum(w * h[None, :], axis=1) + b_ref[l]
    h, slope = act.value_and_derivative(z)
    jac = slope[:, None] * jnp.dot(w, jac, precision=precision)
    return h, jac

  _, jac = lax.fori_loop(0, depth, layer, (x_ref[...], eye))
  out_ref[...] = jac


@functools.partial(
  jax.jit, static_argnames=("act", "precision", "num_warps", "num_stages", "interpret")
)
def _pallas(w, b, x, *, act, precision, num_warps, num_stages, interpret):
  from jax.experimental.pallas import triton as pltr

  members, depth, width, _ = w.shape
  kernel = functools.partial(
    _kernel_body,
    depth=depth,
    width=width,
    act=act,
    precision=_engine.lax_precision(precision),
  )
  return pl.pallas_call(
    kernel,
    grid=(members,),
    in_specs=[
      pl.BlockSpec((width,), lambda m: (0,)),
      pl.BlockSpec((None, depth, width, width), lambda m: (m, 0, 0, 0)),
      pl.BlockSpec((None, depth, width), lambda m: (m, 0, 0)),
    ],
    out_specs=pl.BlockSpec((None, width, width), lambda m: (m, 0, 0)),
    out_shape=jax.ShapeDtypeStruct((members, width, width), jnp.float32),
    interpret=interpret,
    compiler_params=None
    if interpret
    else pltr.CompilerParams(num_warps=num_warps, num_stages=num_stages),
    name="small_width_jacobian_chain",
  )(x, w, b)


def jacobian(
  net: MLP,
  params: Any,
  x: jax.Array,
  *,
  precision: str = "highest",
  use_kernel: Any = "auto",
  num_warps: int | None = None,
  num_stages: int = 2,
) -> JacobianChain:
  """:func:`vanish.jacobian` of a constant-width MLP ensemble, by the on-chip kernel where it can.

  Args:
    net: a :class:`~vanish.MLP`; the kernel needs ``widths = [N] * (L + 1)`` with N ∈
      :data:`WIDTHS`, φ at every layer and a deterministic activation.
    params: ``net.init(key, members=M)`` (float32).
    x: the input ``(N,)`` (a batched ``(batch, N)`` input takes the reference path).
    precision: ``"highest"`` (true float32) or ``"default"`` (TF32 tensor cores on GPUs);
      other :func:`vanish.jacobian` precisions take the reference path.
    use_kernel: ``"auto"`` (the kernel on a supported GPU when the call is supported and
      not listed in :data:`AUTO_SLOWER`, else the reference), ``"pallas"``,
      ``"interpret"`` or ``"reference"``; an explicit kernel choice raises if the call is
      not supported.
    num_warps: Triton warps per member (default 1 for N ≤ 32, else 2).
    num_stages: Triton software-pipelining stages for the weight loads.

  Returns:
    A :class:`JacobianChain`: ``jacobian`` ``[M, N, N]`` and the ``path`` that ran.
  """
  _engine.check_precision(precision)
  if num_warps is not None and (isinstance(num_warps, bool) or num_warps not in (1, 2, 4, 8, 16)):
    raise ValueError(f"num_warps must be None, 1, 2, 4, 8 or 16, got {num_warps!r}")
  num_stages = _checks.integer("num_stages", num_stages, minimum=1, maximum=8)
  path = _dispatch.resolve(use_kernel)
  if path != _dispatch.REFERENCE:
    reason = kernel_unsupported_reason(net, x, precision)
    if reason is None and use_kernel == "auto" and path == _dispatch.KERNEL:
      width = net.widths[0]
      if (width, precision) in AUTO_SLOWER:
        path = _dispatch.REFERENCE  # supported, but measured slower: see AUTO_SLOWER
    if reason is not None:
      if use_kernel != "auto":
        raise ValueError(
          f"use_kernel={use_kernel!r}: the kernel cannot compute this call: {reason}"
        )
      path = _dispatch.REFERENCE
  if path == _dispatch.REFERENCE:
    return JacobianChain(_reference_jacobian(net, params, x, precision=precision), path)
  # The same validation as vn.jacobian (shapes, finiteness) before anything compiles.
  from vanish.chains import check_call

  x, _ = check_call(net, params, x, None, precision)
  (p,) = params
  if p["w"].dtype != jnp.float32:
    raise ValueError(f"params must be float32 for the kernel, got {p['w'].dtype}")
  width = net.widths[0]
  warps = num_warps if num_warps is not None else (1 if width <= 32 else 2)
  out = _pallas(
    p["w"],
    p["b"],
    x.astype(jnp.float32),
    act=net.activation,
    precision=precision,
    num_warps=warps,
    num_stages=num_stages,
    interpret=path == _dispatch.INTERPRET,
  )
  return JacobianChain(out, path)
