"""How `itop_tf.MaskUpdater` reads and writes a Keras 3 model's state.

`MaskUpdater` (in `itop_tf.updaters`) is the one update engine; this module
gives it the Keras 3 side: where the optimizer slots are, how to run
`core.update_kernels` on the active backend (XLA through `tf.function` on
TensorFlow, `jax.jit` on JAX, eager torch ops on PyTorch; NumPy on the host
where it is not compiled) and, on JAX, the `model.jax_state_sync()` that
`fit` needs before a callback reads or writes variables (the next step then
trains on what was written).
"""

import contextlib
import functools

import keras

from itop_tf import array_ops
from itop_tf.keras3 import metrics
from itop_tf.keras3 import wrapper as wrapper_lib


def _unwrap(optimizer):
  while hasattr(optimizer, "inner_optimizer"):
    optimizer = optimizer.inner_optimizer
  return optimizer


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
  opt = _unwrap(optimizer)
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
  equal), so a Python flag read at trace time (`forward_mask`,
  `capture_gradient`) would not take. Each build here jits a function of
  its own.

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


class TrainFunctions:
  """`fit`'s train function with and without RigL's gradient capture.

  A Keras 3 wrapper writes the dense gradient into `dense_grad` inside the
  compiled step, which cost RigL (grow="gradient") 0.1-0.2x a
  LeNet-300-100 step on a CPU, though an update reads only the last one.
  This keeps two train functions, one traced with the wrappers'
  `capture_gradient` False and one with it True, and puts one in
  `model.train_function` before each step, where Keras' `fit` looks for it
  (`ITOPCallback` arms the capturing one for the step before each update).
  Both take the same state, so they may alternate inside a JAX epoch. The
  pair is kept on the model while Keras keeps its own train function, so a
  later `fit` traces nothing again.

  Args:
    model: a compiled Keras 3 model, after `fit` made its train function.
    wrappers: its `itop_tf.keras3.PruneAndRegrow` layers.

  Example:

  >>> functions = TrainFunctions.for_wrappers(model, wrappers)
  >>> functions.select(armed=True)    # before the step before an update
  >>> functions.restore()             # at train end
  """

  def __init__(self, model, wrappers):
    self.model = model
    self.wrappers = list(wrappers)
    keras_function = model.train_function
    cached = getattr(model, "_itop_train_functions", None)
    if (cached is not None and keras_function is not None and
        cached[0] is keras_function):
      self._functions = cached[1]
    else:
      self._functions = {}
      for armed in (False, True):
        self._functions[armed] = retrace_train_function(model)
      model.train_function = keras_function
      object.__setattr__(model, "_itop_train_functions",
                         (keras_function, self._functions))
    self.armed = None

  @classmethod
  def for_wrappers(cls, model, wrappers):
    """The functions for `wrappers` whose growth captures only when armed,
    or None if there is none (SET, SNFS's moving average)."""
    armable = [w for w in wrappers if w.growth.needs_dense_gradient and
               not w.growth.captures_every_step]
    return cls(model, armable) if armable else None

  def select(self, armed):
    """Trains the next steps capturing the dense gradient or not.

    Sets the flag a (re)trace reads and the function traced with it;
    nothing while they are set already (it runs before every step).
    """
    armed = bool(armed)
    if armed == self.armed:
      return
    for w in self.wrappers:
      w.capture_gradient = armed
    self.model.train_function = self._functions[armed]
    self.armed = armed

  def restore(self):
    """Puts back Keras' train function and the every-step capture."""
    TrainFunctions.put_back(self.model)
    self.armed = None

  @staticmethod
  def put_back(model):
    """`restore` for a `fit` that raised: Keras then skips `on_train_end`,
    and `model.train_function` may still be one traced without the capture.
    `MaskUpdater` calls it, so a custom loop after such a fit captures every
    step again."""
    cached = getattr(model, "_itop_train_functions", None)
    if cached is None:
      return
    keras_function, functions = cached
    if any(model.train_function is f for f in functions.values()):
      model.train_function = keras_function
    for w in wrapper_lib.find_wrappers(model):
      w.capture_gradient = True


class Keras3Frontend:
  """The Keras 3 side of `MaskUpdater` (any backend)."""

  def __init__(self, model):
    self.model = model
    self.ops = array_ops.keras_ops()

  compile = staticmethod(_compile)

  def sparse_weights(self):
    return wrapper_lib.sparse_weights(self.model)

  def scope(self):
    strategy = getattr(self.model, "_distribute_strategy", None)
    if strategy is not None:
      return strategy.scope()
    return contextlib.nullcontext()

  def sync(self):
    """On JAX, puts `fit`'s training state back into the variables."""
    sync = getattr(self.model, "jax_state_sync", None)
    if sync is not None and keras.backend.backend() == "jax":
      sync()

  @staticmethod
  def read(variable):
    return keras.ops.convert_to_tensor(variable)

  @staticmethod
  def assign(variable, value):
    variable.assign(value)

  slots = staticmethod(optimizer_slots)

  @staticmethod
  def check_optimizer(optimizer, wrappers):
    """Raises ValueError for an EMA optimizer Keras cannot run here.

    Keras builds no EMA average for the `overwrite_with_gradient` variable
    that holds the dense gradient (grow="gradient"/"momentum"), then copies
    averages onto every trainable variable: on TensorFlow at the end of
    `fit` (and at each `ema_overwrite_frequency`), on JAX at each
    `ema_overwrite_frequency`. Both fail inside Keras; PyTorch works.
    """
    opt = _unwrap(optimizer) if optimizer is not None else None
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

  retrace = staticmethod(retrace_train_function)

  def train_functions(self, wrappers):
    """`TrainFunctions` for `fit`, or None where every step must capture."""
    return TrainFunctions.for_wrappers(self.model, wrappers)

  def put_back_train_function(self):
    TrainFunctions.put_back(self.model)

  @staticmethod
  def k(count):
    return keras.ops.convert_to_tensor(count, dtype="int32")

  @staticmethod
  def apply_masks(wrapper):
    wrapper.apply_masks()

  def set_rate(self, rate):
    metric = metrics.exploration_metric(self.model)
    if metric is not None:
      metric.set(rate)

  def exploration_rate(self, sparse_weights):
    return metrics.exploration_rate_of(sparse_weights)
