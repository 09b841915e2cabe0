"""The tf_keras/TF-MOT front-end: how the shared code edits and updates a
tf_keras model (`frontends.Frontend`).

Example:

>>> from itop_tf.tf_keras import frontend
>>> frontend.FRONTEND.sparse_weights(model)[0].name
'fc1'
"""

import tensorflow as tf
import tf_keras as keras
from tensorflow_model_optimization.python.core.sparsity.keras import pruning_wrapper

from itop_tf import array_ops
from itop_tf import frontends
from itop_tf.tf_keras import metrics
from itop_tf.tf_keras import wrapper as wrapper_lib


def optimizer_slots(optimizer, variable):
  """The optimizer state variables of `variable` with its shape.

  Works for tf_keras optimizers (SGD momentum, Adam/AdamW moments, RMSprop,
  Adagrad, ...; new and legacy), also inside a LossScaleOptimizer. Slots
  that do not have the variable's shape (factored Adafactor moments) are
  left out: they cannot be masked entry by entry.

  Args:
    optimizer: a tf_keras optimizer, or None.
    variable: a model variable.

  Returns:
    A list of slot variables; empty before the optimizer has been built.
  """
  if optimizer is None:
    return []
  opt = frontends.unwrap_optimizer(optimizer)
  shape = variable.shape
  if hasattr(opt, "get_slot_names"):  # legacy OptimizerV2
    out = []
    for name in opt.get_slot_names():
      try:
        slot = opt.get_slot(variable, name)
      except (KeyError, ValueError):
        continue
      if slot is not None and slot.shape == shape:
        out.append(slot)
    return out
  index = getattr(opt, "_index_dict", None)
  if not index:
    return []
  key = opt._var_key(variable)  # pylint: disable=protected-access
  if key not in index:
    return []
  i = index[key]
  out = []
  for name, value in sorted(vars(opt).items()):
    if name == "_trainable_variables" or not isinstance(value, list):
      continue
    if len(value) != len(index) or not all(
        isinstance(v, tf.Variable) for v in value):
      continue
    slot = value[i]
    if slot is not variable and slot.shape == shape:
      out.append(slot)
  return out


class TFKerasFrontend(frontends.Frontend):
  """tf_keras models with `itop_tf.tf_keras.PruneAndRegrow` layers."""

  name = "tf_keras"
  keras = keras
  wrapper = wrapper_lib.PruneAndRegrow
  supported = ("Dense, EinsumDense, Conv, DepthwiseConv2D, SeparableConv, "
               "Embedding, LSTM/GRU/SimpleRNN, MultiHeadAttention, and custom "
               "layers holding them")
  # A wrapper's `capture` starts False: only an armed step captures.
  captures_by_default = False

  @property
  def ops(self):
    return array_ops.tensorflow_ops()

  def unsupported_reason(self, layer):
    if wrapper_lib.supports(layer):
      return None
    return f"{type(layer).__name__} is not a layer type itop_tf wraps"

  def prunable_kernels(self, layer, kernels=None):
    return wrapper_lib.prunable_kernels(layer, kernels)

  def kernel_paths(self, layer):
    return wrapper_lib.kernel_paths(layer)

  def prepare(self, fresh, original):
    """Builds a copied custom layer as the original was, for its sublayers."""
    if (not fresh.built and original.built and
        not isinstance(original, keras.layers.MultiHeadAttention) and
        wrapper_lib.nested_kernels(original)):
      config = original.get_build_config()
      if config and config.get("input_shape") is not None:
        fresh.build_from_config(config)

  def is_functional(self, model):
    return isinstance(model, keras.Sequential) or model._is_graph_network  # pylint: disable=protected-access

  def to_numpy(self, value):
    return value.numpy()

  def sublayers(self, model):
    return [model] + list(model._flatten_modules(include_self=False))  # pylint: disable=protected-access

  def is_sparsified(self, model):
    """Our wrappers or TF-MOT's (`PruneLowMagnitude`) anywhere in `model`."""
    return any(isinstance(x, pruning_wrapper.PruneLowMagnitude)
               for x in model._flatten_modules())  # pylint: disable=protected-access

  def attach_metric(self, model):
    return metrics.attach_exploration_metric(model)

  def set_rate(self, model, rate):
    with self.scope(model):
      metrics.set_exploration_metrics(model, rate)

  def scope(self, model):
    strategy = getattr(model, "distribute_strategy", None) or (
        tf.distribute.get_strategy())
    return strategy.scope()

  def compile(self, fn, jit_compile):
    """`fn` as a `tf.function`, XLA-compiled if `jit_compile`.

    Without AutoGraph: `core` writes its loops as `ops.fori_loop`, and
    converting it was most of a first update's time.
    """
    return tf.function(fn, jit_compile=bool(jit_compile), autograph=False)

  def read(self, variable):
    return tf.convert_to_tensor(variable)

  def int32(self, value):
    return tf.constant(value, tf.int32)

  def slots(self, optimizer, variable):
    return optimizer_slots(optimizer, variable)

  def retrace(self, model):
    model.make_train_function(force=True)


FRONTEND = TFKerasFrontend()
