"""Activation functions with exact derivatives.

Every activation is an :class:`Activation`: a name, its parameters, the function
``φ`` and its exact derivative ``φ'``. The chains only ever need the pair
``(φ(z), φ'(z))``, so that is the primitive, :meth:`Activation.value_and_derivative`.

The zoo covers the seed analyses (Nielsen, *Neural Networks and Deep Learning*,
ch. 5 and ch. 3; the tanh(n·x) analysis of ``docs/seed_analysis.md`` §4) and the mean-field
literature (erf and hard-tanh have closed forms there).

Example:
  >>> import jax.numpy as jnp
  >>> from vanish import activations
  >>> act = activations.get("tanh")
  >>> value, slope = act.value_and_derivative(jnp.array([0.0]))
  >>> float(value[0]), float(slope[0])
  (0.0, 1.0)
  >>> activations.scaled_tanh(2.0).derivative(jnp.array(0.0))
  Array(2., dtype=float32, weak_type=True)
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
from jax.scipy.special import erf as _erf

from vanish import _checks
from vanish import init as _init

__all__ = [
  "Activation",
  "available",
  "erf",
  "get",
  "hard_tanh",
  "leaky_relu",
  "lecun_tanh",
  "linear",
  "noisy_relu",
  "register",
  "relu",
  "scaled_tanh",
  "sigmoid",
  "softplus",
  "stepped_sigmoid",
  "tanh",
]

ArrayFn = Callable[[jax.Array], jax.Array]

# LeCun, Bottou, Orr, Müller, "Efficient BackProp" (1998), §4.4: f(x) = 1.7159 tanh(2x/3).
LECUN_AMPLITUDE = 1.7159
LECUN_SLOPE = 2.0 / 3.0


@dataclasses.dataclass(frozen=True)
class Activation:
  """An elementwise nonlinearity φ with its exact derivative φ'.

  Two activations are equal when their ``name`` and ``params`` are, so that
  ``scaled_tanh(2.0)`` built twice hits the same compilation cache.

  Attributes:
    name: registry name, e.g. ``"tanh"`` or ``"scaled_tanh"``.
    params: the parameters that distinguish members of a family, as sorted
      ``(key, value)`` pairs, e.g. ``(("n", 2.0),)``.
    fn: ``φ``, elementwise on any shape.
    derivative: ``φ'``, elementwise on any shape.
    noise_std: for stochastic activations (noisy ReLU) the standard deviation of
      the additive noise ε in ``φ(z + ε)``; 0 for deterministic ones.
    log_derivative: ``log |φ'|`` in a closed form that does not underflow, for the
      activations whose derivative decays exponentially (σ'(z) is exactly 0 in
      float32 once |z| ≳ 90, while its log is −|z|); ``None`` where ``log |φ'|`` is
      exact as it is (piecewise-constant derivatives). See :meth:`log_abs_derivative`.
    constant_derivative: φ' does not depend on z (the identity): a chain through it
      cannot be misled by a NaN pre-activation, so it is not reported as NaN (see
      :func:`vanish.chains.log_gradient_norms`).
  """

  name: str
  params: tuple[tuple[str, float], ...]
  fn: ArrayFn = dataclasses.field(compare=False, repr=False)
  derivative: ArrayFn = dataclasses.field(compare=False, repr=False)
  noise_std: float = 0.0
  log_derivative: ArrayFn | None = dataclasses.field(default=None, compare=False, repr=False)
  constant_derivative: bool = dataclasses.field(default=False, compare=False, repr=False)

  @property
  def stochastic(self) -> bool:
    """Whether evaluating this activation needs a random key."""
    return self.noise_std > 0

  def __call__(self, z: jax.Array, *, key: jax.Array | None = None) -> jax.Array:
    return self.value_and_derivative(z, key=key)[0]

  def value_and_derivative(
    self, z: jax.Array, *, key: jax.Array | None = None
  ) -> tuple[jax.Array, jax.Array]:
    """Returns ``(φ(z), φ'(z))``, elementwise.

    Args:
      z: pre-activations, any shape.
      key: required for stochastic activations; one noise draw ε (same shape as
        ``z``) is shared by the value and the derivative, ``φ(z + ε), φ'(z + ε)``.
    """
    z = jnp.asarray(z)
    if self.stochastic:
      if key is None:
        raise ValueError(
          f"activation {self.name!r} is stochastic (noise_std={self.noise_std}); "
          "pass key=jax.random.key(...)"
        )
      if not jnp.issubdtype(jnp.asarray(key).dtype, jax.dtypes.prng_key):
        key = jax.random.wrap_key_data(key)  # a legacy uint32 key (jax.random.PRNGKey)
      # jax.random.normal's bits; vmapped over members it compiles in a fraction of the time
      z = z + self.noise_std * _init.normal(1.0)(key, z.shape, z.dtype)
    return self.fn(z), self.derivative(z)

  def log_abs_derivative(self, z: jax.Array, slope: jax.Array | None = None) -> jax.Array:
    """``log |φ'(z)|``, elementwise, finite wherever φ'(z) ≠ 0 mathematically.

    Products of derivatives (the chains) are summed in log space; this is where
    their factors come from. With a closed form (:attr:`log_derivative`) it never
    underflows; otherwise it is ``log |slope|`` with ``slope = φ'(z)`` (passed in if
    already computed, e.g. with the noise of a stochastic activation), which is
    ``−inf`` exactly where φ' is 0 (a dead ReLU unit).

    Example:
      >>> import jax.numpy as jnp
      >>> from vanish import activations
      >>> float(activations.sigmoid().derivative(jnp.array(200.0)))   # underflows
      0.0
      >>> float(activations.sigmoid().log_abs_derivative(jnp.array(200.0)))
      -200.0
    """
    z = jnp.asarray(z)
    if self.log_derivative is not None and not self.stochastic:
      return self.log_derivative(z)
    return jnp.log(jnp.abs(self.derivative(z) if slope is None else slope))

  def __repr__(self) -> str:
    args = ", ".join(f"{k}={v:g}" for k, v in self.params)
    return f"Activation({self.name}{'(' + args + ')' if args else ''})"


_REGISTRY: dict[str, Callable[..., Activation]] = {}


def register(
  name: str,
  fn: ArrayFn | Callable[..., Activation],
  derivative: ArrayFn | None = None,
  *,
  log_derivative: ArrayFn | None = None,
  overwrite: bool = False,
) -> Activation | Callable[..., Activation]:
  """Registers a user activation under ``name``.

  Args:
    name: the name to look it up by with :func:`get` (and in configs).
    fn: ``φ``, an elementwise ``jax.Array -> jax.Array``.
    derivative: the exact ``φ'``. If omitted it is computed by autodiff,
      ``vmap(grad(φ))`` over all elements — correct but slower.
    log_derivative: ``log |φ'|`` in a form that does not underflow, for an activation
      whose derivative decays exponentially (see :attr:`Activation.log_derivative`);
      without it a saturated unit's ``log |φ'|`` is that of the float32 ``φ'``, ``−inf``
      once it underflows.
    overwrite: allow replacing an existing name.

  Returns:
    The registered :class:`Activation`.

  Example:
    >>> import jax.numpy as jnp
    >>> from vanish import activations
    >>> swish = activations.register("swish_demo", lambda x: x * jax.nn.sigmoid(x))
    >>> round(float(swish.derivative(jnp.array(0.0))), 6)
    0.5
  """
  if not isinstance(name, str) or not name:
    raise ValueError(f"name must be a non-empty string, got {name!r}")
  if name in _REGISTRY and not overwrite:
    raise ValueError(f"activation {name!r} is already registered; pass overwrite=True")
  if not callable(fn):
    raise TypeError(f"fn must be callable, got {type(fn).__name__}")
  if derivative is None:
    scalar_grad = jax.grad(lambda x: fn(x))

    def derivative(z: jax.Array) -> jax.Array:
      flat = jnp.ravel(z)
      return jax.vmap(scalar_grad)(flat).reshape(jnp.shape(z))

  if log_derivative is not None and not callable(log_derivative):
    raise TypeError(f"log_derivative must be callable, got {type(log_derivative).__name__}")
  activation = Activation(name, (), fn, derivative, log_derivative=log_derivative)
  _REGISTRY[name] = lambda: activation
  return activation


def _family(name: str) -> Callable[[Callable[..., Activation]], Callable[..., Activation]]:
  def decorate(factory: Callable[..., Activation]) -> Callable[..., Activation]:
    _REGISTRY[name] = factory
    return factory

  return decorate


def _check_positive(name: str, value: float) -> float:
  return _checks.number(name, value, minimum=0, strict=True)


def _tanh_slope(amplitude: float, slope: float) -> ArrayFn:
  """``d/dz a·tanh(s·z)`` = ``a·s·4 e^{−2u} / (1 + e^{−2u})²``, ``u = |s·z|``.

  Accurate to a few ulp until ``e^{−2u}`` underflows (``u ≈ 44`` in float32), where
  ``a·s·(1 − tanh²)`` loses its relative accuracy from ``u ≈ 4`` and is 0 from ``u ≈ 9``.
  """

  def derivative(z):
    e = jnp.exp(-2 * jnp.abs(slope * z))
    return (4 * amplitude * slope) * e / jnp.square(1 + e)

  return derivative


def _log_tanh_slope(amplitude: float, slope: float) -> ArrayFn:
  """``log |d/dz a·tanh(s·z)|`` = ``log(a·s) + log 4 − 2u − 2·softplus(−2u)``, ``u = |s·z|``.

  From ``1 − tanh² u = 4 e^{−2u} / (1 + e^{−2u})²``; exact for every z, where
  ``1 − tanh²`` itself is 0 in float32 once ``|s·z| ≳ 9``.
  """
  offset = math.log(amplitude * slope) + math.log(4.0)

  def log_derivative(z):
    u = jnp.abs(slope * z)
    return offset - 2 * u - 2 * jax.nn.softplus(-2 * u)

  return log_derivative


@_family("sigmoid")
def sigmoid() -> Activation:
  """Logistic σ(z) = 1 / (1 + e^{-z}); σ' = σ(1 − σ) ≤ 1/4 (Nielsen ch. 5).

  The derivative is computed as σ(z)·σ(−z): accurate until σ(−|z|) underflows
  (|z| ≈ 88 in float32), where σ(1 − σ) is 0 from z ≈ 17.
  """

  def derivative(z):
    return jax.nn.sigmoid(z) * jax.nn.sigmoid(-z)

  def log_derivative(z):  # log σ(z) + log σ(−z)
    return -jax.nn.softplus(z) - jax.nn.softplus(-z)

  return Activation("sigmoid", (), jax.nn.sigmoid, derivative, log_derivative=log_derivative)


@_family("tanh")
def tanh() -> Activation:
  """tanh(z); derivative 1 − tanh²(z)."""
  return scaled_tanh(1.0, _name="tanh")


@_family("scaled_tanh")
def scaled_tanh(n: float = 2.0, *, _name: str = "scaled_tanh") -> Activation:
  """tanh(n·z) for any n > 0; derivative n(1 − tanh²(n·z)), at most n.

  The seed analysis (``docs/seed_analysis.md`` §4) asks whether the steeper slope fixes
  vanishing gradients; a tanh(n·x) network with parameters α equals a tanh(x)
  network with parameters n·α.
  """
  n = _check_positive("n", n)

  def fn(z):
    return jnp.tanh(n * z)

  params = () if _name == "tanh" else (("n", n),)
  derivative, log_derivative = _tanh_slope(1.0, n), _log_tanh_slope(1.0, n)
  return Activation(_name, params, fn, derivative, log_derivative=log_derivative)


@_family("lecun_tanh")
def lecun_tanh() -> Activation:
  """LeCun's scaled tanh 1.7159·tanh(2z/3) (Efficient BackProp, 1998, §4.4)."""

  def fn(z):
    return LECUN_AMPLITUDE * jnp.tanh(LECUN_SLOPE * z)

  derivative = _tanh_slope(LECUN_AMPLITUDE, LECUN_SLOPE)
  log_derivative = _log_tanh_slope(LECUN_AMPLITUDE, LECUN_SLOPE)
  return Activation("lecun_tanh", (), fn, derivative, log_derivative=log_derivative)


