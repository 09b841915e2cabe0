"""`PruneAndRegrow`: a TF-MOT `PruneLowMagnitude` wrapper whose mask moves.

The wrapper keeps, for each sparse kernel of the wrapped layer:

- `mask` (bool): the active connections. The layer sees `where(mask, w, 0)`
  as its kernel: masking happens in the forward pass, not by assigning to the
  variable, so no per-step write or cross-replica `merge_call` is needed and the
  gradient that reaches `w` is already masked.
- `ever_active` (bool): the union of all masks so far (the ITOP exploration).
- `dense_grad` (float32, only for `grow="gradient"` or `"momentum"`): the
  dense gradient of the loss with respect to the masked kernel, written in
  the backward pass of the step before an update (`capture` flag); for
  "momentum", an exponential moving average (decay 0.9) of it, every step. It is an ON_READ variable with
  MEAN aggregation: under `tf.distribute` each replica writes its own, and a
  read in cross-replica context returns the all-replica mean.

Masks change only through `itop_tf.MaskUpdater` (used by `ITOPCallback`).

Example:

>>> import tf_keras as keras
>>> layer = PruneAndRegrow(keras.layers.Dense(4), density=0.5,
...                        pruning_schedule=RegrowthSchedule(10, 100))
>>> out = layer(tf.ones([2, 8]))
>>> int(tf.reduce_sum(tf.cast(layer.sparse_weights[0].mask, tf.int32)))
16
"""

import inspect
import math

import tensorflow as tf
import tf_keras as keras
from tensorflow_model_optimization.python.core.sparsity.keras import pruning_wrapper

from itop_tf import schedules

GROW_METHODS = ("random", "gradient", "momentum")
MOMENTUM_DECAY = 0.9  # SNFS: momentum of the dense gradient

# Kernels we make sparse, by layer type, checked in order (subclasses first).
_KERNEL_ATTRS = (
    (keras.layers.DepthwiseConv2D, ("depthwise_kernel",)),
    (keras.layers.SeparableConv1D, ("pointwise_kernel",)),
    (keras.layers.SeparableConv2D, ("pointwise_kernel",)),
    (keras.layers.Dense, ("kernel",)),
    (keras.layers.Conv1D, ("kernel",)),
    (keras.layers.Conv2D, ("kernel",)),
    (keras.layers.Conv3D, ("kernel",)),
    (keras.layers.Embedding, ("embeddings",)),
)


def _find_attr(layer, var, depth=2):
  """Returns (owner, attribute name) of `var` inside `layer`, or None."""
  for name, value in vars(layer).items():
    if value is var:
      return layer, name
  if depth > 0:
    for name, value in vars(layer).items():
      if isinstance(value, keras.layers.Layer) and value is not layer:
        found = _find_attr(value, var, depth - 1)
        if found:
          return found
  return None


def prunable_kernels(layer):
  """The kernels of `layer` that itop_tf makes sparse, as (owner, attr) pairs.

  Args:
    layer: a built Keras layer.

  Returns:
    A list of `(owner, attribute_name)`; empty if the layer has no kernel
    itop_tf can make sparse (biases and normalisation stay dense).

  Raises:
    ValueError: the layer declares prunable weights that are not stored as
      attributes, so the wrapper could not feed them masked.
  """
  for cls, attrs in _KERNEL_ATTRS:
    if isinstance(layer, cls):
      return [(layer, a) for a in attrs if getattr(layer, a, None) is not None]
  weights = []
  if hasattr(layer, "get_prunable_weights"):
    weights = layer.get_prunable_weights()
  elif pruning_wrapper.prune_registry.PruneRegistry.supports(layer):
    made = pruning_wrapper.prune_registry.PruneRegistry.make_prunable(layer)
    weights = made.get_prunable_weights()
  out = []
  for w in weights:
    found = _find_attr(layer, w)
    if found is None:
      raise ValueError(
          f"Layer {layer.name!r} ({type(layer).__name__}) declares prunable "
          f"weight {w.name!r} that is not an attribute of the layer, so "
          "itop_tf cannot feed it masked. Keep this layer dense "
          "(dense_layers=...) or store the weight as an attribute.")
    out.append(found)
  return out


def supports(layer):
  """Whether `layer` has kernels itop_tf can make sparse (needs no build)."""
  if any(isinstance(layer, cls) for cls, _ in _KERNEL_ATTRS):
    return True
  if hasattr(layer, "get_prunable_weights"):
    return True
  registry = pruning_wrapper.prune_registry.PruneRegistry
  if registry._is_mha_layer(layer):
    return False  # builds from (query, value) shapes a Wrapper cannot pass.
  if registry.supports(layer):
    return registry._is_rnn_layer(layer) or bool(registry._weight_names(layer))
  return False


