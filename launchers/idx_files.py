"""Fashion-MNIST's IDX files, read with NumPy alone (no TensorFlow, no TFDS).

The Debian package `dataset-fashion-mnist` installs the four gzipped IDX
files under /usr/share/datasets/fashion-mnist/. `read_idx` reads one into a
NumPy array and `load` one split; `fashion_mnist_offline` (the TFDS builder)
and the benchmarks' NumPy path both read the files through them.

Example:

>>> from launchers import idx_files
>>> x_train, y_train = idx_files.load("train")  # (60000, 28, 28), (60000,)
"""

import gzip
import os

import numpy as np

DEFAULT_DIR = "/usr/share/datasets/fashion-mnist"
FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
CLASS_NAMES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
               "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]


def read_idx(path):
  """Reads a gzipped IDX file into a numpy array.

  Args:
    path: a `.gz` IDX file (magic 0x0801 for labels, 0x0803 for images).

  Returns:
    A uint8 array: `(n,)` for labels, `(n, rows, cols)` for images.

  Raises:
    ValueError: the file is not an unsigned-byte IDX file, or is truncated.
  """
  with gzip.open(path, "rb") as f:
    data = f.read()
  if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
    raise ValueError(f"{path} is not an unsigned-byte IDX file.")
  ndim = data[3]
  dims = np.frombuffer(data, dtype=">u4", count=ndim, offset=4).astype(int)
  body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
  if body.size != int(np.prod(dims)):
    raise ValueError(f"{path} holds {body.size} bytes of data, its header "
                     f"says {tuple(dims)}.")
  return body.reshape(tuple(dims))


INSTALL_HINT = (
    "Install them with `sudo apt-get install dataset-fashion-mnist` (files "
    f"in {DEFAULT_DIR}), or put {sorted(sum(FILES.values(), ()))} in a "
    "directory and pass that directory.")


def check_files(data_dir, splits=tuple(FILES)):
  """Raises FileNotFoundError, with how to get them, for missing files.

  Args:
    data_dir: the directory that should hold the files.
    splits: the splits whose files to look for.
  """
  missing = [n for split in splits for n in FILES[split]
             if not os.path.exists(os.path.join(data_dir, n))]
  if missing:
    raise FileNotFoundError(
        f"Fashion-MNIST files {missing} are not in {data_dir}. "
        + INSTALL_HINT)


def load(split, data_dir=DEFAULT_DIR):
  """(images, labels) of one split, as uint8 arrays.

  Args:
    split: "train" or "test".
    data_dir: the directory holding the four files of `FILES`.

  Returns:
    images `(n, 28, 28)` and labels `(n,)`, both uint8.

  Raises:
    ValueError: an unknown split, or files that do not match each other.
    FileNotFoundError: a file is missing (with how to install them).
  """
  if split not in FILES:
    raise ValueError(f"split={split!r}: Fashion-MNIST has {sorted(FILES)}.")
  check_files(data_dir, [split])
  paths = [os.path.join(data_dir, name) for name in FILES[split]]
  images, labels = (read_idx(p) for p in paths)
  if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
    raise ValueError(f"{paths[0]} ({images.shape}) and {paths[1]} "
                     f"({labels.shape}) do not match.")
  return images, labels
