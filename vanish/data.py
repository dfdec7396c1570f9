"""Data sets that never touch the network: bundled digits, a teacher–student task, local MNIST.

Every loader returns ``(train, test)`` :class:`Dataset` pairs of host arrays:
``x`` float32 ``[N, n_0]`` and ``y`` int32 class labels ``[N]``.

* :func:`digits`: scikit-learn's bundled 8×8 handwritten digits (1797 images, 10
  classes; Alpaydin & Kaynak 1998, the UCI "optdigits" test set). scikit-learn
  reads them from its package data, so nothing is downloaded. It is an optional
  dependency: ``pip install vanish[data]``.
* :func:`teacher_student`: inputs x ~ N(0, I) labelled by a random teacher
  network (Gardner & Derrida 1989; Saad & Solla 1995).
* :func:`mnist`: MNIST (LeCun et al. 1998) from files the user already has, IDX
  or npz. vanish never fetches it.

Example:
  >>> import jax
  >>> from vanish import data
  >>> train, test = data.teacher_student(jax.random.key(0), n_train=100, n_test=20)
  >>> train.x.shape, train.y.shape, test.x.dtype.name, train.y.dtype.name
  ((100, 16), (100,), 'float32', 'int32')
"""

from __future__ import annotations

import gzip
import os
from pathlib import Path
from typing import Any, NamedTuple

import jax
import numpy as np

from vanish import init as _init
from vanish.chains import outputs
from vanish.networks import MLP, _check_key

__all__ = ["Dataset", "digits", "mnist", "teacher_student"]


class Dataset(NamedTuple):
  """Inputs ``x`` ``[N, n_0]`` (float32) and integer class labels ``y`` ``[N]``."""

  x: np.ndarray
  y: np.ndarray

  @property
  def classes(self) -> int:
    """The number of classes, ``max(y) + 1``."""
    return int(self.y.max()) + 1


def _check_size(name: str, value: Any) -> int:
  """An integer count >= 1 (Python or numpy integer; not a float, bool or string)."""
  if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
    raise TypeError(f"{name} must be an integer >= 1, got {type(value).__name__} {value!r}")
  if value < 1:
    raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
  return int(value)


def _split(
  x: np.ndarray, y: np.ndarray, test_fraction: float, seed: int, standardize: bool
) -> tuple[Dataset, Dataset]:
  if isinstance(test_fraction, (bool, np.bool_)) or not isinstance(
    test_fraction, (int, float, np.integer, np.floating)
  ):
    raise TypeError(
      f"test_fraction must be a number in (0, 1), got {type(test_fraction).__name__} "
      f"{test_fraction!r}"
    )
  if not 0 < test_fraction < 1:
    raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
  if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)) or seed < 0:
    raise ValueError(f"seed must be an integer >= 0, got {seed!r}")
  n_test = max(1, round(test_fraction * len(x)))
  if n_test >= len(x):
    raise ValueError(
      f"test_fraction={test_fraction} holds out {n_test} of the {len(x)} examples and leaves "
      "the training split empty"
    )
  order = np.random.default_rng(seed).permutation(len(x))  # PCG64: stable across numpy versions
  test, train = order[:n_test], order[n_test:]
  x = x.astype(np.float64)
  if standardize:  # statistics of the training split only; constant pixels stay 0
    mean, std = x[train].mean(axis=0), x[train].std(axis=0)
    x = (x - mean) / np.where(std > 0, std, 1.0)
  x, y = x.astype(np.float32), y.astype(np.int32)
  return Dataset(x[train], y[train]), Dataset(x[test], y[test])


def digits(*, test_fraction: float = 0.2, seed: int = 0) -> tuple[Dataset, Dataset]:
  """scikit-learn's bundled 8×8 digits, standardized, split deterministically.

  Args:
    test_fraction: share of the 1797 images held out (default 0.2: 1438 / 359).
    seed: seed of the split permutation (numpy's PCG64).

  Returns:
    ``(train, test)``; ``x`` ``[N, 64]`` standardized per pixel with the training
    split's mean and standard deviation, ``y`` in 0..9.

  Raises:
    ImportError: scikit-learn is not installed.

  Example:
    >>> from vanish import data
    >>> train, test = data.digits()
    >>> train.x.shape, test.x.shape, train.classes
    ((1438, 64), (359, 64), 10)
    >>> abs(float(train.x.mean())) < 1e-6
    True
  """
  try:
    from sklearn.datasets import load_digits
  except ImportError as error:
    raise ImportError(
      "vanish.data.digits() needs scikit-learn, which ships the 8x8 digits with its package "
      "data (no download): pip install scikit-learn  (or: pip install vanish[data])"
    ) from error
  bunch = load_digits()
  return _split(bunch.data, bunch.target, test_fraction, seed, standardize=True)


