"""A Keras 3 launcher run (JAX, TensorFlow or PyTorch), flags to results.

`trainer.train` runs this with --frontend=keras3 (the default), on the
backend Keras is configured with (KERAS_BACKEND). A run:

1. places itself (`strategies.placement`): `keras.distribution.DataParallel`
   over every device on JAX (several hosts with --strategy=multi_worker),
   `tf.distribute` on TensorFlow, one device on PyTorch;
2. opens its data (`arrays.resolve_input`): TFDS through tf.data where
   TensorFlow is installed, else Fashion-MNIST's IDX files or a TFDS
   ArrayRecord data source, read with NumPy; the stream is a function of
   (seed, step), and each process keeps its rows of every global batch;
3. builds, regularises, sparsifies and compiles the model
   (`keras3_training`);
4. loads the newest `.weights.h5` checkpoint under --model_dir
   (`keras3_checkpoints`) and trains from its step; saves every
   --checkpoint_every steps, at the end, and on SIGTERM (then exits 42);
5. writes TensorBoard logs (loss, accuracy, learning rate, R_s, per-layer
   R_s, density, regrown counts) where TensorFlow is installed;
6. evaluates, exports with --export (`litert`), writes results.json
   (front-end, backend, accuracy, sparsity, R_s, FLOPs, mask digest, images
   per second of the training steps) and prints the final line.

Example:

>>> results = train(FLAGS)  # FLAGS.frontend == "keras3"
"""

import json
import os

from absl import app
from absl import logging
import keras
import numpy as np

import itop_tf
from launchers import arrays
from launchers import datasets
from launchers import keras3_checkpoints
from launchers import keras3_training
from launchers import lazy_imports
from launchers import litert
from launchers import recipe
from launchers import reporting
from launchers import strategies


class _Data:
  """The run's input: training streams from any step, and the test split."""

  def __init__(self, f, spec, place):
    self.kind = arrays.resolve_input(f.input, spec, keras.backend.backend(),
                                     f.manual_dir)
    self.spec, self.batch, self.seed = spec, f.batch_size, f.seed
    self.rows = place.local_batch(f.batch_size)
    self.pad = place.replicas > 1
    if self.kind == "tfds":
      self.builder = datasets.builder(spec, f.data_dir, f.manual_dir)
      self.size = datasets.num_train_examples(self.builder, spec)
    else:
      try:
        self.source = arrays.open_source(spec, self.kind, f.data_dir,
                                         f.manual_dir)
      except (ValueError, FileNotFoundError) as e:
        raise app.UsageError(str(e)) from e
      self.size = len(self.source.train)

  def train(self, first_step, steps_per_epoch, epochs):
    if self.kind == "tfds":
      return datasets.keras3_train_dataset(
          self.spec, self.builder, self.batch, self.seed, steps_per_epoch,
          first_step, epochs, self.rows)
    return arrays.TrainStream(self.source.train, self.spec, self.batch,
                              self.seed, steps_per_epoch, first_step,
                              self.rows)

  def test(self):
    if self.kind == "tfds":
      return datasets.keras3_eval_dataset(self.spec, self.builder, self.batch,
                                          self.rows, self.pad)
    return arrays.EvalStream(self.source.test, self.spec, self.batch,
                             self.rows, self.pad)

  def test_arrays(self):
    if self.kind == "tfds":
      return datasets.as_arrays(datasets.make_eval_dataset(
          self.spec, self.builder, self.batch))
    return arrays.EvalStream(self.source.test, self.spec, self.batch,
                             self.rows).arrays()

  def calibration(self):
    if self.kind == "tfds":
      return datasets.calibration_inputs(self.spec, self.builder)
    return arrays.calibration_inputs(self.source.train, self.spec)


def train(f):
  """`trainer.train` on Keras 3; the same argument and result.

  Raises:
    app.UsageError: the batch does not split over the devices or is larger
      than the training split, --strategy or --export cannot run here, or
      the data cannot be read as --input says.
  """
  # The run sets Keras' global dtype policy and (JAX) distribution; a caller
  # in the same process gets its own back.
  policy = keras.mixed_precision.global_policy()
  distribution = keras.distribution.distribution()
  try:
    return _train(f)
  finally:
    keras.mixed_precision.set_global_policy(policy)
    if keras.backend.backend() == "jax":
      keras.distribution.set_distribution(distribution)


def _train(f):
  """`train`, leaving Keras' global settings as the run made them."""
  backend = keras.backend.backend()
  litert.check_available(f.export)
  place = strategies.placement(f, backend)
  if place.strategy is not None:
    strategies.check_distribution(f, place.strategy)
  else:
    strategies.check_batch(f, place.replicas)
  if f.mixed_precision != "none":
    keras.mixed_precision.set_global_policy("mixed_" + f.mixed_precision)
  keras.utils.set_random_seed(f.seed + 1)  # as the tf_keras launcher

  spec = recipe.dataset_spec(f)
  data = _Data(f, spec, place)
  steps_per_epoch, epochs, total_steps = recipe.run_length(f, data.size)
  multiplier = f.multiplier
  f.model_dir = recipe.run_dir(f)

  with place.scope():
    model = keras3_training.build_model(f, spec, total_steps, multiplier)
    optimizer = keras3_training.compile_model(f, model, spec, total_steps,
                                              steps_per_epoch)
  is_chief, write_dir = strategies.worker_dir(f.model_dir, place)
  checkpoints = keras3_checkpoints.StepCheckpoints(
      f.model_dir, write_dir, model, f.checkpoint_every)
  restored = checkpoints.restore()
  start = int(keras.ops.convert_to_numpy(optimizer.iterations))
  if restored:
    print(f"Resuming from {restored} at step {start} of {total_steps}.")

  tensorboard = (os.path.join(write_dir, "tensorboard")
                 if lazy_imports.available("tensorflow") else None)
  clock = reporting.training_clock(keras)
  callbacks = [clock, keras3_training.LearningRateLog()]
  if f.method != "dense":
    callbacks.insert(0, itop_tf.ITOPCallback(
        log_dir=tensorboard and os.path.join(tensorboard, "itop")))
  if tensorboard:
    callbacks.append(keras.callbacks.TensorBoard(tensorboard,
                                                 update_freq="epoch"))
  else:
    logging.warning("TensorBoard logs need TensorFlow, which is not "
                    "installed here: none are written.")
  callbacks.append(checkpoints.callback())
  test_data = data.test()

  steps_run = recipe.fit_from(
      model, lambda first: data.train(first, steps_per_epoch, epochs), start,
      steps_per_epoch, epochs, callbacks, f, test_data, shuffle=False)
  step = int(keras.ops.convert_to_numpy(optimizer.iterations))
  if step != start:
    checkpoints.save(step)

  values = model.evaluate(test_data, verbose=0, return_dict=True)
  results = reporting.run_results(f, model, values, step, "keras3", backend)
  results.update(input=data.kind, replicas=place.replicas,
                 processes=place.num_processes,
                 **reporting.timing(clock, steps_run, f.batch_size))
  os.makedirs(write_dir, exist_ok=True)
  if f.export != "none" and is_chief:
    results["tflite"] = litert.export(model, write_dir, f.export,
                                      data.calibration, data.test_arrays())
  with open(os.path.join(write_dir, "results.json"), "w") as out:
    json.dump(results, out, indent=1, default=_plain)
  checkpoints.finish()
  print(reporting.summary_line(results))
  return results


def _plain(value):
  """NumPy scalars in results.json as Python numbers."""
  if isinstance(value, np.generic):
    return value.item()
  raise TypeError(f"{type(value).__name__} is not JSON serializable")