@_family("relu")
def relu() -> Activation:
  """max(0, z); derivative 1[z > 0] (0 at z = 0)."""
  return Activation("relu", (), jax.nn.relu, lambda z: (z > 0).astype(jnp.result_type(z)))


@_family("leaky_relu")
def leaky_relu(slope: float = 0.01) -> Activation:
  """max(z, slope·z) for 0 ≤ slope < 1; derivative 1 or ``slope``."""
  slope = float(slope)
  if not (0 <= slope < 1):
    raise ValueError(f"slope must be in [0, 1), got {slope}")

  def fn(z):
    return jnp.where(z > 0, z, slope * z)

  def derivative(z):
    return jnp.where(z > 0, 1.0, slope).astype(jnp.result_type(z))

  return Activation("leaky_relu", (("slope", slope),), fn, derivative)


@_family("softplus")
def softplus() -> Activation:
  """log(1 + e^z); derivative σ(z) (Nielsen ch. 3, the smooth rectifier)."""

  def log_derivative(z):  # log σ(z)
    return -jax.nn.softplus(-z)

  return Activation("softplus", (), jax.nn.softplus, jax.nn.sigmoid, log_derivative=log_derivative)


@_family("stepped_sigmoid")
def stepped_sigmoid(steps: int = 20) -> Activation:
  """Σ_{i=1..m} σ(z − i + 0.5), Nielsen's staircase of sigmoids; → softplus as m → ∞."""
  steps = _checks.integer("steps", steps)
  offsets = jnp.arange(1, steps + 1) - 0.5

  def shifted(z):
    return z[..., None] - offsets.astype(z.dtype).reshape((1,) * z.ndim + (steps,))

  def fn(z):
    return jnp.sum(jax.nn.sigmoid(shifted(z)), axis=-1)

  def derivative(z):
    t = shifted(z)
    return jnp.sum(jax.nn.sigmoid(t) * jax.nn.sigmoid(-t), axis=-1)

  def log_derivative(z):  # log Σ_i σ'(z − c_i), each term in log space
    t = shifted(z)
    return jax.nn.logsumexp(-jax.nn.softplus(t) - jax.nn.softplus(-t), axis=-1)

  params = (("steps", float(steps)),)
  return Activation("stepped_sigmoid", params, fn, derivative, log_derivative=log_derivative)


