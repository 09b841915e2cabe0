"""Training setup of a Keras 3 launcher run: model, LR, weight decay, compile.

The Keras 3 twin of `training` (tf_keras): the network of --model with L2
weight decay as layer regularizers (none on BatchNorm unless
--bn_weight_decay), made sparse as --method says (`recipe`), compiled with
SGD, the paper's LR schedule, label smoothing and --jit, on whichever
backend Keras runs (KERAS_BACKEND). Imports no TensorFlow.

Example:

>>> model = build_model(f, spec, total_steps, f.multiplier)
>>> compile_model(f, model, spec, total_steps, steps_per_epoch)
"""

from absl import logging
import keras

from launchers import models
from launchers import recipe


@keras.saving.register_keras_serializable("itop_launchers")
class WarmupStepDecay(recipe.WarmupStepDecayConfig,
                      keras.optimizers.schedules.LearningRateSchedule):
  """`recipe.WarmupStepDecayConfig` as a Keras 3 schedule."""

  ops = keras.ops


def build_model(f, spec, total_steps, multiplier):
  """Builds the network, adds weight decay and makes it sparse (unless dense).

  Args:
    f: the parsed flags.
    spec: the `datasets.DatasetSpec`.
    total_steps: the run's training steps.
    multiplier: --multiplier.

  Returns:
    The Keras 3 model.
  """
  model = models.build(f.model, spec.image_shape, spec.num_classes, keras)
  model = models.with_weight_decay(model, keras, f.weight_decay,
                                   batch_norm=f.bn_weight_decay)
  return recipe.make_sparse(f, model, total_steps, multiplier)


def jit_compile(f):
  """`compile(jit_compile=...)` of --jit on this backend.

  PyTorch's `torch.compile` is not used: --jit there trains eagerly, with a
  log line saying so.
  """
  if f.jit and keras.backend.backend() == "torch":
    logging.info("--jit: Keras' PyTorch backend trains eagerly here "
                 "(torch.compile is not used).")
    return False
  return f.jit


def compile_model(f, model, spec, total_steps, steps_per_epoch):
  """Compiles `model` as the flags say and builds its optimizer.

  Args:
    f: the parsed flags.
    model: the model of `build_model`.
    spec: the `datasets.DatasetSpec` (top-5 accuracy above 10 classes).
    total_steps, steps_per_epoch: the run's length (LR schedule).

  Returns:
    The model's optimizer (a LossScaleOptimizer under mixed_float16).
  """
  schedule = recipe.learning_rate(f, total_steps, steps_per_epoch, keras,
                                  WarmupStepDecay)
  return recipe.compile_model(f, model, spec, keras, schedule, jit_compile(f),
                              weighted=True)


class LearningRateLog(keras.callbacks.Callback):
  """Puts the learning rate into each epoch's logs (TensorBoard, History)."""

  def on_epoch_end(self, epoch, logs=None):
    if logs is not None:
      optimizer = self.model.optimizer
      logs["learning_rate"] = float(keras.ops.convert_to_numpy(
          optimizer.learning_rate))
