"""Strict JAX settings for the whole suite (as equinox and jax-md do).

8 fake CPU devices for sharding tests; rank promotion is an error; float32 is the
default dtype and float64 reference paths run under ``with jax.enable_x64(True)``.

The suite is dominated by XLA compiling hundreds of small programs, most of that in
LLVM's optimization passes (e.g. 5.5 s of 6.2 s for a 4-member ``net.init``). Tests
therefore run with ``--xla_backend_optimization_level=0``: the same HLO (XLA's own
optimizations, fusion included, still run), less optimized machine code. Measured on a
2-core CPU: the whole suite 622 s → 370 s, no test slower by more than 3 s. Set
``XLA_FLAGS`` yourself to test with other flags.
"""

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("JAX_NUM_CPU_DEVICES", "8")
os.environ.setdefault("XLA_FLAGS", "--xla_backend_optimization_level=0")

import jax  # noqa: E402

jax.config.update("jax_num_cpu_devices", 8)
jax.config.update("jax_numpy_rank_promotion", "raise")
jax.config.update("jax_numpy_dtype_promotion", "standard")
