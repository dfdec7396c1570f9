"""Cholesky QR built from matmuls: factorizations vs float64 NumPy, the guard, Lyapunov spectra."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import vanish as vn
from tests import reference
from vanish import orthonormalize as orth

FAST = ("cholesky_qr2", "shifted_cholesky_qr3")
# (method, solve) pairs for the guarded path; one shape throughout so each compiles once.
GUARDED = (("cholesky_qr2", "trsm"), ("shifted_cholesky_qr3", "inverse"))
SHAPE = (8, 40, 12)

_qr = jax.jit(orth.stable_qr, static_argnames=("method", "solve"))


@jax.jit
def _flags(z):
  """What the guard sees: the unguarded methods' flags."""
  return [orth._fast(m, "trsm", "highest", orth.DEFAULT_TOL, 1.0)(z)[2] for m in FAST]


def _with_condition(rng, n, k, cond):
  """``(n, k)`` float64 with singular values log-spaced from 1 to ``1/cond``."""
  u, _ = np.linalg.qr(rng.normal(size=(n, k)))
  v, _ = np.linalg.qr(rng.normal(size=(k, k)))
  return (u * np.logspace(0, -np.log10(cond), k)[None, :]) @ v


def _log_diag(r):
  return np.log(np.abs(np.diagonal(np.asarray(r, np.float64), axis1=-2, axis2=-1)))


def _check_factorization(q, r, z, atol=2e-6):
  q, r = np.asarray(q, np.float64), np.asarray(r, np.float64)
  k = q.shape[-1]
  assert np.all(np.isfinite(q)) and np.all(np.isfinite(r))
  eye = np.broadcast_to(np.eye(k), r.shape)
  np.testing.assert_allclose(np.swapaxes(q, -1, -2) @ q, eye, atol=atol)
  np.testing.assert_allclose(q @ r, z, atol=atol * np.abs(z).max())
  assert np.all(np.tril(r, -1) == 0)
  assert np.all(np.diagonal(r, axis1=-2, axis2=-1) >= 0)


def _float32(z):
  """The float32 input and its exact float64 value (the reference factorizes the same matrix)."""
  z32 = jnp.asarray(z, jnp.float32)
  return z32, np.asarray(z32, np.float64)


@jax.jit
def _unguarded(z):
  return {
    "householder_qr": orth.householder_qr(z),
    "cholesky_qr": orth.cholesky_qr(z),
    "cholesky_qr2": orth.cholesky_qr2(z, solve="inverse"),
    "shifted_cholesky_qr3": orth.shifted_cholesky_qr3(z),
  }


def test_every_method_factorizes_like_float64_householder():
  z32, z = _float32(np.random.default_rng(0).normal(size=SHAPE))
  ref = _log_diag(np.linalg.qr(z)[1])
  cases = dict(_unguarded(z32))
  for method, solve in GUARDED:
    cases[f"stable_qr({method}, {solve})"] = _qr(z32, method=method, solve=solve)
  cases["stable_qr(auto)"] = _qr(z32, method="auto")
  for name, (q, r) in cases.items():
    _check_factorization(q, r, z, atol=2e-5 if name == "cholesky_qr" else 2e-6)
    np.testing.assert_allclose(_log_diag(r), ref, atol=2e-5, err_msg=name)


def test_ill_conditioned_inputs_stay_accurate():
  rng = np.random.default_rng(1)
  conds = [1e3] * 4 + [1e6] * 4
  z32, z = _float32(np.stack([_with_condition(rng, *SHAPE[1:], c) for c in conds]))
  ref = _log_diag(np.linalg.qr(z)[1])
  householder_err = np.abs(_log_diag(orth.householder_qr(z32)[1]) - ref).max(axis=-1)
  flagged = dict(zip(FAST, _flags(z32), strict=True))
  # Beyond u^(-1/2) CholeskyQR2 loses orthogonality and the guard fires; shifted
  # CholeskyQR3 reaches ~u^(-1) and needs no fallback.
  np.testing.assert_array_equal(np.asarray(flagged["cholesky_qr2"])[4:], True)
  np.testing.assert_array_equal(np.asarray(flagged["shifted_cholesky_qr3"]), False)
  for method, solve in GUARDED:
    q, r = _qr(z32, method=method, solve=solve)
    _check_factorization(q, r, z)
    # As accurate as float32 Householder (both lose ~u·cond relative in the smallest R_ii).
    err = np.abs(_log_diag(r) - ref).max(axis=-1)
    assert np.all(err <= np.maximum(3 * householder_err, 1e-4)), (method, err, householder_err)


