"""Monte Carlo of the one-neuron chain with parameters sampled inside the kernel.

The chain of :func:`vanish.scalar_chain` (Nielsen, ch. 5): ``z_j = w_j a_{j−1} + b_j``,
``a_j = φ(z_j)``, ``a_0 = x`` and

    log |g_K| = log |φ'(z_1)| + Σ_{j=2..K} log |w_j φ'(z_j)|,    sign g_K = Π_{j=2..K} sign w_j,

for ``w_j ~ N(0, σ_w²)``, ``b_j ~ N(0, σ_b²)`` (the one-neuron network's initializers). Chain
``m``'s parameters at layers ``2i`` and ``2i + 1`` are the four normals of one Philox4x32 call
with counter ``(m, i, 0, 0)`` and the 64-bit key of ``key`` (:mod:`vanish.kernels.philox`):
``w_{2i}, b_{2i}, w_{2i+1}, b_{2i+1} = σ·(n0, n1, n2, n3)`` (layers counted from 0). They depend
only on ``(key, m, layer)``, so every path and every block size draws the same numbers.

The Pallas kernel runs one chain per lane, the loop over depth in registers, and writes only
what is asked (``output=``):

* ``"final"``: ``log|g_L|`` and ``sign g_L``, ``[M]`` each (4 + 1 bytes per chain);
* ``"all"``: ``log|g_l|`` (float32) and ``sign g_l`` (int8), depth-major ``[L, M]``
  (5 bytes per factor; the transpose of :func:`vanish.scalar_chain`'s ``[M, L]``);
* ``"moments"``: per depth the mean and variance of ``log|g_l|`` over the M chains, ``[L]``
  each: every block of chains writes its mean and sum of squared deviations at each depth,
  combined by Chan, Golub & LeVeque's (1979) pairwise update (a few bytes per block).

The reference path (the specification) draws the same parameters with the same generator in
``jnp`` (:func:`sample_parameters`, in ``net.init``'s layout) and runs :func:`vanish.scalar_chain`
on them.

Example:
  >>> import jax, vanish as vn
  >>> from vanish.kernels import scalar_chain as ksc
  >>> net = vn.MLP(widths=[1] * 6, activation="sigmoid", weights=vn.init.normal(1.0),
  ...              biases=vn.init.normal(1.0))
  >>> out = ksc.monte_carlo(net, jax.random.key(0), 64, 1.0, output="moments")
  >>> out.path   # on a CPU: the jnp reference
  'reference'
  >>> bool(out.mean[-1] < out.mean[0] < 0)   # |σ'| ≤ 1/4: log|g| falls with depth
  True
"""

from __future__ import annotations

import functools
import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import pallas as pl

from vanish.chains import check_one_neuron, scalar_chain
from vanish.kernels import _dispatch, philox
from vanish.kernels import fast_math as approx
from vanish.networks import MLP, _check_key

__all__ = ["MonteCarlo", "monte_carlo", "sample_parameters", "standard_deviations"]

OUTPUTS = ("final", "all", "moments")
# The launch: chains per program and Triton warps, one chain per thread. The fastest accurate
# launch of the H100 sweep (benchmarks/results/kernels_h100.json, section "scalar",
# output="final", sigmoid, depth 50): 9.30 ms at 2²⁴ chains (block 512 × 4 warps, the launch
# before, 12.4 ms; 1024 × 8: 10.8) and 1.42 ms at 2²⁰ (512 × 4: 1.68). fast_math=True was
# timed only at 512 × 4 (3.98 ms at 2²⁴); it takes this launch too, not yet timed there.
DEFAULT_BLOCK = 256
DEFAULT_NUM_WARPS = 8


