"""An independent float64 numpy implementation of the networks, for reference checks.

Written from the equations (Nielsen ch. 2, BP1–BP4), not from vanish's code:
explicit Python loops over layers, numpy activations and derivatives.
"""

import numpy as np
from scipy import special

ACTIVATIONS = {
  "tanh": (np.tanh, lambda z: 1 - np.tanh(z) ** 2),
  "sigmoid": (special.expit, lambda z: special.expit(z) * (1 - special.expit(z))),
  "relu": (lambda z: np.maximum(z, 0), lambda z: (z > 0).astype(float)),
  "linear": (lambda z: z, np.ones_like),
  "erf": (special.erf, lambda z: 2 / np.sqrt(np.pi) * np.exp(-(z**2))),
}


def layer_params(params, member):
  """Flattens vanish's segment-stacked params into per-layer (W, b) float64 pairs."""
  out = []
  for segment in params:
    w, b = (
      np.asarray(segment["w"][member], np.float64),
      np.asarray(segment["b"][member], np.float64),
    )
    out.extend(zip(w, b, strict=True))
  return out


def forward(layers, activation, x, readout="activation", residual_alpha=None):
  """Returns per-layer (input h, pre-activation, φ'(pre)) and the output."""
  phi, dphi = ACTIVATIONS[activation]
  h = np.asarray(x, np.float64)
  trace = []
  for l, (w, b) in enumerate(layers):
    if residual_alpha is not None:
      trace.append((h, h, dphi(h)))
      h = h + residual_alpha * (w @ phi(h) + b)
      continue
    z = w @ h + b
    last_linear = readout == "linear" and l == len(layers) - 1
    trace.append((h, z, np.ones_like(z) if last_linear else dphi(z)))
    h = z if last_linear else phi(z)
  return trace, h


def backprop(layers, trace, cotangent, activation, residual_alpha=None):
  """‖∂C/∂b^l‖ and ‖∂C/∂W^l‖ for l = 1..L by BP1–BP4."""
  phi, _ = ACTIVATIONS[activation]
  g = np.asarray(cotangent, np.float64)  # ∂C/∂h^l
  bias_norms, weight_norms = [], []
  for (w, _), (h_in, _, slope) in zip(reversed(layers), reversed(trace), strict=True):
    if residual_alpha is not None:
      bias_norms.append(residual_alpha * np.linalg.norm(g))
      weight_norms.append(np.linalg.norm(residual_alpha * np.outer(g, phi(h_in))))
      g = g + residual_alpha * slope * (w.T @ g)
    else:
      delta = slope * g
      bias_norms.append(np.linalg.norm(delta))
      weight_norms.append(np.linalg.norm(np.outer(delta, h_in)))
      g = w.T @ delta
  return np.array(bias_norms[::-1]), np.array(weight_norms[::-1])


def jacobian(layers, trace, residual_alpha=None):
  jac = np.eye(layers[0][0].shape[1])
  for (w, _), (_, _, slope) in zip(layers, trace, strict=True):
    if residual_alpha is not None:
      jac = jac + residual_alpha * w @ (slope[:, None] * jac)
    else:
      jac = slope[:, None] * (w @ jac)
  return jac
