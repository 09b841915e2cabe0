"""Saving, loading, stripping and resuming keep masks, union and schedule."""


import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

import itop_tf
import model_cases
from tf_keras_helpers import compile_sgd, kernels, sparse_mlp, toy_data


def _fit(model, steps, callbacks=(), initial_epoch=0, epochs=1):
  x, y = toy_data()
  ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(32).repeat()
  model.fit(ds, steps_per_epoch=steps, epochs=epochs, verbose=0,
            initial_epoch=initial_epoch, callbacks=list(callbacks))


def _state(model):
  return [(sw.mask.numpy().copy(), sw.ever_active.numpy().copy(),
           sw.weight.numpy().copy()) for _, sw in kernels(model)]


def _trained(grow="gradient"):
  model = compile_sgd(sparse_mlp(sparsity=0.8, interval=3, grow=grow))
  _fit(model, 7, [itop_tf.ITOPCallback()])
  return model


def _assert_same_state(a, b):
  for (m0, u0, w0), (m1, u1, w1) in zip(_state(a), _state(b)):
    np.testing.assert_array_equal(m0, m1)
    np.testing.assert_array_equal(u0, u1)
    np.testing.assert_array_equal(w0, w1)


# The .keras format: tests/keras3/test_contract.py, on both front-ends.
@pytest.mark.parametrize("fmt", ["model.h5", "saved_model"])
def test_save_and_load_keep_masks_union_and_schedule(tmp_path, fmt):
  model = _trained()
  path = str(tmp_path / fmt)
  model.save(path)
  with itop_tf.tf_keras.scope():
    loaded = keras.models.load_model(path)
  _assert_same_state(model, loaded)
  x, _ = toy_data(32)
  np.testing.assert_allclose(loaded.predict(x, verbose=0),
                             model.predict(x, verbose=0), atol=1e-5)
  w0 = itop_tf.MaskUpdater(model).wrappers[0]
  w1 = itop_tf.MaskUpdater(loaded).wrappers[0]
  assert w1.pruning_schedule == w0.pruning_schedule
  assert (w1.grow, w1.counts, w1.seed) == (w0.grow, w0.counts, w0.seed)
  assert itop_tf.exploration_rate(loaded) == itop_tf.exploration_rate(model)


def test_checkpoint_round_trip_keeps_state_and_step(tmp_path):
  model = _trained()
  ckpt = tf.train.Checkpoint(model=model, optimizer=model.optimizer)
  path = ckpt.save(str(tmp_path / "ckpt"))
  fresh = compile_sgd(sparse_mlp(sparsity=0.8, interval=3, grow="gradient",
                                 seed=99))
  fresh.optimizer.build(fresh.trainable_variables)
  tf.train.Checkpoint(model=fresh, optimizer=fresh.optimizer).restore(
      path).assert_existing_objects_matched()
  _assert_same_state(model, fresh)
  assert int(fresh.optimizer.iterations) == int(model.optimizer.iterations)


@pytest.mark.parametrize("grow", ["random", "gradient"])
def test_resumed_run_matches_uninterrupted_run(tmp_path, grow):
  keras.utils.set_random_seed(0)
  straight = compile_sgd(sparse_mlp(sparsity=0.8, interval=3, grow=grow))
  _fit(straight, 8, [itop_tf.ITOPCallback()], epochs=2)

  keras.utils.set_random_seed(0)
  first = compile_sgd(sparse_mlp(sparsity=0.8, interval=3, grow=grow))
  _fit(first, 8, [itop_tf.ITOPCallback()], epochs=1)
  path = tf.train.Checkpoint(model=first, optimizer=first.optimizer).save(
      str(tmp_path / "ckpt"))
  keras.backend.clear_session()
  resumed = compile_sgd(sparse_mlp(sparsity=0.8, interval=3, grow=grow,
                                   seed=123))
  resumed.optimizer.build(resumed.trainable_variables)
  tf.train.Checkpoint(model=resumed, optimizer=resumed.optimizer).restore(path)
  assert int(resumed.optimizer.iterations) == 8
  _fit(resumed, 8, [itop_tf.ITOPCallback()], initial_epoch=1, epochs=2)
  for (m0, u0, w0), (m1, u1, w1) in zip(_state(straight), _state(resumed)):
    np.testing.assert_array_equal(m0, m1)
    np.testing.assert_array_equal(u0, u1)
    np.testing.assert_allclose(w0, w1, atol=1e-6)
  assert itop_tf.exploration_rate(resumed) == itop_tf.exploration_rate(
      straight)


def test_same_seed_gives_same_masks_other_seed_differs():
  a, b, c = (sparse_mlp(seed=s) for s in (1, 1, 2))
  for (_, x), (_, y), (_, z) in zip(kernels(a), kernels(b), kernels(c)):
    np.testing.assert_array_equal(x.mask.numpy(), y.mask.numpy())
    assert (x.mask.numpy() != z.mask.numpy()).any()


def test_tensorboard_scalars_are_written(tmp_path):
  model = compile_sgd(sparse_mlp(sparsity=0.8, interval=3))
  _fit(model, 7, [itop_tf.ITOPCallback(log_dir=str(tmp_path))])
  from tensorboard.backend.event_processing import event_accumulator
  acc = event_accumulator.EventAccumulator(str(tmp_path), size_guidance={
      event_accumulator.TENSORS: 0})
  acc.Reload()
  tags = set(acc.Tags()["tensors"])
  for tag in ["itop/exploration_rate", "itop/exploration_rate/fc1",
              "itop/density/fc2", "itop/regrown/fc1", "itop/prune_fraction"]:
    assert tag in tags
  steps = [e.step for e in acc.Tensors("itop/prune_fraction")]
  assert steps == [3, 6]
  rates = [float(tf.make_ndarray(e.tensor_proto))
           for e in acc.Tensors("itop/exploration_rate")]
  assert rates[0] == pytest.approx(0.2, abs=1e-3) and rates[-1] > rates[0]


def test_per_layer_stats_in_epoch_logs():
  model = compile_sgd(sparse_mlp(sparsity=0.8, interval=3))
  x, y = toy_data()
  history = model.fit(x, y, batch_size=32, epochs=2, verbose=0,
                      callbacks=[itop_tf.ITOPCallback(per_layer_logs=True)])
  h = history.history
  assert h["itop_density/fc1"][-1] == pytest.approx(
      kernels(model)[0][1].count / 512)
  assert h["itop_rate/fc1"][-1] > h["itop_rate/fc1"][0] > 0
  assert h["itop_regrown/fc2"][-1] > 0
  assert "itop_rate/fc1" not in compile_sgd(sparse_mlp()).fit(
      x, y, epochs=1, verbose=0,
      callbacks=[itop_tf.ITOPCallback()]).history


@pytest.mark.parametrize("suffix", [".h5", ".keras"])
def test_attention_projections_save_and_load(tmp_path, suffix):
  model = itop_tf.sparsify(model_cases.attention(keras), sparsity=0.8,
                           schedule=itop_tf.RegrowthSchedule(2, 100))
  x, _ = model_cases.attention_data(n=8)
  path = str(tmp_path / f"attention{suffix}")
  model.save(path)
  with itop_tf.tf_keras.scope():
    loaded = keras.models.load_model(path)
  np.testing.assert_allclose(loaded.predict(x, verbose=0),
                             model.predict(x, verbose=0), atol=1e-5)
  assert [(sw.name, sw.count) for _, sw in kernels(loaded)] == [
      (sw.name, sw.count) for _, sw in kernels(model)]
