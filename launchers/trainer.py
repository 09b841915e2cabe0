"""A launcher run, from parsed flags to results, on the chosen front-end.

`train_cifar.py` and `train_imagenet.py` define the flags
(`launcher_flags`) and call `run`. --frontend picks the run:

- `keras3` (default): Keras 3 on the backend Keras is configured with
  (KERAS_BACKEND=jax, tensorflow or torch): `keras3_trainer`.
- `tf_keras`: tf_keras with TF-MOT (TensorFlow): `tf_keras_trainer`.

Both check the flags (one clear error line before anything starts), resume
from the newest checkpoint under --model_dir, write TensorBoard logs and a
results.json, and end with the line
`final: test_accuracy=... sparsity=... R_s=... train_flops=...x dense
(<method>, <m>x, step <s>, <frontend>/<backend>)`.
This module imports no TensorFlow: the Keras 3 launcher runs where it is
not installed.

Example:

>>> launcher_flags.define_flags(*launcher_flags.CIFAR)
>>> app.run(run)
"""

from absl import logging

from launchers import launcher_flags


def run(argv):
  """`app.run` entry point: trains, evaluates and reports as flags say."""
  del argv
  f = launcher_flags.FLAGS
  if not f["verbosity"].present:
    logging.set_verbosity(logging.WARNING)
    if f.frontend == "tf_keras":
      import tensorflow as tf  # pylint: disable=g-import-not-at-top
      tf.get_logger().setLevel("WARNING")
  train(f)


def train(f):
  """Trains, evaluates and reports as the flags say.

  Args:
    f: parsed flag values (`FLAGS`, or a `FlagValues` given to
      `launcher_flags.define_flags`).

  Returns:
    The results dict also written to results.json.

  Raises:
    app.UsageError: the flags cannot run here (see each front-end's `train`).
  """
  # pylint: disable=g-import-not-at-top
  if f.frontend == "tf_keras":
    from launchers import tf_keras_trainer
    return tf_keras_trainer.train(f)
  from launchers import keras3_trainer
  return keras3_trainer.train(f)
