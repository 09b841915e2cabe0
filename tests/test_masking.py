"""Where inactive kernel entries are masked (tf_keras front-end).

They are exact zeros in the variables; training masks only their gradients
(the forward pass reads the kernel as it is), inference masks the kernel
itself, and an optimizer that moves zero weights gets the masked forward pass
in training too.
The cases both front-ends share are in tests/keras3/test_contract.py; these
are tf_keras' own.
"""

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

import itop_tf
from itop_tf import updaters
from tf_keras_helpers import kernels, mlp, sparse_mlp, toy_data
import optimizer_cases


def _l2_mlp():
  """The test MLP with an L2 penalty on both kernels."""
  model = mlp()
  config = model.get_config()
  for layer in config["layers"]:
    if layer["class_name"] == "Dense":
      layer["config"]["kernel_regularizer"] = {
          "class_name": "L2", "config": {"l2": 1e-3}}
  return keras.Sequential.from_config(config)


OPTIMIZERS = optimizer_cases.optimizers(keras, tf_keras=True)


class _InactiveProbe(keras.callbacks.Callback):
  """The largest |inactive kernel entry| after every step."""

  def __init__(self):
    super().__init__()
    self.largest = []

  def on_train_batch_end(self, batch, logs=None):
    self.largest.append(max(
        float(np.abs(sw.weight.numpy()[~sw.mask.numpy()]).max(initial=0))
        for _, sw in kernels(self.model)))


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_inactive_weights_stay_exactly_zero_between_updates(name):
  # An update every 3 steps prunes weights whose optimizer state (momentum,
  # Adam moments, EMA average) is not zero: unless the update zeroes that
  # state and training masks the gradient, they leave 0 the next step.
  schedule = itop_tf.RegrowthSchedule(update_interval=3, total_steps=200)
  model = itop_tf.sparsify(_l2_mlp(), 0.7, schedule=schedule,
                           grow="gradient")
  model.compile(OPTIMIZERS[name](),
                keras.losses.SparseCategoricalCrossentropy(from_logits=True))
  x, y = toy_data()
  probe = _InactiveProbe()
  callback = itop_tf.ITOPCallback()
  model.fit(x, y, batch_size=32, epochs=2, verbose=0,
            callbacks=[callback, probe])
  assert len(probe.largest) == 16
  assert probe.largest == [0.0] * 16
  assert callback.updater.last_stats["drifted"] == {}
  assert sum(callback.updater.last_stats["regrown"].values()) > 0
  assert not any(w.forward_mask for w, _ in kernels(model))


def _write_inactive(model, value):
  for _, sw in kernels(model):
    w = sw.weight.numpy()
    w[~sw.mask.numpy()] = value
    sw.weight.assign(w)


def test_gradient_reaches_only_active_entries():
  model = sparse_mlp(sparsity=0.8, grow="gradient")
  x, y = toy_data(n=32)
  loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
  pairs = kernels(model)
  with tf.GradientTape() as tape:
    loss = loss_fn(y, model(x, training=True))
  grads = tape.gradient(loss, [sw.weight for _, sw in pairs])
  for (_, sw), g in zip(pairs, grads):
    g, m = g.numpy(), sw.mask.numpy()
    assert (g[~m] == 0).all() and np.abs(g[m]).sum() > 0


def test_custom_loop_without_training_flag_masks_and_captures_gradients():
  # model(x) with training=None: masked forward, masked gradient, and RigL's
  # dense gradient still captured when the updater has armed the capture.
  model = sparse_mlp(sparsity=0.8, grow="gradient")
  x, y = toy_data(n=32)
  loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
  pairs = kernels(model)
  for w, _ in pairs:
    w.capture.assign(True)
  with tf.GradientTape() as tape:
    loss = loss_fn(y, model(x))
  grads = tape.gradient(loss, [sw.weight for _, sw in pairs])
  for (_, sw), g in zip(pairs, grads):
    g, m, dense = g.numpy(), sw.mask.numpy(), sw.dense_grad.numpy()
    assert (g[~m] == 0).all() and np.abs(g[m]).sum() > 0
    assert np.abs(dense[~m]).sum() > 0  # the dense gradient, not masked
    np.testing.assert_allclose(dense[m], g[m], rtol=1e-6)


class _DriftingSGD(keras.optimizers.SGD):
  """SGD that also moves every weight by 1e-3 a step, zero gradient or not."""

  def update_step(self, gradient, variable):
    super().update_step(gradient, variable)
    variable.assign_add(tf.fill(tf.shape(variable), 1e-3))


def test_is_elementwise_knows_the_keras_optimizers():
  assert updaters.is_elementwise(keras.optimizers.SGD(0.1, momentum=0.9))
  assert updaters.is_elementwise(keras.optimizers.legacy.Adam())
  assert updaters.is_elementwise(keras.mixed_precision.LossScaleOptimizer(
      keras.optimizers.Adam()))
  assert updaters.is_elementwise(None)
  assert not updaters.is_elementwise(_DriftingSGD(0.1))


def test_an_optimizer_that_moves_zero_weights_gets_the_masked_forward_pass(
    caplog):
  model = sparse_mlp(sparsity=0.8, interval=3)
  model.compile(_DriftingSGD(0.05),
                keras.losses.SparseCategoricalCrossentropy(from_logits=True))
  x, y = toy_data()
  callback = itop_tf.ITOPCallback()
  with caplog.at_level("WARNING"):
    model.fit(x, y, batch_size=32, epochs=1, steps_per_epoch=7, verbose=0,
              callbacks=[callback])
  pairs = kernels(model)
  assert all(w.forward_mask for w, _ in pairs)
  # The update at step 6 found (and zeroed) the drift of steps 4-6.
  drifted = callback.updater.last_stats["drifted"]
  assert set(drifted) == {sw.name for _, sw in pairs}
  assert "were not 0" not in caplog.text  # known and handled: no warning
  # Step 7 moved the inactive entries again, yet training sees them masked.
  assert all((sw.weight.numpy()[~sw.mask.numpy()] != 0).all()
             for _, sw in pairs)
  np.testing.assert_allclose(model(x, training=True).numpy(),
                             model(x, training=False).numpy(), rtol=1e-6)


def test_update_counts_zeroes_and_warns_of_inactive_weights_that_moved(
    caplog):
  model = sparse_mlp(sparsity=0.8, interval=1000, total=2000)
  model.compile(keras.optimizers.SGD(0.1),
                keras.losses.SparseCategoricalCrossentropy(from_logits=True))
  _, sw = kernels(model)[0]
  w = sw.weight.numpy()
  inactive = np.flatnonzero(~sw.mask.numpy())
  w.flat[inactive[:3]] = 0.5
  sw.weight.assign(w)
  with caplog.at_level("WARNING"):
    stats = itop_tf.MaskUpdater(model).update(step=1000)
  assert stats["drifted"] == {sw.name: 3}
  assert f"{sw.name}: 3" in caplog.text and "is_elementwise" in caplog.text
  assert (sw.weight.numpy()[~sw.mask.numpy()] == 0).all()

