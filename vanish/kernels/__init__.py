"""Optional Pallas kernels for vanish's hot paths, each with a pure-``jnp`` reference.

* :mod:`~vanish.kernels.scalar_chain`: Monte Carlo of the one-neuron chain with ``w, b`` sampled
  in the kernel (Philox4x32, :mod:`~vanish.kernels.philox`), one chain per lane, optionally in
  PTX's approximate arithmetic (:mod:`~vanish.kernels.fast_math`);
* :mod:`~vanish.kernels.small_chain`: the Jacobian chain ``J ← diag(φ'(z)) W J`` of small-width
  ensembles (N ∈ {16, 32, 64}) with each member's ``J`` on chip across all layers, and their
  Lyapunov spectra (Benettin with a Householder QR per layer, ``Q`` on chip).

The kernels are written for Pallas' Triton backend (``pl.pallas_call`` with
``jax.experimental.pallas.triton.CompilerParams``), which jax 0.10–0.11 ships (deprecated but
working on the H100 with jax 0.11.2); on a CPU they run in the Pallas interpreter, which is how
the tests check them against the references. ``use_kernel="auto"`` picks the compiled kernel
only on a supported GPU (:func:`available`) and the reference elsewhere; every result carries
the ``path`` that ran.

Example:
  >>> from vanish import kernels
  >>> kernels.resolve("auto") in kernels.PATHS
  True
"""

from vanish.kernels import fast_math, philox, scalar_chain, small_chain
from vanish.kernels._dispatch import PATHS, available, resolve, unavailable_reason

__all__ = [
  "PATHS",
  "available",
  "fast_math",
  "philox",
  "resolve",
  "scalar_chain",
  "small_chain",
  "unavailable_reason",
]