@keras.utils.register_keras_serializable(package="itop_tf")
class ExactCountMask(keras.initializers.Initializer):
  """Random bool mask with exactly `count` True entries (stateless, seeded).

  Args:
    count: number of active entries.
    seed: integer seed; the same (count, seed, shape) gives the same mask.
  """

  def __init__(self, count, seed=0):
    self.count = int(count)
    self.seed = int(seed)

  def __call__(self, shape, dtype=tf.bool, **kwargs):
    n = math.prod(shape)
    # A seeded random permutation: O(n), unlike sorting random scores.
    order = tf.random.experimental.stateless_shuffle(
        tf.range(n), seed=[self.seed, 0x5EED])
    active = tf.scatter_nd(order[:self.count, None],
                           tf.ones([self.count], tf.int32), [n])
    return tf.reshape(tf.cast(active, tf.bool), shape)

  def get_config(self):
    return {"count": self.count, "seed": self.seed}


class SparseWeight:
  """One sparse kernel of a wrapper and its state variables.

  Attributes:
    name: the kernel variable's name.
    owner, attr: where the layer reads the kernel (`owner.attr`).
    weight: the kernel variable.
    mask, ever_active: bool variables of the kernel's shape.
    dense_grad: float32 ON_READ variable, or None unless grow="gradient".
    count: number of active entries (constant over training).
    size: number of entries.
  """

  def __init__(self, owner, attr, weight, mask, ever_active, dense_grad,
               count):
    self.owner, self.attr, self.weight = owner, attr, weight
    self.mask, self.ever_active, self.dense_grad = mask, ever_active, dense_grad
    self.count = int(count)
    self.size = int(math.prod(weight.shape))
    self.name = weight.name

  @property
  def is_dense(self):
    return self.count >= self.size


def _capture_gradient(x, grad_var, flag, decay=None):
  """Identity on `x` whose backward writes the incoming gradient to grad_var.

  With `decay=None` the write happens only while `flag` is True (the step
  before an update). With a `decay`, every step updates an exponential
  moving average `v = decay * v + (1 - decay) * g` (SNFS's momentum of the
  dense gradient).
  """

  @tf.custom_gradient
  def identity(t):

    def grad(dy):
      dy = tf.convert_to_tensor(dy)

      def store():
        g = tf.cast(dy, grad_var.dtype)
        g = tf.where(tf.math.is_nan(g), tf.zeros_like(g), g)
        if decay is not None:
          g = decay * tf.convert_to_tensor(grad_var) + (1.0 - decay) * g
        with tf.control_dependencies([grad_var.assign(g)]):
          return tf.constant(True)

      if decay is not None:
        done = store()
      else:
        done = tf.cond(flag, store, lambda: tf.constant(False))
      with tf.control_dependencies([done]):
        return tf.identity(dy)

    return tf.identity(t), grad

  return identity(x)


