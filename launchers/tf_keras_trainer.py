"""A tf_keras (TF-MOT) launcher run, from parsed flags to results.

`trainer.train` runs this with --frontend=tf_keras. A run:

1. checks the flags (one clear error line before anything starts),
2. makes the `tf.distribute` strategy and the TFDS builder,
3. builds, sparsifies and compiles the model (`training`),
4. restores the latest checkpoint under --model_dir (`checkpointing`) and
   trains from the restored step with a data stream that continues exactly
   where the checkpoint was taken (`datasets`),
5. saves checkpoints every --checkpoint_every steps and on SIGTERM,
6. writes TensorBoard logs (loss, accuracy, learning rate, R_s, per-layer R_s,
   density and regrown counts) under --model_dir/tensorboard, and ends with
   a line `final: test_accuracy=... sparsity=... R_s=... train_flops=...x`
   and a `results.json`.

Example:

>>> results = train(FLAGS)  # FLAGS.frontend == "tf_keras"
"""

import json
import os

import tensorflow as tf
import tf_keras as keras

import itop_tf
from launchers import checkpointing
from launchers import datasets
from launchers import litert
from launchers import recipe
from launchers import reporting
from launchers import training


def train(f):
  """`trainer.train` on tf_keras (TF-MOT); the same argument and result.

  Raises:
    app.UsageError: the batch does not split over the replicas, is larger
      than the training split, or --jit cannot run on the replicas.
  """
  if f.deterministic:
    tf.config.experimental.enable_op_determinism()
  strategy = training.make_strategy(f)
  training.check_distribution(f, strategy)
  if f.mixed_precision != "none":
    keras.mixed_precision.set_global_policy("mixed_" + f.mixed_precision)
  # Global seed 1 + seed: with a global seed of 0, tf.data cannot take the
  # per-epoch shuffle seed as a tensor (TF reads (0, 0) as "unseeded").
  keras.utils.set_random_seed(f.seed + 1)

  spec = recipe.dataset_spec(f)
  builder = datasets.builder(spec, f.data_dir, f.manual_dir)
  steps_per_epoch, epochs, total_steps = recipe.run_length(
      f, datasets.num_train_examples(builder, spec))
  multiplier = f.multiplier
  f.model_dir = recipe.run_dir(f)

  with strategy.scope():
    model = training.build_model(f, spec, total_steps, multiplier)
    optimizer = training.compile_model(f, model, spec, total_steps,
                                       steps_per_epoch)
  checkpoints = checkpointing.RunCheckpoints(
      f.model_dir, strategy, model, optimizer, f.checkpoint_every)
  write_dir = checkpoints.write_dir
  start = int(optimizer.iterations.numpy())
  if start:
    print(f"Resuming from {checkpoints.restored} at step {start} of "
          f"{total_steps}.")

  clock = reporting.training_clock(keras)
  callbacks = [clock, checkpoints.callback(),
               keras.callbacks.TensorBoard(
                   os.path.join(write_dir, "tensorboard"), update_freq="epoch")]
  if f.method != "dense":
    callbacks.insert(0, itop_tf.ITOPCallback(
        log_dir=os.path.join(write_dir, "tensorboard", "itop")))
  eval_ds = datasets.make_eval_dataset(spec, builder, f.batch_size)

  def stream(first_step):
    return strategy.distribute_datasets_from_function(
        datasets.make_train_fn(spec, builder, f.batch_size, f.seed,
                               steps_per_epoch, first_step, epochs))

  steps_run = recipe.fit_from(model, stream, start, steps_per_epoch, epochs,
                              callbacks, f, eval_ds)
  step = int(optimizer.iterations.numpy())
  if step != start:
    checkpoints.save(step)

  values = model.evaluate(eval_ds, verbose=0, return_dict=True)
  results = reporting.run_results(f, model, values, step, "tf_keras",
                                  "tensorflow")
  results.update(reporting.timing(clock, steps_run, f.batch_size))
  os.makedirs(write_dir, exist_ok=True)
  if f.export != "none" and checkpoints.is_chief:
    results["tflite"] = litert.export(
        model, write_dir, f.export,
        lambda: datasets.calibration_inputs(spec, builder),
        datasets.as_arrays(eval_ds))
  with open(os.path.join(write_dir, "results.json"), "w") as out:
    json.dump(results, out, indent=1)
  checkpoints.finish()
  print(reporting.summary_line(results))
  return results
