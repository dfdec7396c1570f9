"""Jacobian chains and Lyapunov spectra of small-width ensembles, each member on chip throughout.

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

:func:`lyapunov_spectrum` runs Benettin's algorithm (see :mod:`vanish.spectrum`) in the same
program: ``Q`` replaces ``J`` on chip, and each layer factors ``Z = diag(φ'(z)) W Q = Q' R`` by
Householder QR (Golub & Van Loan, *Matrix Computations*, §5.2) in registers, adding
``log |diag R|`` to the member's running sums. Householder, not Cholesky QR: it is backward
stable at any condition number, so the exactly rank-deficient layers of dead ReLU or saturated
tanh units need no guard and the smallest exponents at depth 1,000 keep float32's accuracy. Per
layer that is N reflections, each a few masked passes over the N×N tile (~8 N³ flops against
the chain's 2 N³) with no traffic to memory but the layer's weights and N logs. The reference
is ``vn.lyapunov_spectrum(refine=False)``.

Example:
  >>> import jax.numpy as jnp, vanish as vn
  >>> from vanish.kernels import small_chain
  >>> small_chain.kernel_unsupported_reason(vn.MLP(widths=[32] * 51), jnp.ones(32), "highest")
  >>> small_chain.kernel_unsupported_reason(vn.MLP(widths=[8] * 51), jnp.ones(8), "highest")
  'width 8 is not one of (16, 32, 64)'

  ``small_chain.jacobian(net, params, x)`` returns ``(jacobian [M, N, N], path)`` and
  ``small_chain.lyapunov_spectrum(net, params, x)`` ``(spectrum [M, L, N], path)``; on a CPU
  ``path`` is ``"reference"`` (:func:`vanish.jacobian`, :func:`vanish.lyapunov_spectrum`)
  unless ``use_kernel="interpret"``.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax import lax
from jax.experimental import pallas as pl

from vanish import _checks, _engine
from vanish.chains import jacobian as _reference_jacobian
from vanish.kernels import _dispatch
from vanish.layers import scaled_slope
from vanish.networks import MLP
from vanish.spectrum import _check_depths
from vanish.spectrum import lyapunov_spectrum as _reference_spectrum

TINY = float(jnp.finfo(jnp.float32).tiny)

__all__ = [
  "WIDTHS",
  "JacobianChain",
  "LyapunovSpectrum",
  "jacobian",
  "kernel_unsupported_reason",
  "lyapunov_spectrum",
]

WIDTHS = (16, 32, 64)  # tl.dot needs every dim >= 16 and power-of-2 blocks; J of N = 128 spills
# "TF32_TF32_F32_X3" is Triton's tf32x3 (three TF32 tensor-core products, about float32's
# accuracy). The bf16 multi-pass presets also lower (Pallas splits each operand into bf16
# parts and runs 3 or 6 products) but are not offered: nothing here has measured them.
PRECISIONS = ("highest", "default", "TF32_TF32_F32_X3")
# Activations the kernels are built for: the built-ins whose jnp code lowers to Triton (erf
# has no Triton lowering; stepped_sigmoid captures a constant table, which Pallas refuses).
ACTIVATIONS = (
  "hard_tanh",
  "lecun_tanh",
  "leaky_relu",
  "linear",
  "relu",
  "scaled_tanh",
  "sigmoid",
  "softplus",
  "tanh",
)
# Launch configurations, (num_warps, num_stages), the fastest of the H100 sweep in
# benchmarks/results/kernels_h100.json (section "small": tanh, depth 50, 16384 members at
# N = 16 and 32, 4096 at N = 64; warps 1, 2, 4, 8 × stages 1, 2, 3; median ms, in brackets at
# the launch of session 10's rule, 1 warp for N ≤ 32 else 2, 2 stages). A width between the
# buckets takes the next bucket up; a precision not swept (TF32_TF32_F32_X3, timed only at
# the old launch) takes the "highest" entry. Explicit ``num_warps=`` / ``num_stages=``
# override each value.
JACOBIAN_LAUNCH = {
  (16, "highest"): (2, 3),  # 0.996 ms [1.12]
  (16, "default"): (1, 3),  # 0.788 ms [0.852]
  (32, "highest"): (2, 1),  # 2.96 ms [4.32]; the plain chain 12.3
  (32, "default"): (1, 1),  # 1.75 ms [2.72]; the plain chain 11.4
  (64, "highest"): (8, 1),  # 7.13 ms [145]; the plain chain 11.6
  (64, "default"): (2, 1),  # 2.08 ms [3.75]
}
# The spectrum kernel's, from benchmarks/results/spectrum_kernel_h100.json (section
# "spectrum", "highest", same shapes; warps 1, 2, 4, 8 swept at 2 stages only): N = 16: 1 warp
# 6.77 ms (2: 10.8, 4: 14.8, 8: 25.6); N = 32: 1 warp 26.3 ms (2: 44.3, 4: 76.9, 8: 101);
# N = 64: 4 warps 60.5 ms (2: 900, 8: 116; 1 not timed).
SPECTRUM_LAUNCH = {16: (1, 2), 32: (1, 2), 64: (4, 2)}
# What "auto" takes the compiled Jacobian kernel for: the precisions swept on a GPU, except
# calls listed in AUTO_SLOWER. Session 10 timed (64, "highest") at 144.5 ms at the old launch
# (2 warps) against the plain chain's 11.6 ms for 4096 members × depth 50. At the table's
# launch (8 warps, 1 stage) the kernel took 7.13 ms (benchmarks/results/kernels_h100.json),
# 20× faster than at 4 warps: a jump that the sweep did not check against the reference, so
# "auto" leaves this case to the reference until a GPU run has checked that launch's result.
AUTO_PRECISIONS = ("highest", "default")
AUTO_SLOWER: dict[tuple[int, str], str] = {
  (64, "highest"): "its launch (8 warps) was timed 1.63× faster but not yet checked on a GPU"
}
# Where "auto" takes the compiled spectrum kernel: the widths and precisions at which the H100
# timed it faster than ``vn.lyapunov_spectrum(refine=False)`` at the launch of SPECTRUM_LAUNCH
# (spectrum_kernel_h100.json, "highest"): 6.77 vs 47.8 ms at N = 16, 26.3 vs 160 at N = 32,
# 60.5 vs 140 at N = 64. TF32_TF32_F32_X3 ran at N = 16 and 32 at this launch (5.49, 24.9 ms)
# but was not swept and its reference was not timed; "default" never ran.
# ``use_kernel="pallas"`` runs the kernel at any supported call.
SPECTRUM_AUTO_WIDTHS: tuple[int, ...] = (16, 32, 64)
SPECTRUM_AUTO_PRECISIONS = ("highest",)


class JacobianChain(NamedTuple):
  """What :func:`jacobian` returns.

  Attributes:
    jacobian: ``[M, N, N]`` (``[M, batch, N, N]`` for batched inputs on the reference path).
    path: ``"pallas_triton"``, ``"pallas_interpret"`` or ``"reference"``.
  """

  jacobian: jax.Array
  path: str


class LyapunovSpectrum(NamedTuple):
  """What :func:`lyapunov_spectrum` returns.

  Attributes:
    spectrum: ``[M, D, N]`` natural logs, descending along the last axis (D = L or
      ``len(depths)``; ``[M, batch, D, N]`` for batched inputs on the reference path).
    path: ``"pallas_triton"``, ``"pallas_interpret"`` or ``"reference"``.
  """

  spectrum: jax.Array
  path: str


def kernel_unsupported_reason(net: Any, x: Any, precision: str, params: Any = None) -> str | None:
  """Why the kernels cannot compute this call (the reference can), or None.

  ``params``, when given, must be float32. Raises ValueError for a precision that no path
  knows (see :func:`vanish.jacobian`).
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
  if net.activation.name not in ACTIVATIONS:
    return f"the activation {net.activation.name!r} is not one of {ACTIVATIONS}"
  if net.widths[0] not in WIDTHS:
    return f"width {net.widths[0]} is not one of {WIDTHS}"
  if jnp.ndim(x) != 1:
    return "x is batched (the kernel takes one input)"
  if precision not in PRECISIONS:
    return f"precision {precision!r} is not one of {PRECISIONS}"
  dtypes = {getattr(leaf, "dtype", None) for leaf in jax.tree.leaves(params)}
  if dtypes - {jnp.dtype(jnp.float32)}:
    return f"params are {sorted(map(str, dtypes))}, not float32"
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


