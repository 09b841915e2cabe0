"""The paper's training recipe from the launcher flags, for either Keras.

What the tf_keras launcher (`tf_keras_trainer`, `training`) and the Keras 3
launcher (`keras3_trainer`, `keras3_training`) share: the regrowth schedule
and `itop_tf.sparsify` call of --method, the learning-rate arithmetic
(linear warm-up, then x --lr_decay at each milestone), compiling, the run's
length and directory, and the epoch loop that resumes mid-epoch. Imports no
TensorFlow: the Keras in use is passed in, and the LR math takes the array
module to run on (`tf` or `keras.ops`).

Example:

>>> model = recipe.make_sparse(f, dense_model, total_steps, f.multiplier)
>>> rate = recipe.warmup_step_decay(step, 0.1, 500, [3000, 6000], 0.1,
...                                 keras.ops)
"""

import os

from absl import app

import itop_tf
from launchers import datasets

GROW = {"static": "random", "set": "random", "rigl": "gradient"}


def make_sparse(f, model, total_steps, multiplier):
  """`model` made sparse as --method says (unchanged for dense).

  Static keeps its masks (no prune fraction); SET and RigL explore until
  the end unless --end_step stops them (scaled by --multiplier, as the
  paper's 2x runs).

  Args:
    f: the parsed launcher flags.
    model: a dense model of either Keras.
    total_steps: the run's training steps (--multiplier included).
    multiplier: --multiplier.

  Returns:
    The sparse model (`itop_tf.sparsify`), or `model` for --method=dense.
  """
  if f.method == "dense":
    return model
  end = f.end_step * multiplier if f.end_step else None
  if end is not None and end >= total_steps:
    end = None
  schedule = itop_tf.RegrowthSchedule(
      update_interval=f.update_interval, total_steps=total_steps,
      initial_prune_fraction=(0.0 if f.method == "static"
                              else f.initial_prune_fraction),
      end_step=end)
  return itop_tf.sparsify(
      model, sparsity=f.sparsity, schedule=schedule,
      distribution=f.distribution, grow=GROW[f.method], seed=f.seed)


def learning_rate(f, total_steps, steps_per_epoch, keras, step_decay):
  """The LR schedule the flags describe, over `total_steps` steps.

  Args:
    f: the parsed flags (--lr, --lr_schedule, --lr_milestones, --lr_decay,
      --warmup_epochs).
    total_steps: the run's steps.
    steps_per_epoch: steps in one epoch (warm-up is in epochs).
    keras: the Keras module (tf_keras or Keras 3), for `CosineDecay`.
    step_decay: that Keras' `WarmupStepDecay` class.

  Returns:
    A `LearningRateSchedule` of that Keras.
  """
  warmup = int(round(f.warmup_epochs * steps_per_epoch))
  if f.lr_schedule == "cosine":
    return keras.optimizers.schedules.CosineDecay(
        0.0 if warmup else f.lr, max(total_steps - warmup, 1),
        warmup_target=f.lr if warmup else None, warmup_steps=warmup)
  boundaries = [int(round(float(m) * total_steps)) for m in f.lr_milestones]
  return step_decay(f.lr, warmup, boundaries, f.lr_decay)


class WarmupStepDecayConfig:
  """Linear warm-up from 0 to `lr`, then `lr * decay**k` after k milestones.

  The arguments and config of both Kerases' `WarmupStepDecay` schedules
  (`training`, `keras3_training`): each subclasses this and its Keras'
  `LearningRateSchedule`, and sets `ops` (`tf` or `keras.ops`).

  Args:
    lr: peak learning rate.
    warmup_steps: steps of linear warm-up (0: none).
    boundaries: increasing steps where the rate is multiplied by `decay`.
    decay: the factor.
  """

  ops = None

  def __init__(self, lr, warmup_steps, boundaries, decay):
    super().__init__()
    self.lr = float(lr)
    self.warmup_steps = int(warmup_steps)
    self.boundaries = [int(b) for b in boundaries]
    self.decay = float(decay)

  def __call__(self, step):
    return warmup_step_decay(step, self.lr, self.warmup_steps,
                             self.boundaries, self.decay, self.ops)

  def get_config(self):
    return {"lr": self.lr, "warmup_steps": self.warmup_steps,
            "boundaries": self.boundaries, "decay": self.decay}


