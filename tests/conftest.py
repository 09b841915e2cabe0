"""Shared test setup: two logical CPU devices, small models and data."""

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
if os.environ.get("KERAS_BACKEND") == "torch":
  import keras  # noqa: F401  (before TensorFlow: the other order segfaults)
if os.environ.get("KERAS_BACKEND") == "jax":
  # Two CPU devices for keras.distribution.DataParallel; before JAX loads.
  os.environ.setdefault("XLA_FLAGS",
                        "--xla_force_host_platform_device_count=2")

# tests/keras3 runs in processes of its own, one per KERAS_BACKEND
# (tests/run.sh); without one it is not collected, and its conftest (a
# module also named "conftest") is not imported over this one.
if not os.environ.get("KERAS_BACKEND"):
  collect_ignore = ["keras3"]

import numpy as np  # pylint: disable=g-import-not-at-top
import pytest
import tensorflow as tf

from fashion_files import write_fashion_mnist

# Mirrored tests need two devices; this must happen before TF uses a device.
_cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(
    _cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

import tf_keras as keras  # pylint: disable=g-import-not-at-top

import itop_tf  # pylint: disable=g-import-not-at-top


def mlp(inputs=16, hidden=32, classes=4):
  return keras.Sequential([
      keras.Input((inputs,)),
      keras.layers.Dense(hidden, activation="relu", name="fc1"),
      keras.layers.Dense(classes, name="fc2"),
  ])


def small_cnn(classes=4):
  inp = keras.Input((8, 8, 3))
  x = keras.layers.Conv2D(8, 3, padding="same", name="conv1")(inp)
  x = keras.layers.BatchNormalization()(x)
  x = keras.layers.ReLU()(x)
  x = keras.layers.DepthwiseConv2D(3, padding="same", name="dw")(x)
  x = keras.layers.Conv2D(16, 3, strides=2, name="conv2")(x)
  x = keras.layers.GlobalAveragePooling2D()(x)
  out = keras.layers.Dense(classes, name="head")(x)
  return keras.Model(inp, out)


def toy_data(n=256, inputs=16, classes=4, seed=0):
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(n, inputs)).astype("float32")
  w = rng.normal(size=(inputs, classes))
  y = np.argmax(x @ w, axis=1).astype("int32")
  return x, y


def compile_sgd(model, jit=False, momentum=0.9, lr=0.05):
  model.compile(
      keras.optimizers.SGD(lr, momentum=momentum),
      keras.losses.SparseCategoricalCrossentropy(from_logits=True),
      metrics=["accuracy"], jit_compile=jit)
  return model


def sparse_mlp(sparsity=0.8, interval=5, total=200, grow="random", seed=0,
               **kw):
  schedule = itop_tf.RegrowthSchedule(update_interval=interval,
                                      total_steps=total)
  return itop_tf.sparsify(mlp(), sparsity=sparsity, schedule=schedule,
                          grow=grow, seed=seed, **kw)


def kernels(model):
  """(wrapper, sparse weight) pairs of a sparsified model."""
  return [(w, sw) for w in itop_tf.MaskUpdater(model).wrappers
          for sw in w.sparse_weights]


@pytest.fixture(autouse=True)
def _clear_session():
  yield
  keras.backend.clear_session()


@pytest.fixture(scope="session")
def fashion_data(tmp_path_factory):
  """(data_dir, manual_dir): small IDX files, prepared with our TFDS builder."""
  from launchers import datasets  # pylint: disable=g-import-not-at-top
  root = tmp_path_factory.mktemp("fashion")
  manual = write_fashion_mnist(str(root / "idx"))
  data_dir = str(root / "tfds")
  datasets.builder(datasets.DATASETS["fashion_mnist"], data_dir, manual)
  return data_dir, manual
