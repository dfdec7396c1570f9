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
import numpy as np
from jax import lax

from vanish import _checks, _engine, orthonormalize
from vanish.chains import check_call, ensemble_map
from vanish.networks import Network

__all__ = ["lyapunov_exponents", "lyapunov_spectrum"]

MAX_SWEEPS = 32

REORTHONORMALIZE = ("every", "adaptive")
"""Named schedules of ``lyapunov_spectrum(reorthonormalize=...)``; an int block length works too."""

BLOCK_LOG_COND = 0.4
"""Adaptive blocks aim at ``log cond ≤ BLOCK_LOG_COND · ln(1/ε)`` (``cond ≲ ε^{-0.4}``, ~600 in
float32), judged by the spread of the running exponents (measured, ``tests/test_spectrum.py``)."""

GUARD_LOG_COND = 0.625
"""A block whose ``max − min log diag R`` exceeds ``GUARD_LOG_COND · ln(1/ε)`` is redone (~2·10⁴
in float32: per-block error ``≈ u·e^{spread} ≲ 10⁻³`` nats)."""

MAX_BLOCK = 64
"""Longest block of layers multiplied before one QR."""


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


def _ensemble_reduction(reduce):
  """``f(x) = x`` outside ``vmap``; under ``vmap``, ``reduce`` over every mapped axis, *unbatched*.

  An outer ``vmap`` (members around inputs) reduces its axis too, since the rule calls
  ``f`` again. The blocked schedule takes a branch (``lax.cond``) on such a value, so that
  under ``vmap`` a QR is executed only when some member needs one: a batched predicate
  would turn the branch into a select that runs both sides at every layer.
  """

  @jax.custom_batching.custom_vmap
  def f(x):
    return x

  @f.def_vmap
  def rule(axis_size, in_batched, x):
    del axis_size
    (batched,) = in_batched
    return f(reduce(x, axis=0) if batched else x), False

  return f


_ensemble_any = _ensemble_reduction(jnp.any)
_ensemble_min = _ensemble_reduction(jnp.min)


def _log_diagonal(r: jax.Array) -> jax.Array:
  floor, _ = _limits(r.dtype)
  return jnp.maximum(jnp.log(jnp.diagonal(r)), floor)


def _accumulate(r, log_d, t_hat, refine):
  """Adds one factor ``R`` to the carried triangular product (graded form only if refining)."""
  if refine:
    return _graded_update(r, log_d, t_hat)
  return log_d + _log_diagonal(r), t_hat


def _report(log_d, t_hat, refine, wanted):
  """The spectrum at this depth: exact (refined) where ``wanted``, else Benettin's sorted sum."""
  benettin = lambda d, t: jnp.sort(d)[::-1]
  if not refine:
    return benettin(log_d, t_hat)
  if wanted is None:
    return graded_log_singular_values(log_d, t_hat)
  return lax.cond(wanted, graded_log_singular_values, benettin, log_d, t_hat)


def _depth_tables(depth: int, depths: tuple[int, ...] | None):
  """``(wanted [L] bool, slot [L] int, order)``: layer ``l`` (0-based) is written to
  ``out[slot[l]]`` (``slot = U``, out of range, when not requested) and the result is
  ``out[order]`` (requested order, duplicates allowed)."""
  if depths is None:
    return np.ones(depth, bool), np.arange(depth), np.arange(depth)
  unique, order = np.unique(np.asarray(depths) - 1, return_inverse=True)
  wanted = np.zeros(depth, bool)
  wanted[unique] = True
  slot = np.full(depth, len(unique))
  slot[unique] = np.arange(len(unique))
  return wanted, slot, order


