r"""Train a sparse MLP with RigL-ITOP on scikit-learn's digits (offline).

About 10 s on two CPU cores; prints test accuracy and the ITOP rate R_s.

  python -m itop_tf.demo --sparsity=0.9 --grow=gradient --tensorboard_dir=logs/demo

Needs scikit-learn (its wheel ships the 1,797 real 8x8 digits).
"""

import math

from absl import app
from absl import flags
import numpy as np
import tf_keras as keras

import itop_tf

FLAGS = flags.FLAGS
flags.DEFINE_float("sparsity", 0.9, "Global sparsity in [0, 1).")
flags.DEFINE_enum("grow", "gradient", ["random", "gradient", "momentum"],
                  "random = SET, gradient = RigL, momentum = SNFS.")
flags.DEFINE_enum("distribution", "erk", ["erk", "er", "uniform"],
                  "Layer densities.")
flags.DEFINE_integer("update_interval", 20, "Steps between updates (Delta T).",
                     lower_bound=1)
flags.DEFINE_float("initial_prune_fraction", 0.5,
                   "Fraction replaced at the first update (0 = static).",
                   lower_bound=0.0, upper_bound=1.0)
flags.DEFINE_integer("epochs", 30, "Training epochs.", lower_bound=1)
flags.DEFINE_integer("batch_size", 64, "Batch size.", lower_bound=1)
flags.DEFINE_integer("seed", 0, "Seed for weights, masks and growth.")
flags.DEFINE_string("tensorboard_dir", None, "TensorBoard directory (optional).")


def main(argv):
  del argv
  if not 0.0 <= FLAGS.sparsity < 1.0:
    raise app.UsageError(f"--sparsity must be in [0, 1), got {FLAGS.sparsity}.")
  from sklearn.datasets import load_digits  # pylint: disable=g-import-not-at-top
  keras.utils.set_random_seed(FLAGS.seed)
  x, y = load_digits(return_X_y=True)
  x = (x / 16.0).astype("float32")
  order = np.random.default_rng(FLAGS.seed).permutation(len(x))
  x, y = x[order], y[order]
  x_train, y_train, x_test, y_test = x[:1500], y[:1500], x[1500:], y[1500:]
  model = keras.Sequential([
      keras.Input((64,)),
      keras.layers.Dense(256, activation="relu", name="fc1"),
      keras.layers.Dense(128, activation="relu", name="fc2"),
      keras.layers.Dense(10, name="fc3")])
  steps = FLAGS.epochs * math.ceil(len(x_train) / FLAGS.batch_size)
  model = itop_tf.sparsify(
      model, sparsity=FLAGS.sparsity, distribution=FLAGS.distribution,
      grow=FLAGS.grow, seed=FLAGS.seed,
      schedule=itop_tf.RegrowthSchedule(
          update_interval=FLAGS.update_interval, total_steps=steps,
          initial_prune_fraction=FLAGS.initial_prune_fraction))
  model.compile(keras.optimizers.SGD(0.1, momentum=0.9),
                keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                metrics=["accuracy"], jit_compile=True)
  model.fit(x_train, y_train, batch_size=FLAGS.batch_size,
            epochs=FLAGS.epochs, verbose=2,
            callbacks=[itop_tf.ITOPCallback(log_dir=FLAGS.tensorboard_dir)])
  _, accuracy = model.evaluate(x_test, y_test, verbose=0)
  print(itop_tf.format_report(itop_tf.sparsity_report(model)))
  print(f"test accuracy {accuracy:.4f}  sparsity {FLAGS.sparsity:.2f}  "
        f"R_s {itop_tf.exploration_rate(model):.4f}")


if __name__ == "__main__":
  app.run(main)
