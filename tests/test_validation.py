"""Every public entry point rejects bad arguments, naming the parameter, before compiling.

The cases are derived, not hand-written: the public callables are every ``__all__`` entry of
the public modules (result containers excluded, a few constructors and methods added), a
valid call of each is built from a table of valid values keyed by parameter name
(``VALID``, with per-function ``OVERRIDES``), and every parameter whose name has a row in
``BAD`` (or a per-function ``BAD_FOR`` row) is replaced, one at a time, by each bad value.
The call must raise ``ValueError`` or ``TypeError`` whose message names the parameter, and
no XLA backend compilation may happen during it: the JAX caches are cleared first and the
``/jax/core/compile/backend_compile_duration`` monitoring events are counted, so even a
``jnp`` operation that a cache would otherwise serve shows up as a compilation. ``SKIP``
lists, with a reason, the values that a parameter legitimately accepts.

The experiments' command lines (``vanish run NAME``) are checked the same way at the end: a
bad option is an argparse error naming the flag and its allowed range, before any data loads.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import math
import pkgutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import vanish as vn
from experiments import _common
from vanish import chains, cli, data, init, models, phase_map, recurrent

# Modules that are not entry points: the command line (tested in test_cli), its progress bar,
# and the layer protocol the chains call inside jit (arguments are traced arrays and objects).
NOT_API = {"vanish.cli", "vanish.progress", "vanish.layers"}


def public_modules() -> list:
  """``vanish`` and every public module under it (no leading underscore), found by walking
  the package, so that a new module is covered (or must be named in ``NOT_API``)."""
  found = [vn]
  for info in pkgutil.walk_packages(vn.__path__, prefix="vanish."):
    if any(part.startswith("_") for part in info.name.split(".")) or info.name in NOT_API:
      continue
    found.append(importlib.import_module(info.name))
  return found


MODULES = public_modules()

# ---------------------------------------------------------------------------------------------
# Valid arguments: tiny, built without compiling anything (numpy, then device_put).

KEY = jax.random.key(0)
NET = vn.MLP([4, 4, 4], "tanh")
PARAMS = ({"w": jnp.asarray(np.full((2, 2, 4, 4), 0.5, np.float32)), "b": jnp.zeros((2, 2, 4))},)
NET1 = vn.MLP([1, 1, 1], "tanh")
PARAMS1 = ({"w": jnp.ones((2, 2, 1, 1)), "b": jnp.zeros((2, 2, 1))},)
X = jnp.ones(4)
LOG_G = np.linspace(-3.0, 1.0, 24).reshape(8, 3)
STATES = np.array([[0, 0, 1, 1], [0, 1, 1, 1]], bool)
RNN_PARAMS = recurrent.RNNParams(w=jnp.eye(2), u=jnp.ones((2, 1)), b=jnp.zeros(2))
READOUT = recurrent.Readout(v=jnp.zeros((2, 2)), c=jnp.zeros(2))
DATASET = data.Dataset(np.ones((4, 4), np.float32), np.array([0, 1, 0, 1]))
LSTM_PARAMS = recurrent.LSTMParams(w=jnp.zeros((8, 2)), u=jnp.zeros((8, 1)), b=jnp.zeros(8))
WORDS = tuple(jnp.zeros(4, jnp.uint32) for _ in range(4))
PHASE_MAP = phase_map.PhaseMap(
  np.array([1.0, 2.0, 3.0]),
  np.array([0.0]),
  np.array([[1.0, 0.5, 0.0]]),
  None,
  np.array([[0.0, 0.2, 0.8]]),
  *[None] * 6,
  {},
)
PARAMS8 = ({"w": jnp.zeros((8, 2, 4, 4)), "b": jnp.zeros((8, 2, 4))},)
NET16 = vn.MLP([16, 16, 16])
PARAMS16 = ({"w": jnp.zeros((2, 2, 16, 16)), "b": jnp.zeros((2, 2, 16))},)
MODEL = models.from_params(NET, PARAMS)
RNN_ENSEMBLE = recurrent.RNNParams(
  w=jnp.zeros((2, 2, 2)), u=jnp.ones((2, 2, 2)), b=jnp.zeros((2, 2))
)
READOUTS = recurrent.Readout(v=jnp.zeros((2, 2, 2)), c=jnp.zeros((2, 2)))
STORE_ROOT = "/nonexistent/vanish-validation-store"  # nothing may be written on bad input

# Valid values by parameter name (a callable is called, for values that must be fresh).
VALID = {
  "activation": "tanh",
  "sigma_w2": 1.0,
  "sigma_b2": 0.0,
  "depth": 3,
  "width": 4,
  "widths": [4, 4, 4],
  "members": 2,
  "key": KEY,
  "epsilon": 1e-3,
  "confidence": 0.95,
  "precision": "highest",
  "net": NET,
  "params": PARAMS,
  "x": X,
  "log_g": LOG_G,
  "states": STATES,
  "log_factors": LOG_G,
  "preactivations": LOG_G,
  "values": LOG_G,
  "growth": LOG_G,
  "half_width": 1.0,
  "successes": np.array([1, 2]),
  "trials": 10,
  "transition": np.array([[0.9, 0.1], [0.0, 1.0]]),
  "initial": np.array([1.0, 0.0]),
  "steps": 3,
  "threshold": -7.0,
  "bias_speed": np.ones((2, 3, 2)),
  "chi1": 1.0,
  "w": 1.0,
  "b": 0.0,
  "q": 1.0,
  "c": 0.5,
  "q_star": 1.0,
  "n": 4,
  "spectrum": np.zeros((2, 3, 2)),
  "z": np.eye(4, 2, dtype=np.float32),
  "g": np.eye(4, dtype=np.float32),
  "gram": np.eye(2, dtype=np.float32),
  "r": np.eye(2, dtype=np.float32),
  "weight_scale": 1.0,
  "bias_scale": 1.0,
  "inputs": 1,
  "cells": 4,
  "member_bytes": 1024,
  "bytes_per_member": 1024,
  "multiple": 2,
  "chains": 2,
  "name": "sgd",
  "learning_rate": 0.1,
  "epoch": 0,
  "batch_size": 2,
  "train_data": DATASET,
  "model": MODEL,
  "hidden": 2,
  "batch": 2,
  "length": 3,
  "input_variance": 1.0,
  "xs": jnp.ones((3, 1)),
  "h": jnp.zeros(2),
  "std": 1.0,
  "gain": 1.0,
  "weight": 1.0,
  "value": 0.0,
  "steps_": 3,
}

# Per-function valid arguments where the name alone does not say it.
OVERRIDES = {
  "theory.length_map": {"q": 1.0},
  "theory.newman_lyapunov": {"n": 4},
  "theory.scaled_tanh_vanish_threshold": {"n": 2.0},
  "theory.scaled_tanh_explode_threshold": {"n": 2.0},
  "theory.residual_mean_field": {"alpha": 1.0, "q0": 1.0},
  "theory.relu_gradient_moments": {"widths": [4, 4, 4]},
  "chains.scalar_chain": {"net": NET1, "params": PARAMS1, "x": jnp.ones(1)},
  "probability.scalar_chain_log_factors": {"net": NET1, "params": PARAMS1, "x": jnp.ones(1)},
  "probability.joint_histogram": {"values": LOG_G, "log_g": LOG_G},
  "markov.binomial_interval": {"successes": np.array([1, 2]), "trials": 10},
  "markov.log_first_layer_speed": {},
  "markov.states": {"log_g": LOG_G},
  "scale_map.scaled_tanh_chain_log_gradient": {"n": 2.0},
  "scale_map.scaled_tanh_map": {"n": 2.0},
  "scale_map.outcome_classes": {"p_vanish": 0.2, "p_stable": 0.5, "p_explode": 0.3},
  "parameter_map.classify": {"log_g": LOG_G},
  "parameter_map.log_abs_derivative": {"z": jnp.zeros(2)},
  "parameter_map.tied_chain_log_gradient": {"w": [1.0], "b": [0.0], "x": [1.0], "depths": 3},
  "parameter_map.tied_chain_map": {"w": [1.0], "b": [0.0], "x": [1.0]},
  "parameter_map.tied_chain_outputs": {"w": [1.0], "b": [0.0], "x": [1.0]},
  "parameter_map.tied_chain_descent": {"w0": [1.0], "b0": [0.0], "x": [1.0], "y": [0.5]},
  "parameter_map.tied_tanh_critical_lines": {"w": [1.0, 2.0]},
  "parameter_map.slice_map": {"w": [1.0], "b": [0.0], "samples": 2},
  "parameter_map.slice_log_gradient": {
    "w": [1.0],
    "b": [0.0],
    "weights": np.ones((1, 3, 1, 1)),
    "biases": np.zeros((1, 3, 1)),
    "x": np.zeros((1, 1)),
    "cotangent": np.ones((1, 1)),
  },
  "streaming.gradient_statistics": {"progress": False},
  "streaming.measured_call_bytes": {"block": 2},
  "training.cost": {"name": "quadratic", "outputs": jnp.zeros((2, 3)), "labels": np.array([0, 1])},
  "training.epoch_batches": {"n": 4},
  "training.optimizer": {"name": "sgd"},
  "training.gradient_norms": {"data": DATASET},
  "models.from_params": {},
  "recurrent.rnn_step": {"params": RNN_PARAMS, "x": jnp.ones(1)},
  "recurrent.states": {"params": RNN_PARAMS},
  "recurrent.memory_loss": {
    "params": RNN_PARAMS,
    "readout": READOUT,
    "xs": jnp.ones((2, 3, 1)),
    "labels": np.array([0, 1]),
    "lag": 2,
  },
  "recurrent.log_gradient_norms_through_time": {"model_or_params": RNN_PARAMS},
  "recurrent.train_memory_task": {
    "model_or_params": RNN_ENSEMBLE,
    "readout": READOUTS,
    "lags": [2],
    "steps": 2,
    "batch": 2,
    "length": 3,
    "test_batches": 1,
    "activation": "tanh",
  },
  "kernels.scalar_chain.monte_carlo": {"net": NET1},
  "kernels.scalar_chain.sample_parameters": {"net": NET1},
  "kernels.small_chain.jacobian": {"net": NET16, "params": PARAMS16, "x": jnp.ones(16)},
  "kernels.small_chain.lyapunov_spectrum": {"net": NET16, "params": PARAMS16, "x": jnp.ones(16)},
  "kernels.small_chain.kernel_unsupported_reason": {"net": NET16, "x": jnp.ones(16)},
  "kernels.scalar_chain.standard_deviations": {"net": NET1},
  "markov.one_way_street_test": {"states": STATES},
  "models.apply": {
    "params": ({"w": PARAMS[0]["w"][0], "b": PARAMS[0]["b"][0]},),
    "precision": jax.lax.Precision.HIGHEST,
  },
  "sharding.process_members": {"members": 8},
  "sharding.shard_members": {"params": PARAMS8},
  "training.train": {"batch_size": 2},
  "training.fit": {"epochs": 1, "batch_size": 2, "learning_rate": 0.1},
  "scale_map.cell_phase_map": {
    "sigma_w2": np.ones((1, 1)),
    "sigma_b2": np.zeros((1, 1)),
    "x": [1.0],
    "y": [0.0],
    "x_name": "a",
    "y_name": "b",
  },
  "activations.get": {"activation": "tanh"},
  "activations.register": {"name": "validation_probe", "fn": jnp.tanh},
  "init.fold_in": {"keys": KEY, "data": 0},
  "init.get": {"spec": "gaussian"},
  "init.sample": {"initializer": init.gaussian(), "keys": KEY, "shape": (2, 2)},
  "kernels._dispatch.resolve": {"use_kernel": "auto"},
  "kernels.philox.box_muller": {"u1": jnp.full(4, 0.5), "u2": jnp.full(4, 0.5)},
  "kernels.fast_math.box_muller": {
    "u1": jnp.full(4, 0.5),
    "u2": jnp.full(4, 0.5),
    "m": vn.kernels.fast_math.ACCURATE,
  },
  "kernels.fast_math.log": {"x": jnp.full(4, 0.5), "m": vn.kernels.fast_math.ACCURATE},
  "kernels.fast_math.activation_form": {"activation": vn.activations.get("sigmoid")},
  "kernels.philox.mulhi_emulated": {"a": WORDS[0], "m": 0xD2511F53},
  "kernels.philox.mulhi_ptx": {"a": WORDS[0], "m": 0xD2511F53},
  "kernels.philox.normals4": {"counter": WORDS, "key": WORDS[:2]},
  "kernels.philox.philox4x32": {"counter": WORDS, "key": WORDS[:2]},
  "kernels.philox.uniform": {"bits": WORDS[0]},
  "phase_map.empirical_boundary": {"phase_map": PHASE_MAP},
  "recurrent.lstm_step": {
    "params": LSTM_PARAMS,
    "state": (jnp.zeros(2), jnp.zeros(2)),
    "x": jnp.ones(1),
  },
  "scale_map.independent_chains": {"sample": lambda key: jax.random.normal(key, (3, 1, 1, 2))},
  "sharding.sharded": {"chain": chains.outputs},
  **{
    f"store.{name}": {
      "root": STORE_ROOT,
      "experiment": "validation",
      "config": {"a": 1},
      "compute_chunk": lambda chunk: {"arrays": {"y": np.zeros(1)}},
      "arrays": {"y": np.zeros(1)},
      "precision": "highest",
      "files": [],
      "path": STORE_ROOT,
      "write": lambda f: f.write(b""),
    }
    for name in ["compute", "config_hash", "find", "run_folder", "save", "source_fingerprint"]
    + ["load", "write_atomic"]
  },
}

# ---------------------------------------------------------------------------------------------
# Bad values by parameter name.

NAN, INF = math.nan, math.inf
COUNT = [0, -1, 2.5, True, "3"]  # integers >= 1
INDEX = [-1, 2.5, True, "3"]  # integers >= 0
VARIANCE = [-1.0, NAN, INF, True, "1.0"]  # finite reals >= 0
POSITIVE = [0.0, -1.0, NAN, INF, True, "1.0"]  # finite reals > 0
REAL = [NAN, INF, True, "1.0"]  # any finite real
UNIT = [0, 1, 1.5, NAN]  # open interval (0, 1)
RAW_KEY = np.zeros(2, np.uint32)

BAD = {
  **{name: COUNT for name in ["depth", "width", "members", "steps", "inputs", "hidden"]},
  **{name: COUNT for name in ["batch", "length", "iterations", "windows", "chains", "samples"]},
  **{name: COUNT for name in ["epochs", "batch_size", "test_batches", "checkpoint_every"]},
  **{name: COUNT for name in ["trials", "n_train", "n_test", "block", "rounds"]},
  **{name: COUNT for name in ["multiple", "classes", "cells", "total", "max_blocks", "blocks"]},
  "chunk_size": COUNT,
  "k": COUNT,
  "widths": [[4, 0, 4], [4, -1, 4], [4, 2.5, 4], [4, True, 4], [4, "4", 4], 4],
  **{name: INDEX for name in ["first", "seed", "epoch"]},
  **{name: VARIANCE for name in ["sigma_w2", "sigma_b2", "std", "bias_std", "weight_std"]},
  **{name: VARIANCE for name in ["input_std", "noise", "input_variance", "half_width"]},
  **{name: POSITIVE for name in ["learning_rate", "alpha", "gain", "shift_scale"]},
  **{name: REAL for name in ["forget_bias", "threshold"]},
  **{name: UNIT for name in ["epsilon", "confidence", "level", "test_fraction"]},
  "q0": VARIANCE,  # the input's squared length q⁰ (markov's q0, a probability, differs)
  "fraction": [0, -0.5, 1.5, NAN],
  "momentum": [-0.1, 1.0, NAN],
  "activation": ["tanhh", 3],
  "precision": ["fast"],
  "key": [RAW_KEY, 0],
  "method": ["nope"],
  "qr": ["nope"],
  "solve": ["nope"],
  "wrt": ["nope"],
  "cost": ["nope"],
  "optimizer": ["nope"],
  "log": ["nope"],
  "output": ["nope"],
  "readout": ["nope"],
  "quantile_levels": [(0.0, 0.5), (0.5, 1.0), (0.5, NAN)],
  "log_g": [np.ones(3, np.complex64)],
  "states": [np.ones((2, 4), np.complex64), np.full((2, 4), 2)],
  "transition": [np.full((2, 2), 0.7), np.full((2, 2), NAN), np.eye(3)],
  "initial": [np.array([0.7, 0.7]), np.array([NAN, 1.0]), np.ones(3) / 3],
}

# Bad values for one parameter of one function where the name alone does not say it.
BAD_FOR = {
  "theory.newman_lyapunov": {"n": COUNT},
  "theory.scaled_tanh_vanish_threshold": {"n": POSITIVE, "depth": [0.5, NAN, True]},
  "theory.scaled_tanh_explode_threshold": {"n": POSITIVE},
  "theory.scaled_tanh_widest_good_n": {"depth": [0.5, NAN, True]},
  "scale_map.scaled_tanh_chain_log_gradient": {"n": POSITIVE},
  "scale_map.scaled_tanh_map": {"n": POSITIVE},
  "training.epoch_batches": {"n": COUNT},
  "training.optimizer": {"name": ["nope", 3]},
  "training.cost": {"name": ["nope", 3]},
  "markov.one_way_street_test": {"q0": [-0.1, 1, 1.5, NAN, True]},  # q0 in [0, 1)
  "init.orthogonal": {"gain": VARIANCE},
  "orthonormalize.shifted_cholesky_qr3": {"shift_scale": VARIANCE},  # 0: an unshifted pass
  "orthonormalize.stable_qr": {
    "shift_scale": VARIANCE
  },  # gain 0 gives zero weights, like constant(0)
  **{
    name: {"x": [jnp.ones((2, 2, 4)), jnp.ones(3), jnp.ones(4, jnp.complex64)]}
    for name in [f"chains.{f}" for f in chains.__all__] + ["spectrum.lyapunov_spectrum"]
    if name != "chains.scalar_chain"
  },
  **{
    name: {"x": [jnp.ones((2, 2, 1)), jnp.ones(3), jnp.ones(1, jnp.complex64)]}
    for name in ["chains.scalar_chain", "probability.scalar_chain_log_factors"]
  },
}

# (function, parameter) -> reason, or (function, parameter, repr(value)) -> reason: values
# that parameter legitimately accepts.
SKIP = {
  ("training.train", "epochs", "0"): "epochs >= 0: a resumed run continues up to epochs",
  ("training.fit", "epochs", "0"): "epochs >= 0, as for train",
  ("kernels.philox.normals4", "key"): "Philox takes its two raw uint32 key words by design",
  ("kernels.philox.philox4x32", "key"): "Philox takes its two raw uint32 key words by design",
}

# (function, parameter) -> the word the error must contain, where not the parameter's name.
MESSAGE_NAMES = {
  ("training.cost", "name"): "cost",
  ("training.optimizer", "name"): "optimizer",
}


# ---------------------------------------------------------------------------------------------
# The public callables.

# Classes whose constructor takes user input (the other public classes are result containers).
CONSTRUCTORS = {
  "networks.MLP",
  "networks.ResidualMLP",
  "training.Config",
}
METHODS = {
  "networks.Network.init": NET.init,
}
# Public callables not covered, with the reason.
UNCOVERED = {
  "sharding.initialize": "starts jax.distributed; a wrongly accepted value would try to connect",
  "data.mnist": "reads a file; its one scalar, standardize, is a flag",
  "phase_map.boundary_disagreement": "takes two result objects and no scalar arguments",
  "recurrent.to_params": "its one argument is an nnx model (building one compiles)",
}


def _name(obj) -> str:
  return f"{obj.__module__.removeprefix('vanish.')}.{obj.__qualname__}"


def public_callables() -> dict[str, object]:
  found = {}
  for module in MODULES:
    for attr in module.__all__:
      obj = getattr(module, attr)
      if inspect.ismodule(obj) or not callable(obj):
        continue
      name = _name(obj)
      if inspect.isclass(obj) and name not in CONSTRUCTORS:
        continue
      found.setdefault(name, obj)
  found.update(METHODS)
  return found


CALLABLES = public_callables()


def _valid(function: str, parameter: inspect.Parameter):
  overrides = OVERRIDES.get(function, {})
  if parameter.name in overrides:
    return overrides[parameter.name]
  if parameter.default is inspect.Parameter.empty:
    if parameter.name not in VALID:
      raise KeyError(f"{function}: no valid value for required parameter {parameter.name!r}")
    return VALID[parameter.name]
  return parameter.default


def baseline(function: str) -> dict:
  """A valid call of ``function`` as keyword arguments."""
  signature = inspect.signature(CALLABLES[function])
  kinds = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
  parameters = signature.parameters.values()
  kwargs = {p.name: _valid(function, p) for p in parameters if p.kind not in kinds}
  if any(p.kind == inspect.Parameter.VAR_KEYWORD for p in parameters):
    kwargs = {**OVERRIDES.get(function, {}), **kwargs}  # overrides fill **kwargs
  return kwargs


def bad_cases():
  for function in sorted(CALLABLES):
    if function in UNCOVERED:
      continue
    for parameter in baseline(function):
      values = BAD_FOR.get(function, {}).get(parameter, BAD.get(parameter, []))
      if (function, parameter) in SKIP:
        continue
      for value in values:
        if (function, parameter, repr(value)) in SKIP:
          continue
        yield function, parameter, value


def _value_id(value) -> str:
  if isinstance(value, (jax.Array, np.ndarray)):
    return f"{value.dtype}{list(value.shape)}"
  return repr(value)


CASES = [pytest.param(f, p, v, id=f"{f}-{p}={_value_id(v)}") for f, p, v in bad_cases()]

BACKEND_COMPILE = "/jax/core/compile/backend_compile_duration"


class CompiledBeforeRejecting(Exception):
  """Raised by :class:`CompileCounter` at the first compilation of a call meant to be rejected."""


class CompileCounter:
  """Counts XLA backend compilations (jax.monitoring duration events); ``strict`` aborts.

  Aborting at the first compilation keeps a wrongly accepted call from running (and
  compiling) the whole computation.
  """

  def __init__(self):
    self.count = 0
    self.strict = False

  def __call__(self, event: str, duration: float, **kwargs) -> None:
    if event == BACKEND_COMPILE:
      self.count += 1
      if self.strict:
        raise CompiledBeforeRejecting(f"XLA compiled {kwargs.get('fun_name')!r}")


@pytest.fixture(scope="module")
def compiles():
  counter = CompileCounter()
  jax.monitoring.register_event_duration_secs_listener(counter)
  yield counter
  jax.monitoring.unregister_event_duration_listener(counter)


def test_compile_counter_sees_a_compilation(compiles):
  """The detector itself: a fresh jitted function is one backend compilation."""
  x = jnp.asarray(np.arange(3.0, dtype=np.float32))  # a transfer, no compilation
  before = compiles.count
  jax.jit(lambda v: v * 3 + 1)(x).block_until_ready()
  assert compiles.count == before + 1


def test_every_public_callable_has_a_valid_call():
  """Every covered entry point binds a complete valid call (new API must join the tables)."""
  for function in CALLABLES:
    if function in UNCOVERED:
      continue
    inspect.signature(CALLABLES[function]).bind(**baseline(function))


def rejection_problem(function: str, parameter: str, value, compiles: CompileCounter) -> str:
  """What is wrong with how ``function`` treats the bad ``value`` ("" if nothing)."""
  kwargs = {**baseline(function), parameter: value}
  jax.clear_caches()  # so that a jnp operation served from a cache still counts
  compiles.strict = True
  try:
    CALLABLES[function](**kwargs)
  except CompiledBeforeRejecting as error:
    return f"compiled before rejecting it (or accepted it): {error}"
  except (ValueError, TypeError) as error:
    message = str(error)
    name = MESSAGE_NAMES.get((function, parameter), parameter)
    if name not in message or "unexpected keyword argument" in message:
      return f"{type(error).__name__} does not name {name!r}: {message}"
    return ""
  except Exception as error:  # noqa: BLE001 - reported, not swallowed
    return f"raised {type(error).__name__} (not ValueError/TypeError): {error}"
  finally:
    compiles.strict = False
  return "accepted it"


@pytest.mark.filterwarnings("error::numpy.exceptions.ComplexWarning")  # refuse, never cast
@pytest.mark.parametrize(("function", "parameter", "value"), CASES)
def test_rejects_bad_argument_naming_it_before_compiling(compiles, function, parameter, value):
  problem = rejection_problem(function, parameter, value, compiles)
  if problem:  # a one-line failure: JAX-deep tracebacks would cost ~0.5 s each to format
    pytest.fail(f"{function}({parameter}={_value_id(value)}): {problem}", pytrace=False)


# ---------------------------------------------------------------------------------------------
# The experiments' command lines: a bad option stops at parse time, before any data is loaded,
# with an argparse error naming the flag and the allowed range.

_DIGITS = f"[1, {_common.DIGITS_TRAIN}]"
_SEEDS = f"[0, {2**32 - 1}]"
BAD_OPTIONS = [
  # batch size vs the training images (the digits' 1438, or --train-size)
  ("rescaling", ["--quick", "--batch-size", "5000"], "--batch-size", _DIGITS),
  ("rescaling", ["--train-size", "16"], "--batch-size", "[1, 16]"),  # the size's 32
  ("learning_speeds", ["--batch-size", "1439"], "--batch-size", _DIGITS),
  ("learning_speeds", ["--train-size", "5"], "--batch-size", "[1, 5]"),
  ("activation_depth", ["--train-size", "9"], "--batch-size", "[1, 9]"),
  ("trainability", ["--batch-size", "2000"], "--batch-size", _DIGITS),
  ("trainability", ["--train-size", "5"], "--batch-size", "[1, 5]"),
  ("large_weights", ["--train-size", "5"], "--batch-size", "[1, 5]"),
  ("large_weights", ["--train-size", "1439"], "--train-size", _DIGITS),
  ("activation_depth", ["--train-size", "0"], "--train-size", _DIGITS),
  # learning rates: finite and > 0
  ("learning_speeds", ["--learning-rate", "inf"], "--learning-rate", "finite number > 0"),
  ("activation_depth", ["--learning-rate", "nan"], "--learning-rate", "finite number > 0"),
  ("trainability", ["--learning-rate", "-1"], "--learning-rate", "finite number > 0"),
  ("large_weights", ["--sgd-lr", "inf"], "--sgd-lr", "finite number > 0"),
  ("large_weights", ["--adam-lr", "0"], "--adam-lr", "finite number > 0"),
  ("large_weights", ["--weights", "4", "inf"], "--weights", "finite number > 0"),
  # thresholds ε in (0, 1)
  ("markov", ["--thresholds", "2"], "--thresholds", "(0, 1)"),
  ("markov", ["--thresholds", "1e-3", "1"], "--thresholds", "(0, 1)"),
  # seeds: the 2**32 distinct ones of jax.random.key
  ("phase_map", ["--seed", "-1"], "--seed", _SEEDS),
  ("rescaling", ["--seed", str(2**32)], "--seed", _SEEDS),
  # intervals and variances over members need two of them
  ("jacobian_spectra", ["--members", "1"], "--members", ">= 2"),
  ("jacobian_spectra", ["--per-octave", "-1"], "--per-octave", ">= 0"),
  ("lyapunov_depth", ["--members", "1"], "--members", ">= 2"),
  ("finite_width", ["--members", "1"], "--members", ">= 2"),
  ("sigmoid_weights", ["--chain-members", "1"], "--chain-members", ">= 2"),
  ("sigmoid_weights", ["--members", "1"], "--members", ">= 2"),
  ("learning_speeds", ["--members", "1"], "--members", ">= 2"),
  ("rnn_through_time", ["--members", "1"], "--members", ">= 2"),
  ("memory_task", ["--lags", "5", "1.5"], "--lags", ">= 1"),
  # depths of the sub-products fit inside the product
  ("lyapunov_depth", ["--depth", "100", "--relu-depth", "101"], "--relu-depth", "[1, --depth"),
  ("lyapunov_depth", ["--exact-depth", "1001"], "--exact-depth", "[1, --depth = 1000]"),
]


@pytest.fixture
def no_data(monkeypatch):
  """The data loaders fail if called: an option check must come before them."""

  def refuse(*args, **kwargs):
    raise AssertionError("data loaded before the options were checked")

  monkeypatch.setattr(data, "digits", refuse)
  monkeypatch.setattr(data, "teacher_student", refuse)


@pytest.mark.parametrize(
  ("experiment", "argv", "flag", "allowed"),
  BAD_OPTIONS,
  ids=[f"{e}{' '.join(a)}" for e, a, *_ in BAD_OPTIONS],
)
def test_bad_experiment_option_is_a_parse_error_naming_flag_and_range(
  experiment, argv, flag, allowed, no_data, capsys
):
  with pytest.raises(SystemExit) as error:
    cli.main(["run", experiment, *argv, "--out", "/nonexistent/never-written"])
  assert error.value.code == 2
  err = capsys.readouterr().err
  assert f"usage: vanish run {experiment}" in err
  message = err.strip().splitlines()[-1]
  assert flag in message and allowed in message, message


@pytest.mark.parametrize(
  ("experiment", "argv"),
  [
    ("learning_speeds", ["--train-size", "10"]),  # the batch is the whole training set
    ("rescaling", ["--batch-size", str(_common.DIGITS_TRAIN)]),
    ("trainability", ["--train-size", str(_common.DIGITS_TRAIN), "--batch-size", "1438"]),
    ("markov", ["--thresholds", "0.5", "1e-9"]),
    ("phase_map", ["--seed", str(2**32 - 1)]),
    ("jacobian_spectra", ["--members", "2"]),
    ("lyapunov_depth", ["--depth", "100", "--relu-depth", "100"]),
  ],
)
def test_experiment_options_at_the_edge_of_their_range_are_accepted(experiment, argv):
  importlib.import_module(f"experiments.{experiment}").parse_args(argv)


def test_a_small_depth_lowers_the_default_sub_product_depths():
  args = importlib.import_module("experiments.lyapunov_depth").parse_args(["--depth", "100"])
  assert (args.relu_depth, args.exact_depth) == (100, 100)  # the defaults are 250


def test_digits_training_images_known_at_parse_time():
  """``DIGITS_TRAIN`` is what data.digits() trains on, whatever the seed of the split."""
  for seed in (0, 7):
    assert len(data.digits(seed=seed)[0].y) == _common.DIGITS_TRAIN


@pytest.mark.parametrize("text", ["1.5", "x", "", "0"])
def test_integer_option_refuses_non_integers_naming_the_range(text):
  with pytest.raises(argparse.ArgumentTypeError, match=r"must be an integer in \[1, 9\]"):
    _common.integer(1, 9)(text)