def _every_layer(net, p, x, key, prec, *, k, refine, qr, depths):
  """Benettin with one QR per layer (``lax.scan``); ``(spectrum [D, k], counts)``."""
  wanted, _, _ = _depth_tables(net.depth, depths)
  wanted = None if depths is None else jnp.asarray(wanted)

  def step(layer, p_l, h_in, pre, slope, carry):
    q, log_d, t_hat, index = carry
    z = layer.jacobian_action(p_l, slope, q, prec)  # e^{-s} J_l Q
    q, r = orthonormalize.stable_qr(z, qr)  # diag r ≥ 0
    log_d, t_hat = _accumulate(r, log_d, t_hat, refine)
    log_d = log_d + layer.slope_log_scale(slope)  # R_l = e^s r: the graded form's log_d
    out = _report(log_d, t_hat, refine, None if wanted is None else wanted[index])
    return (q, log_d, t_hat, index + 1), out

  dtype = x.dtype
  carry = (
    jnp.eye(net.widths[0], k, dtype=dtype),
    jnp.zeros((k,), dtype),
    jnp.eye(k, dtype=dtype),
    jnp.zeros((), jnp.int32),
  )
  _, _, outs = _engine.scan_layers(net, p, x, key, prec, step, carry)
  spectrum = jnp.concatenate(outs, axis=0)
  if depths is not None:
    spectrum = spectrum[jnp.asarray(depths) - 1]
  counts = {"qr": jnp.int32(net.depth), "rollbacks": jnp.int32(0)}
  return spectrum, counts


def _i32(value) -> jax.Array:
  return jnp.asarray(value, jnp.int32)


def _power_of_two_floor(b: jax.Array) -> jax.Array:
  """The largest power of two ``≤ b`` (``b ≥ 1``, int32)."""
  return jnp.left_shift(_i32(1), 31 - lax.clz(b))


def _where(mask, new: dict, old: dict) -> dict:
  """``new`` where ``mask`` (a member's scalar under ``vmap``), else ``old``, key by key."""
  return {name: jnp.where(mask, value, old[name]) for name, value in new.items()}


def _segment_tables(forced: np.ndarray) -> np.ndarray:
  """``position[l]``: layers since the segment's last forced factorization, layer ``l`` included
  (``forced[l]``: a requested depth or the segment's last layer)."""
  position, count = np.zeros(len(forced), np.int32), 0
  for l, force in enumerate(forced):
    count += 1
    position[l] = count
    count = 0 if force else count
  return position