def teacher_student(
  key: jax.Array,
  *,
  teacher: Any = None,
  n_train: int = 1000,
  n_test: int = 500,
) -> tuple[Dataset, Dataset]:
  """A synthetic classification task: x ~ N(0, I), label = argmax of a random teacher.

  Args:
    key: a typed key from ``jax.random.key``; it draws the teacher and the inputs.
    teacher: a :class:`vanish.MLP` whose output width is the number of classes;
      default ``MLP([16, 32, 4], "tanh", gaussian(2.0), readout="linear")``.
    n_train, n_test: sizes of the two splits.

  Returns:
    ``(train, test)`` with ``x`` ``[N, n_0]`` and ``y = argmax teacher(x)``.
  """
  _check_key(key)
  n_train, n_test = _check_size("n_train", n_train), _check_size("n_test", n_test)
  if teacher is None:
    teacher = MLP([16, 32, 4], "tanh", _init.gaussian(2.0), readout="linear")
  if not isinstance(teacher, MLP) or teacher.widths[-1] < 2:
    raise ValueError("teacher must be a vn.MLP with at least 2 outputs (the classes)")
  params = teacher.init(jax.random.fold_in(key, 0))
  shape = (int(n_train) + int(n_test), teacher.widths[0])
  dtype = jax.dtypes.canonicalize_dtype(float)
  x = _init.normal(1.0)(jax.random.fold_in(key, 1), shape, dtype)  # jax.random.normal's bits
  labels = np.asarray(outputs(teacher, params, x)[0].argmax(axis=-1), np.int32)
  x = np.asarray(x, np.float32)
  return Dataset(x[:n_train], labels[:n_train]), Dataset(x[n_train:], labels[n_train:])


_IDX_FILES = {
  "train_x": "train-images-idx3-ubyte",
  "train_y": "train-labels-idx1-ubyte",
  "test_x": "t10k-images-idx3-ubyte",
  "test_y": "t10k-labels-idx1-ubyte",
}
_IDX_ORDER = ("train_x", "train_y", "test_x", "test_y")
_NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")
_MNIST_CLASSES = 10


def _read_npz(path: Path) -> list[np.ndarray]:
  """The four arrays of a Keras-style ``mnist.npz``; a clear error for any other file."""
  try:
    archive = np.load(path, allow_pickle=False)
  except (ValueError, OSError, EOFError):
    raise ValueError(
      f"{path} is neither an .npz archive (keys {', '.join(_NPZ_KEYS)}) nor a folder of the "
      "4 MNIST IDX files"
    ) from None
  if not isinstance(archive, np.lib.npyio.NpzFile):
    raise ValueError(f"{path} is a single .npy array, not an .npz archive with {list(_NPZ_KEYS)}")
  with archive:
    missing = [k for k in _NPZ_KEYS if k not in archive.files]
    if missing:
      raise ValueError(f"{path}: the npz lacks {missing}; expected keys {list(_NPZ_KEYS)}")
    return [archive[k] for k in _NPZ_KEYS]


def _check_labels(path: Path, name: str, labels: np.ndarray) -> None:
  """Integer class labels ``[N]`` in ``0..9``; one-hot or out-of-range labels are rejected."""
  if labels.ndim != 1:
    hint = " (one-hot labels? pass their argmax)" if labels.ndim == 2 else ""
    raise ValueError(
      f"{path}: {name} must be integer class labels [N], got shape {labels.shape}{hint}"
    )
  if not np.issubdtype(labels.dtype, np.integer):
    raise ValueError(f"{path}: {name} must hold integer class labels, got dtype {labels.dtype}")
  if labels.size and (labels.min() < 0 or labels.max() >= _MNIST_CLASSES):
    raise ValueError(
      f"{path}: {name} must lie in [0, {_MNIST_CLASSES}) (the MNIST classes), "
      f"got {labels.min()}..{labels.max()}"
    )


