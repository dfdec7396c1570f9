"""Thin QR factorizations ``Z = Q R`` built from matmuls, guarded by Householder.

Benettin's algorithm (see :mod:`vanish.spectrum`) needs one thin QR per layer of
``Z = J_l Q_{l−1}``. Householder QR (``jnp.linalg.qr``) is backward stable at any
condition number, but on GPUs cuSOLVER factors a batch of large matrices one at
a time (6.2 ms per 512×512 float32 matrix on an H100, ``benchmarks/README.md``).
Cholesky QR computes ``G = ZᵀZ = RᵀR`` and ``Q = Z R⁻¹``: two batched matmuls
and a small Cholesky, fast on any accelerator, but it squares the condition
number. Two facts make it usable here:

* ``Q_{l−1}`` has orthonormal columns, so ``cond(Z) ≤ cond(J_l)``: one layer's
  condition number, never the product's (which overflows within a few dozen
  layers).
* Repeating the factorization cures the loss of orthogonality. CholeskyQR2
  (Yamamoto, Nakatsukasa, Yanagisawa & Fukaya 2015, ETNA 44) is as accurate as
  Householder when ``cond(Z) ≲ u^{−1/2}`` (≈ 4·10³ in float32). Shifted
  CholeskyQR3 (Fukaya, Kannan, Nakatsukasa, Yamamoto & Yanagisawa 2020, SIAM J.
  Sci. Comput. 42(1)) first factors ``ZᵀZ + sI`` with a shift ``s ∝ u‖Z‖²``,
  which cannot break down and leaves ``Q₁ = Z R₁⁻¹`` with condition number
  ``≈ √s / σ_min(Z)``, then runs CholeskyQR2 on ``Q₁``; it reaches
  ``cond(Z) ≈ u^{-1}/√(scale)`` (about ``10⁶`` in float32 with the default
  shift).

Beyond that (exactly rank-deficient ``Z``: dead ReLU units, saturated tanh or
hard-tanh units, a zero column), Cholesky QR cannot produce orthonormal columns.
:func:`stable_qr` therefore *checks* every factorization — the Gram matrix of
the last pass's input, ``Q_pᵀQ_p``, must be within ``tol`` of the identity and R
finite — and recomputes the flagged matrices: first with two shifted passes
(which reach past ``u^{−1}``), then, if still flagged, with Householder QR.
Under ``vmap`` this decision is made once per batch (a ``custom_vmap`` rule), so
the guard costs nothing when no matrix is flagged and only a small gathered
batch when a few are. In tanh ensembles on an H100 shifted CholeskyQR3 flagged
3 of 3,200 (N = 512), 7 of 51,200 (N = 128) and 0 of 819,200 (N = 32) layer
Jacobians, none of which needed Householder; ReLU networks with dead units go
to Householder at every layer (``benchmarks/results/qr_h100.json``).

Since the thin QR with ``diag R > 0`` is unique, the result is differentiated
with the closed-form QR derivative whatever the method (forward and reverse).

Every function takes one ``(n, k)`` matrix with ``n ≥ k`` (leading batch axes
are accepted too) and returns ``(q, r)``: ``q`` ``(n, k)`` with orthonormal
columns, ``r`` ``(k, k)`` upper triangular with a non-negative diagonal. Gram
matrices and ``Z R⁻¹`` use ``precision="highest"`` by default: TF32 (the
float32 default on NVIDIA GPUs) has a unit round-off of 2⁻¹¹, which destroys
Cholesky QR; the 3-pass presets (``"TF32_TF32_F32_X3"``, ``"BF16_BF16_F32_X6"``)
were measured no faster than ``"highest"`` for these batched Gram matrices.

Example:
  >>> import jax, jax.numpy as jnp
  >>> from vanish import orthonormalize
  >>> z = jax.random.normal(jax.random.key(0), (64, 16))
  >>> q, r = orthonormalize.stable_qr(z)
  >>> bool(jnp.allclose(q @ r, z, atol=1e-4)), bool(jnp.all(jnp.diagonal(r) > 0))
  (True, True)
  >>> bool(jnp.abs(q.T @ q - jnp.eye(16)).max() < 1e-5)
  True
"""

from __future__ import annotations

import functools
import math
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

from vanish import _checks, _engine