def warmup_step_decay(step, lr, warmup_steps, boundaries, decay, ops):
  """`lr * decay**k` after k milestones, capped by a linear warm-up.

  Args:
    step: the optimizer step (a scalar tensor).
    lr: peak learning rate.
    warmup_steps: steps of linear warm-up from 0 (0: none).
    boundaries: increasing steps where the rate is multiplied by `decay`.
    decay: the factor.
    ops: `tf` or `keras.ops` (both have `cast` and `minimum`).

  Returns:
    The learning rate, a float32 scalar tensor.
  """
  step = ops.cast(step, "float32")
  k = ops.cast(0.0, "float32")
  for b in boundaries:
    k = k + ops.cast(step >= b, "float32")
  rate = lr * decay ** k
  if warmup_steps:
    rate = ops.minimum(rate, lr * (step + 1.0) / warmup_steps)
  return rate


def compile_model(f, model, spec, keras, schedule, jit_compile,
                  weighted=False):
  """Compiles `model` with the paper's SGD, loss and metrics; builds the
  optimizer.

  Args:
    f: the parsed flags (--momentum, --nesterov, --label_smoothing).
    model: the model.
    spec: the `datasets.DatasetSpec` (top-5 accuracy above 10 classes).
    keras: the model's Keras (tf_keras or Keras 3).
    schedule: the learning-rate schedule (`learning_rate`).
    jit_compile: `compile(jit_compile=...)`.
    weighted: the metrics as `weighted_metrics` (examples of weight 0 do
      not count: the Keras 3 launcher pads its last evaluation batch).

  Returns:
    The model's optimizer, built (a LossScaleOptimizer under float16).
  """
  metrics = ["accuracy"]
  if spec.num_classes > 10:
    metrics.append(keras.metrics.TopKCategoricalAccuracy(5, name="top5"))
  model.compile(
      keras.optimizers.SGD(schedule, momentum=f.momentum, nesterov=f.nesterov),
      keras.losses.CategoricalCrossentropy(
          from_logits=True, label_smoothing=f.label_smoothing),
      jit_compile=jit_compile,
      **{"weighted_metrics" if weighted else "metrics": metrics})
  model.optimizer.build(model.trainable_variables)
  return model.optimizer


def dataset_spec(f):
  """The `datasets.DatasetSpec` of --dataset (ImageNet at --image_size)."""
  spec = datasets.DATASETS[f.dataset]
  if f.dataset == "imagenet2012":
    spec = datasets.with_image_size(spec, f.image_size)
  return spec


def run_length(f, train_examples):
  """(steps per epoch, epochs, total steps) of the run, --multiplier included.

  Raises:
    app.UsageError: --batch_size is larger than the training split.
  """
  steps_per_epoch = train_examples // f.batch_size
  if steps_per_epoch < 1:
    raise app.UsageError(
        f"--batch_size={f.batch_size} is larger than the training split.")
  epochs = f.epochs * f.multiplier
  return steps_per_epoch, epochs, epochs * steps_per_epoch


def run_dir(f):
  """--model_dir, or runs/<dataset>_<model>_<method>_<sparsity>_<m>x_seed<s>."""
  return f.model_dir or os.path.join(
      "runs", f"{f.dataset}_{f.model}_{f.method}_"
      f"{f.sparsity:g}_{f.multiplier}x_seed{f.seed}")


def fit_from(model, stream, start, steps_per_epoch, epochs, callbacks, f,
             validation_data, **fit_kwargs):
  """Runs the rest of training from optimizer step `start` with `model.fit`.

  An interrupted epoch is finished first, then whole epochs run, so that
  epoch numbers (logs, TensorBoard) stay those of an uninterrupted run.

  Args:
    model: the compiled model.
    stream: `stream(first_step)`, the training data from that step on.
    start: the restored step.
    steps_per_epoch: steps in one epoch.
    epochs: epochs of the whole run.
    callbacks: `fit`'s callbacks.
    f: the parsed flags (--eval_every, --verbose).
    validation_data: evaluated every --eval_every epochs (0: never here).
    **fit_kwargs: more `fit` arguments.

  Returns:
    The steps run.
  """

  def fit(first_step, epoch, steps, end_epoch):
    validation = {}
    if f.eval_every:
      validation = {"validation_data": validation_data,
                    "validation_freq": f.eval_every}
    model.fit(stream(first_step), initial_epoch=epoch, epochs=end_epoch,
              steps_per_epoch=steps, callbacks=callbacks, verbose=f.verbose,
              **validation, **fit_kwargs)

  total = epochs * steps_per_epoch
  epoch, offset = divmod(start, steps_per_epoch)
  if start < total and offset:
    fit(start, epoch, steps_per_epoch - offset, epoch + 1)
    epoch += 1
  if epoch < epochs:
    fit(epoch * steps_per_epoch, epoch, steps_per_epoch, epochs)
  return max(total - start, 0)