@keras.utils.register_keras_serializable(package="itop_tf")
class PruneAndRegrow(pruning_wrapper.PruneLowMagnitude):
  """Keeps a layer's kernels sparse with a mask that prune/grow updates move.

  Args:
    layer: the Keras layer to wrap (Dense, Conv1D/2D/3D and their transposes,
      DepthwiseConv2D, SeparableConv1D/2D, Embedding, LSTM/GRU/SimpleRNN, or
      any layer with `get_prunable_weights`; not MultiHeadAttention).
    pruning_schedule: a `RegrowthSchedule`.
    density: fraction of each kernel kept active, in (0, 1].
    counts: optional exact active counts, one per sparse kernel; overrides
      `density` (`itop_tf.sparsify` passes the ERK counts here).
    grow: "random" (SET), "gradient" (RigL) or "momentum" (SNFS: moving
      average of the dense gradient, updated every step).
    seed: integer seed of this layer's initial mask and random growth.
    **kwargs: passed to the Keras `Wrapper`.

  Raises:
    ValueError: bad density, grow method or schedule, or an unsupported layer.
  """

  def __init__(self, layer, pruning_schedule=None, density=1.0, counts=None,
               grow="random", seed=0, **kwargs):
    if not isinstance(pruning_schedule, schedules.RegrowthSchedule):
      raise ValueError(
          "PruneAndRegrow needs pruning_schedule=itop_tf.RegrowthSchedule(...)"
          f", got {pruning_schedule!r}.")
    if not 0.0 < float(density) <= 1.0:
      raise ValueError(
          f"density must be in (0, 1], got {density!r} "
          "(sparsity = 1 - density must be in [0, 1)).")
    if grow not in GROW_METHODS:
      raise ValueError(
          f"Unknown grow method {grow!r}: use one of {GROW_METHODS}.")
    if isinstance(layer, keras.layers.Layer) and not supports(layer):
      raise ValueError(
          f"Layer {layer.name!r} ({type(layer).__name__}) has no kernel "
          "itop_tf can make sparse; wrap only Dense, Conv, DepthwiseConv2D, "
          "SeparableConv, Embedding or layers with get_prunable_weights().")
    self.density = float(density)
    self.counts = None if counts is None else [int(c) for c in counts]
    self.grow = grow
    self.seed = int(seed)
    self.sparse_weights = []
    if isinstance(layer, keras.layers.Layer) and "dtype" not in kwargs:
      kwargs["dtype"] = layer.dtype_policy
    super().__init__(layer, pruning_schedule=pruning_schedule, **kwargs)

  def build(self, input_shape):
    # Skip PruneLowMagnitude.build: it creates TF-MOT's threshold and
    # pruning_step variables and a pruning object that we never use.
    keras.layers.Wrapper.build(self, input_shape)
    kernels = prunable_kernels(self.layer)
    if not kernels:
      raise ValueError(
          f"Layer {self.layer.name!r} has no kernel itop_tf can make sparse.")
    if self.counts is not None and len(self.counts) != len(kernels):
      raise ValueError(
          f"counts has {len(self.counts)} entries but layer "
          f"{self.layer.name!r} has {len(kernels)} sparse kernels.")
    self.sparse_weights = []
    # Checkpointed, so a restored run draws the same random growth even if
    # the model was rebuilt with another seed.
    self.rng_seed = self.add_weight(
        "rng_seed", shape=[], dtype=tf.int64, trainable=False,
        initializer=keras.initializers.Constant(self.seed))
    self.capture = None
    if self.grow == "gradient":
      self.capture = self.add_weight(
          "capture_gradient", shape=[], dtype=tf.bool, trainable=False,
          initializer=keras.initializers.Zeros())
    for i, (owner, attr) in enumerate(kernels):
      weight = getattr(owner, attr)
      size = math.prod(weight.shape)
      if self.counts is not None:
        count = min(max(self.counts[i], 1), size)
      else:
        count = min(max(int(round(self.density * size)), 1), size)
      init = ExactCountMask(count, seed=self.seed * 16 + i)
      suffix = "" if i == 0 else f"_{i}"
      mask = self.add_weight(
          "mask" + suffix, shape=weight.shape, dtype=tf.bool,
          initializer=init, trainable=False)
      union = self.add_weight(
          "ever_active" + suffix, shape=weight.shape, dtype=tf.bool,
          initializer=init, trainable=False)
      grad = None
      if self.grow in ("gradient", "momentum"):
        dtype = getattr(weight, "true_dtype", weight.dtype)
        grad = self.add_weight(
            "dense_grad" + suffix, shape=weight.shape, dtype=dtype,
            initializer=keras.initializers.Zeros(), trainable=False,
            synchronization=tf.VariableSynchronization.ON_READ,
            aggregation=tf.VariableAggregation.MEAN, autocast=False)
      self.sparse_weights.append(
          SparseWeight(owner, attr, weight, mask, union, grad, count))
    with tf.init_scope():
      self.apply_masks()
    self.built = True

  def apply_masks(self):
    """Sets every inactive kernel entry to exactly 0."""
    for sw in self.sparse_weights:
      w = tf.convert_to_tensor(sw.weight)
      sw.weight.assign(tf.where(sw.mask, w, tf.zeros_like(w)))

  def _masked(self, sw):
    w = tf.convert_to_tensor(sw.weight)
    w = tf.where(sw.mask, w, tf.zeros_like(w))
    w = tf.cast(w, sw.owner.compute_dtype or w.dtype)
    if sw.dense_grad is not None:
      decay = MOMENTUM_DECAY if self.grow == "momentum" else None
      w = _capture_gradient(w, sw.dense_grad, self.capture, decay)
    return w

  def call(self, inputs, training=None, **kwargs):
    masked = [(sw, self._masked(sw)) for sw in self.sparse_weights]
    try:
      for sw, w in masked:
        object.__setattr__(sw.owner, sw.attr, w)
      if "training" in inspect.getfullargspec(
          self.layer.call).args:
        kwargs["training"] = training
      return self.layer.call(inputs, **kwargs)
    finally:
      for sw, _ in masked:
        object.__setattr__(sw.owner, sw.attr, sw.weight)

  def get_weights(self):
    return keras.layers.Layer.get_weights(self)

  def set_weights(self, weights):
    keras.layers.Layer.set_weights(self, weights)

  def get_config(self):
    config = super().get_config()
    config.pop("block_size", None)
    config.pop("block_pooling_type", None)
    config.update({"density": self.density, "counts": self.counts,
                   "grow": self.grow, "seed": self.seed})
    return config

  @classmethod
  def from_config(cls, config):
    config = dict(config)
    config["pruning_schedule"] = schedules.RegrowthSchedule.from_config(
        config["pruning_schedule"])
    config["layer"] = keras.layers.deserialize(config["layer"])
    return cls(**config)
