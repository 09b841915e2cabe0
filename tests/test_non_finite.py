"""Invariants survive NaN and Inf in weights, gradients and inputs."""

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

import itop_tf
from itop_tf.tf_keras import wrapper
from tf_keras_helpers import compile_sgd, kernels, sparse_mlp

BAD = [np.nan, np.inf, -np.inf]


def _invariants(model, counts, unions_before=None):
  for i, (_, sw) in enumerate(kernels(model)):
    m, w, u = sw.mask.numpy(), sw.weight.numpy(), sw.ever_active.numpy()
    assert int(m.sum()) == counts[i] == sw.count
    assert (w[~m] == 0).all()  # exactly 0, not NaN
    assert not (m & ~u).any()
    if unions_before is not None:
      assert not (unions_before[i] & ~u).any()


@pytest.mark.parametrize("grow", ["random", "gradient", "momentum"])
@pytest.mark.parametrize("bad", BAD, ids=str)
def test_update_keeps_invariants_with_non_finite_weights_and_gradients(
    grow, bad):
  model = compile_sgd(sparse_mlp(sparsity=0.8, grow=grow, interval=10,
                                 total=1000))
  model.optimizer.build(model.trainable_variables)
  updater = itop_tf.MaskUpdater(model)
  updater.initialize(0)
  pairs = kernels(model)
  counts = [sw.count for _, sw in pairs]
  rng = np.random.default_rng(0)
  for _, sw in pairs:
    w, m = sw.weight.numpy(), sw.mask.numpy()
    active = np.flatnonzero(m)
    w.flat[active[:3]] = bad  # three active weights go bad
    sw.weight.assign(w)
    if sw.dense_grad is not None:
      g = rng.normal(size=sw.weight.shape).astype("float32")
      g[rng.random(g.shape) < 0.3] = bad
      sw.dense_grad.assign(g)
  unions = [sw.ever_active.numpy().copy() for _, sw in pairs]
  stats = updater.update(step=10)
  _invariants(model, counts, unions)
  # Non-finite active weights are the first pruned (regrown ones restart at
  # 0): none is left.
  for _, sw in pairs:
    assert np.isfinite(sw.weight.numpy()).all()
  assert stats["non_finite"] == {sw.name: 3 for _, sw in pairs}


def test_nan_input_row_does_not_change_the_sparsity():
  # The probe: one NaN input row used to take 10/9 active weights to
  # 37/34 within two epochs.
  model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(16),
                            keras.layers.Dense(4)])
  model = itop_tf.sparsify(model, 0.9, grow="gradient",
                           schedule=itop_tf.RegrowthSchedule(2, 1000))
  counts = [sw.count for _, sw in kernels(model)]
  assert counts == [10, 9]
  rng = np.random.default_rng(0)
  x = rng.normal(size=(64, 8)).astype("float32")
  x[5] = np.nan
  y = rng.integers(0, 4, 64)

  class Probe(keras.callbacks.Callback):

    def on_train_batch_end(self, batch, logs=None):
      _invariants(self.model, counts)

  compile_sgd(model).fit(x, y, batch_size=16, epochs=2, verbose=0,
                         callbacks=[itop_tf.ITOPCallback(), Probe()])
  _invariants(model, counts)