def _pixels(path: Path, name: str, images: np.ndarray) -> np.ndarray:
  """Images ``[N, ...]`` as float64 ``[N, n_0]`` in [0, 1]: integer pixels 0..255 are divided
  by 255, float pixels already in [0, 1] are kept; anything else is rejected."""
  flat = images.reshape(len(images), -1)
  low, high = (flat.min(), flat.max()) if flat.size else (0, 0)
  if np.issubdtype(flat.dtype, np.integer):
    if low < 0 or high > 255:
      raise ValueError(f"{path}: integer pixels of {name} must lie in 0..255, got {low}..{high}")
    return flat.astype(np.float64) / 255.0
  if np.issubdtype(flat.dtype, np.floating):
    if not (np.all(np.isfinite(flat)) and 0 <= low and high <= 1):
      raise ValueError(
        f"{path}: float pixels of {name} must lie in [0, 1] (or be integers 0..255), "
        f"got {low}..{high}"
      )
    return flat.astype(np.float64)
  raise ValueError(
    f"{path}: {name} must hold integer (0..255) or float ([0, 1]) pixels, got {flat.dtype}"
  )


def _read_idx(path: Path) -> np.ndarray:
  """An IDX file (LeCun's MNIST format): magic ``0 0 type ndim``, big-endian dims, data."""
  opener = gzip.open if path.suffix == ".gz" else open
  with opener(path, "rb") as handle:
    raw = handle.read()
  if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
    raise ValueError(f"{path} is not an unsigned-byte IDX file (bad magic number)")
  ndim = raw[3]
  dims = np.frombuffer(raw, ">u4", count=ndim, offset=4).astype(int)
  data = np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim)
  if data.size != int(np.prod(dims)):
    raise ValueError(f"{path}: header says shape {tuple(dims)} but holds {data.size} bytes")
  return data.reshape(dims)


def _find_idx(folder: Path, stem: str) -> Path | None:
  for name in (
    stem,
    stem + ".gz",
    stem.replace("-idx", ".idx"),
    stem.replace("-idx", ".idx") + ".gz",
  ):
    if (folder / name).is_file():
      return folder / name
  return None


def mnist(path: str | os.PathLike, *, standardize: bool = False) -> tuple[Dataset, Dataset]:
  """MNIST from local files; never downloads.

  Args:
    path: either a folder with the four IDX files (``train-images-idx3-ubyte``,
      ``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte``,
      ``t10k-labels-idx1-ubyte``, each optionally ``.gz``), or an ``.npz`` with
      ``x_train, y_train, x_test, y_test`` (the layout of Keras' ``mnist.npz``).
    standardize: standardize each pixel with the training set's statistics;
      default False gives pixels in [0, 1] (Nielsen's format): integer (uint8)
      pixels are divided by 255, float pixels must already lie in [0, 1].

  Returns:
    ``(train, test)`` with ``x`` ``[N, 784]`` float32 and ``y`` int32.

  Raises:
    FileNotFoundError: the path or one of the files is missing.
    ValueError: the file is not an npz/IDX file, or an array is malformed: labels not
      integers ``[N]`` in 0..9 (e.g. one-hot), pixels outside 0..255 (integers) or
      [0, 1] (floats); the message names the array and its range.
  """
  path = Path(path)
  hint = "vanish never downloads data; point mnist() at files you already have"
  if path.is_dir():
    arrays, arrays_from = {}, {}
    for name, stem in _IDX_FILES.items():
      found = _find_idx(path, stem)
      if found is None:
        raise FileNotFoundError(f"{path}: no {stem}[.gz] (expected the 4 MNIST IDX files); {hint}")
      arrays[name], arrays_from[name] = _read_idx(found), found.name
    parts = [arrays[k] for k in _IDX_ORDER]
  elif path.is_file():
    parts = _read_npz(path)
  else:
    raise FileNotFoundError(f"{path} does not exist (an IDX folder or an .npz file); {hint}")
  names = list(_NPZ_KEYS) if path.is_file() else [arrays_from[k] for k in _IDX_ORDER]
  train_x, train_y, test_x, test_y = parts
  for name, images, labels, (_, y_name) in (
    ("train", train_x, train_y, names[:2]),
    ("test", test_x, test_y, names[2:]),
  ):
    if len(images) != len(labels):
      raise ValueError(f"{path}: {len(images)} {name} images but {len(labels)} labels")
    _check_labels(path, y_name, labels)
  train_x, test_x = (_pixels(path, n, a) for n, a in ((names[0], train_x), (names[2], test_x)))
  if standardize:
    mean, std = train_x.mean(axis=0), train_x.std(axis=0)
    std = np.where(std > 0, std, 1.0)
    train_x, test_x = (train_x - mean) / std, (test_x - mean) / std
  return (
    Dataset(train_x.astype(np.float32), train_y.astype(np.int32)),
    Dataset(test_x.astype(np.float32), test_y.astype(np.int32)),
  )
