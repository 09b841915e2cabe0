"""Keras 3 suite: runs only in a process started with KERAS_BACKEND set.

`tests/run.sh` runs it once per backend (tensorflow, jax, torch), each in its
own process, because Keras 3 picks its backend once, at import;
tests/conftest.py leaves this folder out of runs without KERAS_BACKEND.
"""

import pytest


@pytest.fixture(autouse=True)
def _clear_keras3_session():
  yield
  import keras  # pylint: disable=g-import-not-at-top
  keras.backend.clear_session()
  keras.config.set_dtype_policy("float32")