def _blocked(net, p, x, key, prec, *, k, refine, qr, depths, block):
  """Benettin with one QR per *block* of layers; ``(spectrum [D, k], counts)``.

  ``Z = J_l ⋯ J_{s+1} Q_s`` is carried unnormalized (as ``e^{−Σs} Z``, the layers'
  slope scales summed in log space) and factored at the end of a block, at each
  requested depth and at each segment end (*forced* factorizations). Every decision
  is the member's own, from its own values only, so a member's result does not depend
  on which members are computed with it:

  * its block length ``b`` (after each factorization): the int ``block``, or for
    ``"adaptive"`` the largest ``b`` with ``b · Δ̂ ≤ BLOCK_LOG_COND · ln(1/ε)``
    (``Δ̂ = (max − min) log_d / depth``, the running estimate of ``λ_1 − λ_k`` per
    layer), both capped by the range rule ``b · max|λ̂| ≤ ¼ ln(finfo.max)`` (``λ̂``
    the running rates); a length set by a rule (not the int ``block`` itself) is
    rounded *down* to a power of two, which keeps both rules;
  * where its blocks end: where the number of layers since the last forced
    factorization is a multiple of ``b``. Forced factorizations are the same for
    every member, and a power of two's multiples include its double's, so the
    members' factorizations together are those of the shortest block in use;
  * its guard: a block of more than one layer whose ``max − min log diag R`` exceeds
    ``GUARD_LOG_COND · ln(1/ε)``, or is not finite, is rolled back and redone one
    layer per QR.

  Cost under ``vmap``: the layer counter ``l`` is shared (the weights of layer ``l``
  are a slice, not a gather per member) and the QR runs under ``lax.cond`` when *any*
  member factors (:func:`_ensemble_any`), members that do not factor keeping their
  open block. A rollback rewinds ``l`` to the earliest start of a failed block; the
  other members are frozen (their state selected unchanged) until ``l`` is back
  where it was, as the failed members redo their blocks layer by layer.
  """
  dtype = x.dtype
  info = jnp.finfo(dtype)
  log_inv_eps = -math.log(float(info.eps))
  budget_log = BLOCK_LOG_COND * log_inv_eps
  guard_log = GUARD_LOG_COND * log_inv_eps
  range_log = 0.25 * math.log(float(info.max))
  wanted_np, slot, order = _depth_tables(net.depth, depths)
  n_slots = int(slot.max()) + 1 if depths is None else len(np.unique(depths))
  wanted, slot = jnp.asarray(wanted_np), _i32(slot)
  tiny = jnp.asarray(info.tiny, dtype)

  def next_budget(log_d, done):
    by_range = range_log / jnp.maximum(jnp.max(jnp.abs(log_d)) / done, tiny)
    if block == "adaptive":
      spread = (jnp.max(log_d) - jnp.min(log_d)) / done
      size, cap = jnp.minimum(budget_log / jnp.maximum(spread, tiny), by_range), MAX_BLOCK
    else:
      size, cap = jnp.minimum(float(block), by_range), block
    b = _i32(jnp.minimum(jnp.where(size >= 1, jnp.floor(size), 1), cap))  # NaN → 1
    if block == "adaptive":
      return _power_of_two_floor(b)
    return jnp.where(b == block, b, _power_of_two_floor(b))

  def factor(c, q, r, index):
    """The state after the open block's ``Z = Q R``, and the spectrum row at ``index``."""
    log_d, t_hat = _accumulate(r, c["log_d"], c["t_hat"], refine)
    log_d = log_d + c["log_scale"]  # the block's R is e^{Σ s} r (see the every-layer step)
    state = {
      "log_d": log_d,
      "t_hat": t_hat,
      "budget": next_budget(log_d, (index + 1).astype(dtype)),
      "qrs": c["qrs"] + 1,
      "q": q,
      "n": _i32(0),
      "log_scale": jnp.zeros((), dtype),
    }
    return state, _report(log_d, t_hat, refine, wanted[index])

  def write(out, index, row, mask=True):
    s = slot[index]  # out of range (dropped) unless depth index + 1 is requested
    return out.at[s].set(jnp.where(mask, row, out.at[s].get(mode="clip")), mode="drop")

  c = {
    "h": x,
    "q": jnp.eye(net.widths[0], k, dtype=dtype),
    "log_d": jnp.zeros((k,), dtype),
    "t_hat": jnp.eye(k, dtype=dtype),
    "out": jnp.zeros((n_slots, k), dtype),
    "qrs": _i32(0),
    "rollbacks": _i32(0),
    "budget": _i32(1 if block == "adaptive" else block),  # adaptive: no estimate yet
    "n": _i32(0),
    "log_scale": jnp.zeros((), dtype),  # Σ s of the layers in the open block
  }
  for segment, p_seg in zip(net.segments, p, strict=True):
    layer = segment.layer
    if segment.fan_in != segment.fan_out:  # depth 1, the carry changes shape: one QR
      p_l = jax.tree.map(lambda a: a[0], p_seg)
      h, _, slope = layer.forward(p_l, c["h"], _engine.layer_key(key, segment.start), prec)
      z = layer.jacobian_action(p_l, slope, c["q"], prec)
      q, r = orthonormalize.stable_qr(z, qr)
      state, row = factor({**c, "log_scale": layer.slope_log_scale(slope)}, q, r, segment.start)
      c = {**c, **state, "h": h, "out": write(c["out"], segment.start, row)}
      continue
    forced = wanted_np[segment.start : segment.start + segment.depth].copy()
    forced[-1] = True
    forced, position = jnp.asarray(forced), jnp.asarray(_segment_tables(forced))

    def rollback(c, bad):
      """Failed members restart their block one layer per QR; the others wait for them."""
      now = c["l"]
      restart = {
        "h": c["h0"],
        "z": c["q"],
        "n": _i32(0),
        "log_scale": jnp.zeros((), dtype),
        "redo_until": now,
        "rollbacks": c["rollbacks"] + 1,
        "qrs": c["qrs"] + 1,  # the failed QR
      }
      c = {**c, **_where(bad, restart, c)}
      c["resume"] = jnp.where(bad, c["l0"], jnp.maximum(c["resume"], now))
      c["l"] = _ensemble_min(jnp.where(bad, c["l0"], now))
      return c

    def close(c, closes, segment=segment):
      q, r = orthonormalize.stable_qr(c["z"], qr)
      log_r = _log_diagonal(r)
      bad = closes & (c["n"] > 1) & ~(jnp.max(log_r) - jnp.min(log_r) <= guard_log)  # NaN too
      good = closes & ~bad
      index = segment.start + c["l"] - 1
      state, row = factor(c, q, r, index)
      state = {**state, "z": q, "h0": c["h"], "l0": c["l"]}
      c = {**c, **_where(good, state, c), "out": write(c["out"], index, row, good)}
      return lax.cond(_ensemble_any(bad), rollback, lambda c, _: c, c, bad)

    def body(c, segment=segment, p_seg=p_seg, layer=layer, forced=forced, position=position):
      l = c["l"]  # shared by all members: the weights are a slice, not a gather
      p_l = jax.tree.map(lambda a: lax.dynamic_index_in_dim(a, l, keepdims=False), p_seg)
      index = segment.start + l
      h, _, slope = layer.forward(p_l, c["h"], _engine.layer_key(key, index), prec)
      # Z ← e^{−s} J Z: the block's scales add up in log space until its QR
      z = layer.jacobian_action(p_l, slope, c["z"], prec)
      step = {"h": h, "z": z, "log_scale": c["log_scale"] + layer.slope_log_scale(slope)}
      active = l >= c["resume"]  # False while a rollback of other members redoes layer l
      c = {**c, **_where(active, {**step, "n": c["n"] + 1}, c), "l": l + 1}
      ends = (l < c["redo_until"]) | forced[l] | (position[l] % c["budget"] == 0)
      closes = active & ends
      return lax.cond(_ensemble_any(closes), close, lambda c, _: c, c, closes)

    loop = {
      **c,
      "z": c["q"],
      "h0": c["h"],
      "l": _i32(0),
      "l0": _i32(0),
      "resume": _i32(0),
      "redo_until": _i32(0),
    }
    loop = lax.while_loop(lambda c, d=segment.depth: c["l"] < d, body, loop)
    c = {name: loop[name] for name in c}
  counts = {"qr": c["qrs"], "rollbacks": c["rollbacks"]}
  return c["out"][jnp.asarray(order)], counts


