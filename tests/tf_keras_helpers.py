"""Small tf_keras models, data and helpers for the tf_keras suite."""

import numpy as np
import tf_keras as keras

import itop_tf


def mlp(inputs=16, hidden=32, classes=4):
  return keras.Sequential([
      keras.Input((inputs,)),
      keras.layers.Dense(hidden, activation="relu", name="fc1"),
      keras.layers.Dense(classes, name="fc2"),
  ])


def small_cnn(classes=4):
  inp = keras.Input((8, 8, 3))
  x = keras.layers.Conv2D(8, 3, padding="same", name="conv1")(inp)
  x = keras.layers.BatchNormalization()(x)
  x = keras.layers.ReLU()(x)
  x = keras.layers.DepthwiseConv2D(3, padding="same", name="dw")(x)
  x = keras.layers.Conv2D(16, 3, strides=2, name="conv2")(x)
  x = keras.layers.GlobalAveragePooling2D()(x)
  out = keras.layers.Dense(classes, name="head")(x)
  return keras.Model(inp, out)


def toy_data(n=256, inputs=16, classes=4, seed=0):
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(n, inputs)).astype("float32")
  w = rng.normal(size=(inputs, classes))
  y = np.argmax(x @ w, axis=1).astype("int32")
  return x, y


def compile_sgd(model, jit=False, momentum=0.9, lr=0.05):
  model.compile(
      keras.optimizers.SGD(lr, momentum=momentum),
      keras.losses.SparseCategoricalCrossentropy(from_logits=True),
      metrics=["accuracy"], jit_compile=jit)
  return model


def sparse_mlp(sparsity=0.8, interval=5, total=200, grow="random", seed=0,
               **kw):
  schedule = itop_tf.RegrowthSchedule(update_interval=interval,
                                      total_steps=total)
  return itop_tf.sparsify(mlp(), sparsity=sparsity, schedule=schedule,
                          grow=grow, seed=seed, **kw)


def kernels(model):
  """(wrapper, sparse weight) pairs of a sparsified model."""
  return [(w, sw) for w in itop_tf.MaskUpdater(model).wrappers
          for sw in w.sparse_weights]
