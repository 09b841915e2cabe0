"""Keras 3 front-end: `.keras` files, BackupAndRestore and exact resume."""

import os

import keras
import numpy as np
import pytest

import itop_tf
import keras3_helpers as helpers
import model_cases
from keras3_helpers import value


def _state(model):
  helpers.sync(model)
  return [(value(sw.mask).copy(), value(sw.ever_active).copy(),
           value(sw.weight).copy()) for sw in helpers.kernels(model)]


class _Interrupt(keras.callbacks.Callback):

  def __init__(self, at_step):
    super().__init__()
    self.at_step = at_step
    self.seen = 0

  def on_train_batch_end(self, batch, logs=None):
    self.seen += 1
    if self.seen == self.at_step:
      raise RuntimeError("killed")


def _run(tmp_path, interrupt=None, grow="random"):
  keras.utils.set_random_seed(0)
  model = helpers.compile_model(helpers.sparse_mlp(grow=grow, interval=3,
                                                 total=48))
  x, y = helpers.toy_data(n=128)
  callbacks = [keras.callbacks.BackupAndRestore(str(tmp_path)),
               itop_tf.ITOPCallback()]
  if interrupt:
    with pytest.raises(RuntimeError, match="killed"):
      model.fit(x, y, batch_size=32, epochs=6, verbose=0, shuffle=False,
                callbacks=callbacks + [_Interrupt(interrupt)])
    keras.backend.clear_session()
    keras.utils.set_random_seed(1)  # a restart does not share the RNG
    model = helpers.compile_model(helpers.sparse_mlp(grow=grow, interval=3,
                                                   total=48))
  model.fit(x, y, batch_size=32, epochs=6, verbose=0, shuffle=False,
            callbacks=callbacks)
  return _state(model), itop_tf.exploration_rate(model)


@pytest.mark.parametrize(
    "grow", [pytest.param("random", marks=pytest.mark.slow), "gradient"])
def test_backup_and_restore_resumes_with_the_same_masks_and_rate(
    tmp_path, grow):
  """Killed mid-epoch 3, restarted: the end state equals a run never killed."""
  want, rate = _run(tmp_path / "a", grow=grow)
  got, got_rate = _run(tmp_path / "b", interrupt=10, grow=grow)
  assert got_rate == rate
  for (m, u, w), (m2, u2, w2) in zip(want, got):
    np.testing.assert_array_equal(m, m2)
    np.testing.assert_array_equal(u, u2)
    np.testing.assert_allclose(w, w2, atol=1e-5)


def test_training_on_from_a_keras_file_ends_where_one_run_does(tmp_path):
  """2 epochs, save, load, 2 more == 4 epochs without stopping."""
  x, y = helpers.toy_data(n=128)

  def fresh():
    keras.utils.set_random_seed(0)
    return helpers.compile_model(helpers.sparse_mlp(grow="gradient",
                                                  interval=3, total=32))

  def fit(model, epochs):
    model.fit(x, y, batch_size=32, epochs=epochs, verbose=0, shuffle=False,
              callbacks=[itop_tf.ITOPCallback()])

  whole = fresh()
  fit(whole, 4)
  first = fresh()
  fit(first, 2)
  path = os.path.join(tmp_path, "half.keras")
  first.save(path)
  keras.backend.clear_session()
  second = keras.models.load_model(path)
  fit(second, 2)
  assert itop_tf.exploration_rate(second) == itop_tf.exploration_rate(whole)
  for (m, u, w), (m2, u2, w2) in zip(_state(whole), _state(second)):
    np.testing.assert_array_equal(m, m2)
    np.testing.assert_array_equal(u, u2)
    np.testing.assert_allclose(w, w2, atol=1e-5)


def test_a_file_saved_before_the_call_counter_loads():
  model = itop_tf.sparsify(model_cases.shared_dense(keras), sparsity=0.5,
                           grow="gradient", schedule=helpers.schedule())
  wrapper = model.get_layer("shared")
  # The wrapper's own variables, in the order Keras saves them.
  variables = wrapper._trainable_variables + wrapper._non_trainable_variables  # pylint: disable=protected-access
  old = [v for v in variables if v is not wrapper.calls]
  store = {str(i): np.ones(v.shape, v.dtype) for i, v in enumerate(old)}
  wrapper.calls.assign(5.0)
  wrapper.load_own_variables(store)
  assert float(helpers.value(wrapper.calls)) == 1.0
  assert helpers.value(wrapper.sparse_weights[0].mask).all()
