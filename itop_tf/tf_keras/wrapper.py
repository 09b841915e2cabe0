"""`PruneAndRegrow`: a TF-MOT `PruneLowMagnitude` wrapper whose mask moves.

The wrapper keeps, for each sparse kernel of the wrapped layer:

- `mask` (bool): the active connections. Inactive kernel entries are
  exactly 0 in the variable (each update zeroes what it prunes, and the
  optimizer state with it), and in training the layer sees the kernel through
  an identity whose gradient is `where(mask, dy, 0)`: the optimizer never
  moves an inactive entry, with no per-step write or cross-replica
  `merge_call` and no masked copy of the kernel in the forward pass. Outside
  training (`evaluate`, `predict`, `model(x)`) the layer sees
  `where(mask, w, 0)`, so weights written behind the wrapper's back (a dense
  `model.set_weights`) never reach an inference. An optimizer that moves
  weights with a zero gradient and zero state (`keras.optimizers.Muon`, or
  any optimizer outside Keras) gets the masked forward pass in training too
  (`forward_mask`, set by `MaskUpdater`).
- `ever_active` (bool): the union of all masks so far (the ITOP exploration).
- `dense_grad` (only for growth rules that need it: `grow="gradient"` or
  `"momentum"`): the dense gradient of the loss with respect to the masked
  kernel, written in the backward pass of the step before an update
  (`capture` flag); for "momentum", a moving average of it, every step. It is
  an ON_READ variable with SUM aggregation: under `tf.distribute` each
  replica writes the gradient of its share of the loss, which Keras scales
  by the global batch size, so a read in cross-replica context returns the
  gradient of the whole global batch.
- `threshold` (float32 scalar): the largest magnitude pruned by the last
  update, what TF-MOT's `PruningSummaries` plots as the threshold.

Masks change only through `itop_tf.MaskUpdater` (used by `ITOPCallback`).
`itop_tf.find_wrappers` finds the wrappers of a model.

Example:

>>> import tf_keras as keras
>>> layer = PruneAndRegrow(keras.layers.Dense(4), density=0.5,
...                        schedule=RegrowthSchedule(10, 100))
>>> out = layer(tf.ones([2, 8]))
>>> int(tf.reduce_sum(tf.cast(layer.sparse_weights[0].mask, tf.int32)))
16
"""

import inspect
import math
import weakref

import tensorflow as tf
import tf_keras as keras
from tensorflow_model_optimization.python.core.sparsity.keras import pruning_schedule
from tensorflow_model_optimization.python.core.sparsity.keras import pruning_wrapper

from itop_tf import array_ops
from itop_tf import core
from itop_tf import distributions
from itop_tf import frontends
from itop_tf import growth as growth_lib
from itop_tf import schedules

# TF-MOT's wrapper and configs take a `PruningSchedule`; `RegrowthSchedule`
# (which imports no TF-MOT) is one for them.
pruning_schedule.PruningSchedule.register(schedules.RegrowthSchedule)

