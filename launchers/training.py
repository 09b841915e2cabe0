"""Training setup of a launcher run: strategy, model, LR, weight decay.

Everything between parsed flags and `model.fit`: the `tf.distribute`
strategy and its checks, the model (built, `itop_tf.sparsify`d unless
--method=dense, with L2 weight decay) and its compilation (SGD, warm-up +
step or cosine LR, label smoothing, XLA with --jit).

Example:

>>> strategy = make_strategy(f)
>>> check_distribution(f, strategy)
>>> with strategy.scope():
...   model = build_model(f, spec, total_steps, f.multiplier)
...   optimizer = compile_model(f, model, spec, total_steps, steps_per_epoch)
"""

import tensorflow as tf
import tf_keras as keras

from launchers import models
from launchers import recipe
from launchers import strategies

GROW = recipe.GROW
make_strategy = strategies.make_strategy
check_distribution = strategies.check_distribution


class WarmupStepDecay(recipe.WarmupStepDecayConfig,
                      keras.optimizers.schedules.LearningRateSchedule):
  """`recipe.WarmupStepDecayConfig` as a tf_keras schedule."""

  ops = tf


def learning_rate(f, total_steps, steps_per_epoch):
  """The LR schedule the flags describe, over `total_steps` steps."""
  return recipe.learning_rate(f, total_steps, steps_per_epoch, keras,
                              WarmupStepDecay)


def add_weight_decay(model, weight_decay, bn_weight_decay):
  """Adds `weight_decay * sum(w**2) / 2` over the trainable weights.

  This is PyTorch's SGD weight decay (the gradient gains `wd * w`), which the
  paper's code uses. Pruned weights are 0, so they add nothing.

  Args:
    model: the (sparsified) model.
    weight_decay: the coefficient; 0 adds nothing.
    bn_weight_decay: also decay BatchNorm `gamma` and `beta`.
  """
  if not weight_decay:
    return
  bn = {id(v) for layer in model.submodules
        if isinstance(layer, keras.layers.BatchNormalization)
        for v in layer.trainable_weights}
  decayed = [v for v in model.trainable_weights
             if bn_weight_decay or id(v) not in bn]
  model.add_loss(lambda: weight_decay * tf.add_n(
      [tf.nn.l2_loss(tf.cast(v, tf.float32)) for v in decayed]))


def build_model(f, spec, total_steps, multiplier):
  """Builds, sparsifies (unless dense) and regularises the model."""
  model = models.build(f.model, spec.image_shape, spec.num_classes)
  model = recipe.make_sparse(f, model, total_steps, multiplier)
  add_weight_decay(model, f.weight_decay, f.bn_weight_decay)
  return model


def compile_model(f, model, spec, total_steps, steps_per_epoch):
  """Compiles `model` as the flags say; call it under the strategy's scope.

  Returns:
    The model's optimizer, built (a LossScaleOptimizer under float16).
  """
  return recipe.compile_model(
      f, model, spec, keras, learning_rate(f, total_steps, steps_per_epoch),
      f.jit)
