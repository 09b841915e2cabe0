"""Model kinds and layer types: functional, nested, subclassed, mixed precision."""

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

import itop_tf
from tf_keras_helpers import compile_sgd, kernels, mlp, small_cnn


def _schedule(interval=3, total=100):
  return itop_tf.RegrowthSchedule(update_interval=interval, total_steps=total)


def _fit_images(model, steps=7, jit=False):
  rng = np.random.default_rng(0)
  x = rng.normal(size=(64, 8, 8, 3)).astype("float32")
  y = rng.integers(0, 4, 64)
  compile_sgd(model, jit=jit)
  ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(16).repeat()
  model.fit(ds, steps_per_epoch=steps, verbose=0,
            callbacks=[itop_tf.ITOPCallback()])


def _check(model, sparsity):
  pairs = kernels(model)
  total = sum(sw.size for _, sw in pairs)
  active = sum(int(sw.mask.numpy().sum()) for _, sw in pairs)
  assert active == round((1 - sparsity) * total)
  for _, sw in pairs:
    assert int(sw.mask.numpy().sum()) == sw.count
    assert (sw.weight.numpy()[~sw.mask.numpy()] == 0).all()


def test_functional_cnn_with_depthwise_and_batchnorm():
  model = itop_tf.sparsify(small_cnn(), 0.7, schedule=_schedule(),
                           grow="gradient")
  names = [w.layer.name for w, _ in kernels(model)]
  assert names == ["conv1", "dw", "conv2", "head"]
  _fit_images(model, jit=True)
  _check(model, 0.7)
  assert itop_tf.exploration_rate(model) > 0.3


def test_nested_model_layers_are_wrapped():
  inner = keras.Sequential([keras.Input((16,)), keras.layers.Dense(
      32, activation="relu", name="inner_fc")], name="block")
  inp = keras.Input((16,))
  out = keras.layers.Dense(4, name="outer_fc")(inner(inp))
  model = itop_tf.sparsify(keras.Model(inp, out), 0.8, schedule=_schedule())
  assert [w.layer.name for w, _ in kernels(model)] == ["inner_fc", "outer_fc"]
  _check(model, 0.8)


def test_original_model_is_left_unchanged():
  model = mlp()
  before = [w.copy() for w in model.get_weights()]
  sparse = itop_tf.sparsify(model, 0.9, schedule=_schedule())
  for a, b in zip(before, model.get_weights()):
    np.testing.assert_array_equal(a, b)
  x = np.ones((2, 16), "float32")
  masked = [np.where(sw.mask.numpy(), k, 0) for (_, sw), k in
            zip(kernels(sparse), [before[0], before[2]])]
  ref = np.maximum(x @ masked[0] + before[1], 0) @ masked[1] + before[3]
  np.testing.assert_allclose(sparse(x).numpy(), ref, rtol=1e-5, atol=1e-5)


def test_dense_layers_and_layer_densities():
  model = itop_tf.sparsify(mlp(), 0.5, schedule=_schedule(),
                           dense_layers=["fc2"])
  assert [w.layer.name for w, _ in kernels(model)] == ["fc1"]
  model = itop_tf.sparsify(mlp(), 0.5, schedule=_schedule(),
                           layer_densities={"fc2": 1.0})
  (_, a), (_, b) = kernels(model)
  assert b.count == b.size and a.count + b.count == round(0.5 * (512 + 128))


def test_erk_forced_dense_layer_counts_as_explored_and_is_not_updated():
  model = itop_tf.sparsify(small_cnn(), 0.5, schedule=_schedule())
  dense = [sw for _, sw in kernels(model) if sw.is_dense]
  assert dense, "ERK should make the small depthwise kernel dense"
  callback = itop_tf.ITOPCallback()
  rng = np.random.default_rng(0)
  compile_sgd(model).fit(rng.normal(size=(64, 8, 8, 3)).astype("float32"),
                         rng.integers(0, 4, 64), batch_size=16, epochs=2,
                         verbose=0, callbacks=[callback])
  assert all(sw.mask.numpy().all() and sw.ever_active.numpy().all()
             for sw in dense)
  # Updates ran on the sparse kernels and left the dense one out (an update
  # on an all-ones mask would regrow what it pruned, unseen by the masks).
  regrown = callback.updater.last_stats["regrown"]
  assert callback.updater.last_stats["step"] == 6
  assert sorted(regrown) == sorted(sw.name for _, sw in kernels(model)
                                   if not sw.is_dense)
  assert all(sw.name not in regrown for sw in dense)