__all__ = [
  "METHODS",
  "blocked_cholesky",
  "cholesky_qr",
  "cholesky_qr2",
  "householder_qr",
  "orthogonality_defect",
  "shifted_cholesky_qr3",
  "stable_qr",
  "triangular_inverse",
]

METHODS = ("auto", "householder", "cholesky_qr2", "shifted_cholesky_qr3")
"""Names :func:`stable_qr` (and ``vn.lyapunov_spectrum(qr=...)``) accept."""

SOLVES = ("trsm", "inverse")
"""How ``Q = Z R⁻¹`` is formed: a triangular solve, or a matmul with ``R⁻¹``."""

DEFAULT_SHIFT_SCALE = 1.0
"""Shift ``s = scale · u · ‖Z‖_F²`` of the first shifted-Cholesky pass."""

DEFAULT_TOL = 0.5
"""Largest accepted ``max |Q_pᵀQ_p − I|`` before the last Cholesky pass."""

# The "auto" method per platform (chosen by measurement, benchmarks/bench_qr.py): on an
# H100 shifted CholeskyQR3 makes whole spectra 2.1–57× faster than Householder; on CPUs
# Householder (LAPACK) is 1.2–12× faster than the Cholesky methods. Unmeasured platforms
# (ROCm, TPU) get Householder.
_AUTO = {"cpu": "householder", "cuda": "shifted_cholesky_qr3"}
# ``Q = Z R⁻¹`` per platform when ``solve=None``: on GPUs the doubling inverse and
# a matmul beat cuBLAS's batched triangular solve (benchmarks/results/qr_h100.json).
_SOLVE = {"cpu": "trsm", "cuda": "inverse"}


def _mt(a: jax.Array) -> jax.Array:
  return jnp.swapaxes(a, -1, -2)


def _dot(a: jax.Array, b: jax.Array, precision: Any) -> jax.Array:
  return jnp.matmul(a, b, precision=precision)


def _eye_like(a: jax.Array) -> jax.Array:
  """The identity of ``a``'s trailing size, with ``a``'s rank (explicit broadcasting)."""
  return jnp.eye(a.shape[-1], dtype=a.dtype).reshape((1,) * (a.ndim - 2) + (a.shape[-1],) * 2)


