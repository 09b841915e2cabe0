"""The Keras 3 front-end: how the shared code edits and updates a Keras 3
model (`frontends.Frontend`; TensorFlow, JAX or PyTorch backend).

`sparsify`/`strip` (in `itop_tf.prune`) and `MaskUpdater` (in
`itop_tf.updaters`) are written once; this module gives them the Keras 3
side: which layers can be wrapped, where the optimizer slots are, how to run
`core.update_kernels` on the active backend (XLA through `tf.function` on
TensorFlow, `jax.jit` on JAX, eager torch ops on PyTorch; NumPy on the host
where it is not compiled) and, on JAX, the `model.jax_state_sync()` that
`fit` needs before a callback reads or writes variables (the next step then
trains on what was written).
"""

import contextlib
import functools

import keras
from keras.src.models import functional  # no public name

from itop_tf import array_ops
from itop_tf import frontends
from itop_tf.keras3 import metrics
from itop_tf.keras3 import wrapper as wrapper_lib


def optimizer_slots(optimizer, variable):
  """The optimizer variables of `variable` with its shape (Keras 3).

  SGD momentum, Adam/AdamW/Nadam/Lion moments, RMSprop, Adagrad, the EMA
  average (`use_ema=True`) and gradient accumulators, also inside a
  `LossScaleOptimizer`. Factored slots (Adafactor) are left out.

  Args:
    optimizer: a Keras 3 optimizer, or None.
    variable: a model variable.

  Returns:
    A list of optimizer variables; empty before the optimizer is built.
  """
  if optimizer is None:
    return []
  opt = frontends.unwrap_optimizer(optimizer)
  trainables = getattr(opt, "_trainable_variables", None)
  if not trainables:
    return []
  try:
    i = opt._get_variable_index(variable)  # pylint: disable=protected-access
  except (KeyError, ValueError):
    return []
  shape = tuple(variable.shape)
  out = []
  for name, value in sorted(vars(opt).items()):
    if name == "_trainable_variables" or not isinstance(value, list):
      continue
    if len(value) != len(trainables):
      continue
    slot = value[i]
    if (isinstance(slot, keras.Variable) and slot is not variable and
        tuple(slot.shape) == shape and
        all(slot is not o for o in out)):
      out.append(slot)
  return out


def _compile(fn, jit_compile):
  """`fn` compiled for the active backend: `tf.function` (XLA if
  `jit_compile`) on TensorFlow, `jax.jit` on JAX if `jit_compile`, else as
  it is."""
  backend = keras.backend.backend()
  if backend == "tensorflow":
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    # No AutoGraph: `core` loops with ops.fori_loop (see TFKerasFrontend).
    return tf.function(fn, jit_compile=bool(jit_compile), autograph=False)
  if backend == "jax" and jit_compile:
    import jax  # pylint: disable=g-import-not-at-top
    return jax.jit(fn)
  return fn


def retrace_train_function(model):
  """`model.make_train_function(force=True)`, traced anew on every backend.

  JAX caches a trace by its function, and `jit(model.train_step)` again
  finds the trace of the last build (bound methods of one model compare
  equal), so a Python flag read at trace time (`forward_mask`) would not
  take. Each build here jits a function of its own.

  Args:
    model: a compiled Keras 3 model.

  Returns:
    The new `model.train_function`.
  """
  step = functools.partial(type(model).train_step, model)
  object.__setattr__(model, "train_step", step)  # past Keras' tracking
  try:
    model.make_train_function(force=True)
  finally:
    object.__delattr__(model, "train_step")
  return model.train_function


