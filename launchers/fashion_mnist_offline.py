"""TFDS builder for Fashion-MNIST from local IDX files (no download).

TFDS's own `fashion_mnist` downloads the files and checks their checksums;
the Debian package `dataset-fashion-mnist` ships the same data, but with
other gzip headers, under /usr/share/datasets/fashion-mnist/. This builder
reads those four files (or any directory holding them) as its manual
directory, so the data can be prepared offline. Preparing takes about 12 s;
the result is cached under `data_dir` like any TFDS dataset.

Example:

>>> from launchers import fashion_mnist_offline, idx_files
>>> builder = tfds.builder("fashion_mnist_offline", data_dir="/tmp/tfds")
>>> builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
...     manual_dir=idx_files.DEFAULT_DIR))
>>> ds = builder.as_dataset(split="train", as_supervised=True)
"""

import os

import tensorflow_datasets as tfds

# The files and their reader need no TensorFlow: launchers/idx_files.py.
from launchers import idx_files


class FashionMnistOffline(tfds.core.GeneratorBasedBuilder):
  """Fashion-MNIST (60k train / 10k test, 28x28 grey) from local IDX files."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Reads the IDX files of dataset-fashion-mnist."}
  MANUAL_DOWNLOAD_INSTRUCTIONS = (
      idx_files.INSTALL_HINT + " Here that is the manual dir (--manual_dir).")

  def _info(self):
    return self.dataset_info_from_configs(
        features=tfds.features.FeaturesDict({
            "image": tfds.features.Image(shape=(28, 28, 1)),
            "label": tfds.features.ClassLabel(names=idx_files.CLASS_NAMES),
        }),
        supervised_keys=("image", "label"),
        homepage="https://github.com/zalandoresearch/fashion-mnist",
        license="MIT",
    )

  def _split_generators(self, dl_manager):
    root = os.fspath(dl_manager.manual_dir)
    idx_files.check_files(root)  # before any split is written
    return {split: self._generate_examples(split, root)
            for split in idx_files.FILES}

  def _generate_examples(self, split, root):
    images, labels = idx_files.load(split, root)
    for i, (image, label) in enumerate(zip(images, labels)):
      yield i, {"image": image[..., None], "label": int(label)}