class MonteCarlo(NamedTuple):
  """What :func:`monte_carlo` returns; fields not asked for by ``output`` are None.

  Attributes:
    log_abs_g: ``[M]`` (``output="final"``) or depth-major ``[L, M]`` (``"all"``).
    sign: ``sign g``, same shape, float32 (``"final"``) or int8 (``"all"``).
    mean: ``[L]`` mean of ``log|g_l|`` over chains (``"moments"``).
    var: ``[L]`` population variance of ``log|g_l|`` over chains (``"moments"``).
    path: which implementation ran: ``"pallas_triton"``, ``"pallas_interpret"`` or
      ``"reference"`` (record it with the results).
    fast_math: whether the approximate arithmetic ran (``fast_math=True`` on a kernel path;
      the reference path computes accurately whatever was asked).
  """

  log_abs_g: jax.Array | None
  sign: jax.Array | None
  mean: jax.Array | None
  var: jax.Array | None
  path: str
  fast_math: bool = False


def standard_deviations(net: MLP) -> tuple[float, float]:
  """``(σ_w, σ_b)`` of a one-neuron network's Gaussian initializers (fan-in 1).

  Raises:
    ValueError: if ``net`` is not a one-neuron :class:`~vanish.MLP` with a φ at every layer,
      a deterministic activation, ``weights`` ``normal``/``gaussian`` and ``biases``
      ``normal``/``gaussian``/``zeros``.
  """
  if not isinstance(net, MLP):
    raise ValueError(f"net must be a vn.MLP with every width 1, got {type(net).__name__}")
  check_one_neuron(net)
  if net.readout != "activation":
    raise ValueError(f"net.readout must be 'activation' for the kernel, got {net.readout!r}")
  if net.activation.stochastic:
    raise ValueError(f"net.activation must be deterministic, got {net.activation!r}")

  def std(initializer: Any, name: str) -> float:
    kind = getattr(initializer, "name", None)
    if kind == "normal":
      return float(initializer.param("std"))
    if kind == "gaussian":  # σ²/fan_in with fan_in = 1
      return math.sqrt(float(initializer.param("sigma_w2")))
    if kind == "constant" and name == "biases" and float(initializer.param("value")) == 0.0:
      return 0.0
    allowed = "normal(std) or gaussian(sigma_w2)" + (" or zeros()" if name == "biases" else "")
    raise ValueError(f"net.{name} must be {allowed} for the kernel, got {initializer!r}")

  return std(net.weights, "weights"), std(net.biases, "biases")


def _key_words(key: jax.Array) -> jax.Array:
  """The key's data as two uint32 words (the Philox key)."""
  _check_key(key)
  data = jax.random.key_data(key).reshape(-1)
  if data.shape != (2,) or data.dtype != jnp.uint32:
    raise ValueError(
      f"key must have 2 uint32 words of key data (threefry), got {data.shape} {data.dtype}"
    )
  return data


@functools.partial(jax.jit, static_argnames=("depth", "rounds", "mulhi"))
def _layer_normals(chain: jax.Array, depth: int, key_words: jax.Array, rounds: int, mulhi):
  """``(n_w, n_b)``, each ``[..., depth]``: the standard normals of every chain's layers."""
  pairs = (depth + 1) // 2
  pair = jnp.arange(pairs, dtype=jnp.uint32)
  c0 = jnp.broadcast_to(chain[..., None], chain.shape + (pairs,))
  c1 = jnp.broadcast_to(pair, c0.shape)
  zero = jnp.zeros_like(c0)
  n0, n1, n2, n3 = philox.normals4(
    (c0, c1, zero, zero), (key_words[0], key_words[1]), rounds=rounds, mulhi=mulhi, unroll=False
  )
  interleave = lambda a, b: jnp.stack([a, b], axis=-1).reshape(chain.shape + (2 * pairs,))
  return interleave(n0, n2)[..., :depth], interleave(n1, n3)[..., :depth]


