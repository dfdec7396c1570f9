"""Stable log singular values of deep Jacobian products (Lyapunov spectra).

The product ``P_l = J_l ⋯ J_1`` of a deep network over- or underflows within a
few dozen layers, so it is never formed. Benettin's algorithm (Benettin et al.
1980; Geist, Parlitz & Lauterborn 1990) re-orthonormalizes at every layer,

    J_l Q_{l−1} = Q_l R_l,     P_l Q_0 = Q_l (R_l ⋯ R_1),

and ``Σ_m log |diag R_m|`` grows like the Lyapunov exponents times depth. That sum
is *not* the log singular values of ``P_l`` at finite depth (it is off by O(1),
e.g. 1–2 nats for a 6-wide tanh chain). To make it exact we also carry the
triangular product in graded form

    T_l = R_l ⋯ R_1 = diag(e^{d_l}) · T̂_l,    T̂_l unit upper triangular,

where ``d_l`` holds the logs (no overflow at any depth) and ``T̂_l`` stays bounded
because Benettin's diagonal becomes ordered. The singular values of ``T_l`` (=
those of ``P_l Q_0``) then follow from a few *log-scaled QR sweeps*: QR of
``T̂ᵀ diag(e^d)`` equals ``Q (R̃ diag(e^d))`` since column scaling commutes with
QR, so each sweep is one unshifted QR step on ``TᵀT`` done without ever
exponentiating ``d``. Couplings between singular values decay like
``(σ_j/σ_i)`` per sweep, so deep (well separated) spectra converge in 2–3 sweeps
to machine precision; shallow products with clustered values, whose dynamic
range is small, finish with a dense SVD of the rescaled matrix.

Example:
  >>> import jax, vanish as vn
  >>> net = vn.MLP(widths=[8] * 10001, activation="linear", weights=vn.init.orthogonal())
  >>> spec = vn.lyapunov_spectrum(net, net.init(jax.random.key(0), members=1), jax.numpy.ones(8))
  >>> spec.shape, float(abs(spec).max()) < 1e-3   # orthogonal: all singular values 1
  ((1, 10000, 8), True)
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
from jax import lax

from vanish import _engine, orthonormalize
from vanish.chains import check_call, ensemble_map
from vanish.networks import Network

__all__ = ["lyapunov_exponents", "lyapunov_spectrum"]

MAX_SWEEPS = 32


def _limits(dtype) -> tuple[float, float]:
  info = jnp.finfo(dtype)
  # log of the smallest normal number: a |R_ii| below it is a numerical zero.
  return math.log(float(info.tiny)), math.log(float(info.max)) / 2


def _positive_diagonal(r: jax.Array) -> jax.Array:
  """Flips rows of R so diag R ≥ 0 (the QR factorization is unique up to these signs)."""
  return r * jnp.where(jnp.diagonal(r) < 0, -1, 1).astype(r.dtype)[:, None]


def _graded_update(r: jax.Array, log_d: jax.Array, t_hat: jax.Array) -> tuple[jax.Array, jax.Array]:
  """``R diag(e^{d}) T̂ = diag(e^{d'}) T̂'`` with ``T̂'`` unit upper triangular.

  Args:
    r: upper-triangular ``(k, k)`` with non-negative diagonal.
    log_d: ``(k,)`` logs of the current row scales.
    t_hat: ``(k, k)`` unit upper triangular.

  Returns:
    ``(log_d', T̂')`` with ``d' = d + log diag R`` (``log diag R`` floored at the
    dtype's smallest normal).
  """
  floor, max_exp = _limits(r.dtype)
  log_r = jnp.maximum(jnp.log(jnp.diagonal(r)), floor)
  # (D'^{-1} R D)_ij = (r_ij / r_ii) e^{d_j − d_i}: bounded once d is ordered.
  exponent = jnp.minimum(log_d[None, :] - log_d[:, None] - log_r[:, None], max_exp)
  eye = jnp.eye(r.shape[0], dtype=r.dtype)
  m = jnp.triu(r * jnp.exp(exponent), 1) + eye
  # Bookkeeping, not physics: always true float32/float64, never TF32.
  product = jnp.matmul(m, t_hat, precision=lax.Precision.HIGHEST)
  return log_d + log_r, jnp.triu(product, 1) + eye


def _sweep(log_d: jax.Array, t_hat: jax.Array) -> tuple[jax.Array, jax.Array]:
  """One log-scaled QR sweep: same singular values, smaller couplings.

  ``T = diag(e^d) T̂`` has the singular values of ``Tᵀ = T̂ᵀ diag(e^d) = Q R̃ diag(e^d)``,
  i.e. of the upper-triangular ``R̃ diag(e^d) = diag(e^{d'}) T̂'``.
  """
  r = _positive_diagonal(jnp.linalg.qr(t_hat.T, mode="r"))
  return _graded_update(r, log_d, jnp.eye(r.shape[0], dtype=r.dtype))


def _coupling(t_hat: jax.Array) -> jax.Array:
  return jnp.max(jnp.abs(jnp.triu(t_hat, 1)), initial=0.0)


def graded_log_singular_values(log_d: jax.Array, t_hat: jax.Array) -> jax.Array:
  """Log singular values of ``diag(e^{d}) T̂``, descending, without exponentiating ``d``.

  Args:
    log_d: ``(k,)``.
    t_hat: ``(k, k)`` unit upper triangular.

  Returns:
    ``(k,)`` log singular values, descending.
  """
  eps = jnp.finfo(t_hat.dtype).eps
  tol = jnp.sqrt(eps)

  def not_done(state):
    _, t, sweeps = state
    return (sweeps < MAX_SWEEPS) & (_coupling(t) > tol)

  def body(state):
    d, t, sweeps = state
    return (*_sweep(d, t), sweeps + 1)

  log_d, t_hat, _ = lax.while_loop(not_done, body, (log_d, t_hat, jnp.zeros((), jnp.int32)))
  swept = jnp.sort(log_d)[::-1]
  # Clustered values (shallow products) converge slowly; their dynamic range is
  # small, so a dense SVD of the rescaled matrix resolves them. Values far below
  # the top (where the SVD loses relative accuracy) keep the swept estimate.
  top = jnp.max(log_d)
  floor, _ = _limits(t_hat.dtype)
  dense = jnp.linalg.svd(jnp.exp(log_d - top)[:, None] * t_hat, compute_uv=False)
  dense = jnp.maximum(jnp.log(dense), floor) + top
  resolvable = dense > top + 0.5 * jnp.log(eps)
  refined = jnp.where((_coupling(t_hat) > tol) & resolvable, dense, swept)
  return jnp.sort(refined)[::-1]


@functools.partial(jax.jit, static_argnames=("net", "precision", "batched", "k", "refine", "qr"))
def _lyapunov_spectrum(net, params, x, key, *, precision, batched, k, refine, qr="auto"):
  prec = _engine.lax_precision(precision)

  def per_input(p, xb, key_b):
    def step(layer, p_l, h_in, pre, slope, carry):
      q, log_d, t_hat = carry
      z = layer.jacobian_action(p_l, slope, q, prec)
      q, r = orthonormalize.stable_qr(z, qr)  # diag r ≥ 0
      log_d, t_hat = _graded_update(r, log_d, t_hat)
      out = graded_log_singular_values(log_d, t_hat) if refine else jnp.sort(log_d)[::-1]
      return (q, log_d, t_hat), out

    dtype = xb.dtype
    carry = (
      jnp.eye(net.widths[0], k, dtype=dtype),
      jnp.zeros((k,), dtype),
      jnp.eye(k, dtype=dtype),
    )
    _, _, outs = _engine.scan_layers(net, p, xb, key_b, prec, step, carry)
    return jnp.concatenate(outs, axis=0)

  return ensemble_map(per_input, params, x, key, batched)


def lyapunov_spectrum(
  net: Network,
  params: Sequence[dict[str, jax.Array]],
  x: jax.Array,
  *,
  k: int | None = None,
  refine: bool = True,
  key: jax.Array | None = None,
  precision: str = "highest",
  qr: str = "auto",
) -> jax.Array:
  """Log singular values of every partial product ``J_l ⋯ J_1``, stably at any depth.

  Args:
    net: the network spec.
    params: ``net.init(key, members=M)``.
    x: input ``(n_0,)`` or ``(batch, n_0)``; the Jacobians are taken along its
      forward pass.
    k: number of singular values, at most ``min(widths)`` (the default). With
      ``k = n_0`` they are the product's own; with ``k < n_0`` they are those of
      ``J_l ⋯ J_1 Q_0``, ``Q_0`` the first k input axes, whose leading values
      converge to the top-k Lyapunov exponents.
    refine: True (default) returns exact log singular values at every depth
      (graded QR sweeps, see the module docstring). False returns Benettin's
      cumulative ``Σ log diag R``: equal to them up to O(1) nats, cheaper (no
      per-layer sweeps), with the same per-layer limit.
    key: noise key, required for stochastic activations.
    precision: matmul precision, default ``"highest"``.
    qr: the per-layer QR, one of :data:`vanish.orthonormalize.METHODS`:
      ``"auto"`` (default: guarded shifted CholeskyQR3 on GPUs, 12–14× the
      plain chain instead of Householder's 27–816× on an H100, as accurate;
      Householder on CPUs, where it is the faster), ``"householder"``
      (``jnp.linalg.qr``), ``"shifted_cholesky_qr3"`` or ``"cholesky_qr2"``
      (Cholesky QR from matmuls, with a fallback for the matrices it cannot
      factor); see :func:`vanish.orthonormalize.stable_qr` and
      ``benchmarks/results/qr_h100.json``. Its matmuls always run at
      ``"highest"``, whatever ``precision`` is.

  Returns:
    ``[M, (batch,) L, k]`` natural logs, descending along the last axis. An exactly
    singular direction (e.g. a dead ReLU unit) comes out at the roundoff level of
    the QR, about ``log(ε · σ_max)`` per such layer (ε the dtype's machine epsilon;
    as in any floating-point SVD), or at the dtype's floor ``log(finfo.tiny)`` when
    its factor is exactly zero; never −inf or NaN. Count such directions with a
    threshold relative to the top value.
  """
  x, batched = check_call(net, params, x, key, precision)
  k_max = min(net.widths)
  if k is None:
    k = k_max
  if isinstance(k, bool) or int(k) != k or not 1 <= k <= k_max:
    raise ValueError(f"k must be an integer in [1, min(widths) = {k_max}], got {k!r}")
  if qr not in orthonormalize.METHODS:
    raise ValueError(f"qr must be one of {orthonormalize.METHODS}, got {qr!r}")
  return _lyapunov_spectrum(
    net, params, x, key, precision=precision, batched=batched, k=int(k), refine=bool(refine), qr=qr
  )


def lyapunov_exponents(spectrum: jax.Array) -> jax.Array:
  """Finite-depth Lyapunov exponents: the spectrum at each depth divided by the depth.

  Args:
    spectrum: ``[..., L, k]`` from :func:`lyapunov_spectrum`.

  Returns:
    ``[..., L, k]``; the last row estimates the exponents with O(1/L) bias.
  """
  depth = jnp.arange(1, spectrum.shape[-2] + 1, dtype=spectrum.dtype)
  return spectrum / depth[:, None]
