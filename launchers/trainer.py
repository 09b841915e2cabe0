"""A launcher run, from parsed flags to results.

`train_cifar.py` and `train_imagenet.py` define the flags
(`launcher_flags`) and call `run`. A run:

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

>>> launcher_flags.define_flags(*launcher_flags.CIFAR)
>>> app.run(run)
"""

import hashlib
import json
import os

from absl import app
from absl import logging
import numpy as np
import tensorflow as tf
import tf_keras as keras

import itop_tf
from launchers import checkpointing
from launchers import datasets
from launchers import launcher_flags
from launchers import training


def mask_digest(model):
  """sha256 of every mask and union, to compare runs and workers."""
  h = hashlib.sha256()
  for wrapper in itop_tf.find_wrappers(model):
    for sw in wrapper.sparse_weights:
      h.update(np.packbits(sw.mask.numpy()).tobytes())
      h.update(np.packbits(sw.ever_active.numpy()).tobytes())
  return h.hexdigest()


def run(argv):
  """`app.run` entry point: trains, evaluates and reports as flags say."""
  del argv
  if not launcher_flags.FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)
    tf.get_logger().setLevel("WARNING")
  train(launcher_flags.FLAGS)


def train(f):
  """Trains, evaluates and reports as the flags say.

  Args:
    f: parsed flag values (`FLAGS`, or a `FlagValues` given to
      `launcher_flags.define_flags`).

  Returns:
    The results dict also written to results.json.

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

  spec = datasets.DATASETS[f.dataset]
  if f.dataset == "imagenet2012":
    spec = datasets.with_image_size(spec, f.image_size)
  builder = datasets.builder(spec, f.data_dir, f.manual_dir)
  steps_per_epoch = datasets.num_train_examples(builder, spec) // f.batch_size
  if steps_per_epoch < 1:
    raise app.UsageError(
        f"--batch_size={f.batch_size} is larger than the training split.")
  multiplier = f.multiplier
  epochs = f.epochs * multiplier
  total_steps = epochs * steps_per_epoch
  f.model_dir = f.model_dir or os.path.join(
      "runs", f"{f.dataset}_{f.model}_{f.method}_"
      f"{f.sparsity:g}_{multiplier}x_seed{f.seed}")

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

  callbacks = [checkpoints.callback(),
               keras.callbacks.TensorBoard(
                   os.path.join(write_dir, "tensorboard"), update_freq="epoch")]
  if f.method != "dense":
    callbacks.insert(0, itop_tf.ITOPCallback(
        log_dir=os.path.join(write_dir, "tensorboard", "itop")))
  eval_ds = datasets.make_eval_dataset(spec, builder, f.batch_size)

  def fit(first_step, epoch, steps, end_epoch):
    train_ds = strategy.distribute_datasets_from_function(
        datasets.make_train_fn(spec, builder, f.batch_size, f.seed,
                               steps_per_epoch, first_step, epochs))
    validation = {}
    if f.eval_every:
      validation = {"validation_data": eval_ds,
                    "validation_freq": f.eval_every}
    model.fit(train_ds, initial_epoch=epoch, epochs=end_epoch,
              steps_per_epoch=steps, callbacks=callbacks,
              verbose=f.verbose, **validation)

  epoch, offset = divmod(start, steps_per_epoch)
  if start < total_steps and offset:
    # Finish the interrupted epoch first, then run whole epochs.
    fit(start, epoch, steps_per_epoch - offset, epoch + 1)
    epoch += 1
  if epoch < epochs:
    fit(epoch * steps_per_epoch, epoch, steps_per_epoch, epochs)
  step = int(optimizer.iterations.numpy())
  if step != start:
    checkpoints.save(step)

  results = evaluate_and_report(f, model, eval_ds, multiplier, step)
  os.makedirs(write_dir, exist_ok=True)
  if f.export != "none" and checkpoints.is_chief:
    results["tflite"] = export(f, model, spec, builder, eval_ds, write_dir)
  with open(os.path.join(write_dir, "results.json"), "w") as out:
    json.dump(results, out, indent=1)
  checkpoints.finish()
  print(summary_line(results))
  return results


def evaluate_and_report(f, model, eval_ds, multiplier, step):
  """Test metrics, sparsity, R_s and training FLOPs as a dict."""
  values = model.evaluate(eval_ds, verbose=0, return_dict=True)
  results = {"dataset": f.dataset, "model": f.model,
             "method": f.method, "multiplier": multiplier,
             "seed": f.seed, "step": step,
             "test_accuracy": float(values["accuracy"]),
             "test_loss": float(values["loss"])}
  if "top5" in values:
    results["test_top5"] = float(values["top5"])
  if f.method == "dense":
    results.update(sparsity=0.0, exploration_rate=1.0,
                   train_flops=float(multiplier))
    return results
  rows = itop_tf.sparsity_report(model)
  size = sum(r["size"] for r in rows)
  results.update(
      sparsity=1.0 - sum(r["active"] for r in rows) / size,
      exploration_rate=itop_tf.exploration_rate(model),
      train_flops=float(itop_tf.tf_keras.training_flops_ratio(model,
                                                              multiplier)),
      mask_digest=mask_digest(model),
      layers=[{k: (list(v) if isinstance(v, tuple) else v)
               for k, v in r.items()} for r in rows])
  return results


def export(f, model, spec, builder, eval_ds, write_dir):
  """Writes the --export LiteRT file; its report (interpreter accuracy) as a dict."""
  quantize = "int8" if f.export == "tflite_int8" else None
  name = "model_int8.tflite" if quantize else "model.tflite"
  report = itop_tf.export_tflite(
      model, os.path.join(write_dir, name), quantize=quantize,
      representative_data=(datasets.calibration_inputs(spec, builder)
                           if quantize else None),
      eval_data=datasets.as_arrays(eval_ds))
  logging.info("LiteRT export:\n%s", report)
  keep = ("path", "quantize", "sparse_encoding", "bytes", "gzip_bytes",
          "dense_bytes", "size_ratio", "gzip_ratio", "accuracy",
          "keras_accuracy", "accuracy_delta", "note")
  return {k: v for k, v in report.to_dict().items() if k in keep}


def summary_line(results):
  """The launcher's last line: accuracy, sparsity, R_s, training FLOPs.

  With --export it ends with the LiteRT file's size and interpreter accuracy.
  """
  line = (f"final: test_accuracy={results['test_accuracy']:.4f} "
          f"sparsity={results['sparsity']:.3f} "
          f"R_s={results['exploration_rate']:.4f} "
          f"train_flops={results['train_flops']:.3f}x dense "
          f"({results['method']}, {results['multiplier']}x, "
          f"step {results['step']})")
  lite = results.get("tflite")
  if lite:
    line += (f" tflite={lite['bytes'] / 1024:.1f}KiB "
             f"({lite['size_ratio']:.1f}x smaller than dense) "
             f"tflite_accuracy={lite['accuracy']:.4f}")
  return line
