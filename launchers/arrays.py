"""Input pipelines without TensorFlow: Keras `PyDataset`s over NumPy sources.

The Keras 3 launcher reads data through these where TensorFlow is absent
(or with --input=idx / --input=data_source):

- `idx`: Fashion-MNIST's IDX files (`idx_files`), read with NumPy.
- `data_source`: any TFDS data set prepared in the ArrayRecord format
  (`tfds.builder(..., file_format="array_record").download_and_prepare()`),
  read by random access through `tfds.builder_from_directory(...)
  .as_data_source(split)`: TFDS' loader for JAX, which needs no TensorFlow.

The training stream is the same pure function of (seed, step) as the
TFDS/tf.data one's contract (`datasets`): epoch `e` is the split permuted by
`numpy.random.default_rng((seed, e))` and cut to whole global batches; the
CIFAR augmentation (pad 4, crop 32, flip) of a batch draws from
`default_rng((seed, step))`. `TrainStream(first_step=s)` yields the batches
of steps s, s+1, ... of an uninterrupted run, so a resumed run sees exactly
those. In a multi-process job each process reads the same global batch and
keeps its own rows.

Example:

>>> source = open_source(spec, "idx", data_dir=None, manual_dir=None)
>>> train = TrainStream(source.train, spec, global_batch=128, seed=0,
...                     steps_per_epoch=468, first_step=0, rows=(0, 128))
>>> model.fit(train, steps_per_epoch=468, epochs=5)
"""

import os

import keras
import numpy as np

from launchers import idx_files
from launchers import lazy_imports

tfds = lazy_imports.TENSORFLOW_DATASETS
INPUTS = ("auto", "tfds", "idx", "data_source")


class ArraySplit:
  """One split as random-access (images, labels) in NumPy.

  Args:
    images / labels: uint8 image array (n, h, w, c) and label array (n,),
      or `get`, a function of an index array returning both, with `size`.
  """

  def __init__(self, images=None, labels=None, get=None, size=None):
    self._images, self._labels, self._get = images, labels, get
    self.size = len(labels) if labels is not None else int(size)

  def __len__(self):
    return self.size

  def take(self, indices):
    """(images, labels) of `indices` (an int array), in that order."""
    if self._get is not None:
      return self._get(indices)
    return self._images[indices], self._labels[indices]


class Source:
  """The train and test splits of a data set, read without TensorFlow."""

  def __init__(self, train, test, kind):
    self.train, self.test, self.kind = train, test, kind


def _from_data_source(data_source):
  def get(indices):
    items = data_source.__getitems__([int(i) for i in indices])
    return (np.stack([np.asarray(x["image"]) for x in items]),
            np.asarray([int(x["label"]) for x in items]))
  return ArraySplit(get=get, size=len(data_source))


def resolve_input(choice, spec, backend, manual_dir=None):
  """The input pipeline --input=auto means here.

  auto: on Keras' TensorFlow backend, TFDS through tf.data. On JAX and
  PyTorch, Fashion-MNIST's IDX files where they are (no TensorFlow in the
  process: tf.data's threads feeding JAX's made the quickstart's epoch
  20-40 s slower in some runs on 2 cores, BENCHMARKS.md), else TFDS through
  tf.data where TensorFlow can be imported, else a TFDS ArrayRecord data
  source.

  Args:
    choice: --input.
    spec: the `datasets.DatasetSpec`.
    backend: Keras' backend.
    manual_dir: --manual_dir (where the IDX files are).
  """
  if choice != "auto":
    return choice
  if backend == "tensorflow":
    return "tfds"
  if spec.name == "fashion_mnist":
    try:
      idx_files.check_files(manual_dir or spec.manual_dir)
      return "idx"
    except FileNotFoundError:
      pass
  return "tfds" if lazy_imports.available("tensorflow") else "data_source"


def open_source(spec, kind, data_dir=None, manual_dir=None):
  """The splits of `spec` read as `kind` ("idx" or "data_source").

  Args:
    spec: a `datasets.DatasetSpec`.
    kind: "idx" (Fashion-MNIST only) or "data_source".
    data_dir: TFDS data directory (data_source; None: ~/tensorflow_datasets).
    manual_dir: the IDX files' directory (idx; None: the package's).

  Returns:
    A `Source`.

  Raises:
    ValueError: idx for a data set that has no IDX files, ImageNet (its
      JPEG crops are tf.data's), or a TFDS data set that is not prepared as
      ArrayRecord (with how to prepare it).
  """
  if spec.name == "imagenet2012":
    raise ValueError(
        f"--input={kind}: ImageNet's random-resized crops and central crops "
        "are made by the TFDS/tf.data pipeline: use --input=tfds (TensorFlow "
        "installed).")
  if kind == "idx":
    if spec.name != "fashion_mnist":
      raise ValueError(
          f"--input=idx reads Fashion-MNIST's IDX files; --dataset="
          f"{spec.name} has none: use --input=tfds or --input=data_source.")
    directory = manual_dir or spec.manual_dir
    splits = []
    for split in ("train", "test"):
      images, labels = idx_files.load(split, directory)
      splits.append(ArraySplit(images[..., None], labels))
    return Source(*splits, kind)
  root = os.path.expanduser(data_dir or "~/tensorflow_datasets")
  builder_dir = os.path.join(root, spec.tfds_name)
  versions = sorted(os.listdir(builder_dir)) if os.path.isdir(
      builder_dir) else []
  builder = None
  for version in reversed(versions):
    candidate = tfds.builder_from_directory(
        os.path.join(builder_dir, version))
    if getattr(candidate.info.file_format, "value",
               candidate.info.file_format) == "array_record":
      builder = candidate
      break
  if builder is None:
    raise ValueError(
        f"--input=data_source needs {spec.tfds_name} prepared as ArrayRecord "
        f"under {root}: run tfds.builder({spec.tfds_name!r}, data_dir=..., "
        "file_format='array_record').download_and_prepare() where TFDS can "
        "prepare it, or use --input=tfds.")
  return Source(
      _from_data_source(builder.as_data_source(split=spec.train_split)),
      _from_data_source(builder.as_data_source(split=spec.test_split)),
      kind)