def _per_member_call(body, w, b, x, *, out_block, name, launch, interpret, **options):
  """``body(x_ref, w_ref, b_ref, out_ref, depth=, width=, **options)`` with one program per
  member, which reads that member's ``W [L, N, N]`` and ``b [L, N]`` (contiguous in
  ``net.init``'s member-major layout) and the shared ``x (N,)``, and writes one member's
  float32 ``out_block``; ``launch = (num_warps, num_stages)``."""
  from jax.experimental.pallas import triton as pltr

  members, depth, width, _ = w.shape
  origin = (0,) * len(out_block)
  num_warps, num_stages = launch
  return pl.pallas_call(
    functools.partial(body, depth=depth, width=width, **options),
    grid=(members,),
    in_specs=[
      pl.BlockSpec((width,), lambda m: (0,)),
      pl.BlockSpec((None, depth, width, width), lambda m: (m, 0, 0, 0)),
      pl.BlockSpec((None, depth, width), lambda m: (m, 0, 0)),
    ],
    out_specs=pl.BlockSpec((None, *out_block), lambda m: (m, *origin)),
    out_shape=jax.ShapeDtypeStruct((members, *out_block), jnp.float32),
    interpret=interpret,
    compiler_params=None
    if interpret
    else pltr.CompilerParams(num_warps=num_warps, num_stages=num_stages),
    name=name,
  )(x, w, b)


