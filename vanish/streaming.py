"""Per-layer gradient statistics of ensembles of any size, streamed in fixed blocks.

:func:`gradient_statistics` samples an ensemble of M networks block by block —
each block's parameters are generated *inside* the jitted function from the key
and the member indices, so no more than one block of weights per device ever
exists — computes Nielsen's per-layer ``log ‖∂C/∂b^l‖``
(:func:`vanish.log_gradient_norms`) and reduces it on the device to per-layer
statistics: sample counts, mean and variance, min/max, ``P(‖∂C/∂b^l‖ < ε)`` and
``P(‖∂C/∂b^l‖ > 1/ε)`` counts, the same for the ratio to the last layer
``log(‖δ^l‖/‖δ^L‖)``, and fixed-bin histograms for quantiles.

**Blocks and chunks.** The unit of computation is a *block*: ``block`` consecutive
members ``[j·block, (j+1)·block)``, always computed by one vmapped call of exactly
``block`` members (the last block's padding masked out). ``block`` is a setting
recorded in the result (default :func:`default_block`: from the network and the
platform, never from the chunk, the device count or the free memory). A *chunk* is
one call of the jitted function: ``k`` blocks on each of the local devices
(``shard_map`` over :mod:`vanish.sharding`'s member mesh), each device running a
``lax.scan`` over its ``k`` blocks, one block at a time (a ``lax.cond`` skips blocks
that are all padding). So a call holds one block per device, whatever ``k``; the
chunk only sets how many blocks a call does (:func:`choose_chunk`).

**Determinism.** Member ``m`` draws its parameters from ``fold_in(key, m)`` (as
``net.init`` does) and its activation noise from ``fold_in(noise_key, m)``, and
always sits at position ``m mod block`` of a block of the same compiled shape, so
its log-norms have the same bits whatever the chunk or the device count (XLA's
numbers depend on the batch shape: on the CPU, a per-device batch of 64 members of
width 16 differs from one of 256 in 385 of 640 values, which fixed blocks avoid).
Each block is reduced on the device by a fixed pairwise tree of element-wise adds
(mean, then the sum of squared deviations from it); counts, histograms and extrema
are exact whatever the order; and the host folds the block results in block order
with a sequential float64 sum (``np.add.accumulate``). So the statistics are
bitwise identical for every chunk and device count (tested: chunks of 1, 2, 5
blocks and automatic on 8 devices, 5 blocks a call on one device, 13 members in
blocks of 2; checked: width 16, depth 10, blocks of 64, chunks of 64 to 1024 on 1
and 8 devices), and across reruns. A different ``block`` changes the float
rounding only. On a GPU the same holds within one process (XLA's autotuner caches
its choice per shape); across processes XLA may autotune a block's matmuls
differently unless ``XLA_FLAGS=--xla_gpu_autotune_level=0`` or a persistent
autotune cache pins the choice (not measured).

**Memory model** (float32, ``s = 4`` bytes; one member, B inputs, layer widths
``n_0 … n_L``; ``P = Σ_l (n_l n_{l−1} + n_l)`` parameters)::

  bytes/member ≈ s · [ 3 P                          the sampled parameters pass through up
                                                     to 3 buffers: threefry bits, the normal
                                                     draw and the scaled weights
                       + B Σ_l (n_{l−1} + 2 n_l)     trace kept for the backward pass:
                                                     h^{l−1}, z^l, φ'(z^l) per input (an upper
                                                     bound: XLA keeps about n_l of them)
                       + 6 B L ]                     log-norms, ratios, bins, masks
                 + 8 L                               per-layer keys (threefry: 2 × uint32)

  bytes/device/call ≈ block · bytes/member          one block at a time
                      + k · 6 L s                   per-block moments (count, mean, m2; ×2)
                      + 2 L (bins + 2) · 4          the two histograms

:func:`bytes_per_member` returns the first times ``MARGIN`` (1.1) for allocator
slack; :func:`choose_chunk` checks that ``block`` of them fit in the per-device budget
(``memory_limit``, or ``fraction`` of the smallest free memory among the devices,
:func:`vanish.sharding.free_memory`) and leaves the small rest to the unused
``1 − fraction``. Measured check: XLA's own buffer accounting of the compiled call
(:func:`measured_call_bytes`: ``memory_analysis()`` argument + output + temporary
bytes) on one CPU device (jax 0.10.2), tanh MLPs: the slope between blocks of 64 and
128 members (one block a call), and a call of 4 blocks of 64 against one:

  =====================  ======  ========  =======  =========  ==========  ===========
  widths × depth, B      3 s P   measured  formula  formula /  call of 1   call of 4
                                 /member   /member  measured   block, MB   blocks, MB
  =====================  ======  ========  =======  =========  ==========  ===========
  64 × 4, B = 1          199680   85800    202880   2.36        5.69        5.62
  32 × 10, B = 1         126720   49368    130880   2.65        3.64        3.48
  16 × 20, B = 1          65280   25704     69760   2.71        2.61        2.29
  16 × 20, B = 8          65280   46116    100000   2.17        3.92        3.60
  8 × 40, B = 4           34560   23700     54080   2.28        3.44        2.81
  =====================  ======  ========  =======  =========  ==========  ===========

So a call's memory does not grow with the chunk, and the parameters dominate the
per-member bytes. The CPU keeps about 1.2–1.3 s P of them (it fuses the sampler into
the draw); the model counts the unfused worst case, 3 P. On an H100 (session 10,
``benchmarks/results/chunking_h100.json``) calls on blocks of 128 of the paper's
networks (width 128, depth 100) peaked at 2.55 GB of device memory over the whole run,
0.91 of the model's 2.81 GB (``benchmarks/bench_chunking.py`` records the peak next to
the model). Earlier versions scanned over the stacked weights, and ``vmap`` over members
made XLA copy all of them to layer-major order first: 2.0 s P a member on the CPU (a
call of one block at 64 × 4 took 8.81 MB, not 5.69), and a pass over every weight more
on an accelerator. :func:`vanish._engine.layer_params` now slices each layer in place.

**Choosing the sizes.** :func:`default_block` takes ``BLOCK`` (1024) members,
halved while a block's working set (``block · bytes/member``) exceeds
``BLOCK_BYTES`` — 4 GiB on an accelerator, enough members to keep a GPU's kernels
large (128 of the paper's networks: 211 M random draws and 128 parallel 128-wide
chains a block) while fitting in half of a 16 GB GPU; 4 MiB on a CPU, where a block
should stay in cache (measured on the shared 2-core CPU, width 16, depth 10: blocks of 64
and 128 members ran at 18 000 members/s, 256 at 17 000, 1024 at 9 600, 8 at 11 900) —
or while half a block still holds all M members. :func:`choose_chunk` then gives each
device up to ``MAX_BLOCKS`` (64) blocks a call, the calls as even as whole blocks
allow: enough work a call that the dispatch and the host's fold (which overlaps the
next call) cost little, and a progress update every few seconds at the paper's size.
With fixed blocks the chunk hardly matters for speed: on the 2-core CPU (width 16,
depth 10, 2000 members, blocks of 64; ``benchmarks/results/chunking_cpu.json``)
chunks of 64 to 2048 members ran within 5 % of each other in their best rounds, and
the automatic one (one call of 32 blocks) at 0.99 of the best.

**Crash safety.** With ``checkpoint=path`` the running statistics (the host's float64
sums, counts, extrema and histograms, and the next member) are written atomically after
every call; a killed run resumes after its last finished call. Since the host folds
blocks in member order, the resumed statistics are bitwise those of an uninterrupted
run, whatever chunk the rerun picks.

The paper's target (issue 7): M = 10⁶ members of width 128 and depth 100, one
input, on one H100: P = 1.65 M, bytes/member ≈ 1.1 · 4 · (4 · 1.65 M + 38 400 +
600) + 800 ≈ 29 MB, so a block of 128 needs ≈ 3.7 GB; 7 813 blocks go in 123 calls
of 64; the weights alone would be 6.6 TB if materialized at once.

Example:
  >>> import jax, vanish as vn
  >>> net = vn.MLP([4] * 5, "tanh", vn.init.gaussian(1.0))
  >>> stats = vn.streaming.gradient_statistics(net, jax.numpy.ones(4), key=jax.random.key(0),
  ...                                         members=100, block=4, chunk=40, progress=False)
  >>> stats.count.shape, int(stats.count[0]), stats.block
  ((4,), 100, 4)
  >>> bool(stats.mean[0] < stats.mean[-1])   # tanh at σ_w² = 1: early layers get less
  True
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import math
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.sharding import PartitionSpec as P

from vanish import _checks, _engine
from vanish import init as _init
from vanish import sharding as _sharding
from vanish import store as _store
from vanish.chains import _backward_log_norms
from vanish.networks import Network, _check_key, _Sampler
from vanish.progress import Progress

__all__ = [
  "GradientStatistics",
  "bytes_per_member",
  "choose_chunk",
  "default_block",
  "gradient_statistics",
  "measured_call_bytes",
]

MARGIN = 1.1
"""Safety factor of :func:`bytes_per_member` over the itemized model."""
BLOCK = 1024
"""Members per block at most by default (:func:`default_block`)."""
BLOCK_BYTES = {"cpu": 4 * 2**20, "accelerator": 4 * 2**30}
"""A default block's working set at most: about a core's share of a CPU's cache, and a
few GiB of an accelerator's memory (module docstring)."""
MAX_BLOCKS = 64
"""Blocks per device per call at most (:func:`choose_chunk`)."""