def sample_parameters(
  net: MLP, key: jax.Array, chains: int, *, first: int = 0, rounds: int = philox.DEFAULT_ROUNDS
) -> tuple[dict[str, jax.Array]]:
  """The parameters the kernel draws, in ``net.init``'s layout (for :func:`vanish.scalar_chain`).

  Args:
    net: a one-neuron :class:`~vanish.MLP` (see :func:`standard_deviations`).
    key: a typed threefry key from ``jax.random.key``.
    chains: number of chains M ≥ 1.
    first: index of the first chain (a slice of a larger Monte Carlo); ``first + chains``
      ≤ 2³².
    rounds: Philox rounds (the kernel's ``rounds``).

  Returns:
    ``({"w": [M, L, 1, 1], "b": [M, L, 1]},)``, float32.

  Example:
    >>> import jax, vanish as vn
    >>> from vanish.kernels import scalar_chain as ksc
    >>> net = vn.MLP(widths=[1] * 6, activation="tanh", weights=vn.init.normal(2.0))
    >>> (p,) = ksc.sample_parameters(net, jax.random.key(0), 3)
    >>> p["w"].shape, float(abs(p["b"]).max())   # zero biases
    ((3, 5, 1, 1), 0.0)
  """
  sigma_w, sigma_b = standard_deviations(net)
  key_words = _key_words(key)
  rounds = philox.check_rounds(rounds)
  _check_count("chains", chains)
  _check_count("first", first, minimum=0)
  if first + chains > 2**32:  # the uint32 counter would wrap and repeat chains 0, 1, ...
    raise ValueError(
      f"first + chains must be <= 2**32 (the Philox counter word), got {first} + {chains}"
    )
  chain = jnp.arange(first, first + chains, dtype=jnp.uint32)
  n_w, n_b = _layer_normals(
    chain, depth=net.depth, key_words=key_words, rounds=rounds, mulhi=philox.mulhi_emulated
  )
  return ({"w": (sigma_w * n_w)[:, :, None, None], "b": (sigma_b * n_b)[:, :, None]},)


def _check_count(name: str, value: Any, minimum: int = 1) -> None:
  if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
    raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
  if value >= 2**32:
    raise ValueError(f"{name} must be < 2**32 (the Philox counter word), got {value}")


# --------------------------------------------------------------------------- kernel


def _fast_factor(form, math_ops, sigma_w):
  """``(w, z) ↦ (φ(z), log|φ'(z)|, log|w|, sign w)`` in approximate arithmetic.

  ``|w|`` is floored at ``σ_w·2⁻⁶⁰`` (a standard normal below 2⁻⁶⁰ has probability ~10⁻¹⁸):
  an approximate cosine can return exactly 0 near ±π/2 where the accurate one does not
  (~10⁻⁷ a draw, far below any statistic's error), and ``log 0 = −inf`` would end the chain;
  the sign of such a weight is +1. With ``σ_w = 0`` every weight is an exact 0, as on the
  reference path: ``log|w| = −inf`` and ``sign w = 0``.
  """
  floor = sigma_w * 2.0**-60

  def factor(w, z):
    value, _, log_slope = form(z, math_ops)
    if sigma_w == 0:
      return value, log_slope, approx.log(jnp.abs(w), math_ops), jnp.sign(w)
    log_w = approx.log(jnp.maximum(jnp.abs(w), floor), math_ops)
    return value, log_slope, log_w, jnp.where(w < 0, -1.0, 1.0)

  return factor


