"""TFDS input pipelines for the launchers: CIFAR-10/100, ImageNet, Fashion-MNIST.

The training stream is a pure function of (seed, step): epoch `e` is the
split shuffled with seed `(seed, e)`, cut to whole global batches, and every
example's augmentation draws from a stateless RNG keyed by its position in
the stream. A run resumed at step `s` builds the stream from `s` and sees
exactly the batches an uninterrupted run would have seen, so it ends with
the same weights, masks and R_s.

Under `tf.distribute`, each input pipeline (one per worker) reads its own
even part of the split (`tfds.even_splits`) and feeds its replicas
per-replica batches (`distribute_datasets_from_function`).

Augmentation follows the paper's code: CIFAR pads 4 pixels, crops 32x32 and
flips; ImageNet takes an Inception-style random-resized crop and flips, and
evaluates on a central crop of 87.5%; Fashion-MNIST is not augmented.

Example:

>>> spec = DATASETS["cifar10"]
>>> b = builder(spec, data_dir=None)
>>> train = make_train_fn(spec, b, global_batch=128, seed=0,
...                       steps_per_epoch=390, start_step=0, epochs=250)
>>> ds = strategy.distribute_datasets_from_function(train)
"""

import dataclasses
from typing import Optional, Tuple

import numpy as np

from launchers import idx_files
from launchers import lazy_imports

# Imported on first use, so that the specs and names here load without them.
tf = lazy_imports.TENSORFLOW
tfds = lazy_imports.TENSORFLOW_DATASETS
_SHUFFLE_BUFFER = {"imagenet2012": 10000}  # encoded JPEGs, about 1 GiB


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
  """What a launcher needs to know about a data set.

  Attributes:
    name: the launcher's name for it (--dataset).
    tfds_name: the TFDS builder.
    train_split / test_split: TFDS split names.
    num_classes: labels.
    image_shape: decoded training image shape (ImageNet's is set by
      --image_size).
    mean / std: per-channel normalisation (pixel values in [0, 1]).
    manual_dir: default directory of manually provided files, if any.
  """

  name: str
  tfds_name: str
  train_split: str
  test_split: str
  num_classes: int
  image_shape: Tuple[int, int, int]
  mean: Tuple[float, ...]
  std: Tuple[float, ...]
  manual_dir: Optional[str] = None


