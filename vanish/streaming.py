"""Per-layer gradient statistics of ensembles of any size, streamed in memory-bounded chunks.

:func:`gradient_statistics` samples an ensemble of M networks chunk by chunk —
each chunk's parameters are generated *inside* the jitted chunk function from the
key and the member indices, so no more than one chunk of weights ever exists —
computes Nielsen's per-layer ``log ‖∂C/∂b^l‖`` (:func:`vanish.log_gradient_norms`)
and reduces it on the device to per-layer statistics: sample counts, mean and
variance, min/max, ``P(‖∂C/∂b^l‖ < ε)`` and ``P(‖∂C/∂b^l‖ > 1/ε)`` counts, the
same for the ratio to the last layer ``log(‖δ^l‖/‖δ^L‖)``, and fixed-bin
histograms for quantiles. Chunks are sharded over the local devices along the
member axis (:mod:`vanish.sharding`).

**Determinism.** Member ``m`` draws its parameters from ``fold_in(key, m)`` (as
``net.init`` does) and its activation noise from ``fold_in(noise_key, m)``, so its
log-norms depend on ``m`` only. The reduction never depends on how members are
grouped: the members are cut into fixed *blocks* ``[j·block, (j+1)·block)`` (a
parameter, not derived from the chunk, the devices or the memory); each block is
reduced on the device by a fixed pairwise tree of element-wise adds (mean, then
the sum of squared deviations from it); counts, histograms and extrema are exact
whatever the order; and the host folds the block results in block order with a
sequential float64 sum (``np.add.accumulate``). So the *reduction* gives bitwise
identical statistics for every chunk size (a multiple of ``block``) and device count.
The per-member log-norms are bitwise identical only where XLA computes a member the
same way whatever the batch it sits in, which XLA does not promise. Measured on the
CPU (jax 0.10.2): element-wise tails (batches of 1 or 3 members of 6-wide layers
differ from batches of 2, 8, 16 or 24 in the last bit; fixed by padding every device
to a multiple of ``CPU_LANES`` members) and a size-dependent kernel choice (width 16,
depth 10: a per-device batch of 64 members differs from 256 or 1024 in 385 of 640
values, by ≤ 4.8e-7, not fixed). So results are bitwise identical across chunk sizes
and device counts that give the same per-device batch (tested: chunks of 1, 3, 7 and
all 13 members on 8 devices, and 1 device), and agree to float32 rounding otherwise.
Making every size bitwise identical needs a fixed compute shape (each device running
``lax.map`` over fixed batches); ``benchmarks/bench_chunking.py`` records whether a
sweep of chunk sizes gave identical bits.

**Memory model** (float32, ``s = 4`` bytes; one member, B inputs, layer widths
``n_0 … n_L``; ``P = Σ_l (n_l n_{l−1} + n_l)`` parameters)::

  bytes/member ≈ s · [ 4 P                          the sampled parameters pass through 4
                                                     buffers: threefry bits, the normal draw,
                                                     the scaled weights, and the transposed
                                                     copy XLA lays out for Wᵀg (backward)
                       + B Σ_l (n_{l−1} + 2 n_l)     trace kept for the backward pass:
                                                     h^{l−1}, z^l, φ'(z^l) per input (an upper
                                                     bound: XLA keeps about n_l of them)
                       + 6 B L ]                     log-norms, ratios, bins, masks
                 + 8 L                               per-layer keys (threefry: 2 × uint32)

:func:`bytes_per_member` returns this times ``MARGIN`` (1.1) for allocator slack;
the fixed part (histograms ``[L, bins+2]`` int32 twice per device, per-block
results, the program) is small and left to the unused ``1 − fraction`` of memory.
Measured check: XLA's own buffer accounting of the compiled chunk
(``jax.jit(...).lower(...).compile().memory_analysis()``: argument + output +
temporary bytes), slope between chunks of 64 and 128 members on one CPU device
(jax 0.10.2; :func:`measured_bytes_per_member`), tanh MLPs:

  =====================  ======  =========  =============  =========
  widths × depth, B      4 s P   measured   formula (no    formula /
                                            margin)        measured
  =====================  ======  =========  =============  =========
  64 × 4, B = 1          266240  263800     269440         1.02
  32 × 10, B = 1         168960  165664     173120         1.05
  16 × 20, B = 1          87040   83896      91520         1.09
  16 × 20, B = 8          87040   94340     121760         1.29
  8 × 40, B = 4           46080   47956      65600         1.37
  =====================  ======  =========  =============  =========

A least-squares fit of the measurements gives 3.92 · (4 s P) + 1.17 · s B L n: the
parameters dominate and are counted 4 times. On a GPU XLA fuses the sampling into
fewer buffers, so the model is conservative there (``bench_chunking`` records the
device's peak memory next to it).

The chunk chooser (:func:`choose_chunk`) divides a per-device budget —
``memory_limit`` bytes, or ``fraction`` of the smallest free memory among the
devices (:func:`vanish.sharding.free_memory`) — by this, rounds down to whole
blocks per device, and then evens the chunks out (``ceil(M / chunks)`` rounded up
to a whole number of blocks per device) so that the padded last chunk wastes less
than one block per device. It needs no divisor of M: the last chunk is padded to
the common shape (one compilation) and the padding is masked out.

The paper's target (issue 7): M = 10⁶ members of width 128 and depth 100, one
input, on one H100: P = 1.65 M, bytes/member ≈ 1.1 · 4 · (4 · 1.65 M + 38 400 +
600) + 800 ≈ 29 MB, so half of the ≈ 60 GB XLA's allocator leaves free holds ≈ 1 000
members a chunk and the run takes ≈ 1 000 chunks; the weights alone would be 6.6 TB
if materialized at once.

Example:
  >>> import jax, vanish as vn
  >>> net = vn.MLP([8] * 11, "tanh", vn.init.gaussian(1.0))
  >>> stats = vn.streaming.gradient_statistics(net, jax.numpy.ones(8), key=jax.random.key(0),
  ...                                         members=100, block=4, chunk=24, progress=False)
  >>> stats.count.shape, int(stats.count[0])
  ((10,), 100)
  >>> bool(stats.mean[0] < stats.mean[-1])   # tanh at σ_w² = 1: early layers get less
  True
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import PartitionSpec as P

from vanish import _engine
from vanish import init as _init
from vanish import sharding as _sharding
from vanish.chains import _backward_log_norms
from vanish.networks import Network, _check_key, _Sampler
from vanish.progress import Progress

__all__ = [
  "GradientStatistics",
  "bytes_per_member",
  "choose_chunk",
  "gradient_statistics",
  "measured_bytes_per_member",
]

MARGIN = 1.1
"""Safety factor of :func:`bytes_per_member` over the itemized model."""
CPU_LANES = 8
"""On a CPU each device computes a multiple of this many members (see :func:`choose_chunk`)."""


# --------------------------------------------------------------------------- memory model


def _model_bytes(net: Network, inputs: int, itemsize: int) -> int:
  widths = net.widths
  depth = net.depth
  params = sum(widths[l + 1] * widths[l] + widths[l + 1] for l in range(depth))
  trace = inputs * sum(widths[l] + 2 * widths[l + 1] for l in range(depth))
  return itemsize * (4 * params + trace + 6 * inputs * depth) + 8 * depth


def bytes_per_member(net: Network, inputs: int = 1, *, dtype: Any = jnp.float32) -> int:
  """Device bytes one member of a :func:`gradient_statistics` chunk needs (module docstring).

  Args:
    net: the network spec.
    inputs: the number of inputs B per member (``x`` of shape ``(B, n_0)``), ≥ 1.
    dtype: the parameter dtype.

  Returns:
    ``MARGIN ×`` the itemized model, in bytes.

  Example:
    >>> import vanish as vn
    >>> round(bytes_per_member(vn.MLP([128] * 101)) / 1e6, 1)   # the paper's networks, MB
    29.2
  """
  if not isinstance(net, Network):
    raise TypeError(f"net must be a vanish network (e.g. vn.MLP), got {type(net).__name__}")
  inputs = _positive_int("inputs", inputs)
  itemsize = jnp.dtype(dtype).itemsize
  return int(math.ceil(MARGIN * _model_bytes(net, inputs, itemsize)))


def choose_chunk(
  members: int,
  member_bytes: int,
  *,
  memory_limit: int | None = None,
  fraction: float = 0.5,
  block: int = 1,
  devices: Sequence[jax.Device] | None = None,
) -> int:
  """Members per chunk: as many as fit, in whole blocks per device, evened over the chunks.

  Args:
    members: the ensemble size M ≥ 1.
    member_bytes: bytes one member needs on its device (:func:`bytes_per_member`), > 0.
    memory_limit: bytes one device may use for a chunk; default ``fraction`` of the
      smallest :func:`vanish.sharding.free_memory` among ``devices``.
    fraction: in (0, 1], used without ``memory_limit``.
    block: the reduction block; the chunk is a multiple of ``block`` (of ``lcm(block, 8)``
      on a CPU) times ``len(devices)``.
    devices: default all local devices.

  Returns:
    The chunk size C (real members per chunk, a multiple of ``block``), at most what
    fits; the ``ceil(M / C)`` chunks are as even as whole units per device allow.

  Raises:
    ValueError: if not even one block per device fits.

  Example:
    >>> choose_chunk(1000, member_bytes=100, memory_limit=30_000, block=4, devices=[None] * 2)
    512
    >>> choose_chunk(1000, member_bytes=100, memory_limit=10**9, block=4, devices=[None] * 2)
    1000
  """
  members = _positive_int("members", members)
  member_bytes = _positive_int("member_bytes", member_bytes)
  block = _positive_int("block", block)
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
  unit = _device_unit(block, devices)
  groups = memory_limit // member_bytes // unit  # per device
  if groups < 1:
    raise ValueError(
      f"{source} is too small: a device computes at least {unit} member(s) of "
      f"{member_bytes} bytes at once, so it needs at least {unit * member_bytes} bytes "
      "(raise memory_limit, lower block, or use smaller networks)"
    )
  step = unit * len(devices)
  largest = groups * step
  if largest >= members:  # one chunk covers the ensemble
    return -(-members // block) * block
  chunks = -(-members // largest)
  return -(-members // (chunks * step)) * step


def _device_unit(block: int, devices: Sequence[Any]) -> int:
  """Members per device come in multiples of this: whole blocks, and on a CPU whole SIMD lanes.

  On the CPU, XLA's element-wise loops run 4 or 8 lanes at a time and finish with a
  scalar tail; a member whose numbers fall in the tail can differ in the last bit
  (measured: 6-wide layers, batches of 1 or 3 members vs 2, 8, 16 or 24). Padding
  every device's batch to a multiple of ``CPU_LANES`` members keeps each member's
  numbers independent of the chunk.
  """
  on_cpu = all(getattr(d, "platform", "cpu") == "cpu" for d in devices)
  return math.lcm(block, CPU_LANES) if on_cpu else block


def measured_bytes_per_member(
  net: Network,
  x: Any,
  *,
  sizes: tuple[int, int] = (64, 128),
  block: int = 1,
  dtype: Any = jnp.float32,
  precision: str = "highest",
) -> float:
  """The compiled chunk function's bytes per member on one device, from XLA's memory analysis.

  Compiles the chunk for two member counts and returns the slope of argument +
  output + temporary bytes: the model's check (module docstring). Costs two
  compilations.

  Args:
    net, x, dtype, precision: as for :func:`gradient_statistics`.
    sizes: two chunk sizes (multiples of ``block``), smaller first.
    block: the reduction block.

  Returns:
    Bytes per member, or NaN where the backend has no memory analysis.
  """
  x, batched, cotangent = _check_inputs(net, x, None, dtype)
  small, large = (_positive_int("sizes", s) for s in sizes)
  if not small < large or small % block or large % block:
    raise ValueError(f"sizes must be increasing multiples of block={block}, got {sizes}")
  device = jax.local_devices()[0]
  totals = []
  for size in (small, large):
    spec = _ChunkSpec(
      net, jnp.dtype(dtype).name, precision, "bias", batched, block, size, 1, (device,)
    )
    index = _sharding.shard_members(jnp.zeros(size, jnp.uint32), _sharding.member_mesh([device]))
    scalars = (jnp.float32(0), jnp.float32(-1), jnp.float32(1))
    args = (jax.random.key(0), None, index, jnp.uint32(size), x, cotangent, scalars)
    compiled = _run_chunk.lower(spec, *args).compile()
    analysis = compiled.memory_analysis()
    if analysis is None:
      return math.nan
    totals.append(
      analysis.argument_size_in_bytes + analysis.output_size_in_bytes + analysis.temp_size_in_bytes
    )
  return (totals[1] - totals[0]) / (large - small)


# --------------------------------------------------------------------------- results


@dataclasses.dataclass(frozen=True)
class GradientStatistics:
  """Per-layer statistics of ``log ‖∂C/∂b^l‖`` over an ensemble (natural logs), l = 1..L.

  Every (member, input) pair is one sample. Moments, extrema and ratios use the
  finite samples only; exact zeros (``log = −inf``) are counted in ``zero``.

  Attributes:
    members: M; samples: M × inputs.
    epsilon: the threshold ε.
    count: ``[L]`` finite samples.
    zero: ``[L]`` samples with a gradient exactly 0 (``−inf``).
    mean, var: ``[L]`` of the finite log-norms (population variance).
    min, max: ``[L]`` of the finite log-norms.
    vanish, explode: ``[L]`` samples with ``‖δ^l‖ < ε`` (zeros included) and ``> 1/ε``.
    ratio_count, ratio_mean, ratio_var, ratio_min, ratio_max: the same for
      ``log(‖δ^l‖/‖δ^L‖)`` (finite where both norms are positive).
    bin_edges: ``[K + 1]`` the histogram's fixed edges.
    histogram, ratio_histogram: ``[L, K + 2]`` sample counts: below ``bin_edges[0]``
      (zeros included), the K bins, then at or above ``bin_edges[-1]``.
    block: the reduction block the result was computed with.
  """

  members: int
  samples: int
  epsilon: float
  count: np.ndarray
  zero: np.ndarray
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
  bin_edges: np.ndarray
  histogram: np.ndarray
  ratio_histogram: np.ndarray
  block: int

  @property
  def std(self) -> np.ndarray:
    """``[L]`` standard deviation of the finite log-norms."""
    return np.sqrt(self.var)

  @property
  def p_vanish(self) -> np.ndarray:
    """``[L]`` the fraction of samples with ``‖δ^l‖ < ε``."""
    return self.vanish / self.samples

  @property
  def p_explode(self) -> np.ndarray:
    """``[L]`` the fraction of samples with ``‖δ^l‖ > 1/ε``."""
    return self.explode / self.samples

  def p_vanish_ci(self, confidence: float = 0.95) -> np.ndarray:
    """``[L, 2]`` Wilson interval of :attr:`p_vanish`."""
    from vanish.probability import wilson_interval

    return wilson_interval(self.vanish, self.samples, confidence)

  def p_explode_ci(self, confidence: float = 0.95) -> np.ndarray:
    """``[L, 2]`` Wilson interval of :attr:`p_explode`."""
    from vanish.probability import wilson_interval

    return wilson_interval(self.explode, self.samples, confidence)

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
    zero = np.zeros_like(self.zero) if ratio else self.zero
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
  """``[k, S, L] -> [k, L]`` by a fixed pairwise tree of element-wise adds (zero-padded).

  The order of the adds depends only on S, never on k or the sharding, so each
  block's sum has the same bits in any chunk.
  """
  size = a.shape[1]
  width = 1 << (size - 1).bit_length()
  if width != size:
    a = jnp.concatenate([a, jnp.zeros((a.shape[0], width - size, a.shape[2]), a.dtype)], axis=1)
  while a.shape[1] > 1:
    half = a.shape[1] // 2
    a = a[:, :half] + a[:, half:]
  return a[:, 0]


def _block_moments(values: jax.Array, ok: jax.Array):
  """Per block ``(count, mean, Σ (v − mean)²)``, each ``[k, L]``; ``values, ok: [k, S, L]``."""
  count = ok.sum(axis=1, dtype=jnp.int32)
  total = _tree_sum(jnp.where(ok, values, 0))
  mean = total / jnp.maximum(count, 1).astype(values.dtype)
  deviation = jnp.where(ok, values - mean[:, None, :], 0)
  return count, mean, _tree_sum(deviation * deviation)


def _histogram(values: jax.Array, valid: jax.Array, low, width, bins: int) -> jax.Array:
  """``[L, bins + 2]`` int32 counts of ``values [n, L]`` (−inf/below first, ≥ top last)."""
  position = jnp.floor((values - low) / width)
  position = jnp.where(jnp.isfinite(position), position, jnp.where(values > low, bins, -1))
  index = jnp.clip(position, -1, bins).astype(jnp.int32) + 1
  layers = jnp.broadcast_to(jnp.arange(values.shape[1], dtype=jnp.int32)[None, :], values.shape)
  return (
    jnp.zeros((values.shape[1], bins + 2), jnp.int32)
    .at[layers, index]
    .add(valid.astype(jnp.int32), mode="drop")
  )


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


def _local_stats(spec: _ChunkSpec, key, noise_key, index, members, x, cotangent, scalars):
  """One device's partial statistics of its members ``index`` (a whole number of blocks).

  Returns per-block moments ``[k, L]`` and per-device counts, extrema and
  histograms with a leading device axis of 1.
  """
  log_eps, low, width = scalars
  log_g = _member_log_norms(spec, key, noise_key, index, x, cotangent)
  depth = log_g.shape[-1]
  blocks = index.shape[0] // spec.block
  log_g = log_g.reshape(blocks, -1, depth)  # [k, block × B, L]: member-major
  inputs = log_g.shape[1] // spec.block
  valid = jnp.broadcast_to(
    jnp.repeat(index < members, inputs).reshape(blocks, -1)[:, :, None], log_g.shape
  )
  finite = valid & jnp.isfinite(log_g)
  ratio = log_g - log_g[:, :, -1:]
  ratio_ok = valid & jnp.isfinite(ratio)
  big = jnp.asarray(jnp.inf, log_g.dtype)
  flat, flat_valid = log_g.reshape(-1, depth), (valid & ~jnp.isnan(log_g)).reshape(-1, depth)
  ratio_flat = ratio.reshape(-1, depth)
  ratio_valid = (valid & ~jnp.isnan(ratio)).reshape(-1, depth)
  per_device = {
    "min": jnp.min(jnp.where(finite, log_g, big), axis=(0, 1)),
    "max": jnp.max(jnp.where(finite, log_g, -big), axis=(0, 1)),
    "ratio_min": jnp.min(jnp.where(ratio_ok, ratio, big), axis=(0, 1)),
    "ratio_max": jnp.max(jnp.where(ratio_ok, ratio, -big), axis=(0, 1)),
    "zero": (valid & (log_g == -big)).sum(axis=(0, 1), dtype=jnp.int32),
    "vanish": (valid & (log_g < log_eps)).sum(axis=(0, 1), dtype=jnp.int32),
    "explode": (valid & (log_g > -log_eps)).sum(axis=(0, 1), dtype=jnp.int32),
    "histogram": _histogram(flat, flat_valid, low, width, spec.bins),
    "ratio_histogram": _histogram(ratio_flat, ratio_valid, low, width, spec.bins),
  }
  return {
    "moments": _block_moments(log_g, finite),
    "ratio_moments": _block_moments(ratio, ratio_ok),
    **jax.tree.map(lambda a: a[None], per_device),
  }


@functools.partial(jax.jit, static_argnums=0)
def _run_chunk(spec: _ChunkSpec, key, noise_key, index, members, x, cotangent, scalars):
  """One chunk: every device runs :func:`_local_stats` on its members (``shard_map``).

  ``shard_map`` rather than sharding propagation, so that each device runs exactly
  the single-device program on its ``size / devices`` members (the per-member
  numbers then match a single-device run of that batch size).
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
    self.counts = {n: zeros(np.int64) for n in ("zero", "vanish", "explode")}
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
  block: int = 16,
  memory_limit: int | None = None,
  fraction: float = 0.5,
  epsilon: float = 1e-3,
  histogram: tuple[float, float, int] = (-200.0, 200.0, 4000),
  wrt: str = "bias",
  precision: str = "highest",
  dtype: Any = jnp.float32,
  devices: Sequence[jax.Device] | None = None,
  progress: bool = True,
) -> GradientStatistics:
  """Per-layer statistics of ``log ‖∂C/∂b^l‖`` (Nielsen ch. 5) over M networks, streamed.

  Equivalent to ``vn.log_gradient_norms(net, net.init(key, members), x, cotangent,
  key=noise_key)`` summarized per layer, without ever holding more than one chunk of
  parameters (see the module docstring for the memory model and the determinism).

  Args:
    net: the network spec.
    x: input ``(n_0,)`` or ``(B, n_0)``; every member sees the same inputs.
    key: typed key of the parameters: member m is ``net.init(key, 1, first=m)``.
    members: the ensemble size M, 1 ≤ M < 2³².
    cotangent: ``∇_a C`` at the output, ``(n_L,)`` or ``(B, n_L)``; default all ones.
    noise_key: required for stochastic activations (member m uses ``fold_in(noise_key, m)``).
    chunk: members per chunk, a multiple of ``block``, or ``"auto"`` (:func:`choose_chunk`
      from :func:`bytes_per_member` and the memory budget).
    block: members per reduction block (≥ 1). Results depend on it (float rounding),
      never on ``chunk`` or the devices.
    memory_limit: bytes a chunk may use on each device (for ``chunk="auto"``).
    fraction: share of the free device memory a chunk may use without ``memory_limit``.
    epsilon: in (0, 1): vanished if ``‖δ^l‖ < ε``, exploded if ``‖δ^l‖ > 1/ε``.
    histogram: ``(low, high, bins)`` for the fixed-bin histograms and the quantiles.
    wrt: ``"bias"`` (``‖δ^l‖``) or ``"weight"`` (``‖δ^l‖ ‖a^{l−1}‖``).
    precision: matmul precision, default ``"highest"``.
    dtype: the parameter dtype.
    devices: the devices to shard each chunk over (default all local devices).
    progress: draw a progress bar (:mod:`vanish.progress`) when there is more than one chunk.

  Returns:
    A :class:`GradientStatistics`.
  """
  if not isinstance(net, Network):
    raise TypeError(f"net must be a vanish network (e.g. vn.MLP), got {type(net).__name__}")
  _check_key(key)
  members = _positive_int("members", members)
  if members >= 2**32:
    raise ValueError(f"members must be < 2**32 (uint32 member indices), got {members}")
  block = _positive_int("block", block)
  if wrt not in ("bias", "weight"):
    raise ValueError(f"wrt must be 'bias' or 'weight', got {wrt!r}")
  _engine.check_precision(precision)
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
  if isinstance(chunk, str):
    if chunk != "auto":
      raise ValueError(f"chunk must be 'auto' or an integer >= 1, got {chunk!r}")
    chunk = choose_chunk(
      members,
      bytes_per_member(net, inputs, dtype=dtype),
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
  step = _device_unit(block, devices) * len(devices)
  size = -(-chunk // step) * step  # compiled shape: whole blocks (and lanes) on every device
  spec = _ChunkSpec(net, jnp.dtype(dtype).name, precision, wrt, batched, block, size, bins, devices)
  mesh = _sharding.member_mesh(devices)
  width = (high - low) / bins
  scalars = (jnp.float32(math.log(epsilon)), jnp.float32(low), jnp.float32(width))
  starts = range(0, members, chunk)
  accumulator = _Accumulator(net.depth, bins)
  bar = Progress("gradient_statistics chunks", total=len(starts))
  bar.enabled = bar.enabled and progress and len(starts) > 1
  pending = None
  with bar:
    for start in starts:
      index = np.arange(start, start + size, dtype=np.uint64)
      index = np.where(index < start + chunk, index, 2**32 - 1).astype(np.uint32)  # padding
      index = _sharding.shard_members(jnp.asarray(index), mesh)
      out = _run_chunk(spec, key, noise_key, index, jnp.uint32(members), x, cotangent, scalars)
      if pending is not None:  # fold the previous chunk while this one runs
        accumulator.add(*pending)
        bar.update()
      real = min(chunk, members - start)
      pending = (out, -(-real // block))
    accumulator.add(*pending)
    bar.update()
  return accumulator.finish(
    members=members,
    samples=members * inputs,
    epsilon=epsilon,
    bin_edges=np.linspace(low, high, bins + 1),
    block=block,
  )


# --------------------------------------------------------------------------- validation


def _positive_int(name: str, value: Any) -> int:
  if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
    raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
  return int(value)


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
  return jnp.asarray(host, dtype), batched, jnp.asarray(cotangent, dtype)
