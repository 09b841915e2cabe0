"""MirroredStrategy: masks stay identical on every replica."""

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

import itop_tf
from tf_keras_helpers import compile_sgd, mlp, toy_data

pytestmark = pytest.mark.multi_device


def _replica_values(strategy, var):
  return [v.numpy() for v in strategy.experimental_local_results(var)]


def _train_mirrored(devices, jit, grow, update_jit=True, steps=12):
  strategy = tf.distribute.MirroredStrategy(devices)
  x, y = toy_data()
  with strategy.scope():
    model = itop_tf.sparsify(
        mlp(), sparsity=0.8, grow=grow,
        schedule=itop_tf.RegrowthSchedule(update_interval=3, total_steps=100))
    compile_sgd(model, jit=jit)
  ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(32).repeat()
  model.fit(ds, steps_per_epoch=steps, epochs=1, verbose=0,
            callbacks=[itop_tf.ITOPCallback(jit_compile=update_jit)])
  return strategy, model


def _assert_replicas_identical(strategy, model):
  updater = itop_tf.MaskUpdater(model)
  for w in updater.wrappers:
    for sw in w.sparse_weights:
      masks = _replica_values(strategy, sw.mask)
      unions = _replica_values(strategy, sw.ever_active)
      weights = _replica_values(strategy, sw.weight)
      assert len(masks) == strategy.num_replicas_in_sync
      for m, u, wt in zip(masks[1:], unions[1:], weights[1:]):
        np.testing.assert_array_equal(m, masks[0])
        np.testing.assert_array_equal(u, unions[0])
        np.testing.assert_array_equal(wt, weights[0])
      assert int(masks[0].sum()) == sw.count
      assert (weights[0][~masks[0]] == 0).all()
  assert itop_tf.exploration_rate(model) > 0.2


@pytest.mark.parametrize("grow", ["random", "gradient"])
@pytest.mark.parametrize("update_jit", [True, False])
def test_mirrored_two_replicas_keep_identical_masks(grow, update_jit):
  strategy, model = _train_mirrored(["/cpu:0", "/cpu:1"], jit=False,
                                    grow=grow, update_jit=update_jit)
  _assert_replicas_identical(strategy, model)


def test_captured_gradient_is_the_global_batch_gradient():
  # Each replica captures the gradient of its half of the batch; read
  # across replicas it must be the gradient of the whole global batch at
  # the weights of the update step, as tape.gradient gives it.
  strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
  x, y = toy_data(32)
  with strategy.scope():
    model = itop_tf.sparsify(
        mlp(), sparsity=0.5, grow="gradient",
        schedule=itop_tf.RegrowthSchedule(update_interval=1, total_steps=10))
    compile_sgd(model)
  plain = itop_tf.strip(model)
  loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
  with tf.GradientTape() as tape:
    loss = loss_fn(y, plain(x, training=True))
  expected = tape.gradient(loss, [l.kernel for l in plain.layers])
  model.fit(x, y, batch_size=32, epochs=1, verbose=0,
            callbacks=[itop_tf.ITOPCallback()])  # one step, then an update
  for want, w in zip(expected, itop_tf.MaskUpdater(model).wrappers):
    sw = w.sparse_weights[0]
    parts = [p.numpy() for p in
             strategy.experimental_local_results(sw.dense_grad)]
    assert not np.allclose(parts[0], parts[1])  # each replica its own half
    np.testing.assert_allclose(tf.convert_to_tensor(sw.dense_grad).numpy(),
                               want.numpy(), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("grow", ["random", "gradient"])
def test_mirrored_with_jit_compiled_train_step(grow):
  # One replica: XLA on logical CPU devices cannot hold replicas on two
  # devices (see the next test), but this still compiles the replica step
  # with the gradient capture inside a Mirrored replica context.
  strategy, model = _train_mirrored(["/cpu:0"], jit=True, grow=grow)
  _assert_replicas_identical(strategy, model)


def _plain_keras_can_jit_on_two_replicas():
  strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
  x, y = toy_data(64)
  with strategy.scope():
    model = compile_sgd(mlp(), jit=True)
  try:
    model.fit(x, y, batch_size=32, epochs=1, verbose=0)
  except (tf.errors.InvalidArgumentError, tf.errors.UnimplementedError) as e:
    lines = [l for l in str(e).splitlines() if "Trying to access" in l]
    return (lines or str(e).splitlines() or [""])[0].strip()[:200]
  return None


@pytest.mark.parametrize("grow", ["random", "gradient"])
def test_mirrored_two_replicas_with_jit_compile(grow):
  devices = ["/gpu:0", "/gpu:1"] if len(
      tf.config.list_logical_devices("GPU")) >= 2 else ["/cpu:0", "/cpu:1"]
  if devices[0].startswith("/cpu"):
    why = _plain_keras_can_jit_on_two_replicas()
    if why:
      pytest.skip("a plain Keras model cannot run jit_compile=True under "
                  f"MirroredStrategy on logical CPU devices here: {why}")
  strategy, model = _train_mirrored(devices, jit=True, grow=grow)
  _assert_replicas_identical(strategy, model)
