"""TFDS builder for Fashion-MNIST from local IDX files (no download).

TFDS's own `fashion_mnist` downloads the files and checks their checksums;
the Debian package `dataset-fashion-mnist` ships the same data, but with
other gzip headers, under /usr/share/datasets/fashion-mnist/. This builder
reads those four files (or any directory holding them) as its manual
directory, so the data can be prepared offline. Preparing takes about 12 s;
the result is cached under `data_dir` like any TFDS dataset.

Example:

>>> from launchers import fashion_mnist_offline
>>> builder = tfds.builder("fashion_mnist_offline", data_dir="/tmp/tfds")
>>> builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
...     manual_dir=fashion_mnist_offline.DEFAULT_DIR))
>>> ds = builder.as_dataset(split="train", as_supervised=True)
"""

import os

import tensorflow_datasets as tfds

# The files and their reader need no TensorFlow: launchers/idx_files.py.
from launchers.idx_files import CLASS_NAMES
from launchers.idx_files import DEFAULT_DIR
from launchers.idx_files import FILES
from launchers.idx_files import read_idx


class FashionMnistOffline(tfds.core.GeneratorBasedBuilder):
  """Fashion-MNIST (60k train / 10k test, 28x28 grey) from local IDX files."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Reads the IDX files of dataset-fashion-mnist."}
  MANUAL_DOWNLOAD_INSTRUCTIONS = (
      "Install them with `sudo apt-get install dataset-fashion-mnist` (files "
      f"in {DEFAULT_DIR}), or put {sorted(sum(FILES.values(), ()))} in a "
      "directory and pass it as the manual dir (--manual_dir).")

  def _info(self):
    return self.dataset_info_from_configs(
        features=tfds.features.FeaturesDict({
            "image": tfds.features.Image(shape=(28, 28, 1)),
            "label": tfds.features.ClassLabel(names=CLASS_NAMES),
        }),
        supervised_keys=("image", "label"),
        homepage="https://github.com/zalandoresearch/fashion-mnist",
        license="MIT",
    )

  def _split_generators(self, dl_manager):
    root = os.fspath(dl_manager.manual_dir)
    missing = [n for pair in FILES.values() for n in pair
               if not os.path.exists(os.path.join(root, n))]
    if missing:
      raise FileNotFoundError(
          f"Fashion-MNIST files {missing} are not in {root}. "
          + self.MANUAL_DOWNLOAD_INSTRUCTIONS)
    return {split: self._generate_examples(os.path.join(root, images),
                                           os.path.join(root, labels))
            for split, (images, labels) in FILES.items()}

  def _generate_examples(self, images_path, labels_path):
    images = read_idx(images_path)
    labels = read_idx(labels_path)
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
      raise ValueError(f"{images_path} ({images.shape}) and {labels_path} "
                       f"({labels.shape}) do not match.")
    for i, (image, label) in enumerate(zip(images, labels)):
      yield i, {"image": image[..., None], "label": int(label)}