def normalize(images, spec):
  """uint8 images to float32, scaled to [0, 1] and standardised per channel."""
  x = images.astype(np.float32) / 255.0
  return (x - np.asarray(spec.mean, np.float32)) / np.asarray(spec.std,
                                                              np.float32)


def augment(images, spec, seed, step):
  """CIFAR's augmentation of step `step`'s batch: pad 4, random 32x32 crop,
  random flip, drawn from `default_rng((seed, step))`; other data sets'
  batches are returned as they are."""
  if not spec.name.startswith("cifar"):
    return images
  rng = np.random.default_rng((seed, 1 << 40, step))
  n, h, w, _ = images.shape
  padded = np.pad(images, ((0, 0), (4, 4), (4, 4), (0, 0)))
  tops = rng.integers(0, 9, n)
  lefts = rng.integers(0, 9, n)
  flips = rng.random(n) < 0.5
  out = np.empty_like(images)
  for i in range(n):
    crop = padded[i, tops[i]:tops[i] + h, lefts[i]:lefts[i] + w]
    out[i] = crop[:, ::-1] if flips[i] else crop
  return out


class TrainStream(keras.utils.PyDataset):
  """Training batches of steps `first_step`, `first_step + 1`, ... (endless).

  Args:
    split: the training `ArraySplit`.
    spec: the `datasets.DatasetSpec`.
    global_batch: examples per step over all processes.
    seed: data seed.
    steps_per_epoch: whole global batches per epoch.
    first_step: the step of batch 0 (the restored optimizer step).
    rows: (start, stop), this process's rows of each global batch.
  """

  def __init__(self, split, spec, global_batch, seed, steps_per_epoch,
               first_step, rows):
    super().__init__()
    self.split, self.spec, self.global_batch = split, spec, global_batch
    self.seed, self.steps_per_epoch = seed, steps_per_epoch
    self.first_step, self.rows = first_step, rows
    self._order = (None, None)

  @property
  def num_batches(self):
    return None  # endless: `fit` takes steps_per_epoch batches an epoch

  def _epoch_order(self, epoch):
    if self._order[0] != epoch:
      rng = np.random.default_rng((self.seed, epoch))
      self._order = (epoch, rng.permutation(len(self.split)))
    return self._order[1]

  def batch_indices(self, step):
    """The example indices of global step `step` (all processes' rows)."""
    epoch, offset = divmod(step, self.steps_per_epoch)
    start = offset * self.global_batch
    return self._epoch_order(epoch)[start:start + self.global_batch]

  def __getitem__(self, index):
    step = self.first_step + index
    images, labels = self.split.take(self.batch_indices(step))
    images = augment(images, self.spec, self.seed, step)
    a, b = self.rows
    x = normalize(images[a:b], self.spec)
    y = keras.utils.to_categorical(labels[a:b], self.spec.num_classes)
    return x, y.astype(np.float32)


class EvalStream(keras.utils.PyDataset):
  """The test split in order, in global batches, this process's rows.

  With `pad`, the last batch is filled up to a whole global batch with
  examples of weight 0, so that every device gets an equal share.
  """

  def __init__(self, split, spec, global_batch, rows, pad=False):
    super().__init__()
    self.split, self.spec, self.global_batch = split, spec, global_batch
    self.rows, self.pad = rows, pad

  @property
  def num_batches(self):
    return -(-len(self.split) // self.global_batch)

  def __len__(self):
    return self.num_batches

  def __getitem__(self, index):
    start = index * self.global_batch
    indices = np.arange(start, min(start + self.global_batch,
                                   len(self.split)))
    weights = np.ones(len(indices), np.float32)
    if self.pad and len(indices) < self.global_batch:
      fill = self.global_batch - len(indices)
      indices = np.concatenate([indices, np.zeros(fill, indices.dtype)])
      weights = np.concatenate([weights, np.zeros(fill, np.float32)])
    images, labels = self.split.take(indices)
    a, b = self.rows
    x = normalize(images[a:b], self.spec)
    y = keras.utils.to_categorical(labels[a:b], self.spec.num_classes)
    return x, y.astype(np.float32), weights[a:b]

  def arrays(self):
    """(inputs, one-hot labels) of the whole split (LiteRT accuracy)."""
    images, labels = self.split.take(np.arange(len(self.split)))
    return (normalize(images, self.spec),
            keras.utils.to_categorical(labels, self.spec.num_classes))


def calibration_inputs(split, spec, count=200):
  """The first `count` training inputs, normalised (int8 calibration)."""
  return normalize(split.take(np.arange(min(count, len(split))))[0], spec)
