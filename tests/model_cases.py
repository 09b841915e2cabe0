"""The small models and data both front-ends' suites train: built with the
Keras module given (tf_keras or Keras 3), so the two build the same thing."""

import numpy as np


def mlp(keras, inputs=16, hidden=32, classes=4):
  return keras.Sequential([
      keras.Input((inputs,)),
      keras.layers.Dense(hidden, activation="relu", name="fc1"),
      keras.layers.Dense(classes, name="fc2"),
  ])


def small_cnn(keras, classes=4, size=8, channels=3):
  inp = keras.Input((size, size, channels))
  x = keras.layers.Conv2D(8, 3, padding="same", name="conv1")(inp)
  x = keras.layers.BatchNormalization()(x)
  x = keras.layers.ReLU()(x)
  x = keras.layers.DepthwiseConv2D(3, padding="same", name="dw")(x)
  x = keras.layers.Conv2D(16, 3, strides=2, name="conv2")(x)
  x = keras.layers.GlobalAveragePooling2D()(x)
  out = keras.layers.Dense(classes, name="head")(x)
  return keras.Model(inp, out)


def toy_data(n=256, inputs=16, classes=4, seed=0):
  """(x, y): Gaussian inputs, labels from a random linear map."""
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(n, inputs)).astype("float32")
  w = rng.normal(size=(inputs, classes))
  y = np.argmax(x @ w, axis=1).astype("int32")
  return x, y


def block_class(keras):
  """A residual custom layer holding two Dense layers, built in its `build`."""

  class Block(keras.layers.Layer):

    def __init__(self, units=8, **kwargs):
      super().__init__(**kwargs)
      self.units = units
      self.up = keras.layers.Dense(2 * units, name="up")
      self.down = keras.layers.Dense(units, name="down")

    def build(self, input_shape):
      self.up.build(input_shape)
      self.down.build(tuple(input_shape[:-1]) + (2 * self.units,))
      super().build(input_shape)

    def call(self, x):
      return x + self.down(keras.activations.relu(self.up(x)))

    def get_config(self):
      return {**super().get_config(), "units": self.units}

  return Block


def block_model(keras, inputs=16, classes=4):
  """`block_class` then a Dense head: the kernels `sparsify` reaches inside a
  layer."""
  inp = keras.Input((inputs,))
  x = block_class(keras)(inputs, name="block")(inp)
  return keras.Model(inp, keras.layers.Dense(classes, name="head")(x))


def shared_dense(keras):
  """One Dense layer called twice (8 -> 8 -> 8), then a head of 3."""
  inp = keras.Input((8,))
  shared = keras.layers.Dense(8, name="shared")
  h = shared(keras.activations.tanh(shared(inp)))
  return keras.Model(inp, keras.layers.Dense(3, name="head")(h))


def tied_embedding(keras):
  """keras_hub's ReversibleEmbedding "shared" (12 x 8) used as the input
  embedding and, reversed, as the output layer (Keras 3)."""
  import keras_hub  # pylint: disable=g-import-not-at-top
  inp = keras.Input((5,), dtype="int32")
  emb = keras_hub.layers.ReversibleEmbedding(12, 8, name="shared")
  h = keras.activations.tanh(keras.ops.mean(emb(inp), axis=1))
  return keras.Model(inp, emb(h, reverse=True))


def shared_data(name, n=16):
  """(x, y) for `shared_dense` or `tied_embedding`."""
  rng = np.random.default_rng(1)
  if name == "tied_embedding":
    return (rng.integers(0, 12, (n, 5)).astype("int32"),
            rng.integers(0, 12, (n,)).astype("int32"))
  return (rng.normal(size=(n, 8)).astype("float32"),
          rng.integers(0, 3, (n,)).astype("int32"))


def attention(keras, classes=3):
  """Self-attention then cross-attention (query 6 x 8, context 4 x 12), a
  head: MultiHeadAttention's projections are the kernels to make sparse."""
  inp, ctx = keras.Input((6, 8)), keras.Input((4, 12))
  x = keras.layers.Add()([inp, keras.layers.MultiHeadAttention(
      2, 4, name="self_mha")(inp, inp)])
  x = keras.layers.Add()([x, keras.layers.MultiHeadAttention(
      2, 4, name="cross_mha")(x, ctx)])
  out = keras.layers.Dense(classes, name="head")(
      keras.layers.GlobalAveragePooling1D()(x))
  return keras.Model([inp, ctx], out)


def attention_data(n=32, classes=3):
  rng = np.random.default_rng(2)
  return ([rng.normal(size=(n, 6, 8)).astype("float32"),
           rng.normal(size=(n, 4, 12)).astype("float32")],
          rng.integers(0, classes, (n,)).astype("int32"))
