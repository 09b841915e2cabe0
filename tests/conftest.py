"""Shared test setup: two logical CPU devices, fixtures (models and data for
the tf_keras suite are in tf_keras_helpers.py)."""

import importlib
import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
if os.environ.get("KERAS_BACKEND") == "jax":
  # Two CPU devices for keras.distribution.DataParallel; before JAX loads.
  os.environ.setdefault("XLA_FLAGS",
                        "--xla_force_host_platform_device_count=2")

# tests/keras3 runs in processes of its own, one per KERAS_BACKEND
# (tests/run.sh); without one it is not collected, and its conftest (a
# module also named "conftest") is not imported over this one.
if not os.environ.get("KERAS_BACKEND"):
  collect_ignore = ["keras3"]

import pytest  # pylint: disable=g-import-not-at-top

from fashion_files import write_fashion_mnist  # pylint: disable=g-import-not-at-top


def _runs_tests(config):
  """False in pytest-xdist's controller, which only hands tests out."""
  return bool(os.environ.get("PYTEST_XDIST_WORKER")) or not getattr(
      config.option, "numprocesses", None)


def pytest_configure(config):
  """Where tests run: Keras 3 before TensorFlow on PyTorch (the other order
  segfaults), then two logical CPU devices for the Mirrored tests, before
  TensorFlow uses a device. The xdist controller imports neither (seconds
  of start-up saved per run)."""
  if not _runs_tests(config):
    return
  if os.environ.get("KERAS_BACKEND") == "torch":
    importlib.import_module("keras")
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  cpu = tf.config.list_physical_devices("CPU")[0]
  tf.config.set_logical_device_configuration(
      cpu, [tf.config.LogicalDeviceConfiguration()] * 2)


@pytest.fixture(autouse=True)
def _clear_session():
  yield
  import tf_keras  # pylint: disable=g-import-not-at-top
  tf_keras.backend.clear_session()


@pytest.fixture(scope="session")
def fashion_data(tmp_path_factory):
  """(data_dir, manual_dir): small IDX files, prepared with our TFDS builder."""
  from launchers import datasets  # pylint: disable=g-import-not-at-top
  root = tmp_path_factory.mktemp("fashion")
  manual = write_fashion_mnist(str(root / "idx"))
  data_dir = str(root / "tfds")
  datasets.builder(datasets.DATASETS["fashion_mnist"], data_dir, manual)
  return data_dir, manual