DATASETS = {
    "cifar10": DatasetSpec(
        "cifar10", "cifar10", "train", "test", 10, (32, 32, 3),
        (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": DatasetSpec(
        "cifar100", "cifar100", "train", "test", 100, (32, 32, 3),
        (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
    "imagenet2012": DatasetSpec(
        "imagenet2012", "imagenet2012", "train", "validation", 1000,
        (224, 224, 3), (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    "fashion_mnist": DatasetSpec(
        "fashion_mnist", "fashion_mnist_offline", "train", "test", 10,
        (28, 28, 1), (0.2860,), (0.3530,),
        manual_dir=idx_files.DEFAULT_DIR),
}


def with_image_size(spec, image_size):
  """`spec` with square images of `image_size` (ImageNet's --image_size)."""
  return dataclasses.replace(
      spec, image_shape=(image_size, image_size, spec.image_shape[-1]))


def builder(spec, data_dir=None, manual_dir=None):
  """The prepared TFDS builder of `spec` (prepares it if needed).

  Args:
    spec: a `DatasetSpec`.
    data_dir: TFDS data directory; None is TFDS's default.
    manual_dir: directory with manually provided files (Fashion-MNIST IDX
      files, ImageNet tars); None uses `spec.manual_dir`.

  Returns:
    A `tfds.core.DatasetBuilder` ready for `as_dataset`.
  """
  # Registers the Fashion-MNIST builder with TFDS.
  # pylint: disable-next=g-import-not-at-top,unused-import
  from launchers import fashion_mnist_offline
  b = tfds.builder(spec.tfds_name, data_dir=data_dir)
  manual_dir = manual_dir or spec.manual_dir
  config = tfds.download.DownloadConfig(manual_dir=manual_dir)
  b.download_and_prepare(download_config=config)
  return b


def _is_jpeg_stream(spec):
  return spec.tfds_name == "imagenet2012"


def _augments(spec):
  """Whether training examples get a random (per-example) augmentation."""
  return _is_jpeg_stream(spec) or spec.name.startswith("cifar")


def _normalize(image, spec):
  image = tf.cast(image, tf.float32) / 255.0
  return (image - tf.constant(spec.mean)) / tf.constant(spec.std)


def _random_resized_crop(data, seed, size):
  """Inception crop: 8%-100% of the area, aspect 3/4..4/3, then resize."""
  shape = tf.io.extract_jpeg_shape(data)
  begin, crop, _ = tf.image.stateless_sample_distorted_bounding_box(
      shape, tf.zeros([0, 0, 4], tf.float32), seed=seed,
      min_object_covered=0.1, aspect_ratio_range=(3 / 4, 4 / 3),
      area_range=(0.08, 1.0), max_attempts=10,
      use_image_if_no_bounding_boxes=True)
  y, x, _ = tf.unstack(begin)
  h, w, _ = tf.unstack(crop)
  image = tf.io.decode_and_crop_jpeg(data, tf.stack([y, x, h, w]), channels=3)
  return tf.image.resize(image, [size, size], method="bicubic")


def _center_crop(data, size):
  """Resize the shorter side to size / 0.875, then crop size x size."""
  image = tf.io.decode_jpeg(data, channels=3)
  shape = tf.cast(tf.shape(image)[:2], tf.float32)
  scale = (size / 0.875) / tf.reduce_min(shape)
  new = tf.cast(tf.round(shape * scale), tf.int32)
  image = tf.image.resize(image, new, method="bicubic")
  top = (new[0] - size) // 2
  left = (new[1] - size) // 2
  return image[top:top + size, left:left + size]


def preprocess_train(data, label, index, spec, seed):
  """Augments one training example; deterministic in (seed, index)."""
  key = tf.stack([tf.cast(seed, tf.int64), tf.cast(index, tf.int64)])
  crop_key, flip_key = tf.unstack(
      tf.random.experimental.stateless_split(key, num=2))
  height, width, _ = spec.image_shape
  if _is_jpeg_stream(spec):
    image = _random_resized_crop(data, crop_key, height)
    image = tf.image.stateless_random_flip_left_right(image, flip_key)
  elif _augments(spec):
    image = tf.image.pad_to_bounding_box(data, 4, 4, height + 8, width + 8)
    image = tf.image.stateless_random_crop(image, spec.image_shape, crop_key)
    image = tf.image.stateless_random_flip_left_right(image, flip_key)
  else:
    image = data
  return _normalize(image, spec), label


def preprocess_eval(data, label, spec):
  """Evaluation transform: ImageNet's central crop; others unchanged."""
  if _is_jpeg_stream(spec):
    image = _center_crop(data, spec.image_shape[0])
  else:
    image = data
  return _normalize(image, spec), label


def _as_dataset(b, spec, split):
  decoders = ({"image": tfds.decode.SkipDecoding()}
              if _is_jpeg_stream(spec) else None)
  return b.as_dataset(split=split, shuffle_files=False, as_supervised=True,
                      decoders=decoders)


def _one_hot(num_classes):
  return lambda image, label: (image, tf.one_hot(label, num_classes))


def make_train_fn(spec, b, global_batch, seed, steps_per_epoch, start_step,
                  epochs):
  """A `dataset_fn(input_context)` for `distribute_datasets_from_function`.

  Args:
    spec: the `DatasetSpec`.
    b: its prepared TFDS builder.
    global_batch: examples per step over all replicas.
    seed: data seed (shuffling and augmentation).
    steps_per_epoch: steps in one epoch (whole global batches only).
    start_step: first step of this run (the restored optimizer step).
    epochs: epochs of the whole run; the stream ends after the last one.

  Returns:
    A function of a `tf.distribute.InputContext` returning a per-replica
    batched dataset of `(image, one-hot label)`.
  """

  def dataset_fn(ctx):
    pipelines, index = ctx.num_input_pipelines, ctx.input_pipeline_id
    split = spec.train_split
    if pipelines > 1:
      split = tfds.even_splits(split, n=pipelines)[index]
    base = _as_dataset(b, spec, split)
    if not _is_jpeg_stream(spec):
      base = base.cache()
    per_step = global_batch // pipelines
    per_epoch = steps_per_epoch * per_step
    buffer = _SHUFFLE_BUFFER.get(spec.tfds_name, per_epoch)
    base_seed = seed * 1000003 + index

    def epoch_ds(epoch):
      # The epoch's seed alone, whatever the global seed: TF pairs an op seed
      # with the global one, and a global seed of 0 (set_random_seed(0))
      # made that pairing fail on this symbolic seed.
      tf.compat.v1.get_default_graph().seed = None
      shuffled = base.shuffle(buffer, seed=base_seed * 7919 + epoch,
                              reshuffle_each_iteration=False)
      return shuffled.take(per_epoch)

    first_epoch, offset = divmod(start_step, steps_per_epoch)
    stream = tf.data.Dataset.range(first_epoch, epochs).flat_map(epoch_ds)
    stream = stream.skip(offset * per_step)
    batch = ctx.get_per_replica_batch_size(global_batch)
    if not _augments(spec):
      # Nothing random per example: transform whole batches (much faster).
      stream = stream.batch(batch, drop_remainder=True)
      stream = stream.map(
          lambda image, label: preprocess_eval(image, label, spec),
          num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
      return stream.map(_one_hot(spec.num_classes)).prefetch(tf.data.AUTOTUNE)
    first = first_epoch * per_epoch + offset * per_step
    positions = tf.data.Dataset.range(first, tf.int64.max)
    stream = tf.data.Dataset.zip((stream, positions))
    stream = stream.map(
        lambda example, i: preprocess_train(*example, i, spec, base_seed),
        num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    stream = stream.map(_one_hot(spec.num_classes))
    stream = stream.batch(batch, drop_remainder=True)
    return stream.prefetch(tf.data.AUTOTUNE)

  return dataset_fn


def make_eval_dataset(spec, b, global_batch):
  """The test split, preprocessed and batched by `global_batch` (in order).

  The dataset shards by example when distributed (every example is
  evaluated once).
  """
  ds = _as_dataset(b, spec, spec.test_split)
  ds = ds.map(lambda image, label: preprocess_eval(image, label, spec),
              num_parallel_calls=tf.data.AUTOTUNE)
  ds = ds.map(_one_hot(spec.num_classes)).batch(global_batch)
  options = tf.data.Options()
  options.experimental_distribute.auto_shard_policy = (
      tf.data.experimental.AutoShardPolicy.DATA)
  return ds.with_options(options).prefetch(tf.data.AUTOTUNE)


def keras3_train_dataset(spec, b, global_batch, seed, steps_per_epoch,
                         start_step, epochs, rows):
  """The training stream of `make_train_fn` for Keras 3, this process's rows.

  Every process builds the whole global stream (so a job of any number of
  processes trains on the same global batches as one device) and keeps rows
  `rows` of each batch; `keras.distribution` (JAX) splits them over the
  process's devices, and `tf.distribute` (TensorFlow backend, one process)
  splits whole batches over its replicas.

  Args:
    spec, b, global_batch, seed, steps_per_epoch, start_step, epochs: as in
      `make_train_fn`.
    rows: (start, stop) of this process's rows in a global batch.

  Returns:
    A `tf.data.Dataset` of `(image, one-hot label)` batches.
  """
  ds = make_train_fn(spec, b, global_batch, seed, steps_per_epoch,
                     start_step, epochs)(tf.distribute.InputContext())
  a, z = rows
  if (a, z) != (0, global_batch):
    ds = ds.map(lambda x, y: (x[a:z], y[a:z]))
  return ds


def keras3_eval_dataset(spec, b, global_batch, rows, pad):
  """The test split for Keras 3: `(image, label, weight)` batches in order.

  `make_eval_dataset`'s batches, each with a weight per example. With
  `pad`, the last batch is filled up to `global_batch` with examples of
  weight 0 (every device gets an equal share), and each batch is cut to
  this process's `rows`.
  """
  a, z = rows

  def batch(image, label):
    weight = tf.ones(tf.shape(label)[:1])
    if pad:
      fill = global_batch - tf.shape(label)[0]
      image = tf.concat([image, tf.zeros(tf.concat(
          [[fill], tf.shape(image)[1:]], 0), image.dtype)], 0)
      label = tf.concat([label, tf.zeros([fill, spec.num_classes])], 0)
      weight = tf.concat([weight, tf.zeros([fill])], 0)
    return image[a:z], label[a:z], weight[a:z]

  return make_eval_dataset(spec, b, global_batch).map(
      batch, num_parallel_calls=tf.data.AUTOTUNE)


def calibration_inputs(spec, b, count=200):
  """The first `count` training inputs, evaluation-preprocessed, as an array.

  What int8 post-training quantization calibrates on (not the test split).
  """
  ds = _as_dataset(b, spec, spec.train_split).take(count).map(
      lambda image, label: preprocess_eval(image, label, spec)[0],
      num_parallel_calls=tf.data.AUTOTUNE)
  return np.stack(list(ds.as_numpy_iterator()))


def as_arrays(ds):
  """(inputs, labels) arrays of a finite dataset of (inputs, labels) batches."""
  xs, ys = zip(*ds.as_numpy_iterator())
  return np.concatenate(xs), np.concatenate(ys)


def num_train_examples(b, spec):
  """Examples in the training split."""
  return b.info.splits[spec.train_split].num_examples