def test_rank_deficient_inputs_fall_back_to_householder():
  z = np.random.default_rng(2).normal(size=SHAPE).astype(np.float32)
  z[1, :, 3] = 0  # an exact zero column
  z[3, :, 5] = z[3, :, 2]  # a repeated column
  z[5] = 0  # all zero
  z32 = jnp.asarray(z)
  for method, bad in zip(FAST, _flags(z32), strict=True):
    assert bool(bad[1]) and bool(bad[5]), method
    assert not bool(jnp.any(bad[np.array([0, 2, 4, 6, 7])])), method
  hq, hr = orth.householder_qr(z32)
  for method, solve in GUARDED:
    q, r = _qr(z32, method=method, solve=solve)
    _check_factorization(q[:5], r[:5], np.asarray(z[:5], np.float64))
    # Exact zero columns cannot be filled by Cholesky passes: Householder's result.
    for member in (1, 5):
      np.testing.assert_array_equal(np.asarray(r)[member], np.asarray(hr)[member])
      np.testing.assert_array_equal(np.asarray(q)[member], np.asarray(hq)[member])


def test_batched_and_nested_vmap_agree():
  z = np.random.default_rng(3).normal(size=SHAPE).astype(np.float32)
  z[6, :, 4] = 0  # one flagged member among many
  z32 = jnp.asarray(z)
  method, solve = GUARDED[1]
  f = lambda a: orth.stable_qr(a, method, solve=solve)
  batched = _qr(z32, method=method, solve=solve)
  nested = jax.jit(jax.vmap(jax.vmap(f)))(z32.reshape(2, 4, *SHAPE[1:]))
  for a, b in zip(batched, nested, strict=True):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b).reshape(a.shape), atol=1e-6)

  # The guard inside a scan inside vmap is exercised by lyapunov_spectrum below.


def test_triangular_inverse_and_blocked_cholesky():
  k = 33  # not a power of two (padding) and more than one Cholesky block
  rng = np.random.default_rng(k)
  r = np.triu(rng.normal(size=(2, k, k)), 1) * 0.3 + np.diag(rng.uniform(1, 2, k))[None]
  inv = jax.jit(orth.triangular_inverse)(jnp.asarray(r, jnp.float32))
  np.testing.assert_allclose(np.asarray(inv), np.linalg.inv(r), atol=1e-5)
  assert np.all(np.tril(np.asarray(inv), -1) == 0)
  a = rng.normal(size=(2, k, k + 3))
  g = a @ np.swapaxes(a, -1, -2) + np.eye(k)[None]
  chol = jax.jit(orth.blocked_cholesky, static_argnums=1)(jnp.asarray(g, jnp.float32), 16)
  np.testing.assert_allclose(np.asarray(chol), np.linalg.cholesky(g), rtol=1e-4, atol=1e-4)


def test_float64_inputs_stay_float64():
  with jax.enable_x64(True):
    z = jnp.asarray(_with_condition(np.random.default_rng(4), 30, 10, 1e6))
    q, r = orth.stable_qr(z, "shifted_cholesky_qr3")
    assert q.dtype == r.dtype == jnp.float64
    _check_factorization(q, r, np.asarray(z), atol=1e-13)