@functools.partial(
  jax.jit, static_argnames=("act", "precision", "num_warps", "num_stages", "interpret")
)
def _pallas(w, b, x, *, act, precision, num_warps, num_stages, interpret):
  return _per_member_call(
    _kernel_body, w, b, x, out_block=(w.shape[2],) * 2, name="small_width_jacobian_chain",
    launch=(num_warps, num_stages), interpret=interpret, act=act,
    precision=_engine.lax_precision(precision),
  )  # fmt: skip


def _check_launch(num_warps: Any, num_stages: Any) -> int | None:
  if num_warps is not None and (isinstance(num_warps, bool) or num_warps not in (1, 2, 4, 8, 16)):
    raise ValueError(f"num_warps must be None, 1, 2, 4, 8 or 16, got {num_warps!r}")
  if num_stages is None:
    return None
  return _checks.integer("num_stages", num_stages, minimum=1, maximum=8)


def _bucket(width: int, widths: Iterable[int]) -> int:
  """The smallest of ``widths`` ≥ ``width`` (the largest if none is)."""
  return min((w for w in widths if w >= width), default=max(widths))


def _launch(
  kernel: str,
  width: int,
  precision: str,
  num_warps: int | None = None,
  num_stages: int | None = None,
) -> tuple[int, int]:
  """``(num_warps, num_stages)`` for ``kernel`` (``"jacobian"`` or ``"spectrum"``): each from
  :data:`JACOBIAN_LAUNCH` / :data:`SPECTRUM_LAUNCH` unless given explicitly."""
  if kernel == "jacobian":
    width = _bucket(width, {w for w, _ in JACOBIAN_LAUNCH})
    default = JACOBIAN_LAUNCH.get((width, precision), JACOBIAN_LAUNCH[width, "highest"])
  else:
    default = SPECTRUM_LAUNCH[_bucket(width, SPECTRUM_LAUNCH)]
  return (
    default[0] if num_warps is None else num_warps,
    default[1] if num_stages is None else num_stages,
  )


def _jacobian_auto_refusal(width: int, precision: str) -> str | None:
  if precision not in AUTO_PRECISIONS:
    return f"precision {precision!r} not yet timed on a GPU"
  return AUTO_SLOWER.get((width, precision))


def _spectrum_auto_refusal(width: int, precision: str) -> str | None:
  if precision not in SPECTRUM_AUTO_PRECISIONS:
    return f"precision {precision!r} not yet timed on a GPU"
  return None if width in SPECTRUM_AUTO_WIDTHS else f"width {width} not yet timed on a GPU"


