"""The front-end contract: what a Keras supplies to the shared code.

itop_tf has one algorithm (`core`, over `array_ops`), one update engine
(`updaters.MaskUpdater`) and one `sparsify`/`strip` (`prune`); none of them
imports a Keras. Each Keras is a front-end, a sibling package that
implements `Frontend`: `itop_tf.tf_keras` (tf_keras, extending TF-MOT) and
`itop_tf.keras3` (Keras 3 on TensorFlow, JAX or PyTorch). `frontend_of`
picks the one of a model by the package its classes come from, and imports
only that one: a Keras 3 model on JAX never imports TensorFlow.

Example:

>>> frontend = frontend_of(model)          # a Keras 3 model
>>> frontend.name, frontend.wrapper.__module__
('keras3', 'itop_tf.keras3.wrapper')
>>> frontend.sparse_weights(model)[0].name
'fc1'
"""

import contextlib

import numpy as np

from itop_tf import distributions

FRONTEND_NAMES = ("tf_keras", "keras3")


def keras_of(obj):
  """Which Keras `obj` (a model, layer or optimizer) belongs to.

  Read from the modules of its classes; imports no Keras.

  Args:
    obj: any object.

  Returns:
    "keras3" (`import keras`), "tf_keras", or None for anything else.

  Example:

  >>> keras_of(keras.layers.Dense(2))
  'keras3'
  """
  for cls in type(obj).__mro__:
    root = (cls.__module__ or "").split(".")[0]
    if root == "keras":
      return "keras3"
    if root == "tf_keras":
      return "tf_keras"
  return None


def frontend_of(obj):
  """The `Frontend` of the Keras `obj` belongs to (imports that one only).

  Args:
    obj: a Keras 3 or tf_keras model or layer.

  Returns:
    `itop_tf.keras3.frontend.FRONTEND` or `itop_tf.tf_keras.frontend.FRONTEND`.

  Raises:
    ValueError: `obj` is neither.
  """
  which = keras_of(obj)
  if which == "keras3":
    from itop_tf.keras3 import frontend  # pylint: disable=g-import-not-at-top
    return frontend.FRONTEND
  if which == "tf_keras":
    from itop_tf.tf_keras import frontend  # pylint: disable=g-import-not-at-top
    return frontend.FRONTEND
  raise ValueError(
      f"itop_tf takes Keras models and layers (Keras 3's `import keras`, or "
      f"tf_keras), got {type(obj).__name__}.")


def find_wrappers(model):
  """All itop_tf `PruneAndRegrow` layers in `model` (either Keras), in order.

  Wrappers inside nested models and inside custom layers are found too.

  Args:
    model: a tf_keras or Keras 3 model or layer.

  Returns:
    A list of `PruneAndRegrow` layers; empty if there is none.

  Raises:
    ValueError: `model` is not a Keras object.
  """
  return frontend_of(model).find_wrappers(model)


def unwrap_optimizer(optimizer):
  """The optimizer inside any wrappers (`LossScaleOptimizer`)."""
  while hasattr(optimizer, "inner_optimizer"):
    optimizer = optimizer.inner_optimizer
  return optimizer