# Kernels we make sparse, by layer type, checked in order (subclasses first).
_KERNEL_ATTRS = (
    (keras.layers.DepthwiseConv2D, ("depthwise_kernel",)),
    (keras.layers.SeparableConv1D, ("pointwise_kernel",)),
    (keras.layers.SeparableConv2D, ("pointwise_kernel",)),
    (keras.layers.Dense, ("kernel",)),
    (keras.layers.EinsumDense, ("kernel",)),
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


def _variable_name(variable):
  """"kernel" for the variable "block/dense/kernel:0"."""
  return variable.name.split("/")[-1].split(":")[0]


def _own_kernels(layer):
  """(owner, attr, variable name) of a built layer type's kernels, or None."""
  for cls, attrs in _KERNEL_ATTRS:
    if isinstance(layer, cls):
      return [(layer, a, _variable_name(getattr(layer, a)))
              for a in attrs if getattr(layer, a, None) is not None]
  return None


def _is_attention(layer):
  """A MultiHeadAttention: it builds its projections at its first call."""
  return isinstance(layer, keras.layers.MultiHeadAttention)


def _build_attention(layer, query, value, key=None):
  """Makes and builds a MultiHeadAttention's projections for these shapes.

  tf_keras makes them at the layer's first call and builds them as they
  run; a wrapper needs their kernels in its own build, before that.
  """
  query, value = tf.TensorShape(query), tf.TensorShape(value)
  key = value if key is None else tf.TensorShape(key)
  # pylint: disable=protected-access
  layer._build_from_signature(query, value, key)
  shapes = ((layer._query_dense, query), (layer._key_dense, key),
            (layer._value_dense, value),
            (layer._output_dense, query[:-1].concatenate(
                [layer._num_heads, layer._value_dim])))
  # Named as a call would name them ("mha/query/kernel"): H5 files key
  # weights by name.
  with tf.name_scope(layer.name):
    for sub, shape in shapes:
      with tf.name_scope(sub.name):
        sub.build(shape)


def _sublayers(layer):
  return list(layer._flatten_layers(include_self=False, recursive=False))  # pylint: disable=protected-access


def nested_kernels(layer):
  """(owner, attr, path) of the kernels of the layers nested in `layer`.

  Dense, Conv and Embedding layers held by a custom layer, found once the
  custom layer is built (its `build` must build them); see
  `core.nested_kernels`.
  """
  if _own_kernels(layer) is not None:
    return []
  return core.nested_kernels(layer, _own_kernels, _sublayers)


def prunable_kernels(layer, kernels=None):
  """The kernels of `layer` that itop_tf makes sparse, as (owner, attr) pairs.

  Args:
    layer: a built Keras layer.
    kernels: optional indices into the list: the ones to keep.

  Returns:
    A list of `(owner, attribute_name)`; empty if the layer has no kernel
    itop_tf can make sparse (biases and normalisation stay dense).

  Raises:
    ValueError: the layer declares prunable weights that are not stored as
      attributes, so the wrapper could not feed them masked; an index of
      `kernels` out of range.
  """
  return core.chosen_kernels(layer.name, _all_kernels(layer), kernels)


def kernel_paths(layer):
  """The path of each of `prunable_kernels(layer)`, e.g. "dense/kernel".

  The layer's name, the nested layers' names down to the kernel's owner
  (for a custom layer or MultiHeadAttention), and the variable's name.
  """
  nested = nested_kernels(layer) if layer.built else []
  if nested:
    return [f"{layer.name}/{p}" for _, _, p in nested]
  return [f"{layer.name}/{_variable_name(getattr(o, a))}"
          for o, a in prunable_kernels(layer)]


def _all_kernels(layer):
  """`prunable_kernels(layer)` before any `kernels` are picked."""
  own = _own_kernels(layer)
  if own is not None:
    return [(o, a) for o, a, _ in own]
  if getattr(layer, "_itop_nested", False) or _is_attention(layer):
    return [(o, a) for o, a, _ in nested_kernels(layer)]
  weights = []
  if hasattr(layer, "get_prunable_weights"):
    weights = layer.get_prunable_weights()
  elif pruning_wrapper.prune_registry.PruneRegistry.supports(layer):
    made = pruning_wrapper.prune_registry.PruneRegistry.make_prunable(layer)
    weights = made.get_prunable_weights()
  elif layer.built:
    return [(o, a) for o, a, _ in nested_kernels(layer)]
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
  if _is_attention(layer):
    return True  # its projections, once built (`PruneAndRegrow.__call__`)
  registry = pruning_wrapper.prune_registry.PruneRegistry
  if registry.supports(layer):
    return registry._is_rnn_layer(layer) or bool(registry._weight_names(layer))
  # A custom layer holding Dense/Conv/Embedding layers, once built.
  return layer.built and bool(nested_kernels(layer))


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
    del kwargs
    return tf.constant(distributions.exact_count_mask(
        tuple(int(d) for d in shape), self.count, self.seed), dtype)

  def get_config(self):
    return {"count": self.count, "seed": self.seed}


class _Remask:
  """Stands in for TF-MOT's `pruning_impl.Pruning` where its callbacks use it.

  `tfmot.sparsity.keras.UpdatePruningStep` calls `weight_mask_op()` at every
  epoch end to write `mask * weight` into the kernels; here that re-applies
  the masks (a no-op while the invariants hold).
  """

  def __init__(self, wrapper):
    self._wrapper = wrapper

  def weight_mask_op(self):
    self._wrapper.apply_masks()


def _masked_gradient(w, mask, grad_var, flag, decay):
  """Identity on the kernel `w` whose gradient is `where(mask, dy, 0)`.

  The backward pass also hands the incoming dense gradient `dy` to
  `grad_var` when there is one: with `decay=None` only while `flag` is True
  (the step before an update), NaN as 0; with a `decay` every step as an
  exponential moving average `v = decay * v + (1 - decay) * dy` (SNFS's
  momentum of the dense gradient), where an entry whose `dy` is NaN or +-Inf
  keeps its average (`core.stored_gradient`). One custom gradient does both:
  two nested ones cost about as much as a forward `where` (BENCHMARKS.md).
  """

  @tf.custom_gradient
  def identity(t):

    def grad(dy):
      dy = tf.convert_to_tensor(dy)
      deps = []
      if grad_var is not None:

        def store():
          g = core.stored_gradient(
              tf.cast(dy, grad_var.dtype),
              None if decay is None else tf.convert_to_tensor(grad_var),
              decay, array_ops.tensorflow_ops())
          with tf.control_dependencies([grad_var.assign(g)]):
            return tf.constant(True)

        if decay is not None:
          deps.append(store())
        else:
          deps.append(tf.cond(flag, store, lambda: tf.constant(False)))
      with tf.control_dependencies(deps):
        return tf.where(mask, dy, tf.zeros_like(dy))

    return tf.identity(t), grad

  return identity(w)


@keras.utils.register_keras_serializable(package="itop_tf")
class PruneAndRegrow(pruning_wrapper.PruneLowMagnitude):
  """Keeps a layer's kernels sparse with a mask that prune/grow updates move.

  TF-MOT's own callbacks work on it: `UpdatePruningStep` re-applies the
  masks at epoch end (it is not needed: `ITOPCallback` does the updates),
  `PruningSummaries` logs each kernel's sparsity and the last update's
  threshold, and `strip_pruning` returns the inner layers with exact zeros.

  Args:
    layer: the Keras layer to wrap (Dense, EinsumDense, Conv1D/2D/3D and
      their transposes, DepthwiseConv2D, SeparableConv1D/2D, Embedding,
      LSTM/GRU/SimpleRNN, MultiHeadAttention (its projections), a custom
      layer holding such layers, or any layer with `get_prunable_weights`).
    name: the layer's name by default (TF-MOT's would be
      "prune_low_magnitude_<name>").
    schedule: a `RegrowthSchedule` (`pruning_schedule=`, TF-MOT's name, is
      accepted as an alias).
    density: fraction of each kernel kept active, in (0, 1].
    counts: optional exact active counts, one per sparse kernel; overrides
      `density` (`itop_tf.sparsify` passes the ERK counts here).
    grow: "random" (SET), "gradient" (RigL), "momentum" (SNFS) or an
      `itop_tf.growth.Growth` instance.
    seed: integer seed of this layer's initial mask and random growth.
    pruning_schedule: TF-MOT's name for `schedule`.
    kernels: optional indices into `prunable_kernels(layer)`: the kernels
      to make sparse (default all; e.g. [0] for an LSTM's input kernel).
    **kwargs: passed to the Keras `Wrapper`.

  Raises:
    ValueError: bad density, grow method or schedule, or an unsupported layer.

  Example:

  >>> fc = itop_tf.tf_keras.PruneAndRegrow(keras.layers.Dense(32), schedule,
  ...                                      density=0.1, grow="gradient")
  """

  def __init__(self, layer, schedule=None, density=1.0, counts=None,
               grow="random", seed=0, pruning_schedule=None, kernels=None,
               name=None, **kwargs):
    if pruning_schedule is not None:
      if schedule is not None and schedule != pruning_schedule:
        raise ValueError("Give the schedule once: schedule= and its alias "
                         "pruning_schedule= differ.")
      schedule = pruning_schedule
    schedules.check_schedule(schedule)
    distributions.check_density(density)
    self.growth = growth_lib.get(grow)
    if frontends.keras_of(layer) == "keras3":
      raise ValueError(
          "itop_tf.tf_keras.PruneAndRegrow wraps tf_keras layers; "
          f"{layer.name!r} is a Keras 3 layer: use "
          "itop_tf.keras3.PruneAndRegrow (or itop_tf.sparsify, which picks "
          "the right one).")
    registry = pruning_wrapper.prune_registry.PruneRegistry
    # A custom layer not built yet: its build shows whether it holds any.
    later = not layer.built and not registry.supports(layer) and not (
        registry._is_mha_layer(layer))
    if isinstance(layer, keras.layers.Layer) and not supports(
        layer) and not later:
      raise ValueError(
          f"Layer {layer.name!r} ({type(layer).__name__}) has no kernel "
          "itop_tf can make sparse; wrap only Dense, Conv, DepthwiseConv2D, "
          "SeparableConv, Embedding or layers with get_prunable_weights().")
    if later or (layer.built and nested_kernels(layer) and not hasattr(
        layer, "get_prunable_weights")):
      # TF-MOT's protocol for a custom layer: its nested kernels.
      object.__setattr__(layer, "_itop_nested", True)
      object.__setattr__(layer, "get_prunable_weights", lambda: [
          getattr(o, a) for o, a, _ in nested_kernels(layer)])
    self.density = float(density)
    self.counts = None if counts is None else [int(c) for c in counts]
    self.grow = self.growth.name
    self.seed = int(seed)
    self.kernels = None if kernels is None else [int(i) for i in kernels]
    self.sparse_weights = []
    if isinstance(layer, keras.layers.Layer) and "dtype" not in kwargs:
      kwargs["dtype"] = layer.dtype_policy
    super().__init__(layer, pruning_schedule=schedule, **kwargs)
    # TF-MOT names its wrapper "prune_low_magnitude_<name>" whatever it is
    # given; ours takes the layer's name (or the one given), so
    # model.get_layer(name) still finds it, as on Keras 3.
    object.__setattr__(self, "_name", name or layer.name)
    self.pruning_obj = _Remask(self)
    # Masked forward pass in training too; MaskUpdater sets it for an
    # optimizer that is not elementwise (see the module docstring).
    self.forward_mask = False
    # {traced graph: {key: masked kernel}}: a layer called more than once in
    # a traced step reads one masked kernel (`_masked`). Not tracked state.
    object.__setattr__(self, "_kernels_by_graph", weakref.WeakKeyDictionary())

  @property
  def schedule(self):
    """The layer's `RegrowthSchedule` (TF-MOT calls it `pruning_schedule`)."""
    return self.pruning_schedule

  def growth_seed(self):
    """The layer's seed for random growth, as checkpointed (int64 tensor)."""
    return tf.convert_to_tensor(self.rng_seed)

  @property
  def pruning_step(self):
    """TF-MOT's per-layer step counter, which itop_tf does not keep.

    Updates follow `optimizer.iterations` (TF-MOT's counter counts layer
    calls). A constant 0, so that TF-MOT's `UpdatePruningStep` finds the layer
    initialised and leaves it alone.
    """
    return tf.constant(0, tf.int64)

  def build(self, input_shape):
    # Skip PruneLowMagnitude.build: it creates TF-MOT's threshold and
    # pruning_step variables and a pruning object that we never use.
    keras.layers.Wrapper.build(self, input_shape)
    kernels = prunable_kernels(self.layer, self.kernels)
    if not kernels:
      raise ValueError(
          f"Layer {self.layer.name!r} has no kernel itop_tf can make sparse.")
    counts = core.active_counts(
        self.layer.name, [math.prod(getattr(o, a).shape) for o, a in kernels],
        self.density, self.counts)
    self.sparse_weights = []
    # Checkpointed, so a restored run draws the same random growth even if
    # the model was rebuilt with another seed.
    self.rng_seed = self.add_weight(
        "rng_seed", shape=[], dtype=tf.int64, trainable=False,
        initializer=keras.initializers.Constant(self.seed))
    self.capture = None
    if self.growth.captures_when_armed:
      self.capture = self.add_weight(
          "capture_gradient", shape=[], dtype=tf.bool, trainable=False,
          initializer=keras.initializers.Zeros())
    names = {(id(o), a): f"{self.layer.name}/{p.rsplit('/', 1)[0]}"
             for o, a, p in nested_kernels(self.layer)}
    for i, (owner, attr) in enumerate(kernels):
      weight = getattr(owner, attr)
      count = counts[i]
      init = ExactCountMask(count, seed=core.kernel_seed(self.seed, i))
      suffix = "" if i == 0 else f"_{i}"
      mask = self.add_weight(
          "mask" + suffix, shape=weight.shape, dtype=tf.bool,
          initializer=init, trainable=False)
      union = self.add_weight(
          "ever_active" + suffix, shape=weight.shape, dtype=tf.bool,
          initializer=init, trainable=False)
      grad = None
      if self.growth.needs_dense_gradient:
        dtype = getattr(weight, "true_dtype", weight.dtype)
        grad = self.add_weight(
            "dense_grad" + suffix, shape=weight.shape, dtype=dtype,
            initializer=keras.initializers.Zeros(), trainable=False,
            synchronization=tf.VariableSynchronization.ON_READ,
            aggregation=tf.VariableAggregation.SUM, autocast=False)
      threshold = self.add_weight(
          "threshold" + suffix, shape=[], dtype=tf.float32, trainable=False,
          initializer=keras.initializers.Zeros())
      self.sparse_weights.append(
          core.SparseWeight(self, i, owner, attr, weight, mask, union, grad,
                            threshold, count, names.get((id(owner), attr))))
    # TF-MOT's (weight, mask, threshold) triples, read by PruningSummaries.
    self.pruning_vars = [(sw.weight, sw.mask, sw.threshold)
                         for sw in self.sparse_weights]
    with tf.init_scope():
      self.apply_masks()
    self.built = True

  def apply_masks(self):
    """Sets every inactive kernel entry to exactly 0."""
    for sw in self.sparse_weights:
      w = tf.convert_to_tensor(sw.weight)
      sw.weight.assign(tf.where(sw.mask, w, tf.zeros_like(w)))

  def _masked(self, sw, training):
    """The kernel the inner layer sees (see the module docstring).

    In a traced step (`fit`, a `tf.function` loop) every call of the layer
    gets the same tensor, so the custom gradient runs once on the sum of the
    calls' gradients: a shared layer or a tied embedding stores its dense
    gradient once (each call writing its own would keep only one, and SNFS
    would average the calls as steps). An eager loop makes one per call.
    """
    if tf.executing_eagerly():
      return self._masked_kernel(sw, training)
    graph = tf.compat.v1.get_default_graph()
    made = self._kernels_by_graph.setdefault(graph, {})
    # Under tf.distribute each replica traces its own step into the graph.
    replica = tf.distribute.get_replica_context()
    key = (sw.index, training, self.forward_mask,
           None if replica is None else id(replica))
    if key not in made:
      made[key] = self._masked_kernel(sw, training)
    return made[key]

  def _masked_kernel(self, sw, training):
    w = tf.convert_to_tensor(sw.weight)
    mask = tf.convert_to_tensor(sw.mask)
    if not training or self.forward_mask:
      w = tf.where(mask, w, tf.zeros_like(w))
    w = tf.cast(w, sw.owner.compute_dtype or w.dtype)
    # Also outside `fit`: a custom loop may take gradients with training=None.
    return _masked_gradient(w, mask, sw.dense_grad, self.capture,
                            self.growth.gradient_decay)

  def __call__(self, *args, **kwargs):
    inner = self.layer
    if _is_attention(inner) and not (
        inner._built_from_signature and inner._query_dense.built):  # pylint: disable=protected-access
      # MultiHeadAttention makes its projections from the query and value
      # shapes at its first call; the wrapper's build needs their kernels.
      query = args[0] if args else kwargs.get("inputs", kwargs.get("query"))
      value = args[1] if len(args) > 1 else kwargs.get("value", query)
      key = args[2] if len(args) > 2 else kwargs.get("key")
      _build_attention(inner, query.shape, value.shape,
                       None if key is None else key.shape)
    return super().__call__(*args, **kwargs)

  def get_build_config(self):
    config = super().get_build_config()
    inner = self.layer
    if config is not None and _is_attention(inner) and (
        inner._built_from_signature):  # pylint: disable=protected-access
      # pylint: disable-next=protected-access
      shapes = (inner._query_shape, inner._value_shape, inner._key_shape)
      config["attention_shapes"] = [s.as_list() for s in shapes]
    return config

  def build_from_config(self, config):
    shapes = config.get("attention_shapes")
    if shapes and not self.built:
      _build_attention(self.layer, *shapes)
    super().build_from_config(config)

  def call(self, inputs, *args, training=None, **kwargs):
    # Only a Python True (what `fit` passes) trains on the unmasked kernel;
    # None, False and symbolic values get the masked forward pass.
    phase = keras.backend.learning_phase() if training is None else training
    # pylint: disable-next=unidiomatic-typecheck
    is_training = phase is True or (type(phase) is int and phase == 1)
    masked = [(sw, self._masked(sw, is_training))
              for sw in self.sparse_weights]
    try:
      for sw, w in masked:
        object.__setattr__(sw.owner, sw.attr, w)
      if "training" in inspect.getfullargspec(
          self.layer.call).args:
        kwargs["training"] = training
      return self.layer.call(inputs, *args, **kwargs)
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
    config.pop("sparsity_m_by_n", None)
    config["schedule"] = config.pop("pruning_schedule")
    config.update({"density": self.density, "counts": self.counts,
                   "grow": growth_lib.serialize(self.growth), "seed": self.seed})
    if self.kernels is not None:
      config["kernels"] = self.kernels
    return config

  @classmethod
  def from_config(cls, config):
    config = dict(config)
    # Files saved before the rename store it as "pruning_schedule".
    schedule = config.pop("schedule", None) or config.pop("pruning_schedule")
    config["schedule"] = schedules.RegrowthSchedule.from_config(schedule)
    config["layer"] = keras.layers.deserialize(config["layer"])
    return cls(**config)
