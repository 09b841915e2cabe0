"""RigL-ITOP at 90% sparsity learns real data (scikit-learn digits)."""

import numpy as np
import tf_keras as keras
from sklearn.datasets import load_digits

import itop_tf


def test_rigl_itop_learns_digits_at_90_percent_sparsity():
  keras.utils.set_random_seed(0)
  x, y = load_digits(return_X_y=True)
  x = (x / 16.0).astype("float32")
  x_train, y_train, x_test, y_test = x[:1500], y[:1500], x[1500:], y[1500:]
  model = keras.Sequential([
      keras.Input((64,)),
      keras.layers.Dense(256, activation="relu"),
      keras.layers.Dense(128, activation="relu"),
      keras.layers.Dense(10)])
  epochs, batch = 25, 64
  steps = epochs * int(np.ceil(len(x_train) / batch))
  model = itop_tf.sparsify(
      model, sparsity=0.9, grow="gradient", seed=0,
      schedule=itop_tf.RegrowthSchedule(update_interval=20, total_steps=steps))
  model.compile(keras.optimizers.SGD(0.1, momentum=0.9),
                keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                metrics=["accuracy"], jit_compile=True)
  history = model.fit(x_train, y_train, batch_size=batch, epochs=epochs,
                      verbose=0, callbacks=[itop_tf.ITOPCallback()])
  accuracy = model.evaluate(x_test, y_test, verbose=0,
                            return_dict=True)["accuracy"]
  assert accuracy > 0.8  # chance is 0.1
  rates = history.history["itop_rate"]
  assert rates[-1] > 0.1 + 0.1  # explored well beyond 1 - sparsity
  assert all(b >= a for a, b in zip(rates, rates[1:]))
  report = itop_tf.sparsity_report(model)
  assert sum(r["active"] for r in report) == round(
      0.1 * sum(r["size"] for r in report))