def _positive(q: jax.Array, r: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Flips signs so ``diag r ≥ 0`` (QR is unique up to these signs)."""
  signs = jnp.where(jnp.diagonal(r, axis1=-2, axis2=-1) < 0, -1, 1).astype(r.dtype)
  return q * signs[..., None, :], r * signs[..., :, None]


def householder_qr(z: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Householder thin QR (``jnp.linalg.qr``) with a non-negative diagonal of R.

  Backward stable at any condition number (Golub & Van Loan 2013, §5.2); the
  reference for the other methods. On GPUs it is the slow path.

  Args:
    z: ``(..., n, k)`` with ``n ≥ k``.

  Returns:
    ``(q, r)``, ``(..., n, k)`` and ``(..., k, k)``.
  """
  return _positive(*jnp.linalg.qr(z))


def triangular_inverse(r: jax.Array, precision: Any = "highest") -> jax.Array:
  """Inverse of an upper-triangular matrix by recursive doubling, all in batched matmuls.

  ``[[A, B], [0, C]]⁻¹ = [[A⁻¹, −A⁻¹ B C⁻¹], [0, C⁻¹]]``, applied bottom-up from
  1×1 blocks: ``log₂ k`` levels of two batched matmuls each. Block triangular
  inversion is normwise stable like the triangular solve (Du Croz & Higham 1992,
  IMA J. Numer. Anal. 12).

  Args:
    r: ``(..., k, k)`` upper triangular with a nonzero diagonal.
    precision: matmul precision.

  Returns:
    ``(..., k, k)`` upper-triangular ``r⁻¹``.
  """
  precision = _check_precision(precision)
  k = r.shape[-1]
  size = 1 << max(0, (k - 1).bit_length())
  batch = r.shape[:-2]
  if size != k:  # pad with the identity: blockdiag(R, I)⁻¹ = blockdiag(R⁻¹, I)
    pad = [(0, 0)] * len(batch) + [(0, size - k), (0, size - k)]
    tail = jnp.diag((jnp.arange(size) >= k).astype(r.dtype))
    r = jnp.pad(r, pad) + tail.reshape((1,) * len(batch) + (size, size))
  inv = (1 / jnp.diagonal(r, axis1=-2, axis2=-1))[..., None, None]  # (..., size, 1, 1)
  s = 1
  while s < size:
    nb = size // (2 * s)
    grid = r.reshape(*batch, nb, 2 * s, nb, 2 * s)
    blocks = jnp.moveaxis(jnp.diagonal(grid, axis1=-4, axis2=-2), -1, -3)  # (..., nb, 2s, 2s)
    upper = blocks[..., :s, s:]
    a_inv, c_inv = inv[..., 0::2, :, :], inv[..., 1::2, :, :]
    off = -_dot(_dot(a_inv, upper, precision), c_inv, precision)
    top = jnp.concatenate([a_inv, off], axis=-1)
    bottom = jnp.concatenate([jnp.zeros_like(c_inv), c_inv], axis=-1)
    inv = jnp.concatenate([top, bottom], axis=-2)
    s *= 2
  return inv[..., 0, :k, :k]


def blocked_cholesky(g: jax.Array, block: int = 128, precision: Any = "highest") -> jax.Array:
  """Right-looking blocked Cholesky ``G = L Lᵀ``: small Cholesky factors plus batched matmuls.

  ``L₂₁ = G₂₁ L₁₁⁻ᵀ`` (with :func:`triangular_inverse`) and the trailing update
  ``G₂₂ − L₂₁ L₂₁ᵀ`` (Golub & Van Loan 2013, §4.2.9), recursively.

  Args:
    g: ``(..., k, k)`` symmetric positive definite.
    block: diagonal block size factored by ``jnp.linalg.cholesky``.
    precision: matmul precision.

  Returns:
    ``(..., k, k)`` lower-triangular ``L``; NaN where ``g`` is not numerically
    positive definite.
  """
  block = _checks.integer("block", block)
  precision = _check_precision(precision)
  k = g.shape[-1]
  if k <= block:
    return jnp.linalg.cholesky(g)
  l11 = jnp.linalg.cholesky(g[..., :block, :block])
  l21 = _dot(g[..., block:, :block], triangular_inverse(_mt(l11), precision), precision)
  trailing = g[..., block:, block:] - _dot(l21, _mt(l21), precision)
  l22 = blocked_cholesky(trailing, block, precision)
  top = jnp.concatenate([l11, jnp.zeros_like(g[..., :block, block:])], axis=-1)
  return jnp.concatenate([top, jnp.concatenate([l21, l22], axis=-1)], axis=-2)


def _right_solve(a: jax.Array, r: jax.Array, solve: str, precision: Any) -> jax.Array:
  """``a r⁻¹`` for upper-triangular ``r``."""
  if solve == "trsm":
    return lax.linalg.triangular_solve(r, a, left_side=False, lower=False)
  return _dot(a, triangular_inverse(r, precision), precision)


def _cholesky_pass(
  a: jax.Array, shift: jax.Array | None, solve: str, precision: Any
) -> tuple[jax.Array, jax.Array, jax.Array]:
  """One Cholesky QR pass: ``(a R⁻¹, R, aᵀa)`` with ``RᵀR = aᵀa + shift·I``."""
  gram = _dot(_mt(a), a, precision)
  shifted = gram if shift is None else gram + shift[..., None, None] * _eye_like(gram)
  r = _mt(jnp.linalg.cholesky(shifted))  # NaN where not numerically positive definite
  return _right_solve(a, r, solve, precision), r, gram


def orthogonality_defect(gram: jax.Array) -> jax.Array:
  """``max |G − I|`` of a Gram matrix ``G = QᵀQ`` (NaN stays NaN)."""
  return jnp.max(jnp.abs(gram - _eye_like(gram)), axis=(-2, -1))


def _check_precision(precision: Any) -> Any:
  """A ``lax.Precision`` or ``DotAlgorithmPreset`` (or None) as is; a name validated."""
  if precision is None or isinstance(precision, (lax.Precision, lax.DotAlgorithmPreset)):
    return precision
  return _engine.check_precision(precision)


def _check_options(solve: str, tol: float | None = None) -> None:
  if solve not in SOLVES:
    raise ValueError(f"solve must be one of {SOLVES}, got {solve!r}")
  if tol is not None and not 0 < tol < 1:
    raise ValueError(f"tol must be in (0, 1), got {tol!r}")


def _flagged(r: jax.Array, last_gram: jax.Array, tol: float) -> jax.Array:
  """True where the factorization cannot be trusted (NaN included)."""
  finite = jnp.all(jnp.isfinite(r), axis=(-2, -1))
  return ~(orthogonality_defect(last_gram) <= tol) | ~finite


def cholesky_qr(
  z: jax.Array, *, solve: str = "trsm", precision: Any = "highest"
) -> tuple[jax.Array, jax.Array]:
  """One Cholesky QR pass (no repetition): orthogonality error ``≈ u · cond(Z)²``.

  Args:
    z: ``(..., n, k)`` with ``n ≥ k``.
    solve: ``"trsm"`` (triangular solve) or ``"inverse"`` (matmul with
      :func:`triangular_inverse`) for ``Q = Z R⁻¹``.
    precision: matmul precision of the Gram matrix and of ``Z R⁻¹``.

  Returns:
    ``(q, r)``; NaN where ``ZᵀZ`` is not numerically positive definite.
  """
  _check_options(solve)
  precision = _check_precision(precision)
  q, r, _ = _cholesky_pass(z, None, solve, precision)
  return q, r


def _cholesky_qr2(z, solve, precision, tol):
  q1, r1, _ = _cholesky_pass(z, None, solve, precision)
  q, r2, gram2 = _cholesky_pass(q1, None, solve, precision)
  r = _dot(r2, r1, precision)
  return q, r, _flagged(r, gram2, tol)


def cholesky_qr2(
  z: jax.Array, *, solve: str = "trsm", precision: Any = "highest"
) -> tuple[jax.Array, jax.Array]:
  """CholeskyQR2 (Yamamoto et al. 2015): Cholesky QR twice, ``R = R₂ R₁``.

  Orthogonality and residual ``O(u)`` (like Householder) when
  ``cond(Z) ≲ u^{−1/2}``; NaN or non-orthonormal ``q`` beyond. Unguarded: use
  ``stable_qr(z, "cholesky_qr2")`` for the Householder fallback.

  Args:
    z: ``(..., n, k)`` with ``n ≥ k``.
    solve: see :func:`cholesky_qr`.
    precision: see :func:`cholesky_qr`.

  Returns:
    ``(q, r)``.
  """
  _check_options(solve)
  precision = _check_precision(precision)
  q, r, _ = _cholesky_qr2(z, solve, precision, DEFAULT_TOL)
  return q, r


def _shift(z: jax.Array, scale: float) -> jax.Array:
  """``s = scale · u · ‖Z‖_F²`` (≥ ``scale · u · ‖Z‖₂²``), per matrix."""
  u = jnp.finfo(z.dtype).eps / 2
  return scale * u * jnp.sum(jnp.square(z), axis=(-2, -1))


def _shifted_cholesky_qr(z, shifted, solve, precision, tol, shift_scale):
  """``shifted`` shifted Cholesky passes, then CholeskyQR2; ``(q, r, flagged)``."""
  q, r = z, None
  for _ in range(shifted):
    q, r_pass, _ = _cholesky_pass(q, _shift(q, shift_scale), solve, precision)
    r = r_pass if r is None else _dot(r_pass, r, precision)
  q, r2, _ = _cholesky_pass(q, None, solve, precision)
  q, r3, gram3 = _cholesky_pass(q, None, solve, precision)
  r = _dot(r3, _dot(r2, r, precision), precision)
  return q, r, _flagged(r, gram3, tol)


def shifted_cholesky_qr3(
  z: jax.Array,
  *,
  shift_scale: float = DEFAULT_SHIFT_SCALE,
  solve: str = "trsm",
  precision: Any = "highest",
) -> tuple[jax.Array, jax.Array]:
  """Shifted CholeskyQR3 (Fukaya et al. 2020): a shifted pass, then CholeskyQR2.

  The first pass factors ``ZᵀZ + sI`` with ``s = shift_scale · u · ‖Z‖_F²``.
  Fukaya et al. prove breakdown-free behaviour for ``s = 11(nk + k(k+1)) u ‖Z‖₂²``;
  that bound is pessimistic by orders of magnitude for random round-off, and a
  larger shift narrows the condition numbers the next two passes can handle
  (``cond(Q₁) ≈ √s / σ_min``), so the default is smaller and a breakdown is
  caught by :func:`stable_qr`'s check instead. Unguarded here.

  Args:
    z: ``(..., n, k)`` with ``n ≥ k``.
    shift_scale: the shift in units of ``u ‖Z‖_F²``.
    solve: see :func:`cholesky_qr`.
    precision: see :func:`cholesky_qr`.

  Returns:
    ``(q, r)``.
  """
  _check_options(solve)
  precision = _check_precision(precision)
  shift_scale = _checks.number("shift_scale", shift_scale, minimum=0)
  q, r, _ = _shifted_cholesky_qr(z, 1, solve, precision, DEFAULT_TOL, shift_scale)
  return q, r


def _fast(method: str, solve: str, precision: Any, tol: float, shift_scale: float):
  """``z -> (q, r, flagged)`` for a Cholesky method (no fallback)."""
  if method == "cholesky_qr2":
    return lambda z: _cholesky_qr2(z, solve, precision, tol)
  shifted = {"shifted_cholesky_qr3": 1, "shifted_cholesky_qr4": 2}[method]
  return lambda z: _shifted_cholesky_qr(z, shifted, solve, precision, tol, shift_scale)


def _householder_where(z, q, r, bad):
  """Householder QR of the flagged members of a ``(B, n, k)`` batch, when there are any."""

  def fix():
    hq, hr = householder_qr(z)
    return jnp.where(bad[:, None, None], hq, q), jnp.where(bad[:, None, None], hr, r)

  return lax.cond(jnp.any(bad), fix, lambda: (q, r))


def _repair(z, q, r, bad, capacity, rescue):
  """Recomputes the flagged matrices: ``rescue`` (two shifted passes), then Householder.

  One batch-level branch: nothing flagged costs nothing; up to ``capacity`` of
  the batch flagged are gathered into a small batch; more (e.g. every member of
  a ReLU network with dead units) go straight to Householder for the batch.
  """
  batch = z.shape[:-2]
  if not batch:
    z, q, r, bad = z[None], q[None], r[None], bad[None]
    q, r = _repair(z, q, r, bad, 1.0, rescue)
    return q[0], r[0]
  size = math.prod(batch)
  zf, qf, rf, badf = (a.reshape(size, *a.shape[len(batch) :]) for a in (z, q, r, bad))
  cap = min(size, max(1, math.ceil(capacity * size)))

  def keep():
    return qf, rf

  def few():
    (idx,) = jnp.nonzero(badf, size=cap, fill_value=size)
    zs = jnp.take(zf, idx, axis=0, mode="clip")
    qs, rs, still = rescue(zs)
    qs, rs = _householder_where(zs, qs, rs, still & (idx < size))
    return qf.at[idx].set(qs, mode="drop"), rf.at[idx].set(rs, mode="drop")

  def everything():
    return _householder_where(zf, qf, rf, badf)

  count = jnp.sum(badf.astype(jnp.int32))
  if cap >= size:
    qf, rf = lax.switch((count > 0).astype(jnp.int32), [keep, few])
  else:
    qf, rf = lax.switch(
      jnp.where(count == 0, 0, jnp.where(count <= cap, 1, 2)), [keep, few, everything]
    )
  return qf.reshape(q.shape), rf.reshape(r.shape)


@functools.cache
def _guarded(method, solve, precision, tol, shift_scale, capacity):
  """The guarded factorization as a ``custom_vmap``: batch-level fallback under ``vmap``."""
  fast = _fast(method, solve, precision, tol, shift_scale)
  rescue = _fast("shifted_cholesky_qr4", solve, precision, tol, shift_scale)

  @jax.custom_batching.custom_vmap
  def guarded(z):
    q, r, bad = fast(z)
    return _repair(z, q, r, bad, capacity, rescue)

  @guarded.def_vmap
  def _rule(axis_size, in_batched, z):
    del axis_size
    (batched,) = in_batched
    # ``z`` carries the new batch axis first; ``guarded`` handles leading axes, and
    # calling it (not ``fast``) again lets an outer vmap fold its axis in as well.
    return guarded(z), (batched, batched)

  # The thin QR with diag R > 0 is unique, so its derivative does not depend on the
  # method: give it the closed form (custom_vmap alone has no reverse mode).
  @jax.custom_jvp
  def differentiable(z):
    return guarded(z)

  @differentiable.defjvp
  def _jvp(primals, tangents):
    (z,), (dz,) = primals, tangents
    q, r = guarded(z)
    return (q, r), _qr_tangents(q, r, dz, precision)

  return differentiable


def _qr_tangents(q, r, dz, precision):
  """``(dQ, dR)`` of ``Z = QR`` (thin, ``n ≥ k``), as in ``jax.lax.linalg.qr``'s JVP.

  With ``C = Qᵀ dZ R⁻¹`` and ``Ω = tril(C, −1) − tril(C, −1)ᵀ`` (skew):
  ``dQ = Q(Ω − C) + dZ R⁻¹`` and ``dR = (C − Ω) R``.
  """
  dz_rinv = lax.linalg.triangular_solve(r, dz, left_side=False, lower=False)
  c = _dot(_mt(q), dz_rinv, precision)
  low = jnp.tril(c, -1)
  omega = low - _mt(low)
  return _dot(q, omega - c, precision) + dz_rinv, _dot(c - omega, r, precision)


def _dispatch(z, method, solve, *args):
  """The guarded ``method``; ``"auto"`` and ``solve=None`` resolved per lowering platform."""
  branches = {}
  for platform in _AUTO:
    name = _AUTO[platform] if method == "auto" else method
    how = _SOLVE[platform] if solve is None else solve
    branches[platform] = householder_qr if name == "householder" else _guarded(name, how, *args)
  default_name = "householder" if method == "auto" else method
  default = (
    householder_qr
    if default_name == "householder"
    else _guarded(default_name, solve or "trsm", *args)
  )
  return lax.platform_dependent(z, default=default, **branches)


def stable_qr(
  z: jax.Array,
  method: str = "auto",
  *,
  solve: str | None = None,
  precision: Any = "highest",
  tol: float = DEFAULT_TOL,
  shift_scale: float = DEFAULT_SHIFT_SCALE,
  capacity: float = 1 / 16,
) -> tuple[jax.Array, jax.Array]:
  """Thin QR with ``diag R ≥ 0``: Cholesky QR where it is accurate, Householder where not.

  Args:
    z: ``(n, k)`` with ``n ≥ k`` (leading batch axes and ``vmap`` both work).
    method: ``"householder"`` (``jnp.linalg.qr``), ``"cholesky_qr2"``,
      ``"shifted_cholesky_qr3"`` (both guarded: a matrix whose last pass starts
      from ``max|Q_pᵀQ_p − I| > tol``, or whose R is not finite, is recomputed
      with two shifted passes and, if that fails too, by Householder), or
      ``"auto"``: the fastest accurate one on the platform the computation is
      lowered for (shifted CholeskyQR3 on GPUs, Householder on CPUs; see
      ``benchmarks/bench_qr.py``).
    solve: ``"trsm"`` or ``"inverse"`` (see :func:`cholesky_qr`); None picks
      per platform (``"inverse"`` on NVIDIA GPUs, ``"trsm"`` elsewhere).
    precision: matmul precision of the Cholesky passes (``"highest"``; a 3-pass
      preset such as ``"TF32_TF32_F32_X3"`` trades accuracy for speed).
    tol: the orthogonality check, in (0, 1).
    shift_scale: see :func:`shifted_cholesky_qr3`.
    capacity: fraction of a batch recomputed by gathering only the flagged
      matrices; above it the whole batch is recomputed.

  Returns:
    ``(q, r)``: ``q`` ``(n, k)`` with orthonormal columns, ``r`` ``(k, k)`` upper
    triangular with a non-negative diagonal, ``q r = z``. Differentiable (forward
    and reverse mode) through the closed-form QR derivative, whatever the method.
  """
  if method not in METHODS:
    raise ValueError(f"qr method must be one of {METHODS}, got {method!r}")
  _check_options(solve or "trsm", tol)
  if z.ndim < 2 or z.shape[-2] < z.shape[-1]:
    raise ValueError(f"z must be (..., n, k) with n >= k, got shape {z.shape}")
  if method == "householder":
    return householder_qr(z)
  precision = _check_precision(precision)
  shift_scale = _checks.number("shift_scale", shift_scale, minimum=0)
  return _dispatch(z, method, solve, precision, float(tol), shift_scale, float(capacity))
