"""Small Fashion-MNIST-shaped IDX files for tests (no TensorFlow needed).

Both test trees use it: tests/ (tf_keras) and tests/keras3 (each backend),
whose `conftest` modules share a name and cannot import each other.
"""

import gzip
import os

import numpy as np


def write_idx(path, array):
  """Writes `array` (uint8) as a gzipped IDX file, as the Debian files are."""
  array = np.asarray(array, dtype=np.uint8)
  header = bytes([0, 0, 0x08, array.ndim]) + b"".join(
      int(d).to_bytes(4, "big") for d in array.shape)
  with gzip.open(path, "wb") as f:
    f.write(header + array.tobytes())


def write_fashion_mnist(directory, n_train=1024, n_test=256, seed=0):
  """Small learnable Fashion-MNIST-shaped IDX files: class k lights row band k."""
  os.makedirs(directory, exist_ok=True)
  rng = np.random.default_rng(seed)
  for split, n in (("train", n_train), ("t10k", n_test)):
    labels = rng.integers(0, 10, size=n)
    images = rng.integers(0, 60, size=(n, 28, 28))
    for i, k in enumerate(labels):
      images[i, 2 + 2 * k:4 + 2 * k, :] += 180
    write_idx(os.path.join(directory, f"{split}-images-idx3-ubyte.gz"), images)
    write_idx(os.path.join(directory, f"{split}-labels-idx1-ubyte.gz"), labels)
  return directory