def _choose_path(
  net: Any,
  params: Any,
  x: Any,
  precision: str,
  use_kernel: Any,
  auto_refusal: Callable[[int, str], str | None],
) -> str:
  """The path a call takes (see ``use_kernel`` in :func:`jacobian`); raises for an explicit
  kernel choice the call does not support. ``auto_refusal(width, precision)`` says why
  ``"auto"`` leaves a supported call on a supported GPU to the reference (None: it does not)."""
  path = _dispatch.resolve(use_kernel)
  if path == _dispatch.REFERENCE:
    return path
  reason = kernel_unsupported_reason(net, x, precision, params)
  if reason is not None:
    if use_kernel != "auto":
      raise ValueError(f"use_kernel={use_kernel!r}: the kernel cannot compute this call: {reason}")
    return _dispatch.REFERENCE
  if use_kernel == "auto" and path == _dispatch.KERNEL and auto_refusal(net.widths[0], precision):
    return _dispatch.REFERENCE  # supported, but measured slower or not measured
  return path


def _kernel_inputs(net: MLP, params: Any, x: jax.Array, precision: str):
  """``(w [M, L, N, N], b [M, L, N], x (N,))`` after :func:`vn.jacobian`'s own validation
  (shapes, finiteness), before anything compiles."""
  from vanish.chains import check_call

  x, _ = check_call(net, params, x, None, precision)
  (p,) = params
  return p["w"], p["b"], x.astype(jnp.float32)


def jacobian(
  net: MLP,
  params: Any,
  x: jax.Array,
  *,
  precision: str = "highest",
  use_kernel: Any = "auto",
  num_warps: int | None = None,
  num_stages: int | None = None,
) -> JacobianChain:
  """:func:`vanish.jacobian` of a constant-width MLP ensemble, by the on-chip kernel where it can.

  Args:
    net: a :class:`~vanish.MLP`; the kernel needs ``widths = [N] * (L + 1)`` with N ∈
      :data:`WIDTHS`, φ at every layer and a deterministic activation.
    params: ``net.init(key, members=M)`` (float32).
    x: the input ``(N,)`` (a batched ``(batch, N)`` input takes the reference path).
    precision: ``"highest"`` (true float32), ``"default"`` (TF32 tensor cores on GPUs) or
      ``"TF32_TF32_F32_X3"`` (three TF32 products, about float32's accuracy; GPUs only, as
      XLA:CPU has no TF32); other :func:`vanish.jacobian` precisions take the reference path.
    use_kernel: ``"auto"`` (the kernel on a supported GPU when the call is supported, its
      precision in :data:`AUTO_PRECISIONS` and not listed in :data:`AUTO_SLOWER`, else the
      reference), ``"pallas"``,
      ``"interpret"`` or ``"reference"``; an explicit kernel choice raises if the call is
      not supported.
    num_warps: Triton warps per member, 1, 2, 4, 8 or 16 (default: :data:`JACOBIAN_LAUNCH`,
      the H100's fastest for the width and precision).
    num_stages: Triton software-pipelining stages for the weight loads, 1 to 8 (default:
      :data:`JACOBIAN_LAUNCH`).

  Returns:
    A :class:`JacobianChain`: ``jacobian`` ``[M, N, N]`` and the ``path`` that ran.
  """
  _engine.check_precision(precision)
  num_stages = _check_launch(num_warps, num_stages)
  path = _choose_path(net, params, x, precision, use_kernel, _jacobian_auto_refusal)
  if path == _dispatch.REFERENCE:
    return JacobianChain(_reference_jacobian(net, params, x, precision=precision), path)
  w, b, x = _kernel_inputs(net, params, x, precision)
  num_warps, num_stages = _launch("jacobian", net.widths[0], precision, num_warps, num_stages)
  out = _pallas(
    w,
    b,
    x,
    act=net.activation,
    precision=precision,
    num_warps=num_warps,
    num_stages=num_stages,
    interpret=path == _dispatch.INTERPRET,
  )
  return JacobianChain(out, path)


# --------------------------------------------------------------------------- Lyapunov spectra


