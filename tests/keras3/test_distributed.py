"""Keras 3 front-end on 2 devices: identical masks on every replica.

TensorFlow backend: `tf.distribute.MirroredStrategy` over 2 logical CPUs
(tests/conftest.py). JAX backend: `keras.distribution.DataParallel` over 2
CPU devices (XLA_FLAGS, tests/conftest.py).
"""

import keras
import numpy as np
import pytest

import itop_tf
import keras3_helpers as helpers
from keras3_helpers import value

pytestmark = pytest.mark.skipif(
    helpers.BACKEND not in ("tensorflow", "jax"),
    reason="data parallel tests cover the TensorFlow and JAX backends")


def _replica_values(variable):
  """The value of `variable` on each device, as numpy arrays."""
  if helpers.BACKEND == "tensorflow":
    return [v.numpy() for v in variable.value.values]
  return [np.asarray(s.data) for s in variable.value.addressable_shards]


_STRATEGY = []


def _data_parallel():
  """A context in which models are built data-parallel over 2 devices."""
  if helpers.BACKEND == "tensorflow":
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    # One strategy per process: a second MirroredStrategy made after
    # keras.backend.clear_session() failed here with a collective shape
    # mismatch between the two models' gradients.
    if not _STRATEGY:
      _STRATEGY.append(tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]))
    return _STRATEGY[0].scope()
  import contextlib  # pylint: disable=g-import-not-at-top
  import jax  # pylint: disable=g-import-not-at-top

  @contextlib.contextmanager
  def scope():
    assert len(jax.devices()) == 2
    keras.distribution.set_distribution(
        keras.distribution.DataParallel(devices=jax.devices()))
    try:
      yield
    finally:
      keras.distribution.set_distribution(None)

  return scope()


def _jit_ok(jit):
  """Mirrored + XLA needs GPUs: on CPU devices TF fails for any model."""
  if jit and helpers.BACKEND == "tensorflow":
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    if len(tf.config.list_physical_devices("GPU")) < 2:
      pytest.skip(
          "MirroredStrategy + jit_compile=True on CPU devices fails in TF/XLA "
          "for a plain dense Keras 3 model too (\"Trying to access resource "
          "... located in device CPU:1 from device CPU:0\"); runs on 2+ GPUs.")


@pytest.mark.parametrize("jit", [False, True])
@pytest.mark.parametrize("grow", ["random", "gradient"])
def test_two_replicas_keep_identical_masks(grow, jit):
  update_jit = "auto"
  if helpers.BACKEND == "jax":
    # The step is always jax.jit (DataParallel's normal mode); `jit` picks
    # the update's: jax.jit, or NumPy on the host ("auto" on a CPU).
    update_jit, jit = jit, True
  _jit_ok(jit)
  x, y = helpers.toy_data()
  with _data_parallel():
    model = helpers.compile_model(helpers.sparse_mlp(grow=grow, interval=2),
                                 jit=jit)
    probe = helpers.InvariantProbe()
    hist = model.fit(x, y, batch_size=32, epochs=2, verbose=0,
                     callbacks=[itop_tf.ITOPCallback(jit_compile=update_jit),
                                probe])
    helpers.sync(model)
    sws = helpers.kernels(model)
    for sw in sws:
      for var in (sw.mask, sw.ever_active, sw.weight):
        values = _replica_values(var)
        assert len(values) == 2
        np.testing.assert_array_equal(values[0], values[1])
  assert hist.history["itop_rate"][-1] > hist.history["itop_rate"][0]
  moved = any(not np.array_equal(a, b)
              for a, b in zip(probe.masks[0], probe.masks[-1]))
  assert moved


def test_captured_gradient_is_the_global_batch_gradient():
  """One linear layer, MSE over the global batch of 16 split on 2 devices."""
  rng = np.random.default_rng(1)
  x = rng.normal(size=(16, 6)).astype("float32")
  y = rng.normal(size=(16, 3)).astype("float32")
  with _data_parallel():
    model = keras.Sequential([keras.Input((6,)),
                              keras.layers.Dense(3, use_bias=False)])
    sparse = itop_tf.sparsify(model, 0.5, schedule=helpers.schedule(),
                              grow="gradient", distribution="uniform")
    sparse.compile(keras.optimizers.SGD(0.0), "mse",
                   jit_compile=helpers.BACKEND == "jax")
    sw = helpers.kernels(sparse)[0]
    w = value(sw.weight)
    sparse.fit(x, y, batch_size=16, epochs=1, verbose=0, shuffle=False)
    helpers.sync(sparse)
    want = 2.0 / (16 * 3) * x.T @ (x @ w - y)
    for got in _replica_values(sw.dense_grad):
      np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)
