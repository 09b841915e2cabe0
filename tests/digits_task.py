"""One end-to-end task for every front-end: a conv net on real digits.

scikit-learn's 1,797 8x8 digits (they ship in the wheel), a small conv net
at 90% sparsity, RigL-ITOP (grow="gradient", Delta T = 20), SGD with
momentum, 20 epochs. `run(keras_module)` trains it on the Keras it is given
(tf_keras, or Keras 3 on the backend of the process) with the same public
API, so the accuracies of the front-ends can be compared.
"""

import numpy as np
from sklearn.datasets import load_digits

import itop_tf

EPOCHS, BATCH, SPARSITY = 20, 64, 0.9


def data():
  x, y = load_digits(return_X_y=True)
  x = (x / 16.0).astype("float32").reshape(-1, 8, 8, 1)
  y = y.astype("int32")
  return (x[:1500], y[:1500]), (x[1500:], y[1500:])


def conv_net(keras):
  inp = keras.Input((8, 8, 1))
  x = keras.layers.Conv2D(32, 3, padding="same", activation="relu")(inp)
  x = keras.layers.Conv2D(64, 3, strides=2, padding="same",
                          activation="relu")(x)
  x = keras.layers.Flatten()(x)
  x = keras.layers.Dense(128, activation="relu")(x)
  return keras.Model(inp, keras.layers.Dense(10)(x))


def run(keras, seed=0, jit_compile=True):
  """Trains the task; returns (test accuracy, epoch R_s list, model, x_test)."""
  keras.utils.set_random_seed(seed)
  (x_train, y_train), (x_test, y_test) = data()
  steps = EPOCHS * int(np.ceil(len(x_train) / BATCH))
  model = itop_tf.sparsify(
      conv_net(keras), sparsity=SPARSITY, grow="gradient", seed=seed,
      schedule=itop_tf.RegrowthSchedule(update_interval=20, total_steps=steps))
  model.compile(keras.optimizers.SGD(0.05, momentum=0.9, nesterov=True),
                keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                metrics=["accuracy"], jit_compile=jit_compile)
  history = model.fit(x_train, y_train, batch_size=BATCH, epochs=EPOCHS,
                      verbose=0, callbacks=[itop_tf.ITOPCallback()])
  accuracy = model.evaluate(x_test, y_test, verbose=0,
                            return_dict=True)["accuracy"]
  return accuracy, history.history["itop_rate"], model, x_test


def check(result, min_accuracy):
  """What every front-end's run must show: it learned, explored, kept counts.

  Args:
    result: what `run` returned.
    min_accuracy: the test accuracy to beat.
  """
  accuracy, rates, model, x_test = result
  assert accuracy > min_accuracy, accuracy  # chance is 0.1
  assert rates[-1] > 0.1 + 0.1  # explored well beyond 1 - sparsity
  assert all(b >= a for a, b in zip(rates, rates[1:]))
  report = itop_tf.sparsity_report(model)
  assert sum(r["active"] for r in report) == round(
      0.1 * sum(r["size"] for r in report))
  plain = itop_tf.strip(model)
  np.testing.assert_allclose(plain.predict(x_test, verbose=0),
                             model.predict(x_test, verbose=0), atol=1e-5)
  return plain