@functools.partial(
  jax.jit,
  static_argnames=("net", "precision", "batched", "k", "refine", "qr", "depths", "block"),
)
def _lyapunov_spectrum(
  net, params, x, key, *, precision, batched, k, refine, qr="auto", depths=None, block="every"
):
  prec = _engine.lax_precision(precision)
  options = {"k": k, "refine": refine, "qr": qr, "depths": depths}

  def per_input(p, xb, key_b):
    if block == "every":
      return _every_layer(net, p, xb, key_b, prec, **options)
    return _blocked(net, p, xb, key_b, prec, block=block, **options)

  return ensemble_map(per_input, params, x, key, batched)


def _check_depths(depths, depth: int) -> tuple[int, ...] | None:
  if depths is None:
    return None
  values = np.asarray(depths, dtype=object).reshape(-1) if not np.isscalar(depths) else None
  if values is None or values.size == 0 or np.ndim(depths) != 1:
    raise ValueError(
      f"depths must be None or a non-empty sequence of integers in [1, {depth}], got {depths!r}"
    )
  out = []
  for d in values:
    if isinstance(d, bool) or not isinstance(d, (int, np.integer)) or not 1 <= d <= depth:
      raise ValueError(f"depths must hold integers in [1, net.depth = {depth}], got {d!r}")
    out.append(int(d))
  return tuple(out)


