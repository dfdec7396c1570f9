"""Strict JAX settings for the whole suite (as equinox and jax-md do).

8 fake CPU devices for sharding tests; rank promotion is an error; float32 is the
default dtype and float64 reference paths run under ``with jax.enable_x64(True)``.
"""

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("JAX_NUM_CPU_DEVICES", "8")

import jax  # noqa: E402

jax.config.update("jax_num_cpu_devices", 8)
jax.config.update("jax_numpy_rank_promotion", "raise")
jax.config.update("jax_numpy_dtype_promotion", "standard")
