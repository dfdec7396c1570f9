"""Jacobian chains against an independent float64 numpy reference (tests/reference.py)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import vanish as vn
from tests import reference

CASES = {
  "tanh-varying-widths": (
    lambda: vn.MLP([5, 7, 7, 7, 4, 3], "tanh", vn.init.gaussian(1.5), vn.init.normal(0.3)),
    {},
  ),
  "sigmoid-nielsen": (
    lambda: vn.MLP([6, 6, 6, 6], "sigmoid", vn.init.normal(1.0), vn.init.normal(1.0)),
    {},
  ),
  "relu-linear-readout": (
    lambda: vn.MLP([4, 8, 8, 2], "relu", vn.init.he(), vn.init.normal(0.1), readout="linear"),
    {"readout": "linear"},
  ),
  "erf-orthogonal": (
    lambda: vn.MLP([6] * 9, "erf", vn.init.orthogonal(1.2), vn.init.normal(0.2)),
    {},
  ),
  "residual-tanh": (
    lambda: vn.ResidualMLP(6, 12, "tanh", vn.init.gaussian(1.0), vn.init.normal(0.2), alpha=0.5),
    {"residual_alpha": 0.5},
  ),
}


def _setup(case):
  make, options = CASES[case]
  net = make()
  params = net.init(jax.random.key(11), members=3)
  x = np.asarray(jax.random.normal(jax.random.key(5), (2, net.widths[0])))
  return net, params, x, options


def _reference(net, params, x, member, options, cotangent=None):
  layers = reference.layer_params(params, member)
  name = net.activation.name
  trace, out = reference.forward(layers, name, x, **options)
  cot = np.ones_like(out) if cotangent is None else cotangent
  alpha = options.get("residual_alpha")
  bias, weight = reference.backprop(layers, trace, cot, name, residual_alpha=alpha)
  return trace, out, bias, weight, reference.jacobian(layers, trace, residual_alpha=alpha)


@pytest.mark.parametrize("case", sorted(CASES))
def test_chains_match_float64_reference(case):
  net, params, x, options = _setup(case)
  pre = vn.preactivations(net, params, x)
  log_bias = vn.log_gradient_norms(net, params, x)
  log_weight = vn.log_gradient_norms(net, params, x, wrt="weight")
  jac = vn.jacobian(net, params, x)
  out = vn.outputs(net, params, x)
  for member in range(3):
    for b in range(2):
      trace, ref_out, bias, weight, ref_jac = _reference(net, params, x[b], member, options)
      for l, (_, z, _) in enumerate(trace):
        got = pre[member, b, l] if isinstance(pre, jax.Array) else pre[l][member, b]
        np.testing.assert_allclose(got, z, rtol=2e-5, atol=2e-5)
      np.testing.assert_allclose(out[member, b], ref_out, rtol=2e-5, atol=2e-5)
      np.testing.assert_allclose(log_bias[member, b], np.log(bias), atol=2e-5)
      np.testing.assert_allclose(log_weight[member, b], np.log(weight), atol=2e-5)
      np.testing.assert_allclose(jac[member, b], ref_jac, rtol=1e-4, atol=2e-5)


def test_cotangent_array_and_loss_callable():
  net, params, x, options = _setup("tanh-varying-widths")
  cot = np.asarray(jax.random.normal(jax.random.key(3), (2, 3)))
  from_array = vn.log_gradient_norms(net, params, x, cot)
  target = jnp.asarray([0.1, -0.2, 0.3])
  from_loss = vn.log_gradient_norms(net, params, x[0], lambda a: 0.5 * jnp.sum((a - target) ** 2))
  for member in range(3):
    *_, bias, _, _ = _reference(net, params, x[1], member, options, cotangent=cot[1])
    np.testing.assert_allclose(from_array[member, 1], np.log(bias), atol=2e-5)
    _, out, *_ = _reference(net, params, x[0], member, options)
    *_, bias, _, _ = _reference(net, params, x[0], member, options, cotangent=out - target)
    np.testing.assert_allclose(from_loss[member], np.log(bias), atol=2e-5)


def test_scalar_chain_is_the_product_of_factors():
  depth = 40
  net = vn.MLP([1] * (depth + 1), "sigmoid", vn.init.normal(1.0), vn.init.normal(1.0))
  params = net.init(jax.random.key(0), members=50)
  log_g, sign = vn.scalar_chain(net, params, jnp.asarray([0.5]))
  for member in range(50):
    layers = reference.layer_params(params, member)
    trace, _ = reference.forward(layers, "sigmoid", [0.5])
    factors = [trace[0][2][0]] + [
      w[0, 0] * t[2][0] for (w, _), t in zip(layers[1:], trace[1:], strict=True)
    ]
    np.testing.assert_allclose(log_g[member], np.cumsum(np.log(np.abs(factors))), atol=1e-4)
    np.testing.assert_array_equal(sign[member], np.cumprod(np.sign(factors)))
  # Nielsen's bound |w σ'(z)| typically < 1/4: the median chain has vanished.
  assert float(jnp.median(log_g[:, -1])) < depth * np.log(0.25) / 2


def test_scalar_chain_exact_zero_gives_minus_inf_and_zero_sign():
  net = vn.MLP([1, 1, 1, 1], "relu", vn.init.constant(1.0), vn.init.constant(0.0))
  log_g, sign = vn.scalar_chain(net, net.init(jax.random.key(0)), jnp.asarray([-1.0]))
  assert bool(jnp.all(jnp.isneginf(log_g))) and bool(jnp.all(sign == 0))
  assert not bool(jnp.any(jnp.isnan(log_g)))


def test_depth_10000_gradients_are_finite_in_float32():
  net = vn.MLP([16] * 10_001, "tanh", vn.init.gaussian(0.8), vn.init.normal(0.1))
  params = net.init(jax.random.key(0), members=2)
  log_g = vn.log_gradient_norms(net, params, jnp.ones(16))
  assert bool(jnp.all(jnp.isfinite(log_g)))
  # ordered phase: ‖δ^1‖ is astronomically small yet represented exactly in log space
  assert float(log_g[:, 0].max()) < -500


def test_jit_matches_no_jit():
  net, params, x, _ = _setup("residual-tanh")
  jitted = vn.log_gradient_norms(net, params, x)
  with jax.disable_jit():
    eager = vn.log_gradient_norms(net, params, x)
  np.testing.assert_allclose(jitted, eager, rtol=1e-5, atol=1e-5)


def test_one_compilation_per_shape():
  from vanish import chains

  net = vn.MLP([5, 9, 9, 9], "tanh")
  chains._log_gradient_norms.clear_cache()
  for seed in range(3):
    params = net.init(jax.random.key(seed), members=4)
    vn.log_gradient_norms(net, params, np.full((3, 5), float(seed)))
  assert chains._log_gradient_norms._cache_size() == 1
  vn.log_gradient_norms(net, net.init(jax.random.key(0), members=5), np.ones((3, 5)))
  assert chains._log_gradient_norms._cache_size() == 2


def test_noisy_relu_needs_a_key_and_is_reproducible():
  net = vn.MLP([4, 6, 6], vn.activations.noisy_relu(0.5), vn.init.he())
  params = net.init(jax.random.key(0), members=3)
  with pytest.raises(ValueError, match="stochastic"):
    vn.log_gradient_norms(net, params, jnp.ones(4))
  a = vn.preactivations(net, params, jnp.ones((2, 4)), key=jax.random.key(1))
  b = vn.preactivations(net, params, jnp.ones((2, 4)), key=jax.random.key(1))
  c = vn.preactivations(net, params, jnp.ones((2, 4)), key=jax.random.key(2))
  np.testing.assert_array_equal(a, b)
  assert not np.array_equal(np.asarray(a[:, :, 1]), np.asarray(c[:, :, 1]))


@pytest.mark.parametrize(
  "kwargs, error, match",
  [
    ({"x": np.ones(4)}, ValueError, r"x must have shape \(n_0,\)"),
    ({"x": np.full(5, np.nan)}, ValueError, "inf or NaN"),
    ({"precision": "fast"}, ValueError, "precision must be one of"),
    ({"key": 3}, TypeError, "typed PRNG key"),
    ({"params": "w"}, ValueError, "params must be the output of net.init"),
    ({"net": "mlp"}, TypeError, "net must be a vanish network"),
    ({"x": np.ones(5, np.complex64)}, TypeError, "x must be real"),
    ({"cotangent": np.array([1, np.nan, 1])}, ValueError, "cotangent contains inf or NaN"),
    ({"params": "int weights"}, TypeError, "weights of dtype int32"),
    ({"params": "short biases"}, ValueError, r"biases have shape \(2, 1, 8\), expected"),
  ],
)
def test_bad_input_is_rejected_before_compiling(kwargs, error, match):
  net = vn.MLP([5, 9, 9, 9], "tanh")
  params = net.init(jax.random.key(0), 2)
  if kwargs.get("params") == "int weights":
    kwargs["params"] = (dict(params[0], w=params[0]["w"].astype(jnp.int32)), *params[1:])
  elif kwargs.get("params") == "short biases":
    kwargs["params"] = (dict(params[0], b=params[0]["b"][..., :8]), *params[1:])
  call = {"net": net, "params": params, "x": np.ones(5)} | kwargs
  with pytest.raises(error, match=match):
    vn.log_gradient_norms(**call)


def test_network_spec_validation():
  with pytest.raises(ValueError, match=r"widths\[1\] must be an integer >= 1"):
    vn.MLP([3, 0, 2])
  with pytest.raises(ValueError, match="widths needs at least 2"):
    vn.MLP([3])
  with pytest.raises(ValueError, match="readout"):
    vn.MLP([3, 3], readout="softmax")
  with pytest.raises(ValueError, match="members must be an integer >= 1"):
    vn.MLP([3, 3]).init(jax.random.key(0), members=0)
  with pytest.raises(TypeError, match="typed PRNG key"):
    vn.MLP([3, 3]).init(jax.random.PRNGKey(0))
  with pytest.raises(ValueError, match="alpha"):
    vn.ResidualMLP(4, 3, alpha=-1.0)
  with pytest.raises(ValueError, match="alpha must be a finite number > 0, got 'a'"):
    vn.ResidualMLP(4, 3, alpha="a")
  with pytest.raises(ValueError, match="depth must be an integer >= 1, got nan"):
    vn.ResidualMLP(4, float("nan"))
  with pytest.raises(ValueError, match="members must be an integer >= 1, got nan"):
    vn.MLP([3, 3]).init(jax.random.key(0), members=float("nan"))
  with pytest.raises(ValueError, match=r"first \+ members must be <= 2\*\*32"):
    vn.MLP([3, 3]).init(jax.random.key(0), members=2, first=2**32 - 1)
  with pytest.raises(ValueError, match="sigma_w2 must be a finite number >= 0, got '1'"):
    vn.init.gaussian("1")
  with pytest.raises(ValueError, match="steps must be an integer >= 1, got nan"):
    vn.activations.stepped_sigmoid(float("nan"))


def test_scalar_chain_with_large_weights_stays_finite_and_exact():
  """The seed's w ~ N(0, 100²): |z| of hundreds, where σ'(z) underflows to 0 in float32.

  The chain is exact in log space all the same (float64 closed form per factor). The
  network is the one of the test above (one compilation), its weights scaled by 100.
  """
  depth = 40
  net = vn.MLP([1] * (depth + 1), "sigmoid", vn.init.normal(1.0), vn.init.normal(1.0))
  params = [dict(p, w=100 * p["w"]) for p in net.init(jax.random.key(1), members=50)]
  log_g, sign = vn.scalar_chain(net, params, jnp.asarray([0.5]))
  assert bool(jnp.all(jnp.isfinite(log_g))) and bool(jnp.all(sign != 0))
  z = np.asarray(vn.preactivations(net, params, jnp.asarray([0.5])), np.float64)[..., 0]
  w = np.asarray(jnp.concatenate([p["w"][:, :, 0, 0] for p in params], axis=1), np.float64)
  log_slope = -np.logaddexp(0, z) - np.logaddexp(0, -z)  # log σ'(z), float64
  log_w = np.concatenate([np.zeros((50, 1)), np.log(np.abs(w[:, 1:]))], axis=1)
  # σ'(z) = 0 in float32 for |z| > 104: most chains have such a factor (the old -inf)
  assert (np.abs(z) > 104).any(axis=1).mean() > 0.9
  np.testing.assert_allclose(log_g, np.cumsum(log_slope + log_w, axis=1), rtol=1e-5)


def test_saturated_sigmoid_layers_keep_exact_log_gradients():
  """Every unit of a layer saturated (σ'(z) = 0 in float32): the chain stays exact.

  Float64 reference with the slopes in log space, renormalized every layer; the
  network is width 4 with w ~ N(0, 100²), where |z| of hundreds is the rule.
  """
  net = vn.MLP([4] * 13, "sigmoid", vn.init.normal(1.0), vn.init.normal(1.0))
  params = [dict(p, w=100 * p["w"]) for p in net.init(jax.random.key(3), members=6)]
  x = jnp.asarray([0.3, -0.2, 0.5, 0.1])
  log_g = np.asarray(vn.log_gradient_norms(net, params, x), np.float64)
  z = np.asarray(vn.preactivations(net, params, x), np.float64)  # [M, L, 4]
  w = np.asarray(params[0]["w"], np.float64)  # [M, L, 4, 4]
  assert np.all(np.abs(z) > 104, axis=-1).any()  # some layer has every σ' = 0 in float32
  log_slope = -np.logaddexp(0, z) - np.logaddexp(0, -z)
  for m in range(6):
    log_scale, g, want = 0.0, np.ones(4), []
    for layer in reversed(range(12)):
      top = log_slope[m, layer].max()
      delta = np.exp(log_slope[m, layer] - top) * g  # δ^l / e^{top + log_scale}
      want.append(log_scale + top + np.log(np.linalg.norm(delta)))
      g = w[m, layer].T @ delta
      log_scale += top + np.log(np.linalg.norm(g))
      g /= np.linalg.norm(g)
    np.testing.assert_allclose(log_g[m], want[::-1], rtol=1e-4)
