"""vanish: vanishing and exploding gradients in deep networks, computed and checked against theory.

Public API::

  import jax, vanish as vn
  net = vn.MLP(widths=[64] + [256] * 100, activation="tanh",
               weights=vn.init.gaussian(sigma_w2=1.5), biases=vn.init.normal(std=0.05 ** 0.5))
  params = net.init(jax.random.key(0), members=128)
  vn.preactivations(net, params, x)             # [M, (batch,) L, n]
  vn.log_gradient_norms(net, params, x)          # [M, (batch,) L]     log ‖δ^l‖
  vn.lyapunov_spectrum(net, params, x)           # [M, (batch,) L, k]  log singular values
  vn.jacobian(net, params, x)                    # [M, (batch,) n_L, n_0]
  vn.scalar_chain(net1, params1, x1)             # one-neuron chain: log|g|, sign
  vn.theory.mean_field("tanh", 1.5, 0.05)

Modules: ``theory`` (mean field, free probability, Hanin, Newman, tanh(n·x) thresholds),
``probability`` (the probabilistic model), ``phase_map`` / ``scale_map`` /
``parameter_map`` (maps over hyperparameters and initial weights), ``markov`` (the Markov
model of training dynamics), ``models`` / ``recurrent`` / ``training`` / ``data`` (Flax NNX
MLPs, RNNs and LSTMs trained with optax), ``store`` (the results store), ``sharding``
(ensembles over devices and hosts), ``streaming`` (statistics of ensembles of any size,
chunked from free memory), ``kernels`` (optional Pallas GPU kernels, jnp references).
"""

from vanish import (
  activations,
  data,
  init,
  kernels,
  markov,
  models,
  parameter_map,
  phase_map,
  probability,
  recurrent,
  scale_map,
  sharding,
  store,
  streaming,
  theory,
  training,
)
from vanish._engine import ForwardOverflowWarning
from vanish.chains import jacobian, log_gradient_norms, outputs, preactivations, scalar_chain
from vanish.networks import MLP, Network, ResidualMLP
from vanish.spectrum import lyapunov_exponents, lyapunov_spectrum

__version__ = "0.1.0"

__all__ = [
  "ForwardOverflowWarning",
  "MLP",
  "Network",
  "ResidualMLP",
  "__version__",
  "activations",
  "data",
  "init",
  "jacobian",
  "kernels",
  "log_gradient_norms",
  "lyapunov_exponents",
  "lyapunov_spectrum",
  "markov",
  "models",
  "outputs",
  "parameter_map",
  "phase_map",
  "probability",
  "preactivations",
  "recurrent",
  "scalar_chain",
  "scale_map",
  "sharding",
  "store",
  "streaming",
  "theory",
  "training",
]