def _householder_qr(z: jax.Array, eye: jax.Array) -> tuple[jax.Array, jax.Array]:
  """``Z = Q R`` for one ``[N, N]`` tile in registers: ``(Qᵀ [N, N], |diag R| [N])``.

  Unblocked Householder QR (Golub & Van Loan, Algorithm 5.2.1): for k = 0..N−1 the
  reflection ``H_k = I − 2 u uᵀ`` with ``u ∝ x + sign(x_k) ‖x‖ e_k`` (``x`` column k of the
  current Z, zero above row k) maps that column to ``−sign(x_k) ‖x‖ e_k``, so
  ``|R_kk| = ‖x‖``. ``Q = H_0 ⋯ H_{N−1}`` is accumulated as ``Qᵀ ← H_k Qᵀ``, the same update
  as Z's, so ``u`` is only ever broadcast along one axis (no layout change on a GPU). Rows
  and columns are selected with iota masks (Triton tiles have no dynamic indexing).
  ``‖x‖`` is computed scaled by ``max |x_i|`` and ``‖v‖`` as ``√(2‖x‖) √(‖x‖ + |x_k|)``, so
  columns below float32's square-root range (~10⁻¹⁹) keep their accuracy; a column whose
  norm is below the smallest normal float (an exactly or numerically rank-deficient Z)
  gives ``H_k = I`` and ``R_kk = 0``, whose log the caller floors.
  """
  width = z.shape[0]
  rows = lax.broadcasted_iota(jnp.int32, (width,), 0)
  cols = lax.broadcasted_iota(jnp.int32, (width, width), 1)

  def reflect(k, carry):
    z, q_t, r_diag = carry
    column = jnp.sum(jnp.where(cols == k, z, 0.0), axis=1)
    x = jnp.where(rows >= k, column, 0.0)
    x_k = jnp.sum(jnp.where(rows == k, column, 0.0))
    biggest = jnp.max(jnp.abs(x))
    scale = jnp.where(biggest > 0, biggest, 1.0)
    scaled = x / scale
    norm = scale * jnp.sqrt(jnp.sum(scaled * scaled))
    v = x + jnp.where(rows == k, jnp.where(x_k < 0, -norm, norm), 0.0)
    v_norm = jnp.sqrt(2.0 * norm) * jnp.sqrt(norm + jnp.abs(x_k))
    # A norm below the smallest normal float is a zero column (its log is floored anyway):
    # 1/v_norm of a subnormal norm would overflow to inf, and 0·inf is NaN.
    resolved = norm >= TINY
    u = (v * jnp.where(resolved, 1.0 / v_norm, 0.0))[:, None]
    z = z - (2.0 * u) * jnp.sum(u * z, axis=0)[None, :]
    q_t = q_t - (2.0 * u) * jnp.sum(u * q_t, axis=0)[None, :]
    return z, q_t, jnp.where(rows == k, jnp.where(resolved, norm, 0.0), r_diag)

  carry = (z, eye, jnp.zeros((width,), jnp.float32))
  _, q_t, r_diag = lax.fori_loop(0, width, reflect, carry)
  return q_t, r_diag


def _spectrum_body(x_ref, w_ref, b_ref, out_ref, *, depth, width, act, precision, floor):
  """One program = one member: ``h`` and ``Qᵀ`` stay in registers for all ``depth`` layers;
  ``out[l]`` is the running ``Σ log |diag R|`` after layer l (unsorted)."""
  rows = lax.broadcasted_iota(jnp.int32, (width, width), 0)
  cols = lax.broadcasted_iota(jnp.int32, (width, width), 1)
  eye = (rows == cols).astype(jnp.float32)

  def layer(l, carry):
    h, q_t, log_d = carry
    w = w_ref[l]  # [N, N], read once
    z = jnp.sum(w * h[None, :], axis=1) + b_ref[l]
    h, slope = act.value_and_derivative(z)
    slope, log_scale = scaled_slope(act, z, slope)  # e^{-s} φ'(z): saturated layers stay exact
    q_t, r_diag = _householder_qr(slope[:, None] * jnp.dot(w, q_t.T, precision=precision), eye)
    log_d = log_d + jnp.maximum(jnp.log(r_diag), floor) + log_scale
    out_ref[l] = log_d
    return h, q_t, log_d

  lax.fori_loop(0, depth, layer, (x_ref[...], eye, jnp.zeros((width,), jnp.float32)))