def test_embedding_and_lstm_layers():
  model = keras.Sequential([
      keras.Input((6,), dtype="int32"),
      keras.layers.Embedding(50, 8, name="emb"),
      keras.layers.LSTM(8, name="lstm"),
      keras.layers.Dense(4, name="out")])
  sparse = itop_tf.sparsify(model, 0.8, schedule=_schedule(), grow="gradient")
  assert len(kernels(sparse)) == 4  # embedding, lstm kernel + recurrent, out
  x = np.random.default_rng(0).integers(0, 50, (64, 6))
  y = np.random.default_rng(1).integers(0, 4, 64)
  compile_sgd(sparse)
  sparse.fit(x, y, batch_size=16, epochs=2, verbose=0,
             callbacks=[itop_tf.ITOPCallback()])
  _check(sparse, 0.8)


def test_mixed_float16_training_keeps_invariants():
  keras.mixed_precision.set_global_policy("mixed_float16")
  try:
    model = itop_tf.sparsify(small_cnn(), 0.7, schedule=_schedule(),
                             grow="gradient")
    wrappers = [w for w, _ in kernels(model)]
    assert wrappers[0].compute_dtype == "float16"
    assert all(w.sparse_weights[0].mask.dtype == tf.bool for w in wrappers)
    _fit_images(model, steps=7, jit=True)
    assert isinstance(model.optimizer, keras.mixed_precision.LossScaleOptimizer)
    _check(model, 0.7)
    assert itop_tf.exploration_rate(model) > 0.3
  finally:
    keras.mixed_precision.set_global_policy("float32")


class _Subclassed(keras.Model):
  """A subclassed model that places itop_tf wrappers itself."""

  def __init__(self, schedule):
    super().__init__()
    self.block = _Block(schedule)
    self.head = itop_tf.tf_keras.PruneAndRegrow(
        keras.layers.Dense(4), schedule, density=0.5, grow="gradient", seed=2)

  def call(self, x):
    return self.head(self.block(x))


class _Block(keras.layers.Layer):
  """A custom layer holding a wrapper (TF-MOT's callback misses these)."""

  def __init__(self, schedule):
    super().__init__()
    self.fc = itop_tf.tf_keras.PruneAndRegrow(
        keras.layers.Dense(32, activation="relu"), schedule, density=0.2,
        grow="gradient", seed=1)

  def call(self, x):
    return self.fc(x)


def test_subclassed_model_with_hand_placed_wrappers_trains():
  model = _Subclassed(_schedule())
  model(np.zeros((1, 16), "float32"))
  assert len(itop_tf.MaskUpdater(model).wrappers) == 2
  before = itop_tf.exploration_rate(model)
  rng = np.random.default_rng(0)
  compile_sgd(model).fit(rng.normal(size=(64, 16)).astype("float32"),
                         rng.integers(0, 4, 64), batch_size=8, epochs=1,
                         verbose=0, callbacks=[itop_tf.ITOPCallback()])
  assert itop_tf.exploration_rate(model) > before
  for w in itop_tf.MaskUpdater(model).wrappers:
    sw = w.sparse_weights[0]
    assert int(sw.mask.numpy().sum()) == sw.count
    assert (sw.weight.numpy()[~sw.mask.numpy()] == 0).all()


def test_sparsity_report_rows():
  model = itop_tf.sparsify(mlp(), 0.9, schedule=_schedule())
  rows = itop_tf.sparsity_report(model)
  assert [r["layer"] for r in rows] == ["fc1", "fc2"]
  assert rows[0]["shape"] == (16, 32) and rows[0]["size"] == 512
  assert sum(r["active"] for r in rows) == round(0.1 * 640)
  for r in rows:
    assert r["density"] == pytest.approx(r["exploration_rate"])
  assert "fc1" in itop_tf.format_report(rows)
