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

from absl import app
import tensorflow as tf
import tf_keras as keras

import itop_tf
from launchers import models

GROW = {"static": "random", "set": "random", "rigl": "gradient"}


class WarmupStepDecay(keras.optimizers.schedules.LearningRateSchedule):
  """Linear warm-up from 0 to `lr`, then `lr * decay**k` after k milestones.

  Args:
    lr: peak learning rate.
    warmup_steps: steps of linear warm-up (0: none).
    boundaries: increasing steps where the rate is multiplied by `decay`.
    decay: the factor.
  """

  def __init__(self, lr, warmup_steps, boundaries, decay):
    super().__init__()
    self.lr = float(lr)
    self.warmup_steps = int(warmup_steps)
    self.boundaries = [int(b) for b in boundaries]
    self.decay = float(decay)

  def __call__(self, step):
    step = tf.cast(step, tf.float32)
    k = tf.zeros([], tf.float32)
    for b in self.boundaries:
      k += tf.cast(step >= b, tf.float32)
    rate = self.lr * tf.pow(self.decay, k)
    if self.warmup_steps:
      rate = tf.minimum(rate, self.lr * (step + 1.0) / self.warmup_steps)
    return rate

  def get_config(self):
    return {"lr": self.lr, "warmup_steps": self.warmup_steps,
            "boundaries": self.boundaries, "decay": self.decay}


def learning_rate(f, total_steps, steps_per_epoch):
  """The LR schedule the flags describe, over `total_steps` steps."""
  warmup = int(round(f.warmup_epochs * steps_per_epoch))
  if f.lr_schedule == "cosine":
    return keras.optimizers.schedules.CosineDecay(
        0.0 if warmup else f.lr, max(total_steps - warmup, 1),
        warmup_target=f.lr if warmup else None, warmup_steps=warmup)
  boundaries = [int(round(float(m) * total_steps))
                for m in f.lr_milestones]
  return WarmupStepDecay(f.lr, warmup, boundaries, f.lr_decay)


def make_strategy(f):
  """The `tf.distribute` strategy of --strategy."""
  if f.strategy == "mirrored":
    return tf.distribute.MirroredStrategy()
  if f.strategy == "multi_worker":
    return tf.distribute.MultiWorkerMirroredStrategy()
  if f.strategy == "tpu":
    resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=f.tpu)
    tf.config.experimental_connect_to_cluster(resolver)
    tf.tpu.experimental.initialize_tpu_system(resolver)
    return tf.distribute.TPUStrategy(resolver)
  return tf.distribute.get_strategy()


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
  if f.method != "dense":
    end = f.end_step * multiplier if f.end_step else None
    if end is not None and end >= total_steps:
      end = None
    schedule = itop_tf.RegrowthSchedule(
        update_interval=f.update_interval, total_steps=total_steps,
        initial_prune_fraction=(0.0 if f.method == "static"
                                else f.initial_prune_fraction),
        end_step=end)
    model = itop_tf.sparsify(
        model, sparsity=f.sparsity, schedule=schedule,
        distribution=f.distribution, grow=GROW[f.method],
        seed=f.seed)
  add_weight_decay(model, f.weight_decay, f.bn_weight_decay)
  return model


def check_distribution(f, strategy):
  """Stops before training when the batch or --jit cannot run on `strategy`.

  Raises:
    app.UsageError: the batch does not split over the replicas, or --jit
      asks for XLA on several CPU replicas.
  """
  replicas = strategy.num_replicas_in_sync
  if f.batch_size % replicas:
    raise app.UsageError(
        f"--batch_size={f.batch_size} is not divisible by the "
        f"{replicas} replicas: use a multiple of {replicas}.")
  if (f.jit and replicas > 1 and not tf.config.list_logical_devices("GPU")
      and f.strategy != "tpu"):
    raise app.UsageError(
        f"--jit with {replicas} CPU replicas fails in TensorFlow (XLA has no "
        "CPU collectives, b/194942685): pass --nojit (the mask updates stay "
        "XLA-compiled), or run on GPUs/TPUs.")


def compile_model(f, model, spec, total_steps, steps_per_epoch):
  """Compiles `model` as the flags say; call it under the strategy's scope.

  Returns:
    The model's optimizer, built (a LossScaleOptimizer under float16).
  """
  optimizer = keras.optimizers.SGD(
      learning_rate(f, total_steps, steps_per_epoch), momentum=f.momentum,
      nesterov=f.nesterov)
  metrics = ["accuracy"]
  if spec.num_classes > 10:
    metrics.append(keras.metrics.TopKCategoricalAccuracy(5, name="top5"))
  model.compile(
      optimizer,
      keras.losses.CategoricalCrossentropy(
          from_logits=True, label_smoothing=f.label_smoothing),
      metrics=metrics, jit_compile=f.jit)
  model.optimizer.build(model.trainable_variables)
  return model.optimizer