class Keras3Frontend(frontends.Frontend):
  """Keras 3 models with `itop_tf.keras3.PruneAndRegrow` layers."""

  name = "keras3"
  keras = keras
  wrapper = wrapper_lib.PruneAndRegrow
  supported = wrapper_lib.SUPPORTED
  # A wrapper's `capture` starts True: every step captures until
  # `MaskUpdater.before_step` arms by step.
  captures_by_default = True

  @property
  def ops(self):
    return array_ops.keras_ops()

  def unsupported_reason(self, layer):
    return wrapper_lib.unsupported_reason(layer)

  def prunable_kernels(self, layer, kernels=None):
    return wrapper_lib.prunable_kernels(layer, kernels)

  def kernel_paths(self, layer):
    return wrapper_lib.kernel_paths(layer)

  def prepare(self, fresh, original):
    """Builds `fresh` as `original` was built.

    A layer built from several inputs (MultiHeadAttention: query and value;
    a Transformer block) creates its sublayers, whose kernels the wrapper
    makes sparse, only then; the wrapper's one input shape cannot do it.
    """
    if not fresh.built and original.built:
      config = original.get_build_config()
      if config:
        fresh.build_from_config(config)

  def is_functional(self, model):
    # A subclass of keras.Model whose __init__ calls
    # super().__init__(inputs, outputs) (KerasHub's backbones and task
    # models) is a Functional too. Keras exports no public name for the
    # class.
    return isinstance(model, (keras.Sequential, functional.Functional))

  def to_numpy(self, value):
    return keras.ops.convert_to_numpy(value)

  def sublayers(self, model):
    return [model] + list(model._flatten_layers(include_self=False))  # pylint: disable=protected-access

  def attach_metric(self, model):
    return metrics.attach_exploration_metric(model)

  def set_rate(self, model, rate):
    metric = metrics.exploration_metric(model)
    if metric is not None:
      metric.set(rate)

  def scope(self, model):
    strategy = getattr(model, "_distribute_strategy", None)
    if strategy is not None:
      return strategy.scope()
    return contextlib.nullcontext()

  def sync(self, model):
    """On JAX, puts `fit`'s training state back into the variables."""
    sync = getattr(model, "jax_state_sync", None)
    if sync is not None and keras.backend.backend() == "jax":
      sync()

  def compile(self, fn, jit_compile):
    return _compile(fn, jit_compile)

  def read(self, variable):
    return keras.ops.convert_to_tensor(variable)

  def int32(self, value):
    return keras.ops.convert_to_tensor(value, dtype="int32")

  def slots(self, optimizer, variable):
    return optimizer_slots(optimizer, variable)

  def retrace(self, model):
    retrace_train_function(model)

  def check_optimizer(self, optimizer, wrappers):
    """Raises ValueError for an EMA optimizer Keras cannot run here.

    Keras builds no EMA average for the `overwrite_with_gradient` variable
    that holds the dense gradient (grow="gradient"/"momentum"), then copies
    averages onto every trainable variable: on TensorFlow at the end of
    `fit` (and at each `ema_overwrite_frequency`), on JAX at each
    `ema_overwrite_frequency`. Both fail inside Keras; PyTorch works.
    """
    opt = (frontends.unwrap_optimizer(optimizer) if optimizer is not None
           else None)
    if not getattr(opt, "use_ema", False) or not any(
        w.growth.needs_dense_gradient for w in wrappers):
      return
    backend = keras.backend.backend()
    if backend == "tensorflow" or (
        backend == "jax" and opt.ema_overwrite_frequency):
      grows = sorted({w.grow for w in wrappers
                      if w.growth.needs_dense_gradient})
      raise ValueError(
          f"{type(opt).__name__}(use_ema=True"
          + (f", ema_overwrite_frequency={opt.ema_overwrite_frequency}"
             if backend == "jax" else "") +
          f") cannot train a model with grow={grows[0]!r} on Keras 3's "
          f"{backend} backend: Keras copies its EMA averages onto every "
          "trainable variable, and the dense-gradient variable of "
          "grow='gradient'/'momentum' has none, so the copy fails inside "
          "Keras. Use use_ema=False, grow='random' (SET)"
          + (", no ema_overwrite_frequency" if backend == "jax" else "") +
          " or the PyTorch backend.")


FRONTEND = Keras3Frontend()