# --------------------------------------------------------------------------- memory model


def _model_bytes(net: Network, inputs: int, itemsize: int) -> int:
  widths = net.widths
  depth = net.depth
  params = sum(widths[l + 1] * widths[l] + widths[l + 1] for l in range(depth))
  trace = inputs * sum(widths[l] + 2 * widths[l + 1] for l in range(depth))
  return itemsize * (3 * params + trace + 6 * inputs * depth) + 8 * depth


def bytes_per_member(net: Network, inputs: int = 1, *, dtype: Any = jnp.float32) -> int:
  """Device bytes one member of a :func:`gradient_statistics` block needs (module docstring).

  Args:
    net: the network spec.
    inputs: the number of inputs B per member (``x`` of shape ``(B, n_0)``), ≥ 1.
    dtype: the parameter dtype.

  Returns:
    ``MARGIN ×`` the itemized model, in bytes.

  Example:
    >>> import vanish as vn
    >>> round(bytes_per_member(vn.MLP([128] * 101)) / 1e6, 1)   # the paper's networks, MB
    22.0
  """
  if not isinstance(net, Network):
    raise TypeError(f"net must be a vanish network (e.g. vn.MLP), got {type(net).__name__}")
  inputs = _positive_int("inputs", inputs)
  itemsize = jnp.dtype(dtype).itemsize
  return int(math.ceil(MARGIN * _model_bytes(net, inputs, itemsize)))