class Frontend:
  """What a Keras front-end supplies; the shared code calls nothing else.

  A front-end is stateless: one instance per Keras (`FRONTEND` in its
  `frontend` module), and every method that needs a model takes it.

  Attributes:
    name: "tf_keras" or "keras3".
    keras: the Keras module.
    wrapper: its `PruneAndRegrow` class.
    supported: text naming the layer types it wraps.
    captures_by_default: whether a RigL wrapper's `capture` variable starts
      True (Keras 3: a bare `fit` captures every step) or False (tf_keras:
      only steps that `MaskUpdater.before_step` arms).
  """

  name = None
  keras = None
  wrapper = None
  supported = ""
  captures_by_default = False

  # --- editing models (`sparsify`, `strip`) ---

  @property
  def ops(self):
    """The `array_ops` namespace of the model's backend (compiled updates)."""
    raise NotImplementedError

  def unsupported_reason(self, layer):
    """Why `layer` cannot be wrapped, or None if it can (needs no build)."""
    raise NotImplementedError

  def prunable_kernels(self, layer, kernels=None):
    """The kernels of a built `layer` to make sparse: (owner, attr) pairs.

    `kernels`: optional indices into the list, the ones to keep.
    """
    raise NotImplementedError

  def kernel_paths(self, layer):
    """A name per kernel of `prunable_kernels(layer)`, e.g. "fc/kernel".

    What `sparsify`'s patterns match besides layer names: the layer's name,
    the nested layers' names down to the kernel, then the variable's name.
    """
    raise NotImplementedError

  def erk_shape(self, owner, attr):
    """The shape ERK scores the kernel `owner.attr` by: its own, or for an
    EinsumDense kernel the matrix its equation makes
    (`distributions.einsum_fans`)."""
    shape = tuple(int(d) for d in getattr(owner, attr).shape)
    if isinstance(owner, self.keras.layers.EinsumDense):
      return distributions.einsum_fans(owner.equation, shape) or shape
    return shape

  def prepare(self, fresh, original):
    """Readies `fresh`, a copy of `original` from its config, for a wrapper.

    Default: nothing (the wrapper builds the layer from its input shape).
    """
    del fresh, original

  def is_functional(self, model):
    """Whether `model` is Sequential or functional (can be cloned)."""
    raise NotImplementedError

  def to_numpy(self, value):
    """A variable or tensor of this Keras as a NumPy array."""
    raise NotImplementedError

  def sublayers(self, model):
    """`model` and every layer in it, at any depth, in a fixed order."""
    raise NotImplementedError

  def find_wrappers(self, model):
    """Every `PruneAndRegrow` in `model` at any depth, in a fixed order.

    Wrappers inside nested models and inside custom layers are found too.
    """
    found, seen = [], set()
    for layer in self.sublayers(model):
      if isinstance(layer, self.wrapper) and id(layer) not in seen:
        seen.add(id(layer))
        found.append(layer)
    return found

  def is_sparsified(self, model):
    """Whether `model` holds pruning wrappers (ours or TF-MOT's)."""
    return bool(self.find_wrappers(model))

  def sparse_weights(self, model):
    """Every sparse kernel (`core.SparseWeight`) of `model`, in model order.

    Raises:
      ValueError: the model has no itop_tf layers, or one is not built.
    """
    wrappers = self.find_wrappers(model)
    if not wrappers:
      raise ValueError(
          "The model has no itop_tf layers: make it sparse with "
          "itop_tf.sparsify(model, sparsity=..., schedule=...), or wrap "
          f"layers in itop_tf.{self.name}.PruneAndRegrow.")
    for w in wrappers:
      if not w.built:
        raise ValueError(
            f"Layer {w.name!r} is not built: call the model once (or "
            "model.build(input_shape)) before training.")
    return [sw for w in wrappers for sw in w.sparse_weights]

  # --- metrics ---

  def attach_metric(self, model):
    """Puts this Keras' `ExplorationRate` in `model.metrics` once."""
    raise NotImplementedError

  def set_rate(self, model, rate):
    """Sets the model's `ExplorationRate` metric to `rate`."""
    raise NotImplementedError

  def count(self, variable):
    """True entries of a bool variable (a Python int)."""
    return int(np.count_nonzero(self.to_numpy(variable)))

  # --- the update engine (`MaskUpdater`) ---

  def sync(self, model):
    """Puts training state held outside the variables back (JAX)."""
    del model

  def scope(self, model):
    """The context in which the model's variables are assigned."""
    del model
    return contextlib.nullcontext()

  def compile(self, fn, jit_compile):
    """`fn` (written against `ops`) compiled for the backend."""
    raise NotImplementedError

  def read(self, variable):
    """A variable's value as a tensor of the backend."""
    raise NotImplementedError

  def assign(self, variable, value):
    variable.assign(value)

  def int32(self, value):
    """A Python int as an int32 scalar tensor of the backend."""
    raise NotImplementedError

  def slots(self, optimizer, variable):
    """The optimizer state variables of `variable` with its shape."""
    raise NotImplementedError

  def check_optimizer(self, optimizer, wrappers):
    """Raises ValueError for an optimizer this Keras cannot train with."""
    del optimizer, wrappers

  def retrace(self, model):
    """Traces the model's train function anew (a flag read at trace time)."""
    raise NotImplementedError