@functools.partial(
  jax.jit, static_argnames=("act", "precision", "num_warps", "num_stages", "interpret", "depths")
)
def _spectrum_pallas(w, b, x, *, act, precision, num_warps, num_stages, interpret, depths):
  sums = _per_member_call(
    _spectrum_body, w, b, x, out_block=w.shape[1:3], name="small_width_lyapunov_spectrum",
    launch=(num_warps, num_stages), interpret=interpret, act=act,
    precision=_engine.lax_precision(precision),
    floor=math.log(TINY),  # as vn.lyapunov_spectrum's floor
  )  # fmt: skip
  if depths is not None:
    sums = sums[:, jnp.asarray(depths) - 1]
  return -jnp.sort(-sums, axis=-1)  # descending, as vn.lyapunov_spectrum reports


def lyapunov_spectrum(
  net: MLP,
  params: Any,
  x: jax.Array,
  *,
  precision: str = "highest",
  depths: Sequence[int] | None = None,
  use_kernel: Any = "auto",
  num_warps: int | None = None,
  num_stages: int | None = None,
) -> LyapunovSpectrum:
  """``vn.lyapunov_spectrum(net, params, x, refine=False)`` by the on-chip kernel where it can.

  Benettin's cumulative ``Σ log diag R`` for all N exponents, one Householder QR per layer in
  registers (module docstring). The kernel supports the calls :func:`jacobian`'s does.

  Args:
    net: a :class:`~vanish.MLP` with ``widths = [N] * (L + 1)``, N ∈ :data:`WIDTHS`, φ at every
      layer, a deterministic activation.
    params: ``net.init(key, members=M)`` (float32).
    x: the input ``(N,)`` (a batched input takes the reference path).
    precision: of the ``W Q`` matmul, one of :data:`PRECISIONS` (as in :func:`jacobian`); the
      QR is float32 on every path.
    depths: the depths ``l`` (1 ≤ l ≤ L, any order, repeats allowed) to return, default all.
    use_kernel: as in :func:`jacobian`, but ``"auto"`` takes the kernel only at the widths
      in :data:`SPECTRUM_AUTO_WIDTHS` and precisions in :data:`SPECTRUM_AUTO_PRECISIONS`
      (timed faster than the reference on the H100).
    num_warps: Triton warps per member, 1, 2, 4, 8 or 16 (default: :data:`SPECTRUM_LAUNCH`,
      the H100's fastest for the width).
    num_stages: Triton software-pipelining stages for the weight loads, 1 to 8 (default:
      :data:`SPECTRUM_LAUNCH`).

  Returns:
    A :class:`LyapunovSpectrum`: ``spectrum`` ``[M, D, N]`` (``[M, batch, D, N]`` for a
    batched input, on the reference path; descending natural logs, ``D = L`` or
    ``len(depths)``, never −inf or NaN: a zero factor is floored at ``log(finfo.tiny)``) and
    the ``path`` that ran.

  Example:
    >>> import jax, vanish as vn
    >>> from vanish.kernels import small_chain
    >>> net = vn.MLP(widths=[16] * 41, activation="tanh", weights=vn.init.gaussian(1.5))
    >>> params, x = net.init(jax.random.key(0), members=2), jax.numpy.ones(16)
    >>> got = small_chain.lyapunov_spectrum(net, params, x, depths=[40], use_kernel="interpret")
    >>> ref = vn.lyapunov_spectrum(net, params, x, refine=False, depths=[40])
    >>> got.path, got.spectrum.shape, bool(abs(got.spectrum - ref).max() / 40 < 1e-5)
    ('pallas_interpret', (2, 1, 16), True)
  """
  _engine.check_precision(precision)
  num_stages = _check_launch(num_warps, num_stages)
  path = _choose_path(net, params, x, precision, use_kernel, _spectrum_auto_refusal)
  if path == _dispatch.REFERENCE:
    spectrum = _reference_spectrum(net, params, x, refine=False, precision=precision, depths=depths)
    return LyapunovSpectrum(spectrum, path)
  w, b, x = _kernel_inputs(net, params, x, precision)
  depths = _check_depths(depths, net.depth)
  num_warps, num_stages = _launch("spectrum", net.widths[0], precision, num_warps, num_stages)
  out = _spectrum_pallas(
    w,
    b,
    x,
    act=net.activation,
    precision=precision,
    num_warps=num_warps,
    num_stages=num_stages,
    interpret=path == _dispatch.INTERPRET,
    depths=depths,
  )
  return LyapunovSpectrum(out, path)