def _kernel_body(
  x_ref,
  key_ref,
  *out_refs,
  chains,
  depth,
  block,
  sigma_w,
  sigma_b,
  act,
  output,
  rounds,
  mulhi,
  unroll,
  math_ops,
):
  """One program: ``block`` chains, the loop over depth in registers. ``math_ops``: None for
  the accurate path, else the :class:`~vanish.kernels.fast_math.Math` of the fast one."""
  program = pl.program_id(0)
  chain = program * block + jax.lax.broadcasted_iota(jnp.int32, (block,), 0)
  valid = chain < chains
  count = jnp.minimum(chains - program * block, block).astype(jnp.float32)
  counter0 = chain.astype(jnp.uint32)
  zero = jnp.zeros((block,), jnp.uint32)
  k0 = jnp.full((block,), key_ref[0], jnp.uint32)
  k1 = jnp.full((block,), key_ref[1], jnp.uint32)

  form = None if math_ops is None else approx.activation_form(act)
  fast = None if form is None else _fast_factor(form, math_ops, sigma_w)
  normals = (
    philox.box_muller if math_ops is None else lambda u1, u2: approx.box_muller(u1, u2, math_ops)
  )

  def layer(index, carry, w, b, exists=None):
    a, log_g, sign = carry
    z = w * a + b
    first = index == 0
    if fast is None:
      a, slope = act.value_and_derivative(z)
      # log |φ'(z)| in closed form (no underflow when the unit saturates), as vn.scalar_chain
      log_slope = act.log_abs_derivative(z, slope)
      log_w, sign_w = jnp.log(jnp.abs(w)), jnp.sign(w)
      slope_sign = jnp.where(jnp.isfinite(log_slope), jnp.where(slope < 0, -1.0, 1.0), 0.0)
    else:  # the fast forms are of increasing φ: φ' > 0, log φ' finite
      a, log_slope, log_w, sign_w = fast(w, z)
      slope_sign = 1.0
    log_g = log_g + log_slope + jnp.where(first, 0.0, log_w)
    sign = sign * slope_sign * jnp.where(first, 1.0, sign_w)
    if exists is not None:  # a padded layer keeps (and rewrites) the previous layer's values
      a, log_g, sign = (
        jnp.where(exists, n, c) for n, c in zip((a, log_g, sign), carry, strict=True)
      )
    if output == "all":
      out_refs[0][pl.ds(index, 1), :] = log_g[None, :]
      out_refs[1][pl.ds(index, 1), :] = sign.astype(jnp.int8)[None, :]
    elif output == "moments":
      mean = jnp.sum(jnp.where(valid, log_g, 0.0)) / count
      dev = jnp.where(valid, log_g - mean, 0.0)
      out_refs[0][0, pl.ds(index, 1)] = jnp.full((1,), mean, jnp.float32)
      out_refs[1][0, pl.ds(index, 1)] = jnp.full((1,), jnp.sum(dev * dev), jnp.float32)
    return a, log_g, sign

  odd = depth % 2 == 1

  def pair(i, carry):
    counter1 = jnp.full((block,), i, jnp.int32).astype(jnp.uint32)
    n0, n1, n2, n3 = philox.normals4(
      (counter0, counter1, zero, zero),
      (k0, k1),
      rounds=rounds,
      mulhi=mulhi,
      unroll=unroll,
      normals=normals,
    )
    carry = layer(2 * i, carry, sigma_w * n0, sigma_b * n1)
    if not odd:
      return layer(2 * i + 1, carry, sigma_w * n2, sigma_b * n3)
    # Odd depth: the last pair's second layer does not exist; it keeps the carry and rewrites
    # row depth − 1 with the same values (one loop body instead of a second, unrolled copy).
    second = 2 * i + 1
    return layer(jnp.minimum(second, depth - 1), carry, sigma_w * n2, sigma_b * n3, second < depth)

  a0 = jnp.full((block,), x_ref[0], jnp.float32)
  carry = (a0, jnp.zeros((block,), jnp.float32), jnp.ones((block,), jnp.float32))
  carry = jax.lax.fori_loop(0, (depth + 1) // 2, pair, carry)
  if output == "final":
    _, log_g, sign = carry
    out_refs[0][...] = log_g
    out_refs[1][...] = sign


@functools.partial(
  jax.jit,
  static_argnames=(
    "chains",
    "depth",
    "sigma_w",
    "sigma_b",
    "act",
    "output",
    "block",
    "num_warps",
    "rounds",
    "interpret",
    "fast",
  ),
)
def _pallas(
  x,
  key_words,
  *,
  chains,
  depth,
  sigma_w,
  sigma_b,
  act,
  output,
  block,
  num_warps,
  rounds,
  interpret,
  fast=False,
):
  from jax.experimental.pallas import triton as pltr

  programs = -(-chains // block)
  padded = programs * block
  if output == "final":
    out_shape = [jax.ShapeDtypeStruct((padded,), jnp.float32)] * 2
    out_specs = [pl.BlockSpec((block,), lambda i: (i,))] * 2
  elif output == "all":
    out_shape = [
      jax.ShapeDtypeStruct((depth, padded), jnp.float32),
      jax.ShapeDtypeStruct((depth, padded), jnp.int8),
    ]
    out_specs = [pl.BlockSpec((depth, block), lambda i: (0, i))] * 2
  else:
    out_shape = [jax.ShapeDtypeStruct((programs, depth), jnp.float32)] * 2
    out_specs = [pl.BlockSpec((1, depth), lambda i: (i, 0))] * 2
  kernel = functools.partial(
    _kernel_body,
    chains=chains,
    depth=depth,
    block=block,
    sigma_w=sigma_w,
    sigma_b=sigma_b,
    act=act,
    output=output,
    rounds=rounds,
    mulhi=philox.mulhi_emulated if interpret else philox.mulhi_ptx,
    unroll=not interpret,  # the same integers; the interpreter compiles a rolled loop faster
    # fast: PTX's approximations compiled; the same formulas in jnp in the interpreter
    math_ops=None if not fast else (approx.ACCURATE if interpret else approx.PTX),
  )
  outs = pl.pallas_call(
    kernel,
    grid=(programs,),
    in_specs=[pl.BlockSpec((1,), lambda i: (0,)), pl.BlockSpec((2,), lambda i: (0,))],
    out_specs=out_specs,
    out_shape=out_shape,
    interpret=interpret,
    # Triton explicitly: jax 0.10's default for pl.pallas_call on GPU is Mosaic GPU.
    compiler_params=None if interpret else pltr.CompilerParams(num_warps=num_warps, num_stages=1),
    name=f"scalar_chain_{output}",
  )(x, key_words)
  if output == "moments":
    counts = jnp.minimum(chains - block * jnp.arange(programs), block).astype(jnp.float32)
    return _combine_moments(outs[0], outs[1], counts)
  if output == "final":
    return outs[0][:chains], outs[1][:chains]
  return outs[0][:, :chains], outs[1][:, :chains]


def _combine_moments(means, m2s, counts):
  """Chan, Golub & LeVeque (1979): block means ``[P, L]`` and M2 ``[P, L]`` → mean, var ``[L]``."""
  total = jnp.sum(counts)
  mean = jnp.sum(counts[:, None] * means, axis=0) / total
  m2 = jnp.sum(m2s, axis=0) + jnp.sum(counts[:, None] * (means - mean[None, :]) ** 2, axis=0)
  return mean, m2 / total


# --------------------------------------------------------------------------- public


def monte_carlo(
  net: MLP,
  key: jax.Array,
  chains: int,
  x: float = 1.0,
  *,
  output: str = "final",
  use_kernel: Any = "auto",
  block: int = DEFAULT_BLOCK,
  num_warps: int = DEFAULT_NUM_WARPS,
  rounds: int = philox.DEFAULT_ROUNDS,
  fast_math: bool = False,
) -> MonteCarlo:
  """``log|g_l|`` of ``chains`` one-neuron chains with freshly sampled parameters.

  Args:
    net: a one-neuron :class:`~vanish.MLP` (widths all 1, φ at every layer; Gaussian or zero
      initializers, see :func:`standard_deviations`). Depth L = ``net.depth``.
    key: a typed threefry key from ``jax.random.key``.
    chains: number of chains M, 1 ≤ M < 2³² (the Pallas paths: M rounded up to a multiple
      of ``block`` < 2³¹, their chain index being int32).
    x: the input ``a_0`` (a finite float).
    output: ``"final"``, ``"all"`` or ``"moments"`` (see the module docstring).
    use_kernel: ``"auto"``, ``"pallas"``, ``"interpret"`` or ``"reference"``
      (:func:`vanish.kernels.resolve`).
    block: chains per Pallas program, a power of 2 (default 256; the results do not depend
      on it, except for the float rounding of ``"moments"``).
    num_warps: Triton warps per program, 1, 2, 4, 8 or 16 (default 8: with block 256 the
      H100's fastest accurate launch, see :data:`DEFAULT_BLOCK`).
    rounds: Philox rounds (10 standard).
    fast_math: the compiled kernel computes Box–Muller, φ, log φ' and log |w| with PTX's
      one-instruction approximations (:mod:`vanish.kernels.fast_math`: errors ~10⁻⁷ per
      log, ~10⁻⁶ per normal; the same statistics within Monte Carlo error, not the same
      bits as the reference). Sigmoid and ``a·tanh(s·z)`` activations only. In the
      interpreter the same formulas run in accurate ``jnp``; the reference path ignores it.

  Returns:
    A :class:`MonteCarlo`; ``path`` says which implementation ran.
  """
  sigma_w, sigma_b = standard_deviations(net)
  _check_count("chains", chains)
  if output not in OUTPUTS:
    raise ValueError(f"output must be one of {', '.join(OUTPUTS)}, got {output!r}")
  x = float(x)
  if not math.isfinite(x):
    raise ValueError(f"x must be a finite number, got {x}")
  if isinstance(block, bool) or not isinstance(block, int) or block < 1 or block & (block - 1):
    raise ValueError(f"block must be a power of 2 >= 1, got {block!r}")
  rounds = philox.check_rounds(rounds)
  if isinstance(num_warps, bool) or num_warps not in (1, 2, 4, 8, 16):
    raise ValueError(f"num_warps must be 1, 2, 4, 8 or 16, got {num_warps!r}")
  if not isinstance(fast_math, bool):
    raise TypeError(f"fast_math must be True or False, got {fast_math!r}")
  if fast_math and approx.activation_form(net.activation) is None:
    raise ValueError(
      f"fast_math=True needs sigmoid, tanh, scaled_tanh or lecun_tanh, got {net.activation!r}"
    )
  key_words = _key_words(key)
  path = _dispatch.resolve(use_kernel)
  if path != _dispatch.REFERENCE and -(-chains // block) * block >= 2**31:
    raise ValueError(
      f"chains must be < 2**31 rounded down to a multiple of block = {block} on the Pallas "
      f"path (the kernel's chain index is int32), got {chains}; split the Monte Carlo over keys"
    )
  if path == _dispatch.REFERENCE:
    fields = _reference(net, key, chains, x, output, rounds)
  else:
    outs = _pallas(
      jnp.full((1,), x, jnp.float32),
      key_words,
      chains=chains,
      depth=net.depth,
      sigma_w=sigma_w,
      sigma_b=sigma_b,
      act=net.activation,
      output=output,
      block=block,
      num_warps=num_warps,
      rounds=rounds,
      interpret=path == _dispatch.INTERPRET,
      fast=fast_math,
    )
    names = ("mean", "var") if output == "moments" else ("log_abs_g", "sign")
    fields = dict(zip(names, outs, strict=True))
  arrays = {f: fields.get(f) for f in ("log_abs_g", "sign", "mean", "var")}
  return MonteCarlo(**arrays, path=path, fast_math=fast_math and path != _dispatch.REFERENCE)


def _reference(net, key, chains, x, output, rounds):
  """The specification: the same draws, :func:`vanish.scalar_chain`, then the summary."""
  params = sample_parameters(net, key, chains, rounds=rounds)
  log_g, sign = scalar_chain(net, params, jnp.full((1,), x, jnp.float32))  # [M, L]
  if output == "final":
    return {"log_abs_g": log_g[:, -1], "sign": sign[:, -1]}
  if output == "all":
    return {"log_abs_g": log_g.T, "sign": sign.T.astype(jnp.int8)}
  return {"mean": jnp.mean(log_g, axis=0), "var": jnp.var(log_g, axis=0)}