def _check_block(reorthonormalize) -> str | int:
  if reorthonormalize in ("every", "adaptive"):
    return reorthonormalize
  if (
    isinstance(reorthonormalize, (int, np.integer))
    and not isinstance(reorthonormalize, bool)
    and 1 <= reorthonormalize <= MAX_BLOCK
  ):
    return "every" if reorthonormalize == 1 else int(reorthonormalize)
  raise ValueError(
    f"reorthonormalize must be 'every', 'adaptive' or an integer in [1, {MAX_BLOCK}], "
    f"got {reorthonormalize!r}"
  )


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
  depths: Sequence[int] | None = None,
  reorthonormalize: str | int = "every",
  return_counts: bool = False,
) -> jax.Array | tuple[jax.Array, dict[str, jax.Array]]:
  """Log singular values of the partial products ``J_l ⋯ J_1``, stably at any depth.

  Args:
    net: the network spec.
    params: ``net.init(key, members=M)``.
    x: input ``(n_0,)`` or ``(batch, n_0)``; the Jacobians are taken along its
      forward pass.
    k: number of singular values, at most ``min(widths)`` (the default). With
      ``k = n_0`` they are the product's own; with ``k < n_0`` they are those of
      ``J_l ⋯ J_1 Q_0``, ``Q_0`` the first k input axes, whose leading values
      converge to the top-k Lyapunov exponents.
    refine: True (default) returns exact log singular values (graded QR sweeps,
      see the module docstring) at the requested depths. False returns Benettin's
      cumulative ``Σ log diag R``: equal to them up to O(1) nats, cheaper (no
      sweeps), with the same per-layer limit.
    key: noise key, required for stochastic activations.
    precision: matmul precision, default ``"highest"``.
    qr: the QR, one of :data:`vanish.orthonormalize.METHODS`:
      ``"auto"`` (default: guarded shifted CholeskyQR3 on GPUs, 12–14× the
      plain chain instead of Householder's 27–816× on an H100, as accurate;
      Householder on CPUs, where it is the faster), ``"householder"``
      (``jnp.linalg.qr``), ``"shifted_cholesky_qr3"`` or ``"cholesky_qr2"``
      (Cholesky QR from matmuls, with a fallback for the matrices it cannot
      factor); see :func:`vanish.orthonormalize.stable_qr` and
      ``benchmarks/results/qr_h100.json``. Its matmuls always run at
      ``"highest"``, whatever ``precision`` is.
    depths: the depths ``l`` (1 ≤ l ≤ L, any order, repeats allowed) to return,
      default all. The refinement (sweeps and an SVD) runs only at these; the
      carried triangular product is updated at every factorization. With the
      default ``reorthonormalize="every"`` the values are those the default call
      returns at the same depths; a blocked schedule also factors at every
      requested depth, so its values there depend (within its guard's error, e.g.
      0.07 nats at depth 40 with blocks of 4) on which other depths are requested.
    reorthonormalize: when to factor. ``"every"`` (default) layer. An int ``b``:
      ``Z = J_l ⋯ J_{s+1} Q_s`` is multiplied for up to ``b`` layers before one
      QR (one QR of the product has the triangular factor of the per-layer ones,
      so in exact arithmetic every schedule gives the same values).
      ``"adaptive"``: ``b`` is the largest power of two with
      ``b · (λ̂_1 − λ̂_k) ≤ 0.4 ln(1/ε)`` (:data:`BLOCK_LOG_COND`; ``λ̂`` the
      member's running exponent estimates), ``b · max|λ̂| ≤ ¼ ln(finfo.max)`` (no
      overflow; this rule also caps an int ``b``, to a power of two) and
      ``b ≤`` :data:`MAX_BLOCK`. Blocks end where the layers since the last
      requested depth (or segment start) are a multiple of ``b``, and a QR is
      always taken at each requested depth, so only ``depths`` sparser than every
      layer save work. Guard (both block modes): a block whose
      ``max − min log diag R`` exceeds ``⅝ ln(1/ε)`` (:data:`GUARD_LOG_COND`: its
      smallest values would be round-off), or is not finite, is rolled back and
      redone with one QR per layer. Wide spectra (dead ReLU units, saturated
      tanh: ``λ_1 − λ_k ≳ 0.4 ln(1/ε)`` per layer) thus fall back to every layer.
      Every decision is the member's own (and the input's own, for a batch of
      inputs): a member's values do not depend on which members are computed
      with it (chunks, devices). Under ``vmap`` a QR runs when any member needs
      one (the others keep their open block): as the powers of two nest, that is
      the QRs of the member with the shortest blocks, plus the layers redone after
      each member's rollback (the others wait, frozen). Measured on a CPU against
      decisions taken for the whole ensemble (64 members, width 32, depth 200,
      tanh ``σ_w² = 1.5``): ``"adaptive"`` 219 QRs and 304 layer steps (was 209
      and 294), 0.8–1.1× the time; ``8`` (blocks too long for this spectrum,
      nearly all rolled back) 323 and 476 (was 229 and 399), 1.3–1.5×. Accuracy
      (float32 vs float64, tanh ``σ_w² = 1``, width 16–32, depth 1000, 2–4
      members): ≤ 3·10⁻⁴ nats per layer for every exponent, with about half the
      QRs; the guard reads ``diag R``, which underestimates a block's condition
      number, so members with a nearly singular layer can be off by more
      (2.5·10⁻³ per layer at depth 20, width 32, in 3 of 64 members, where
      ``"every"`` has 1.5·10⁻³). Block modes run a ``while_loop`` (no
      reverse-mode derivative).
    return_counts: also return ``{"qr": [M, (batch,)], "rollbacks": [M, (batch,)]}``,
      each member's (and input's) own QR factorizations (rolled-back blocks
      included; the guarded fallbacks inside
      :func:`vanish.orthonormalize.stable_qr` not counted) and blocks redone:
      what it needs alone. The QRs a call executes are at least the largest of
      these (see ``reorthonormalize``). ``"every"`` does L QRs.

  Returns:
    ``[M, (batch,) D, k]`` natural logs, descending along the last axis, with
    ``D = L`` or ``len(depths)`` (entry ``i`` is depth ``depths[i]``). An exactly
    singular direction (e.g. a dead ReLU unit) comes out at the roundoff level of
    the QR, about ``log(ε · σ_max)`` per such layer (ε the dtype's machine epsilon;
    as in any floating-point SVD), or at the dtype's floor ``log(finfo.tiny)`` when
    its factor is exactly zero; never −inf or NaN. Count such directions with a
    threshold relative to the top value. With ``return_counts``, ``(spectrum, counts)``.

  Example:
    >>> import jax, vanish as vn
    >>> net = vn.MLP(widths=[6] * 41, activation="tanh", weights=vn.init.gaussian(1.5))
    >>> params, x = net.init(jax.random.key(0), members=2), jax.numpy.ones(6)
    >>> every = vn.lyapunov_spectrum(net, params, x)
    >>> last, counts = vn.lyapunov_spectrum(
    ...   net, params, x, depths=[40], reorthonormalize="adaptive", return_counts=True)
    >>> last.shape, bool(abs(last[:, 0] - every[:, 39]).max() / 40 < 1e-3)  # per layer
    ((2, 1, 6), True)
    >>> bool(counts["qr"][0] < 40)   # fewer QRs than layers
    True
  """
  x, batched = check_call(net, params, x, key, precision)
  if not isinstance(refine, (bool, np.bool_)):
    raise TypeError(f"refine must be True or False, got {refine!r}")
  k_max = min(net.widths)
  if k is None:
    k = k_max
  if isinstance(k, bool) or int(k) != k or not 1 <= k <= k_max:
    raise ValueError(f"k must be an integer in [1, min(widths) = {k_max}], got {k!r}")
  if qr not in orthonormalize.METHODS:
    raise ValueError(f"qr must be one of {orthonormalize.METHODS}, got {qr!r}")
  depths = _check_depths(depths, net.depth)
  block = _check_block(reorthonormalize)
  spectrum, counts = _lyapunov_spectrum(
    net,
    params,
    x,
    key,
    precision=precision,
    batched=batched,
    k=int(k),
    refine=bool(refine),
    qr=qr,
    depths=depths,
    block=block,
  )
  return (spectrum, counts) if return_counts else spectrum


