"""Where inactive kernel entries are masked (Keras 3, every backend).

They are exact zeros in the variables; training masks only their gradients,
inference masks the kernel itself, and an optimizer that moves zero weights
(Muon) gets the masked forward pass in training too. The cases both
front-ends share are in tests/keras3/test_contract.py; these are Keras 3's own.
"""

import keras
import numpy as np
import pytest

import itop_tf
from itop_tf.keras3 import frontend as keras3_frontend
from itop_tf import updaters
import keras3_helpers as helpers
import optimizer_cases
from keras3_helpers import value

OPTIMIZERS = optimizer_cases.optimizers(keras)


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_inactive_weights_stay_exactly_zero_between_updates(name):
  # Updates every 3 steps prune weights with non-zero optimizer state; the
  # probe checks after every step that no inactive entry left 0. (EMA with
  # grow="gradient" fails inside Keras on TF and JAX: see the next test.)
  grow = "random" if name == "adam_ema_overwrite" else "gradient"
  model = helpers.compile_model(
      helpers.sparse_mlp(sparsity=0.7, grow=grow, interval=3),
      OPTIMIZERS[name]())
  x, y = helpers.toy_data()
  probe = helpers.InvariantProbe()
  callback = itop_tf.ITOPCallback()
  model.fit(x, y, batch_size=32, epochs=2, verbose=0,
            callbacks=[callback, probe])
  assert probe.steps == 16
  assert callback.updater.last_stats["drifted"] == {}
  assert sum(callback.updater.last_stats["regrown"].values()) > 0
  assert not any(sw.wrapper.forward_mask for sw in helpers.kernels(model))


def test_ema_with_gradient_growth_is_a_clear_error_where_keras_fails():
  model = helpers.compile_model(
      helpers.sparse_mlp(grow="gradient", interval=3),
      keras.optimizers.Adam(1e-2, use_ema=True, ema_overwrite_frequency=2))
  x, y = helpers.toy_data()

  def fit():
    model.fit(x, y, batch_size=32, epochs=1, verbose=0,
              callbacks=[itop_tf.ITOPCallback()])

  if helpers.BACKEND == "torch":
    fit()  # Keras runs it on PyTorch
    helpers.sync(model)
    assert all(np.all(value(sw.weight)[~value(sw.mask)] == 0)
               for sw in helpers.kernels(model))
  else:
    with pytest.raises(ValueError, match="use_ema=False, grow='random'"):
      fit()


def _write_inactive(model, number):
  for sw in helpers.kernels(model):
    w = value(sw.weight).copy()
    w[~value(sw.mask)] = number
    sw.weight.assign(w)


class _MySGD(keras.optimizers.SGD):
  """An optimizer class from outside Keras (could do anything)."""


def test_is_elementwise_knows_the_keras_optimizers():
  assert updaters.is_elementwise(keras.optimizers.AdamW())
  assert updaters.is_elementwise(keras.optimizers.LossScaleOptimizer(
      keras.optimizers.SGD()))
  assert not updaters.is_elementwise(keras.optimizers.Muon())
  assert not updaters.is_elementwise(_MySGD())


def test_muon_gets_the_masked_forward_pass_and_its_drift_is_zeroed():
  model = helpers.compile_model(helpers.sparse_mlp(sparsity=0.8, interval=3),
                               keras.optimizers.Muon(0.02))
  x, y = helpers.toy_data()
  callback = itop_tf.ITOPCallback()
  model.fit(x, y, batch_size=32, epochs=1, steps_per_epoch=7, verbose=0,
            callbacks=[callback])
  sws = helpers.kernels(model)
  assert all(sw.wrapper.forward_mask for sw in sws)
  # Muon moves zero weights: the update at step 6 found and zeroed them.
  assert callback.updater.last_stats["drifted"]
  helpers.sync(model)
  assert any(np.any(value(sw.weight)[~value(sw.mask)] != 0) for sw in sws)
  np.testing.assert_allclose(value(model(x, training=True)),
                             value(model(x, training=False)), rtol=1e-5,
                             atol=1e-6)
  # A fresh updater zeroes them again and counts them.
  updater = itop_tf.MaskUpdater(model)
  stats = updater.update(1000)
  assert stats["drifted"]
  assert all(np.all(value(sw.weight)[~value(sw.mask)] == 0) for sw in sws)
  assert keras3_frontend.optimizer_slots(model.optimizer, sws[0].weight)


def test_forward_mask_takes_in_a_train_step_traced_before_it():
  # A fit without the callback traces the step with the plain forward pass.
  # ITOPCallback's updater then sets forward_mask (an optimizer from outside
  # Keras) and the step is traced anew: while the old train function lives
  # (here `traced`), JAX would find its trace of model.train_step again.
  # Inactive entries set to 100 after the updater zeroed them must not reach
  # the loss (learning rate 0: nothing else moves).
  model = helpers.compile_model(
      helpers.sparse_mlp(sparsity=0.8, interval=1000, total=4000),
      _MySGD(0.0, name="my_sgd"))
  x, y = helpers.toy_data()
  x, y = x[:32], y[:32]
  model.fit(x, y, batch_size=32, epochs=1, verbose=0)
  traced = model.train_function
  sws = helpers.kernels(model)
  assert not any(sw.wrapper.forward_mask for sw in sws)

  class Poison(keras.callbacks.Callback):

    def on_train_begin(self, logs=None):
      for sw in sws:
        w, mask = value(sw.weight), value(sw.mask)
        sw.weight.assign(np.where(mask, w, 100.0).astype(w.dtype))

  hist = model.fit(x, y, batch_size=32, epochs=1, verbose=0,
                   callbacks=[itop_tf.ITOPCallback(), Poison()])
  assert all(sw.wrapper.forward_mask for sw in sws)
  want = model.evaluate(x, y, batch_size=32, verbose=0, return_dict=True)
  assert hist.history["loss"][0] == pytest.approx(want["loss"], rel=1e-5)
  assert model.train_function is not traced