def test_invalid_arguments_raise():
  z = jnp.ones((4, 3))
  with pytest.raises(ValueError, match="qr method"):
    orth.stable_qr(z, "gram_schmidt")
  with pytest.raises(ValueError, match="solve"):
    orth.stable_qr(z, solve="lu")
  with pytest.raises(ValueError, match="tol"):
    orth.stable_qr(z, tol=2.0)
  with pytest.raises(ValueError, match="n >= k"):
    orth.stable_qr(jnp.ones((3, 4)))
  net = vn.MLP([4] * 3, "tanh", vn.init.gaussian(1.0))
  with pytest.raises(ValueError, match="qr must be one of"):
    vn.lyapunov_spectrum(net, net.init(jax.random.key(0), members=1), jnp.ones(4), qr="bogus")


def _per_layer(a, b):
  depth = a.shape[-2]
  return float(
    np.max(
      np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))
      / np.arange(1, depth + 1)[:, None]
    )
  )


def test_tanh_depth_300_spectrum_matches_householder_and_float64():
  width, depth = 16, 300
  net = vn.MLP([width] * (depth + 1), "tanh", vn.init.gaussian(1.0))
  params = net.init(jax.random.key(5), members=2)
  x = jax.random.normal(jax.random.key(6), (width,))
  householder = vn.lyapunov_spectrum(net, params, x, refine=False)
  with jax.enable_x64(True):
    p64 = jax.tree.map(lambda a: a.astype(jnp.float64), params)
    ref = vn.lyapunov_spectrum(net, p64, x.astype(jnp.float64), refine=False)
  assert _per_layer(householder, ref) < 1e-3
  got = vn.lyapunov_spectrum(net, params, x, refine=False, qr="shifted_cholesky_qr3")
  assert _per_layer(got, householder) < 1e-3
  assert _per_layer(got, ref) < 1e-3
  # The GPU default, Q = Z R⁻¹ through the doubling inverse, on the same Jacobians.
  layers = reference.layer_params(params, 0)
  trace, _ = reference.forward(layers, "tanh", np.asarray(x))
  jacobians = jnp.asarray(
    np.stack([s[:, None] * w for (w, _), (_, _, s) in zip(layers, trace, strict=True)]), jnp.float32
  )

  def step(q, jac):
    q, r = orth.stable_qr(
      jnp.matmul(jac, q, precision="highest"), "shifted_cholesky_qr3", solve="inverse"
    )
    return q, jnp.log(jnp.diagonal(r))

  _, log_r = jax.lax.scan(step, jnp.eye(width), jacobians)
  inverse = jnp.flip(jnp.sort(jnp.cumsum(log_r, axis=0), axis=-1), axis=-1)
  assert _per_layer(inverse, ref[0]) < 1e-3


def test_relu_with_dead_units_stays_finite():
  width, depth = 12, 20
  net = vn.MLP([width] * (depth + 1), "relu", vn.init.gaussian(2.0))
  params = net.init(jax.random.key(7), members=3)
  x = jax.random.normal(jax.random.key(8), (width,))
  householder = np.asarray(vn.lyapunov_spectrum(net, params, x, refine=False, qr="householder"))
  # On a CPU "auto" (the default) is Householder, bit for bit.
  np.testing.assert_array_equal(
    np.asarray(vn.lyapunov_spectrum(net, params, x, refine=False)), householder
  )
  got = np.asarray(vn.lyapunov_spectrum(net, params, x, refine=False, qr="shifted_cholesky_qr3"))
  assert np.all(np.isfinite(got))
  np.testing.assert_allclose(got[..., 0], householder[..., 0], atol=1e-4)


def test_gradients_match_householder():
  z32 = jnp.asarray(np.random.default_rng(10).normal(size=SHAPE), jnp.float32)

  @jax.jit
  def grads(z):
    def loss(z, method):
      q, r = orth.stable_qr(z, method)
      return jnp.sum(q[..., :3] ** 3) + jnp.sum(jnp.log(jnp.diagonal(r, axis1=-2, axis2=-1)))

    return [jax.grad(loss)(z, m) for m in ("shifted_cholesky_qr3", "householder")]

  ours, householder = grads(z32)
  np.testing.assert_allclose(np.asarray(ours), np.asarray(householder), rtol=1e-4, atol=1e-5)