@_family("noisy_relu")
def noisy_relu(std: float = 1.0) -> Activation:
  """max(0, z + ε), ε ~ N(0, std²) drawn from an explicit key (Nair & Hinton 2010)."""
  std = _check_positive("std", std)
  base = relu()
  return Activation("noisy_relu", (("std", std),), base.fn, base.derivative, noise_std=std)


@_family("hard_tanh")
def hard_tanh() -> Activation:
  """clip(z, −1, 1); derivative 1[|z| < 1] (Pennington et al. 2017)."""

  def derivative(z):
    return (jnp.abs(z) < 1).astype(jnp.result_type(z))

  return Activation("hard_tanh", (), lambda z: jnp.clip(z, -1, 1), derivative)


@_family("erf")
def erf() -> Activation:
  """erf(z); derivative (2/√π)·e^{−z²} (closed-form mean field, Williams 1997)."""

  def derivative(z):
    return (2 / math.sqrt(math.pi)) * jnp.exp(-z * z)

  def log_derivative(z):
    return math.log(2 / math.sqrt(math.pi)) - z * z

  return Activation("erf", (), _erf, derivative, log_derivative=log_derivative)


@_family("linear")
def linear() -> Activation:
  """The identity; derivative 1."""
  return Activation("linear", (), lambda z: z, jnp.ones_like, constant_derivative=True)


def available() -> tuple[str, ...]:
  """Names accepted by :func:`get`, sorted."""
  return tuple(sorted(_REGISTRY))


def get(activation: str | Activation, **params: float) -> Activation:
  """Resolves a name (or passes an :class:`Activation` through).

  Args:
    activation: a registered name such as ``"tanh"``, ``"scaled_tanh"``, or an
      :class:`Activation`.
    **params: family parameters, e.g. ``get("scaled_tanh", n=2.0)``.

  Raises:
    ValueError: unknown name; the message lists the known ones.
  """
  if isinstance(activation, Activation):
    if params:
      raise ValueError("params are only accepted together with an activation name")
    return activation
  if not isinstance(activation, str):
    raise TypeError(f"activation must be a name or an Activation, got {type(activation).__name__}")
  if activation not in _REGISTRY:
    raise ValueError(f"unknown activation {activation!r}; known: {', '.join(available())}")
  return _REGISTRY[activation](**params)