def test_terminate_on_nan_next_to_itop_callback_stops_with_invariants():
  # No ReLU and a squared error: both pass NaN on. With AVX-512, oneDNN's
  # fused MatMul+ReLU and the softmax cross-entropy kernel turn NaN inputs
  # into finite values, and the loss never became NaN.
  linear = keras.Sequential([keras.Input((16,)), keras.layers.Dense(32),
                             keras.layers.Dense(4)])
  model = itop_tf.sparsify(linear, sparsity=0.8, grow="gradient",
                           schedule=itop_tf.RegrowthSchedule(2, 200))
  x = np.ones((64, 16), "float32")
  x[20:] = np.nan  # batches from the third on are NaN
  y = np.zeros((64, 4), "float32")
  counts = [sw.count for _, sw in kernels(model)]
  model.compile(keras.optimizers.SGD(0.05, momentum=0.9), "mse")
  history = model.fit(
      x, y, batch_size=8, epochs=3, verbose=0, shuffle=False,
      callbacks=[itop_tf.ITOPCallback(), keras.callbacks.TerminateOnNaN()])
  assert len(history.epoch) == 1  # stopped in the first epoch
  assert int(model.optimizer.iterations.numpy()) == 3  # at the first NaN loss
  _invariants(model, counts)


def test_update_warns_when_it_prunes_non_finite_weights(caplog):
  model = compile_sgd(sparse_mlp(sparsity=0.8))
  model.optimizer.build(model.trainable_variables)
  sw = kernels(model)[0][1]
  w = sw.weight.numpy()
  w.flat[np.flatnonzero(sw.mask.numpy())[0]] = np.nan
  sw.weight.assign(w)
  updater = itop_tf.MaskUpdater(model)
  with caplog.at_level("WARNING"):
    updater.update(step=5)
  assert "fc1: 1" in caplog.text and "TerminateOnNaN" in caplog.text
  assert tf.reduce_all(tf.math.is_finite(sw.weight)).numpy()


@pytest.mark.parametrize("decay", [None, 0.9], ids=["rigl", "momentum"])
def test_captured_gradient_keeps_its_value_where_the_gradient_is_not_finite(
    decay):
  """RigL's capture stores NaN as 0 and leaves +-Inf to the rank's clip; the
  SNFS moving average keeps its value where the gradient is NaN or +-Inf
  (before, one such step left Inf or NaN in it for good)."""
  rng = np.random.default_rng(0)
  w = tf.constant(rng.normal(size=(3, 4)).astype("float32"))
  mask = tf.constant(rng.random((3, 4)) < 0.5)
  before = rng.normal(size=(3, 4)).astype("float32")
  grad_var = tf.Variable(before)
  upstream = rng.normal(size=(3, 4)).astype("float32")
  upstream.flat[:3] = BAD
  with tf.GradientTape() as tape:
    tape.watch(w)
    masked = wrapper._masked_gradient(w, mask, grad_var, tf.constant(True),
                                      decay)
    out = tf.reduce_sum(masked * upstream)
  dw = tape.gradient(out, w).numpy()
  np.testing.assert_array_equal(dw, np.where(mask.numpy(), upstream, 0))
  if decay is None:
    want = np.where(np.isnan(upstream), 0, upstream)
  else:
    want = np.where(np.isfinite(upstream),
                    decay * before + (1 - decay) * upstream, before)
  np.testing.assert_allclose(grad_var.numpy(), want, rtol=1e-6)


def test_momentum_average_stays_finite_through_mixed_float16_overflows():
  """A LossScaleOptimizer's first steps overflow (it halves its scale and
  skips them); the SNFS moving average, which the backward pass writes
  before the optimizer sees the step, must not keep their Inf."""
  keras.mixed_precision.set_global_policy("mixed_float16")
  try:
    model = compile_sgd(sparse_mlp(sparsity=0.8, grow="momentum"))
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 16)).astype("float32") * 50
    y = rng.integers(0, 4, 64)
    model.fit(x, y, batch_size=16, epochs=2, verbose=0,
              callbacks=[itop_tf.ITOPCallback()])
    assert isinstance(model.optimizer, keras.mixed_precision.LossScaleOptimizer)
    assert model.optimizer.loss_scale.numpy() < 2.0**15, "no step overflowed"
    for _, sw in kernels(model):
      g = sw.dense_grad.numpy()
      assert np.isfinite(g).all() and np.abs(g).max() > 0, sw.name
  finally:
    keras.mixed_precision.set_global_policy("float32")
