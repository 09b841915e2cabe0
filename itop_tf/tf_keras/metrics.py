"""R_s for tf_keras models: the `ExplorationRate` metric.

R_s is the fraction of all sparse-able weights that have ever been active
(`itop_tf.metrics`). `ExplorationRate` is a tf_keras metric whose value is
R_s, which the update engine sets after every update (R_s changes at updates
only). `itop_tf.sparsify` attaches one to the model it returns (and
`ITOPCallback` to a model that lacks one), so `itop_rate` is in
`model.metrics`: the progress bar shows it as it is (not averaged over the
epoch), and it is in `History`, in Keras' `TensorBoard` callback
(`epoch_itop_rate`) and in `model.evaluate`'s results.

Example:

>>> model = itop_tf.sparsify(model, sparsity=0.9, schedule=schedule)
>>> [m.name for m in model.metrics]
['itop_rate']
"""

import tensorflow as tf
import tf_keras as keras

from itop_tf import frontends
from itop_tf import metrics as metrics_lib


def exploration_rate_of(sparse_weights):
  """R_s of the kernels `sparse_weights`, as a float32 scalar tensor.

  Args:
    sparse_weights: a list of `wrapper.SparseWeight`.

  Returns:
    Ever-active entries over all entries; 1.0 for an empty list.
  """
  total = sum(sw.size for sw in sparse_weights)
  if not total:
    return tf.constant(1.0, tf.float32)
  ever = tf.add_n([tf.reduce_sum(tf.cast(sw.ever_active, tf.int64))
                   for sw in sparse_weights])
  return tf.cast(tf.cast(ever, tf.float64) / float(total), tf.float32)


@keras.utils.register_keras_serializable(package="itop_tf")
class ExplorationRate(keras.metrics.Metric):
  """Keras metric whose value is the ITOP rate R_s of a model.

  R_s only changes at mask updates, so the metric holds it in one float32
  variable instead of summing the unions every training step (on
  a small network that sum is a visible part of a step): `MaskUpdater` (so
  `ITOPCallback`) sets every `ExplorationRate` in `model.metrics` after each
  update and at `initialize`, and `reset_state()`, which Keras calls when
  `fit` starts an epoch and when `evaluate` starts, reads the unions again.
  So the progress bar, `History` and `evaluate` show the current R_s, and
  the unions are never touched. The variable is the metric's own and not
  tracked: nothing to checkpoint, and Keras never zeroes it.

  Args:
    model: the sparsified model to measure; None gives a metric that reads
      1.0 until `bind(model)`.
    name: the metric's name, "itop_rate" by default.

  Raises:
    ValueError: (from `bind`) the model has no itop_tf layers.

  Example:

  >>> metric = itop_tf.tf_keras.ExplorationRate(model)
  >>> float(metric.result())
  0.1
  """

  def __init__(self, model=None, name=metrics_lib.METRIC_NAME, **kwargs):
    super().__init__(name=name, **kwargs)
    self._sources = ()
    object.__setattr__(self, "_rate", None)
    if model is not None:
      self.bind(model)

  def bind(self, model):
    """Measures the kernels of `model` from now on (and reads R_s now)."""
    # A tuple of plain objects: Keras must not track the unions as this
    # metric's variables (it would zero them in reset_state).
    object.__setattr__(self, "_sources",
                       tuple(frontends.frontend_of(model).sparse_weights(
                           model)))
    if self._rate is None:
      strategy = getattr(model, "distribute_strategy", None) or (
          tf.distribute.get_strategy())
      with tf.init_scope(), strategy.scope():
        object.__setattr__(self, "_rate", tf.Variable(
            1.0, trainable=False, dtype=tf.float32, name="itop_rate"))
    self.reset_state()

  def set(self, value):
    """Sets the value (the update engine does, after each update).

    Args:
      value: R_s, a float.
    """
    if self._rate is not None:
      self._rate.assign(tf.cast(value, tf.float32))

  def update_state(self, *args, **kwargs):
    """Nothing to accumulate: the update engine sets the value."""
    del args, kwargs

  def result(self):
    if self._rate is None:
      return tf.constant(1.0, tf.float32)
    return tf.identity(self._rate)

  def reset_state(self):
    """Reads R_s from the unions again (it never goes back)."""
    if self._sources:
      self.set(exploration_rate_of(list(self._sources)))

  def get_config(self):
    return {"name": self.name, "dtype": self.dtype}


def set_exploration_metrics(model, rate):
  """Sets every `ExplorationRate` in `model.metrics` to `rate`.

  Args:
    model: a tf_keras model.
    rate: R_s, a float.
  """
  for m in model.metrics:
    if isinstance(m, ExplorationRate):
      m.set(rate)


def exploration_metric(model):
  """The `ExplorationRate` metric attached to `model`, or None."""
  for m in model._metrics:  # pylint: disable=protected-access
    if isinstance(m, ExplorationRate):
      return m
  return None


def attach_exploration_metric(model):
  """Puts an `ExplorationRate` metric in `model.metrics`, once.

  `itop_tf.sparsify` calls it; `ITOPCallback` calls it at train begin for
  models made otherwise (subclassed models with hand-placed wrappers, models
  loaded from a file). A train function already traced without it keeps
  its logs; the callback then writes R_s into them itself.

  Args:
    model: a model with `PruneAndRegrow` layers.

  Returns:
    The model's `ExplorationRate` metric.

  Raises:
    ValueError: the model has no itop_tf layers.
  """
  metric = exploration_metric(model)
  if metric is None:
    metric = ExplorationRate(model)
    # Keras tracks a Metric set as an attribute in model._metrics, which
    # model.metrics lists.
    model.itop_rate_metric = metric
  else:
    metric.bind(model)
  return metric