def default_block(members: int, member_bytes: int, platform: str = "gpu") -> int:
  """The default block: ``BLOCK`` members, halved while a block's working set exceeds the
  platform's ``BLOCK_BYTES`` or half a block still holds all ``members``.

  It depends on the configuration and the platform only, never on the chunk, the
  device count or the free memory, so it keeps results reproducible across those.

  Args:
    members: the ensemble size M ≥ 1.
    member_bytes: :func:`bytes_per_member`, > 0.
    platform: ``"cpu"`` or an accelerator platform (``"gpu"``, ``"cuda"``, ``"tpu"``, …).

  Returns:
    A power of two in ``1 … BLOCK``.

  Example:
    >>> import vanish as vn
    >>> paper = bytes_per_member(vn.MLP([128] * 101))
    >>> default_block(10**6, paper), default_block(10**6, paper, "cpu"), default_block(13, 100)
    (128, 1, 16)
  """
  members = _positive_int("members", members)
  member_bytes = _positive_int("member_bytes", member_bytes)
  budget = BLOCK_BYTES["cpu" if platform == "cpu" else "accelerator"]
  block = BLOCK
  while block > 1 and (block * member_bytes > budget or block // 2 >= members):
    block //= 2
  return block


def choose_chunk(
  members: int,
  member_bytes: int,
  *,
  memory_limit: int | None = None,
  fraction: float = 0.5,
  block: int = 1,
  devices: Sequence[jax.Device] | None = None,
  max_blocks: int = MAX_BLOCKS,
) -> int:
  """Members per chunk (one call): up to ``max_blocks`` blocks per device, evened out.

  A call holds one block per device at a time, so memory bounds the block, not the
  chunk: this checks that ``block`` members fit in the per-device budget, then gives
  each device ``k ≤ max_blocks`` blocks a call, with ``k`` as small as the fewest
  calls allow (so the calls are even; the last call's missing blocks are skipped,
  not computed).

  Args:
    members: the ensemble size M ≥ 1.
    member_bytes: bytes one member needs on its device (:func:`bytes_per_member`), > 0.
    memory_limit: bytes one device may use; default ``fraction`` of the smallest
      :func:`vanish.sharding.free_memory` among ``devices``.
    fraction: in (0, 1], used without ``memory_limit``.
    block: members per block (the unit of computation).
    devices: default all local devices.
    max_blocks: blocks per device per call at most, ≥ 1.

  Returns:
    The chunk C: real members per call, ``k · block · len(devices)`` (less when one call
    covers the ensemble: ``ceil(M / block) · block``).

  Raises:
    ValueError: if one block does not fit in the budget.

  Example:
    >>> choose_chunk(2000, member_bytes=100, memory_limit=10**6, block=64, devices=[None])
    2048
    >>> choose_chunk(10**6, member_bytes=100, memory_limit=10**6, block=64, devices=[None] * 2)
    8192
  """
  members = _positive_int("members", members)
  member_bytes = _positive_int("member_bytes", member_bytes)
  block = _positive_int("block", block)
  max_blocks = _positive_int("max_blocks", max_blocks)
  devices = list(jax.local_devices() if devices is None else devices)
  if not devices:
    raise ValueError("devices must not be empty")
  if memory_limit is None:
    if not 0 < fraction <= 1:
      raise ValueError(f"fraction must be in (0, 1], got {fraction!r}")
    memory_limit = int(fraction * min(_sharding.free_memory(d) for d in devices))
    source = f"fraction={fraction} of the free device memory ({memory_limit} bytes)"
  else:
    memory_limit = _positive_int("memory_limit", memory_limit)
    source = f"memory_limit={memory_limit} bytes"
  if block * member_bytes > memory_limit:
    raise ValueError(
      f"{source} is too small: a device computes a block of {block} member(s) of "
      f"{member_bytes} bytes at once, so it needs at least {block * member_bytes} bytes "
      "(raise memory_limit, lower block, or use smaller networks)"
    )
  blocks = -(-members // block)
  per_device = -(-blocks // len(devices))  # blocks each device does in all
  calls = -(-per_device // max_blocks)
  k = -(-per_device // calls)
  return min(k * len(devices), blocks) * block


def measured_call_bytes(
  net: Network,
  x: Any,
  *,
  block: int,
  blocks: int = 1,
  cotangent: Any = None,
  bins: int = 4000,
  wrt: str = "bias",
  dtype: Any = jnp.float32,
  precision: str = "highest",
) -> int:
  """XLA's own accounting of one device's call: argument + output + temporary bytes.

  The check of the memory model (module docstring): compiles (or reuses) the chunk
  function for ``blocks`` blocks of ``block`` members on one device and reads
  ``compiled.memory_analysis()``.

  Args:
    net, x, cotangent, wrt, dtype, precision: as for :func:`gradient_statistics`.
    block: members per block, ≥ 1.
    blocks: blocks in the call, ≥ 1.
    bins: the histogram's bins.

  Returns:
    Bytes, or ``-1`` where the backend has no memory analysis.

  Example:
    >>> import numpy as np, vanish as vn
    >>> measured_call_bytes(vn.MLP([4] * 3), np.ones(4), block=0)
    Traceback (most recent call last):
    ...
    ValueError: block must be an integer >= 1, got 0
  """
  block, blocks = _positive_int("block", block), _positive_int("blocks", blocks)
  bins = _positive_int("bins", bins)
  if wrt not in ("bias", "weight"):
    raise ValueError(f"wrt must be 'bias' or 'weight', got {wrt!r}")
  _engine.check_precision(precision)
  x, batched, cotangent = _check_inputs(net, x, cotangent, dtype)
  device = jax.local_devices()[0]
  size = block * blocks
  dtype = jnp.dtype(dtype).name
  spec = _ChunkSpec(net, dtype, precision, wrt, batched, block, size, bins, (device,))
  index = _sharding.shard_members(jnp.zeros(size, jnp.uint32), _sharding.member_mesh([device]))
  scalars = (jnp.float32(0), jnp.float32(-1), jnp.float32(1))
  args = (jax.random.key(0), None, index, jnp.uint32(size), x, cotangent, scalars)
  analysis = _run_chunk.lower(spec, *args).compile().memory_analysis()
  if analysis is None:
    return -1
  return int(
    analysis.argument_size_in_bytes + analysis.output_size_in_bytes + analysis.temp_size_in_bytes
  )


# --------------------------------------------------------------------------- results


@dataclasses.dataclass(frozen=True)
class GradientStatistics:
  """Per-layer statistics of ``log ‖∂C/∂b^l‖`` over an ensemble (natural logs), l = 1..L.

  Every (member, input) pair is one sample. Moments, extrema and ratios use the
  finite samples only; exact zeros (``log = −inf``) are counted in ``zero``, and samples
  whose forward pass overflowed float32 (NaN, see :class:`vanish.ForwardOverflowWarning`)
  in ``nan``: the fractions ``p_vanish``/``p_explode`` are of the samples that are not NaN.

  Attributes:
    members: M; samples: M × inputs.
    epsilon: the threshold ε.
    count: ``[L]`` finite samples.
    zero: ``[L]`` samples with a gradient exactly 0 (``−inf``).
    nan: ``[L]`` samples that are NaN (their forward pass overflowed).
    mean, var: ``[L]`` of the finite log-norms (population variance).
    min, max: ``[L]`` of the finite log-norms.
    vanish, explode: ``[L]`` samples with ``‖δ^l‖ < ε`` (zeros included) and ``> 1/ε``.
    ratio_count, ratio_mean, ratio_var, ratio_min, ratio_max: the same for
      ``log(‖δ^l‖/‖δ^L‖)`` (finite where both norms are positive).
    ratio_zero: ``[L]`` samples with ``‖δ^l‖ = 0 < ‖δ^L‖`` (a ratio of ``−inf``).
    bin_edges: ``[K + 1]`` the histogram's fixed edges.
    histogram, ratio_histogram: ``[L, K + 2]`` sample counts: below ``bin_edges[0]``
      (zeros included), the K bins, then at or above ``bin_edges[-1]``.
    block: the members per block the result was computed with (results depend on it).
  """

  members: int
  samples: int
  epsilon: float
  count: np.ndarray
  zero: np.ndarray
  nan: np.ndarray
  mean: np.ndarray
  var: np.ndarray
  min: np.ndarray
  max: np.ndarray
  vanish: np.ndarray
  explode: np.ndarray
  ratio_count: np.ndarray
  ratio_mean: np.ndarray
  ratio_var: np.ndarray
  ratio_min: np.ndarray
  ratio_max: np.ndarray
  ratio_zero: np.ndarray
  bin_edges: np.ndarray
  histogram: np.ndarray
  ratio_histogram: np.ndarray
  block: int

  @property
  def std(self) -> np.ndarray:
    """``[L]`` standard deviation of the finite log-norms."""
    return np.sqrt(self.var)

  @property
  def defined(self) -> np.ndarray:
    """``[L]`` the samples that are not NaN: the denominators of the fractions."""
    return self.samples - self.nan

  @property
  def p_vanish(self) -> np.ndarray:
    """``[L]`` the fraction of samples with ``‖δ^l‖ < ε`` (NaN where every sample is NaN)."""
    return self._fraction(self.vanish)

  @property
  def p_explode(self) -> np.ndarray:
    """``[L]`` the fraction of samples with ``‖δ^l‖ > 1/ε`` (NaN where every sample is NaN)."""
    return self._fraction(self.explode)

  def p_vanish_ci(self, confidence: float = 0.95) -> np.ndarray:
    """``[L, 2]`` Wilson interval of :attr:`p_vanish`."""
    return self._interval(self.vanish, confidence)

  def p_explode_ci(self, confidence: float = 0.95) -> np.ndarray:
    """``[L, 2]`` Wilson interval of :attr:`p_explode`."""
    return self._interval(self.explode, confidence)

  def _fraction(self, counts: np.ndarray) -> np.ndarray:
    defined = self.defined
    return np.where(defined > 0, counts / np.maximum(defined, 1), np.nan)

  def _interval(self, counts: np.ndarray, confidence: float) -> np.ndarray:
    from vanish.probability import wilson_interval

    defined = self.defined
    bounds = wilson_interval(counts, np.maximum(defined, 1), confidence)
    return np.where((defined > 0)[:, None], bounds, np.nan)

  def quantiles(self, levels: Sequence[float], *, ratio: bool = False) -> np.ndarray:
    """``[L, Q]`` quantiles from the histogram (inverted CDF, linear within a bin).

    The error is at most one bin width inside the histogram's range; a quantile
    among exact zeros is ``−inf``; below or above the range the under/overflow bin
    spans ``[min, bin_edges[0])`` or ``[bin_edges[-1], max]``.

    Args:
      levels: in (0, 1).
      ratio: quantiles of ``log(‖δ^l‖/‖δ^L‖)`` instead of ``log ‖δ^l‖``.
    """
    levels = np.asarray(levels, np.float64)
    if levels.ndim != 1 or not np.all((levels > 0) & (levels < 1)):
      raise ValueError(f"levels must be a 1-D sequence of values in (0, 1), got {levels}")
    counts = self.ratio_histogram if ratio else self.histogram
    low, high = (self.ratio_min, self.ratio_max) if ratio else (self.min, self.max)
    zero = self.ratio_zero if ratio else self.zero
    out = np.empty((counts.shape[0], levels.size))
    for l in range(counts.shape[0]):
      out[l] = _histogram_quantiles(counts[l], zero[l], self.bin_edges, low[l], high[l], levels)
    return out

  def as_arrays(self) -> dict[str, np.ndarray]:
    """Every field as a NumPy array (for :mod:`vanish.store`)."""
    return {f.name: np.asarray(getattr(self, f.name)) for f in dataclasses.fields(self)}


def _histogram_quantiles(counts, zero, edges, low, high, levels):
  total = counts.sum()
  if total == 0:
    return np.full(levels.size, np.nan)
  lower = np.concatenate([[low], edges[:-1], [edges[-1]]])
  upper = np.concatenate([[edges[0]], edges[1:], [high]])
  lower, upper = np.maximum(lower, low), np.minimum(upper, high)
  finite_counts = counts.astype(np.float64).copy()
  finite_counts[0] -= zero
  cumulative = zero + np.cumsum(finite_counts)
  out = np.empty(levels.size)
  for i, q in enumerate(levels):
    rank = q * total
    if rank <= zero:
      out[i] = -np.inf
      continue
    b = int(np.searchsorted(cumulative, rank, side="left"))
    before = cumulative[b] - finite_counts[b]
    within = (rank - before) / finite_counts[b] if finite_counts[b] else 1.0
    out[i] = lower[b] + within * max(upper[b] - lower[b], 0.0)
  return out


# --------------------------------------------------------------------------- the chunk


@dataclasses.dataclass(frozen=True)
class _ChunkSpec:
  """Everything static about a compiled chunk (hashable: a jit static argument)."""

  net: Network
  dtype: str
  precision: str
  wrt: str
  batched: bool
  block: int
  size: int  # compiled members per chunk, a multiple of block × devices
  bins: int
  devices: tuple[jax.Device, ...]


def _tree_sum(a: jax.Array) -> jax.Array:
  """``[S, L] -> [L]`` by a fixed pairwise tree of element-wise adds (zero-padded to 2^k rows).

  The order of the adds depends only on S (the block's samples), so each block's sum
  has the same bits in any chunk.
  """
  size = a.shape[0]
  width = 1 << (size - 1).bit_length()
  if width != size:
    a = jnp.concatenate([a, jnp.zeros((width - size, a.shape[1]), a.dtype)], axis=0)
  while a.shape[0] > 1:
    half = a.shape[0] // 2
    a = a[:half] + a[half:]
  return a[0]


def _block_moments(values: jax.Array, ok: jax.Array):
  """``(count, mean, Σ (v − mean)²)``, each ``[L]``, of one block's ``values, ok: [S, L]``."""
  count = ok.sum(axis=0, dtype=jnp.int32)
  total = _tree_sum(jnp.where(ok, values, 0))
  mean = total / jnp.maximum(count, 1).astype(values.dtype)
  deviation = jnp.where(ok, values - mean[None, :], 0)
  return count, mean, _tree_sum(deviation * deviation)


def _add_histogram(counts, values, valid, low, width):
  """``counts [L, bins + 2]`` plus the int32 counts of ``values [n, L]`` (−inf/below first,
  ≥ top last)."""
  bins = counts.shape[1] - 2
  position = jnp.floor((values - low) / width)
  position = jnp.where(jnp.isfinite(position), position, jnp.where(values > low, bins, -1))
  index = jnp.clip(position, -1, bins).astype(jnp.int32) + 1
  layers = jnp.broadcast_to(jnp.arange(values.shape[1], dtype=jnp.int32)[None, :], values.shape)
  return counts.at[layers, index].add(valid.astype(jnp.int32), mode="drop")


def _member_log_norms(spec: _ChunkSpec, key, noise_key, index, x, cotangent):
  """``[C, (B,) L]`` log-norms of members ``index`` (parameters sampled here, as ``net.init``)."""
  net = spec.net
  sampler = net if isinstance(net.biases, _init.Centered) else _Sampler.of(net)
  member_keys = jax.vmap(lambda m: jax.random.fold_in(key, m))(index)
  params = jax.vmap(sampler._init_member, in_axes=(0, None))(member_keys, jnp.dtype(spec.dtype))
  prec = _engine.lax_precision(spec.precision)

  def member(p, m):
    k = None if noise_key is None else jax.random.fold_in(noise_key, m)
    if not spec.batched:
      return _backward_log_norms(net, p, x, k, cotangent, prec, spec.wrt)

    def one(xb, b, c):
      kb = None if k is None else jax.random.fold_in(k, b)
      return _backward_log_norms(net, p, xb, kb, c, prec, spec.wrt)

    c_axis = 0 if cotangent.ndim == 2 else None
    return jax.vmap(one, in_axes=(0, 0, c_axis))(x, jnp.arange(x.shape[0]), cotangent)

  return jax.vmap(member)(params, index)


def _empty_partials(depth: int, bins: int, dtype: Any) -> dict[str, jax.Array]:
  """The identity of :func:`_block_partials`' running counts, extrema and histograms."""
  big = jnp.full(depth, jnp.inf, dtype)
  counts = jnp.zeros(depth, jnp.int32)
  histogram = jnp.zeros((depth, bins + 2), jnp.int32)
  return {
    "min": big,
    "max": -big,
    "ratio_min": big,
    "ratio_max": -big,
    "zero": counts,
    "nan": counts,
    "ratio_zero": counts,
    "vanish": counts,
    "explode": counts,
    "histogram": histogram,
    "ratio_histogram": histogram,
  }


def _block_partials(spec, key, noise_key, index, members, x, cotangent, scalars, partials):
  """One block of ``spec.block`` members ``index``: its moments, and ``partials`` updated.

  Always one vmapped call of exactly ``spec.block`` members (padding masked by
  ``index < members``), so every member's log-norms come from the same compiled
  computation whatever the chunk or the devices.

  Returns:
    ``(moments, ratio_moments)``, each ``(count, mean, m2)`` of ``[L]``, and the running
    extrema, threshold counts and histograms with this block's samples added (exact:
    integer adds and min/max do not depend on the order).
  """
  log_eps, low, width = scalars
  log_g = _member_log_norms(spec, key, noise_key, index, x, cotangent)
  depth = log_g.shape[-1]
  log_g = log_g.reshape(-1, depth)  # [block × B, L]: member-major
  inputs = log_g.shape[0] // index.shape[0]
  valid = jnp.broadcast_to(jnp.repeat(index < members, inputs)[:, None], log_g.shape)
  finite = valid & jnp.isfinite(log_g)
  ratio = log_g - log_g[:, -1:]
  ratio_ok = valid & jnp.isfinite(ratio)
  big = jnp.asarray(jnp.inf, log_g.dtype)
  p = partials
  updated = {
    "min": jnp.minimum(p["min"], jnp.min(jnp.where(finite, log_g, big), axis=0)),
    "max": jnp.maximum(p["max"], jnp.max(jnp.where(finite, log_g, -big), axis=0)),
    "ratio_min": jnp.minimum(p["ratio_min"], jnp.min(jnp.where(ratio_ok, ratio, big), axis=0)),
    "ratio_max": jnp.maximum(p["ratio_max"], jnp.max(jnp.where(ratio_ok, ratio, -big), axis=0)),
    "zero": p["zero"] + (valid & (log_g == -big)).sum(axis=0, dtype=jnp.int32),
    "nan": p["nan"] + (valid & jnp.isnan(log_g)).sum(axis=0, dtype=jnp.int32),
    "ratio_zero": p["ratio_zero"] + (valid & (ratio == -big)).sum(axis=0, dtype=jnp.int32),
    "vanish": p["vanish"] + (valid & (log_g < log_eps)).sum(axis=0, dtype=jnp.int32),
    "explode": p["explode"] + (valid & (log_g > -log_eps)).sum(axis=0, dtype=jnp.int32),
    "histogram": _add_histogram(p["histogram"], log_g, valid & ~jnp.isnan(log_g), low, width),
    "ratio_histogram": _add_histogram(
      p["ratio_histogram"], ratio, valid & ~jnp.isnan(ratio), low, width
    ),
  }
  return (_block_moments(log_g, finite), _block_moments(ratio, ratio_ok)), updated


def _local_stats(spec: _ChunkSpec, key, noise_key, index, members, x, cotangent, scalars):
  """One device's statistics of its members ``index`` (``k`` whole blocks), block by block.

  A ``lax.scan`` over the ``k`` blocks, each one :func:`_block_partials` call under a
  ``lax.cond`` that skips blocks of padding only: the working set is one block, and
  the block's computation has the same shapes for any ``k``.

  Returns:
    ``moments`` and ``ratio_moments``: ``(count, mean, m2)`` of ``[k, L]`` per block;
    the counts, extrema and histograms with a leading device axis of 1.
  """
  depth = spec.net.depth
  dtype = jnp.dtype(spec.dtype)
  empty_moments = (jnp.zeros(depth, jnp.int32), jnp.zeros(depth, dtype), jnp.zeros(depth, dtype))

  def one_block(partials, block_index):
    def compute(partials):
      return _block_partials(
        spec, key, noise_key, block_index, members, x, cotangent, scalars, partials
      )

    def skip(partials):  # a block of padding (padding only ever ends a chunk)
      return (empty_moments, empty_moments), partials

    moments, partials = lax.cond(block_index[0] < members, compute, skip, partials)
    return partials, moments

  start = _empty_partials(depth, spec.bins, dtype)
  partials, (moments, ratio_moments) = lax.scan(one_block, start, index.reshape(-1, spec.block))
  return {
    "moments": moments,
    "ratio_moments": ratio_moments,
    **jax.tree.map(lambda a: a[None], partials),
  }


@functools.partial(jax.jit, static_argnums=0)
def _run_chunk(spec: _ChunkSpec, key, noise_key, index, members, x, cotangent, scalars):
  """One chunk: every device runs :func:`_local_stats` on its members (``shard_map``).

  ``shard_map`` rather than sharding propagation, so that each device runs exactly
  the single-device program on its ``size / devices`` members.
  """
  mesh = _sharding.member_mesh(spec.devices)
  members_axis = P(_sharding.AXIS)
  local = jax.shard_map(
    functools.partial(_local_stats, spec),
    mesh=mesh,
    in_specs=(P(), P(), members_axis, P(), P(), P(), P()),
    out_specs=members_axis,
    check_vma=False,  # the scans' carries start from constants (shared/JAX_NOTES.md §3)
  )
  return local(key, noise_key, index, members, x, cotangent, scalars)


# --------------------------------------------------------------------------- the stream


class _Accumulator:
  """Folds chunk results in member order: sequential float64 sums over blocks, exact counts."""

  def __init__(self, depth: int, bins: int):
    zeros = functools.partial(np.zeros, depth)
    self.reference = None  # per-layer shift: the mean of block 0, the same in any chunking
    self.moments = {name: [zeros(np.int64), zeros(), zeros()] for name in ("", "ratio_")}
    self.counts = {n: zeros(np.int64) for n in ("zero", "nan", "ratio_zero", "vanish", "explode")}
    self.extrema = {
      "min": np.full(depth, np.inf),
      "max": np.full(depth, -np.inf),
      "ratio_min": np.full(depth, np.inf),
      "ratio_max": np.full(depth, -np.inf),
    }
    self.histograms = {n: np.zeros((depth, bins + 2), np.int64) for n in ("", "ratio_")}
    self.references = {}

  def add(self, out: dict[str, Any], real_blocks: int) -> None:
    out = jax.device_get(out)
    for prefix in ("", "ratio_"):
      count, mean, m2 = (np.asarray(a[:real_blocks], np.float64) for a in out[prefix + "moments"])
      if prefix not in self.references:  # block 0's mean; 0 where block 0 has no finite value
        self.references[prefix] = np.where(count[0] > 0, mean[0], 0.0)
      shift = mean - self.references[prefix]
      sums = self.moments[prefix]
      sums[0] += count.sum(axis=0).astype(np.int64)
      # Σ (v − K) and Σ (v − K)² per block, added in block order (sequentially).
      for slot, rows in ((1, count * shift), (2, m2 + count * shift * shift)):
        sums[slot] = np.add.accumulate(np.concatenate([sums[slot][None], rows]), axis=0)[-1]
      self.histograms[prefix] += np.asarray(out[prefix + "histogram"], np.int64).sum(axis=0)
    for name in self.counts:  # per-device rows: integers, exact in any order
      self.counts[name] += np.asarray(out[name], np.int64).sum(axis=0)
    for name, value in self.extrema.items():
      pick = np.minimum if name.endswith("min") else np.maximum
      self.extrema[name] = pick(value, pick.reduce(np.asarray(out[name], np.float64), axis=0))

  def state(self) -> dict[str, np.ndarray]:
    """Everything folded so far, as named arrays (for a checkpoint)."""
    out = {f"reference/{p}": np.asarray(v) for p, v in self.references.items()}
    for prefix, sums in self.moments.items():
      out |= {f"moments/{prefix}/{i}": np.asarray(v) for i, v in enumerate(sums)}
    out |= {f"histogram/{p}": v for p, v in self.histograms.items()}
    out |= {f"count/{n}": v for n, v in self.counts.items()}
    return out | {f"extremum/{n}": v for n, v in self.extrema.items()}

  def restore(self, state: dict[str, np.ndarray]) -> None:
    """The inverse of :meth:`state`."""
    for name, value in state.items():
      kind, _, rest = name.partition("/")
      if kind == "reference":
        self.references[rest] = value
      elif kind == "moments":
        prefix, _, slot = rest.rpartition("/")
        self.moments[prefix][int(slot)] = value
      else:
        table = {"histogram": self.histograms, "count": self.counts, "extremum": self.extrema}
        table[kind][rest] = value

  def finish(self, **fields: Any) -> GradientStatistics:
    moments = {}
    for prefix, (count, first, second) in self.moments.items():
      n = np.maximum(count, 1)
      shift = first / n
      reference = self.references.get(prefix, 0.0)
      moments[prefix + "count"] = count
      moments[prefix + "mean"] = np.where(count > 0, reference + shift, np.nan)
      moments[prefix + "var"] = np.where(count > 0, np.maximum(second / n - shift**2, 0.0), np.nan)
    extrema = {
      k: np.where(moments[("ratio_" if "ratio" in k else "") + "count"] > 0, v, np.nan)
      for k, v in self.extrema.items()
    }
    return GradientStatistics(
      **fields,
      **moments,
      **extrema,
      **self.counts,
      histogram=self.histograms[""],
      ratio_histogram=self.histograms["ratio_"],
    )


def gradient_statistics(
  net: Network,
  x: Any,
  *,
  key: jax.Array,
  members: int,
  cotangent: Any = None,
  noise_key: jax.Array | None = None,
  chunk: int | str = "auto",
  block: int | None = None,
  memory_limit: int | None = None,
  fraction: float = 0.5,
  epsilon: float = 1e-3,
  histogram: tuple[float, float, int] = (-200.0, 200.0, 4000),
  wrt: str = "bias",
  precision: str = "highest",
  dtype: Any = jnp.float32,
  devices: Sequence[jax.Device] | None = None,
  progress: bool = True,
  checkpoint: str | os.PathLike | None = None,
) -> GradientStatistics:
  """Per-layer statistics of ``log ‖∂C/∂b^l‖`` (Nielsen ch. 5) over M networks, streamed.

  Equivalent to ``vn.log_gradient_norms(net, net.init(key, members), x, cotangent,
  key=noise_key)`` summarized per layer, without ever holding more than one block of
  parameters per device (see the module docstring for the blocks, the memory model and
  the determinism).

  Args:
    net: the network spec.
    x: input ``(n_0,)`` or ``(B, n_0)``; every member sees the same inputs.
    key: typed key of the parameters: member m is ``net.init(key, 1, first=m)``.
    members: the ensemble size M, 1 ≤ M < 2³².
    cotangent: ``∇_a C`` at the output, ``(n_L,)`` or ``(B, n_L)``; default all ones.
    noise_key: required for stochastic activations (member m uses ``fold_in(noise_key, m)``).
    chunk: members per call, a multiple of ``block`` (rounded up to whole blocks on
      every device, the rest masked), or ``"auto"`` (:func:`choose_chunk`). Speed only:
      the results do not depend on it.
    block: members per block, the unit of computation (≥ 1); default
      :func:`default_block`. Results depend on it (float rounding), never on ``chunk``
      or the devices; recorded in the result.
    memory_limit: bytes one device may use (for ``chunk="auto"``: one block must fit).
    fraction: share of the free device memory one device may use without ``memory_limit``.
    epsilon: in (0, 1): vanished if ``‖δ^l‖ < ε``, exploded if ``‖δ^l‖ > 1/ε``.
    histogram: ``(low, high, bins)`` for the fixed-bin histograms and the quantiles.
    wrt: ``"bias"`` (``‖δ^l‖``) or ``"weight"`` (``‖δ^l‖ ‖a^{l−1}‖``).
    precision: matmul precision, default ``"highest"``.
    dtype: the parameter dtype.
    devices: the devices to shard each call over (default all local devices).
    progress: draw a progress bar (:mod:`vanish.progress`) when there is more than one call.
    checkpoint: a file (``.npz``) where the running statistics are written atomically
      after every call. A rerun with the same arguments (``chunk``, ``memory_limit``,
      ``fraction`` and ``devices`` may differ) resumes after the last finished call and
      returns the same statistics bit for bit; once finished, the file holds the whole
      result and a rerun only reads it. A file written for other arguments is an error.

  Returns:
    A :class:`GradientStatistics`.
  """
  if not isinstance(net, Network):
    raise TypeError(f"net must be a vanish network (e.g. vn.MLP), got {type(net).__name__}")
  _check_key(key)
  members = _positive_int("members", members)
  if members >= 2**32:
    raise ValueError(f"members must be < 2**32 (uint32 member indices), got {members}")
  if block is not None:
    block = _positive_int("block", block)
  if wrt not in ("bias", "weight"):
    raise ValueError(f"wrt must be 'bias' or 'weight', got {wrt!r}")
  _engine.check_precision(precision)
  _checks.number("fraction", fraction, minimum=0, strict=True, maximum=1)
  epsilon = float(epsilon)
  if not 0 < epsilon < 1:
    raise ValueError(f"epsilon must be in (0, 1), got {epsilon}")
  low, high, bins = _check_histogram(histogram)
  stochastic = any(s.layer.activation.stochastic for s in net.segments)
  if stochastic and noise_key is None:
    raise ValueError("the network's activation is stochastic: pass noise_key=jax.random.key(...)")
  if noise_key is not None:
    _check_key(noise_key)
  x, batched, cotangent = _check_inputs(net, x, cotangent, dtype)
  devices = tuple(jax.local_devices() if devices is None else devices)
  if not devices:
    raise ValueError("devices must not be empty")
  inputs = x.shape[0] if batched else 1
  member_bytes = bytes_per_member(net, inputs, dtype=dtype)
  if block is None:
    block = default_block(members, member_bytes, devices[0].platform)
  if isinstance(chunk, str):
    if chunk != "auto":
      raise ValueError(f"chunk must be 'auto' or an integer >= 1, got {chunk!r}")
    chunk = choose_chunk(
      members,
      member_bytes,
      memory_limit=memory_limit,
      fraction=fraction,
      block=block,
      devices=devices,
    )
  else:
    chunk = _positive_int("chunk", chunk)
    if chunk % block:
      raise ValueError(f"chunk ({chunk}) must be a multiple of block ({block})")
  chunk = min(chunk, -(-members // block) * block)
  step = block * len(devices)
  size = -(-chunk // step) * step  # compiled shape: whole blocks on every device
  spec = _ChunkSpec(net, jnp.dtype(dtype).name, precision, wrt, batched, block, size, bins, devices)
  mesh = _sharding.member_mesh(devices)
  width = (high - low) / bins
  scalars = (jnp.float32(math.log(epsilon)), jnp.float32(low), jnp.float32(width))
  accumulator = _Accumulator(net.depth, bins)
  resume_at, fingerprint = 0, None
  if checkpoint is not None:
    fingerprint = _call_fingerprint(
      net, key, noise_key, members, x, cotangent, block, epsilon, (low, high, bins), wrt,
      precision, dtype,
    )  # fmt: skip
    resume_at = _resume(checkpoint, fingerprint, accumulator)
  starts = range(resume_at, members, chunk)
  bar = Progress("gradient_statistics chunks", total=len(starts))
  bar.enabled = bar.enabled and progress and len(starts) > 1
  pending = None

  def fold(out, blocks, end):
    accumulator.add(out, blocks)
    if checkpoint is not None:
      _save_progress(checkpoint, fingerprint, accumulator, end)
    bar.update()

  with bar:
    for start in starts:
      index = np.arange(start, start + size, dtype=np.uint64)
      index = np.where(index < start + chunk, index, 2**32 - 1).astype(np.uint32)  # padding
      index = _sharding.shard_members(jnp.asarray(index), mesh)
      out = _run_chunk(spec, key, noise_key, index, jnp.uint32(members), x, cotangent, scalars)
      if pending is not None:  # fold the previous chunk while this one runs
        fold(*pending)
      real = min(chunk, members - start)
      pending = (out, -(-real // block), start + real)
    if pending is not None:
      fold(*pending)
  stats = accumulator.finish(
    members=members,
    samples=members * inputs,
    epsilon=epsilon,
    bin_edges=np.linspace(low, high, bins + 1),
    block=block,
  )
  if stats.nan.any():
    warnings.warn(
      f"gradient_statistics: {int(stats.nan.max())} of {stats.samples} samples are NaN because "
      "their forward pass overflowed float32 (|z| > 3.4e38: an unbounded activation with a large "
      "weight scale at this depth); they are counted in `nan` and left out of the fractions",
      _engine.ForwardOverflowWarning,
      stacklevel=2,
    )
  return stats


# --------------------------------------------------------------------------- checkpoints


def _call_fingerprint(net, key, noise_key, members, x, cotangent, *settings) -> str:
  """SHA-256 of what the statistics depend on (not the chunk, the devices or the memory)."""
  digest = hashlib.sha256(repr((net, members, settings)).encode())
  keys = [jax.random.key_data(k) for k in (key, noise_key) if k is not None]
  for array in (*keys, x, cotangent):
    if array is not None:
      digest.update(np.ascontiguousarray(np.asarray(array)).tobytes())
  return digest.hexdigest()


def _resume(path: str | os.PathLike, fingerprint: str, accumulator: _Accumulator) -> int:
  """Restores ``accumulator`` from the checkpoint at ``path``; returns the next member."""
  path = Path(path)
  if not path.exists():
    return 0
  try:
    with np.load(path) as data:
      state = {name: data[name] for name in data.files}
  except Exception as error:  # noqa: BLE001 - any unreadable file gets the same message
    raise ValueError(f"checkpoint {path} is not a gradient_statistics checkpoint") from error
  if str(state.pop("fingerprint", "")) != fingerprint:
    raise ValueError(
      f"checkpoint {path} was written by gradient_statistics with other arguments "
      "(network, key, members, inputs, block, epsilon, histogram, wrt, precision or dtype); "
      "delete it or pass another path"
    )
  accumulator.restore({k: v for k, v in state.items() if k != "next"})
  return int(state["next"])


def _save_progress(path, fingerprint: str, accumulator: _Accumulator, next_member: int) -> None:
  state = accumulator.state() | {"fingerprint": np.asarray(fingerprint), "next": next_member}
  _store.write_atomic(path, lambda handle: np.savez(handle, **state))


# --------------------------------------------------------------------------- validation


def _positive_int(name: str, value: Any) -> int:
  return _checks.integer(name, value)


def _check_histogram(histogram: Any) -> tuple[float, float, int]:
  try:
    low, high, bins = histogram
  except (TypeError, ValueError):
    raise ValueError(f"histogram must be (low, high, bins), got {histogram!r}") from None
  low, high = float(low), float(high)
  if not (math.isfinite(low) and math.isfinite(high) and low < high):
    raise ValueError(f"histogram range must be finite with low < high, got ({low}, {high})")
  return low, high, _positive_int("histogram bins", bins)


def _check_inputs(net: Network, x: Any, cotangent: Any, dtype: Any):
  """Validated ``(x, batched, cotangent)`` in ``dtype``, before any compilation."""
  if not isinstance(net, Network):
    raise TypeError(f"net must be a vanish network (e.g. vn.MLP), got {type(net).__name__}")
  dtype = jnp.dtype(dtype)
  if not jnp.issubdtype(dtype, jnp.floating):
    raise TypeError(f"dtype must be a floating dtype, got {dtype}")
  host = np.asarray(x)
  if not (np.issubdtype(host.dtype, np.floating) or np.issubdtype(host.dtype, np.integer)):
    raise TypeError(f"x must be a real array, got dtype {host.dtype}")
  if host.ndim not in (1, 2) or host.shape[-1] != net.widths[0]:
    raise ValueError(
      f"x must have shape (n_0,) or (B, n_0) with n_0 = {net.widths[0]}, got {host.shape}"
    )
  if not np.all(np.isfinite(host)):
    raise ValueError("x contains inf or NaN")
  batched = host.ndim == 2
  n_out = net.widths[-1]
  if cotangent is None:
    cotangent = np.ones(n_out)
  cotangent = np.asarray(cotangent)
  allowed = [(n_out,)] + ([(host.shape[0], n_out)] if batched else [])
  if cotangent.shape not in allowed:
    raise ValueError(
      f"cotangent must have shape {' or '.join(map(str, allowed))}, got {cotangent.shape}"
    )
  if not np.all(np.isfinite(cotangent)):
    raise ValueError("cotangent contains inf or NaN")
  # cast on the host: a device-side convert would compile before the caller's other checks
  return jnp.asarray(host.astype(dtype)), batched, jnp.asarray(cotangent.astype(dtype))