def lyapunov_exponents(spectrum: jax.Array, depths: Sequence[int] | None = None) -> jax.Array:
  """Finite-depth Lyapunov exponents: the spectrum at each depth divided by the depth.

  Args:
    spectrum: ``[..., D, k]`` from :func:`lyapunov_spectrum`.
    depths: the depths of the D rows, as passed to :func:`lyapunov_spectrum`
      (default ``1 … D``: a spectrum of every layer).

  Returns:
    ``[..., D, k]``; the row of depth ``l`` estimates the exponents with O(1/l) bias.

  Example:
    >>> import jax.numpy as jnp
    >>> lyapunov_exponents(jnp.array([[-2.0], [-4.0]])).ravel().tolist()
    [-2.0, -2.0]
    >>> lyapunov_exponents(jnp.array([[-20.0]]), depths=[10]).ravel().tolist()
    [-2.0]
  """
  spectrum = jnp.asarray(spectrum)
  if spectrum.ndim < 2 or not jnp.issubdtype(spectrum.dtype, jnp.floating):
    raise ValueError(
      f"spectrum must be a float array [..., D, k] from lyapunov_spectrum, got shape "
      f"{spectrum.shape} and dtype {spectrum.dtype}"
    )
  rows = spectrum.shape[-2]
  if depths is None:
    depths = range(1, rows + 1)
  depths = [_checks.integer("depths[i]", d) for d in depths]
  if len(depths) != rows:
    raise ValueError(f"depths must have one entry per row of spectrum ({rows}), got {len(depths)}")
  return spectrum / jnp.broadcast_to(jnp.asarray(depths, spectrum.dtype)[:, None], spectrum.shape)
