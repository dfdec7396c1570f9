"""The memory task: its data, and RNN/LSTM training on it checked against plain-JAX autodiff.

One tiny LSTM ensemble is trained (one compilation); its logged losses and through-time
gradients ``log ‖∂C/∂h_t‖`` are recomputed by a separately written LSTM loop and
``jax.grad`` with respect to additive perturbations of every ``h_t``.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vanish import recurrent

KEY = jax.random.key(3)
N, M, LAG, STEPS, BATCH, TEST_BATCHES = 8, 2, 5, 80, 16, 3


def test_memory_task_data_is_the_sign_then_noise():
  sample = jax.jit(functools.partial(recurrent.memory_task, batch=1000, length=7, noise=2.0))
  xs, labels = sample(jax.random.key(0))  # jitted: one compilation instead of one per op
  xs, labels = np.asarray(xs), np.asarray(labels)
  assert xs.shape == (1000, 7, 2) and labels.dtype == np.int32
  np.testing.assert_array_equal(xs[:, 0, 0], 2.0 * labels - 1)  # the sign, exactly ±1
  np.testing.assert_array_equal(xs[:, :, 1], np.tile([1, 0, 0, 0, 0, 0, 0], (1000, 1)))
  noise = xs[:, 1:, 0].ravel()  # 6000 draws of N(0, 4): mean and std within 4 standard errors
  assert abs(noise.mean()) < 4 * 2 / np.sqrt(noise.size)
  assert abs(noise.std() - 2.0) < 4 * 2 / np.sqrt(2 * noise.size)
  assert abs(labels.mean() - 0.5) < 4 * 0.5 / np.sqrt(1000)


def _plain_lstm_cost(w, u, b, v, c, xs, labels, kicks):
  """C = mean cross-entropy of v h_T + c; h_t gets kicks[:, t] added; written from the equations."""
  n = w.shape[1]
  h = jnp.zeros((xs.shape[0], n))
  cell = jnp.zeros((xs.shape[0], n))
  for t in range(LAG):
    z = h @ w.T + xs[:, t] @ u.T + b[None, :]
    i, f, g, o = (z[:, k * n : (k + 1) * n] for k in range(4))
    cell = jax.nn.sigmoid(f) * cell + jax.nn.sigmoid(i) * jnp.tanh(g)
    h = jax.nn.sigmoid(o) * jnp.tanh(cell) + kicks[:, t]
  logits = h @ v.T + c[None, :]
  return -jnp.mean(jax.nn.log_softmax(logits)[jnp.arange(labels.shape[0]), labels])


@pytest.fixture(scope="module")
def trained():
  lstm = [recurrent.LSTM(2, N, forget_bias=3.0, key=jax.random.key(m)) for m in range(M)]
  params = jax.tree.map(lambda *a: jnp.stack(a), *map(recurrent.to_params, lstm))
  readout = recurrent.init_readout(jax.random.key(9), hidden=N, members=M)
  result = recurrent.train_memory_task(
    params, readout, [LAG], key=KEY, steps=STEPS, batch=BATCH, test_batches=TEST_BATCHES
  )
  return params, readout, result


def test_lstm_learns_the_sign_and_loss_falls(trained):
  _, _, res = trained
  assert res.loss.shape == (1, M, STEPS) and res.log_grad.shape == (1, M, 2, LAG)
  assert (res.test_accuracy[0, :, 1] > 0.9).all()  # chance is 0.5
  assert (res.loss[0, :, -10:].mean(axis=1) < 0.5 * res.loss[0, :, :10].mean(axis=1)).all()
  assert (res.test_loss[0, :, 1] < res.test_loss[0, :, 0]).all()


def test_logged_costs_and_through_time_gradients_equal_plain_autodiff(trained):
  params, readout, res = trained
  # data index i is memory_task(fold_in(key, i)): training steps 0..S-1, test batches S, S+1, ...
  batches = [
    recurrent.memory_task(jax.random.fold_in(KEY, i), batch=BATCH, length=LAG)
    for i in (0, *range(STEPS, STEPS + TEST_BATCHES))
  ]
  cost_and_grad = jax.jit(jax.value_and_grad(_plain_lstm_cost, argnums=7))  # one shape
  kicks = jnp.zeros((BATCH, LAG, N))
  for m in range(M):
    member = (params.w[m], params.u[m], params.b[m], readout.v[m], readout.c[m])
    costs, grads = zip(*(cost_and_grad(*member, xs, y, kicks) for xs, y in batches), strict=True)
    # the first training step's cost and ‖∂C/∂h_1‖ on its own fresh batch
    np.testing.assert_allclose(res.loss[0, m, 0], costs[0], rtol=1e-5)
    want_first = np.log(np.linalg.norm(np.asarray(grads[0][:, 0], np.float64)))
    np.testing.assert_allclose(res.log_grad_first[0, m, 0], want_first, rtol=0, atol=1e-4)
    # the test set's mean cost, and its ∂C/∂h_t: each batch's gradient over the batch count
    np.testing.assert_allclose(res.test_loss[0, m, 0], np.mean(costs[1:]), rtol=1e-5)
    grad = np.concatenate([np.asarray(g, np.float64) for g in grads[1:]]) / TEST_BATCHES
    want = np.log(np.linalg.norm(grad, axis=(0, 2)))
    np.testing.assert_allclose(res.log_grad[0, m, 0], want, rtol=0, atol=1e-4)
  # the gradient through time shrinks from h_T back to h_1 at initialization
  assert (res.log_grad[0, :, 0, 0] < res.log_grad[0, :, 0, -1]).all()


def test_bad_arguments_raise_naming_the_parameter(trained):
  params, readout, _ = trained
  kw = dict(key=KEY, steps=1)
  with pytest.raises(ValueError, match="lags"):
    recurrent.train_memory_task(params, readout, [0, 3], **kw)
  with pytest.raises(ValueError, match="lags"):
    recurrent.train_memory_task(params, readout, [6], length=5, **kw)
  with pytest.raises(ValueError, match="steps"):
    recurrent.train_memory_task(params, readout, [3], key=KEY, steps=0)
  with pytest.raises(ValueError, match="readout"):
    recurrent.train_memory_task(params, readout._replace(v=readout.v[:1]), [3], **kw)
  with pytest.raises(ValueError, match="learning_rate"):
    recurrent.train_memory_task(params, readout, [3], learning_rate=-1.0, **kw)
  with pytest.raises(ValueError, match="member axis"):
    recurrent.train_memory_task(jax.tree.map(lambda a: a[0], params), readout, [3], **kw)
