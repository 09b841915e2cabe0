"""Keras 3 suite: runs only in a process started with KERAS_BACKEND set.

`tests/run.sh` runs it once per backend (tensorflow, jax), each in its own
process, because Keras 3 picks its backend once, at import.
"""

import os

import pytest

if not os.environ.get("KERAS_BACKEND"):
  collect_ignore_glob = ["test_*.py"]


@pytest.fixture(autouse=True)
def _clear_keras3_session():
  yield
  import keras  # pylint: disable=g-import-not-at-top
  keras.backend.clear_session()
  keras.config.set_dtype_policy("float32")
