"""R_s for Keras 3 models: the `itop_rate` metric.

Under JAX, `fit` runs the train step on state passed in and out of a jitted
function, so a metric cannot read the model's unions there. R_s changes only
at updates, so `ExplorationRate` keeps it in one metric variable that the
update engine sets (`MaskUpdater` after each update and at `initialize`):
the progress bar, `History`, Keras' `TensorBoard` and `evaluate` read it like
any metric, on every backend.

Example:

>>> model = itop_tf.sparsify(model, 0.9, schedule=schedule)   # Keras 3
>>> [m.name for m in model.metrics]
['itop_rate']
"""

import keras

from itop_tf import metrics as metrics_lib


@keras.saving.register_keras_serializable(package="itop_tf")
class ExplorationRate(keras.metrics.Metric):
  """Keras 3 metric whose value is the model's ITOP rate R_s.

  Its one variable holds R_s as the update engine last set it;
  `update_state` and `reset_state` leave it alone (R_s never goes back).

  Args:
    value: the starting R_s.
    name: "itop_rate" by default.

  Example:

  >>> metric = itop_tf.keras3.ExplorationRate()
  >>> metric.set(0.25); float(metric.result())
  0.25
  """

  def __init__(self, value=1.0, name=metrics_lib.METRIC_NAME, **kwargs):
    super().__init__(name=name, **kwargs)
    self.rate = self.add_variable(
        shape=(), initializer=keras.initializers.Constant(float(value)),
        dtype="float32", name="rate")

  def set(self, value):
    """Sets R_s (outside the train step; on JAX after `jax_state_sync`)."""
    self.rate.assign(float(value))

  def update_state(self, *args, **kwargs):
    """Nothing to accumulate: the update engine sets the value."""
    del args, kwargs

  def result(self):
    return keras.ops.convert_to_tensor(self.rate)

  def reset_state(self):
    """Nothing to reset: R_s never goes back."""

  def get_config(self):
    return {"name": self.name, "dtype": self.dtype}


def exploration_metric(model):
  """The `ExplorationRate` attached to a Keras 3 `model`, or None."""
  for m in getattr(model, "_metrics", []):
    if isinstance(m, ExplorationRate):
      return m
  return None


def attach_exploration_metric(model):
  """Puts an `ExplorationRate` in `model.metrics` once, set to R_s now.

  A train function traced before the metric was attached keeps its logs;
  `ITOPCallback` then writes R_s into them itself.

  Raises:
    ValueError: the model has no itop_tf layers.
  """
  rate = metrics_lib.exploration_rate(model)
  metric = exploration_metric(model)
  if metric is None:
    metric = ExplorationRate(rate)
    # The tracker of a built model is locked against new state.
    tracker = getattr(model, "_tracker", None)
    locked = tracker is not None and tracker.locked
    if locked:
      tracker.unlock()
    try:
      model.itop_rate_metric = metric
    finally:
      if locked:
        tracker.lock()
    if all(m is not metric for m in model._metrics):  # pylint: disable=protected-access
      model._metrics.append(metric)  # pylint: disable=protected-access
  else:
    metric.set(rate)
  return metric
