"""TF-MOT users' habits: UpdatePruningStep, PruningSummaries, strip_pruning."""

import glob

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_model_optimization as tfmot

import itop_tf
from tf_keras_helpers import compile_sgd, kernels, sparse_mlp, toy_data


def _fit(model, callbacks, epochs=2):
  x, y = toy_data()
  ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(32)
  return compile_sgd(model).fit(ds, epochs=epochs, verbose=0,
                                callbacks=callbacks)


def _digest(model):
  return [np.concatenate([sw.mask.numpy().ravel(), sw.ever_active.numpy().ravel(),
                          sw.weight.numpy().ravel()]) for _, sw in kernels(model)]


def test_update_pruning_step_next_to_itop_callback_changes_nothing():
  tf.keras.utils.set_random_seed(1)
  plain = sparse_mlp(sparsity=0.8, interval=3, grow="gradient")
  _fit(plain, [itop_tf.ITOPCallback()])
  tf.keras.utils.set_random_seed(1)
  habit = sparse_mlp(sparsity=0.8, interval=3, grow="gradient")
  _fit(habit, [itop_tf.ITOPCallback(),
               tfmot.sparsity.keras.UpdatePruningStep()])
  for a, b in zip(_digest(plain), _digest(habit)):
    np.testing.assert_array_equal(a, b)
  assert itop_tf.exploration_rate(habit) > 0.2


def test_update_pruning_step_epoch_end_reapplies_the_masks():
  model = sparse_mlp(sparsity=0.8)
  sw = kernels(model)[0][1]
  w = sw.weight.numpy()
  w[~sw.mask.numpy()] = 1.0  # something wrote into pruned entries
  sw.weight.assign(w)
  callback = tfmot.sparsity.keras.UpdatePruningStep()
  callback.set_model(model)
  callback.on_train_begin()
  assert callback.prunable_layers == itop_tf.find_wrappers(model)
  callback.on_epoch_end(0)
  assert (sw.weight.numpy()[~sw.mask.numpy()] == 0).all()


def test_pruning_summaries_log_sparsity_and_threshold(tmp_path):
  model = sparse_mlp(sparsity=0.8, interval=3)
  _fit(model, [itop_tf.ITOPCallback(),
               tfmot.sparsity.keras.PruningSummaries(str(tmp_path))])
  values = {}
  for path in glob.glob(str(tmp_path / "metrics" / "events.*")):
    for event in tf.compat.v1.train.summary_iterator(path):
      for v in event.summary.value:
        values[v.tag] = float(tf.make_ndarray(v.tensor))
  for _, sw in kernels(model):
    density = sw.count / sw.size
    sparsity = values[sw.mask.name + "/sparsity"]
    assert sparsity == pytest.approx(1 - density, abs=1e-6)
    # The threshold is the largest magnitude pruned by an update: > 0 once
    # updates have run (epoch 2 begins after step 8, updates at 3 and 6).
    assert values[sw.threshold.name + "/threshold"] > 0


def test_tfmot_strip_pruning_gives_same_predictions_with_exact_zeros():
  model = sparse_mlp(sparsity=0.9, interval=2, grow="gradient")
  _fit(model, [itop_tf.ITOPCallback()])
  stripped = tfmot.sparsity.keras.strip_pruning(model)
  assert not itop_tf.find_wrappers(stripped)
  x, _ = toy_data(64)
  np.testing.assert_allclose(stripped(x).numpy(), model(x).numpy(),
                             rtol=1e-6, atol=1e-6)
  plain = [layer.kernel.numpy() for layer in stripped.layers]
  for kernel, (_, sw) in zip(plain, kernels(model)):
    assert np.count_nonzero(kernel) <= sw.count
    assert (kernel[~sw.mask.numpy()] == 0).all()
  ours = [layer.kernel.numpy() for layer in itop_tf.strip(model).layers]
  for a, b in zip(plain, ours):
    np.testing.assert_array_equal(a, b)
