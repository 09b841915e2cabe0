"""`PruneAndRegrow` for Keras 3 (`import keras`): the mask lives in the layer.

The Keras 3 twin of `itop_tf.tf_keras.PruneAndRegrow` (TF-MOT), with the
same state per sparse kernel (`core.SparseWeight`):

- `mask` and `ever_active` (bool, non-trainable): the active connections and
  their union. Inactive kernel entries are exactly 0 in the variable, and in
  training the inner layer sees the kernel through an identity whose
  gradient is `where(mask, dy, 0)`: no step writes to the kernel and no
  masked copy is made. Outside training it sees `where(mask, w, 0)`; with
  `forward_mask` (set by `MaskUpdater` for an optimizer that is not
  elementwise, e.g. `keras.optimizers.Muon`) in training too.
- `dense_grad` (only for grow="gradient"/"momentum"): a variable made with
  `overwrite_with_gradient=True`. The masked kernel goes through a
  `keras.ops.custom_gradient` identity that hands its incoming (dense)
  gradient to this variable, and the optimizer writes that gradient into it
  (summed over replicas under `tf.distribute`) instead of descending on it.
  So the dense gradient is captured inside the compiled train step, on every
  backend; for "momentum" the variable holds a moving average, every step.
  It is listed among the trainable weights (Keras computes gradients only
  for those), gets no optimizer slots, and `strip` drops it. RigL reads it
  only at an update: a bool variable `capture_gradient` (the `capture`
  attribute, as on tf_keras) selects in the step between the new gradient
  and the variable's own value, which the step then keeps. It starts True,
  so a bare `fit` or a custom loop captures every step;
  `MaskUpdater.before_step` (which `ITOPCallback` calls before every step)
  sets it for the steps before an update only, and `ITOPCallback` sets it
  True again at the end of `fit`. One traced step serves both.
- `calls_per_step` (float32 scalar, with `dense_grad`): how many times the
  layer ran in the last step, counted by the same custom gradient, so that
  a layer used more than once (shared, tied embeddings) stores the sum of
  its calls' gradients once (`_masked_gradient`).
- `threshold` (float32 scalar): the largest magnitude the last update pruned.

Masks change only through `itop_tf.MaskUpdater` (used by `ITOPCallback`).

Example:

>>> import keras, itop_tf
>>> layer = itop_tf.keras3.PruneAndRegrow(
...     keras.layers.Dense(4), itop_tf.RegrowthSchedule(10, 100), density=0.5)
>>> _ = layer(keras.ops.ones((2, 8)))
>>> int(keras.ops.sum(keras.ops.cast(layer.sparse_weights[0].mask, "int32")))
16
"""

import math

import keras

from itop_tf import array_ops
from itop_tf import core
from itop_tf import distributions
from itop_tf import growth as growth_lib
from itop_tf import schedules

# The kernels itop_tf makes sparse, by layer type (subclasses first), named
# as the layer names its variable.
_KERNELS = (
    (keras.layers.SeparableConv1D, ("pointwise_kernel",)),
    (keras.layers.SeparableConv2D, ("pointwise_kernel",)),
    (keras.layers.Embedding, ("embeddings",)),
    (keras.layers.Dense, ("kernel",)),
    (keras.layers.EinsumDense, ("kernel",)),
    (keras.layers.Conv1D, ("kernel",)),
    (keras.layers.Conv2D, ("kernel",)),
    (keras.layers.Conv3D, ("kernel",)),
    (keras.layers.Conv1DTranspose, ("kernel",)),
    (keras.layers.Conv2DTranspose, ("kernel",)),
    (keras.layers.Conv3DTranspose, ("kernel",)),
    (keras.layers.DepthwiseConv1D, ("kernel",)),
    (keras.layers.DepthwiseConv2D, ("kernel",)),
)

SUPPORTED = ("Dense, EinsumDense, Conv1D/2D/3D and their transposes, "
             "DepthwiseConv1D/2D, SeparableConv1D/2D, Embedding, and layers "
             "holding them (MultiHeadAttention, Transformer blocks, custom "
             "layers)")


def _kernel_names(layer):
  for cls, names in _KERNELS:
    if isinstance(layer, cls):
      return names
  return None


def _own_reason(layer):
  """Why a layer of a type itop_tf wraps cannot be wrapped, or None."""
  if getattr(layer, "quantization_mode", None):
    return f"it is quantized ({layer.quantization_mode})"
  if getattr(layer, "lora_enabled", False):
    return "it has LoRA enabled"
  return None


def _sublayers(layer):
  return list(layer._flatten_layers(include_self=False, recursive=False))  # pylint: disable=protected-access


def _own_kernels(layer):
  """(owner, attr, variable name) of a wrapped type's kernels, or None."""
  names = _kernel_names(layer)
  if names is None:
    return None
  reason = _own_reason(layer)
  if reason:
    raise ValueError(
        f"Layer {layer.name!r} cannot be made sparse: {reason}. Keep it dense "
        "(dense_layers=[...]) or use a supported layer.")
  out = []
  for name in names:
    var = next((v for v in layer.trainable_weights
                if v.path.split("/")[-1] == name), None)
    if var is None:
      continue
    attr = next((a for a, v in vars(layer).items() if v is var), None)
    if attr is None:
      raise ValueError(
          f"Layer {layer.name!r}: its {name!r} variable is not an attribute, "
          "so itop_tf cannot feed it masked.")
    out.append((layer, attr, name))
  return out


def _entries(layer):
  """(owner, attr, path below `layer`) of every kernel a wrapper can take."""
  own = _own_kernels(layer)
  if own is not None:
    return own
  return core.nested_kernels(layer, _own_kernels, _sublayers)


def supports(layer):
  """Whether itop_tf can make `layer`'s kernels sparse.

  True for a layer type it wraps; for another layer, whether (once built) it
  holds such layers.
  """
  return unsupported_reason(layer) is None


def unsupported_reason(layer):
  """Why `layer` cannot be wrapped, or None if it can.

  A layer of another type can be wrapped when it holds layers of the types
  itop_tf wraps (its kernels are theirs); before it is built that is not
  known yet, and the wrapper's build checks it.
  """
  if _kernel_names(layer) is not None:
    return _own_reason(layer)
  if isinstance(layer, keras.layers.RNN):
    return (f"{type(layer).__name__} is not a layer type itop_tf wraps: a "
            "recurrent cell reads its kernels itself")
  if not layer.built:
    return None
  try:
    found = _entries(layer)
  except ValueError as e:
    return str(e)
  if not found:
    return (f"{type(layer).__name__} is not a layer type itop_tf wraps and "
            f"holds none ({SUPPORTED})")
  return None


def prunable_kernels(layer, kernels=None):
  """The kernels of a built `layer` to make sparse, as (owner, attr) pairs.

  Args:
    layer: a built Keras 3 layer: a type itop_tf wraps, or one holding
      such layers (then its nested kernels, depth first).
    kernels: optional indices into that list: the ones to make sparse.

  Raises:
    ValueError: the layer cannot be wrapped (see `unsupported_reason`), or
      `kernels` holds an index out of range.
  """
  reason = unsupported_reason(layer)
  if reason:
    raise ValueError(
        f"Layer {layer.name!r} cannot be made sparse: {reason}. Keep it dense "
        "(dense_layers=[...]) or use a supported layer.")
  return core.chosen_kernels(layer.name,
                             [(o, a) for o, a, _ in _entries(layer)], kernels)


def kernel_paths(layer):
  """The path of each of `prunable_kernels(layer)`, e.g. "dense/kernel".

  The layer's name, the names of the layers down to the kernel's owner, and
  the variable's name, joined by "/": for a model built in the usual way,
  the kernel's `variable.path`.
  """
  return [f"{layer.name}/{p}" for _, _, p in _entries(layer)]


def _dense(gradient):
  """An Embedding's gradient (IndexedSlices on TensorFlow) as a tensor."""
  if keras.backend.backend() == "tensorflow":
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    return tf.convert_to_tensor(gradient)
  return gradient


def _masked_gradient(x, mask, grad_var, decay, capture=None, calls=None,
                     count=False):
  """Identity on the kernel `x` whose gradient is `where(mask, dy, 0)`.

  With a `grad_var` (an `overwrite_with_gradient` variable) the incoming
  dense gradient (NaN as 0), or with a `decay` its moving average (an entry
  whose gradient is NaN or +-Inf keeps its average: `core.stored_gradient`),
  also becomes `grad_var`'s "gradient", which the optimizer stores in it.
  One custom gradient does both (two nested ones cost more; BENCHMARKS.md).
  Where `capture` (a scalar bool tensor) is False, `grad_var`'s "gradient"
  is its own value, so the step keeps it. That is a `where`, not a
  conditional: no control flow in the step (a GPU conditional reads its
  predicate on the host), and it costs no more than a second traced step
  would (BENCHMARKS.md).

  A layer called n times in a step (shared, tied embeddings) gets n such
  gradients, which Keras adds up: the dense parts add up to the gradient of
  the whole step, as they should, but the stored value would count n times.
  So each call hands back the stored value divided by `calls`, the value of
  the wrapper's call counter: an `overwrite_with_gradient` scalar whose
  "gradient" is 1 per call (from the identity with `count`), so after a
  step it holds the number of calls (times the replicas under
  `tf.distribute`, which add up the shares too). The first step divides by
  its initial 1, and stores nothing yet (the variable starts at 0).
  """
  ops = keras.ops

  if grad_var is None:

    @ops.custom_gradient
    def masked(t):

      def grad(*args, upstream=None):
        if upstream is None:
          (upstream,) = args
        return ops.where(mask, upstream, ops.zeros_like(upstream))

      return ops.copy(t), grad

    return masked(x)

  if calls is None:  # a layer run once per step
    calls = ops.ones((), "float32")

  @ops.custom_gradient
  def identity(t, g, c):

    def grad(*args, upstream=None):
      if upstream is None:
        (upstream,) = args
      upstream = _dense(upstream)
      masked_dy = ops.where(mask, upstream, ops.zeros_like(upstream))
      share = g / ops.maximum(c, 1.0)
      d = core.stored_gradient(ops.cast(upstream, g.dtype), share, decay,
                               array_ops.keras_ops())
      if capture is not None:
        d = ops.where(capture, d, share)
      one = ops.ones_like(c) if count else ops.zeros_like(c)
      return masked_dy, d, one

    return ops.copy(t), grad

  return identity(x, grad_var, calls)


@keras.saving.register_keras_serializable(package="itop_tf")
class PruneAndRegrow(keras.layers.Wrapper):
  """Keeps a Keras 3 layer's kernel sparse with a mask that updates move.

  Args:
    layer: the Keras 3 layer to wrap (see `SUPPORTED`).
    schedule: an `itop_tf.RegrowthSchedule`.
    density: fraction of each kernel kept active, in (0, 1].
    counts: optional exact active counts, one per sparse kernel; overrides
      `density` (`itop_tf.sparsify` passes the ERK counts here).
    grow: "random" (SET), "gradient" (RigL), "momentum" (SNFS) or an
      `itop_tf.growth.Growth` instance.
    seed: integer seed of this layer's initial mask and random growth.
    kernels: optional indices into `prunable_kernels(layer)`: the kernels
      to make sparse (default all). For a layer holding other layers (e.g.
      a Transformer block), `itop_tf.sparsify(select=...)` fills it in.
    **kwargs: passed to `keras.layers.Wrapper`.

  Raises:
    ValueError: bad density, grow method or schedule, or a layer that cannot
      be wrapped.

  Example:

  >>> fc = itop_tf.keras3.PruneAndRegrow(keras.layers.Dense(32), schedule,
  ...                                    density=0.1, grow="gradient")
  """

  def __init__(self, layer, schedule=None, density=1.0, counts=None,
               grow="random", seed=0, kernels=None, **kwargs):
    schedules.check_schedule(schedule)
    distributions.check_density(density)
    if not isinstance(layer, keras.layers.Layer):
      raise ValueError(
          f"itop_tf.keras3.PruneAndRegrow wraps a Keras 3 layer, got "
          f"{type(layer).__name__}; a tf_keras layer takes "
          "itop_tf.tf_keras.PruneAndRegrow.")
    # A layer of another type shows in its build whether it holds any.
    reason = unsupported_reason(layer)
    if reason:
      raise ValueError(f"Layer {layer.name!r} cannot be made sparse: "
                       f"{reason}.")
    self.growth = growth_lib.get(grow)
    self.schedule = schedule
    self.density = float(density)
    self.counts = None if counts is None else [int(c) for c in counts]
    self.grow = self.growth.name
    self.seed = int(seed)
    self.kernels = None if kernels is None else [int(i) for i in kernels]
    if "dtype" not in kwargs:
      kwargs["dtype"] = layer.dtype_policy
    # The wrapper takes the layer's name, so model.get_layer(name) still
    # finds it (the inner layer is one level down and keeps it too).
    kwargs.setdefault("name", layer.name)
    super().__init__(layer, **kwargs)
    self.sparse_weights = []
    # Masked forward pass in training too; MaskUpdater sets it for an
    # optimizer that is not elementwise (see the module docstring).
    self.forward_mask = False
    # grow="gradient": the variable that arms the capture (module docstring).
    self.capture = None
    # A rule that stores the dense gradient: calls per step (module docstring).
    self.calls = None

  def growth_seed(self):
    """The layer's seed for random growth (a Python int)."""
    return self.seed

  def build(self, input_shape=None):
    super().build(input_shape)
    kernels = prunable_kernels(self.layer, self.kernels)
    # A kernel of a nested layer is shown by its path ("block/query").
    names = {(id(o), a): (None if o is self.layer else
                          f"{self.layer.name}/{p.rsplit('/', 1)[0]}")
             for o, a, p in _entries(self.layer)}
    shapes = [tuple(int(d) for d in getattr(o, a).shape) for o, a in kernels]
    counts = core.active_counts(self.layer.name,
                                [math.prod(sh) for sh in shapes],
                                self.density, self.counts)
    sws = []
    for i, ((owner, attr), shape, count) in enumerate(
        zip(kernels, shapes, counts)):
      weight = getattr(owner, attr)
      init = distributions.exact_count_mask(
          shape, count, core.kernel_seed(self.seed, i))
      suffix = "" if i == 0 else f"_{i}"
      mask = self.add_weight(
          name="mask" + suffix, shape=shape, dtype="bool", trainable=False,
          initializer=lambda s, dtype=None, v=init: v)
      union = self.add_weight(
          name="ever_active" + suffix, shape=shape, dtype="bool",
          trainable=False, initializer=lambda s, dtype=None, v=init: v)
      grad = None
      if self.growth.needs_dense_gradient:
        grad = self.add_weight(
            name="dense_grad" + suffix, shape=shape, dtype="float32",
            initializer="zeros", trainable=True, autocast=False,
            overwrite_with_gradient=True, aggregation="sum")
      threshold = self.add_weight(
          name="threshold" + suffix, shape=(), dtype="float32",
          initializer="zeros", trainable=False)
      sws.append(core.SparseWeight(self, i, owner, attr, weight, mask, union,
                                   grad, threshold, count,
                                   names[(id(owner), attr)]))
    if self.growth.captures_when_armed:
      self.capture = self.add_weight(
          name="capture_gradient", shape=(), dtype="bool", trainable=False,
          initializer="ones")
    self.calls = None
    if self.growth.needs_dense_gradient:
      # Calls per step, for a layer used more than once (_masked_gradient).
      self.calls = self.add_weight(
          name="calls_per_step", shape=(), dtype="float32",
          initializer="ones", trainable=True, autocast=False,
          overwrite_with_gradient=True, aggregation="sum")
    # A plain list: Keras must not track SparseWeight records as state.
    object.__setattr__(self, "sparse_weights", sws)
    self.apply_masks()
    self.built = True

  def load_own_variables(self, store):
    all_vars = self._trainable_variables + self._non_trainable_variables
    if self.calls is not None and len(store.keys()) == len(all_vars) - 1:
      # Saved before `calls_per_step` existed: the others, in their order.
      for i, v in enumerate(x for x in all_vars if x is not self.calls):
        v.assign(store[f"{i}"])
      self.calls.assign(1.0)
      return
    super().load_own_variables(store)

  def apply_masks(self):
    """Sets every inactive kernel entry to exactly 0."""
    ops = keras.ops
    for sw in self.sparse_weights:
      w = ops.convert_to_tensor(sw.weight)
      mask = ops.convert_to_tensor(sw.mask)
      sw.weight.assign(ops.where(mask, w, ops.zeros_like(w)))

  def _masked(self, sw, training):
    """The kernel the inner layer sees (see the module docstring)."""
    ops = keras.ops
    w = ops.convert_to_tensor(sw.weight)
    mask = ops.convert_to_tensor(sw.mask)
    if not training or self.forward_mask:
      w = ops.where(mask, w, ops.zeros_like(w))
    w = ops.cast(w, sw.owner.compute_dtype)
    # Also outside `fit`: a custom loop may take gradients with training=None.
    if sw.dense_grad is None:
      return _masked_gradient(w, mask, None, None)
    return _masked_gradient(
        w, mask, ops.convert_to_tensor(sw.dense_grad),
        self.growth.gradient_decay,
        None if self.capture is None else ops.convert_to_tensor(self.capture),
        ops.convert_to_tensor(self.calls), count=sw.index == 0)

  def call(self, inputs, *args, training=None, **kwargs):
    # The inner layer inherits `training` from the call context.
    masked = [(sw, self._masked(sw, training is True))
              for sw in self.sparse_weights]
    try:
      for sw, w in masked:
        object.__setattr__(sw.owner, sw.attr, w)
      return self.layer(inputs, *args, **kwargs)
    finally:
      for sw, _ in masked:
        object.__setattr__(sw.owner, sw.attr, sw.weight)

  def compute_output_shape(self, input_shape, *args, **kwargs):
    return self.layer.compute_output_shape(input_shape, *args, **kwargs)

  def compute_output_spec(self, *args, **kwargs):
    # The inner layer's, with its own signature (MultiHeadAttention takes
    # query and value).
    return self.layer.compute_output_spec(*args, **kwargs)

  def get_config(self):
    config = super().get_config()
    config.update({"schedule": self.schedule.get_config(),
                   "density": self.density, "counts": self.counts,
                   "grow": growth_lib.serialize(self.growth), "seed": self.seed})
    if self.kernels is not None:
      config["kernels"] = self.kernels
    return config

  def get_build_config(self):
    config = super().get_build_config()
    if config is not None and self.layer.built:
      # A layer built from several inputs (MultiHeadAttention: query and
      # value) cannot be built from the wrapper's one input shape.
      config["layer"] = self.layer.get_build_config()
    return config

  def build_from_config(self, config):
    inner = config.get("layer")
    if inner is None:
      super().build_from_config(config)
      return
    if not self.layer.built:
      self.layer.build_from_config(inner)
    self.build(config.get("input_shape"))

  @classmethod
  def from_config(cls, config, custom_objects=None):
    config = dict(config)
    config["schedule"] = schedules.RegrowthSchedule.from_config(
        config["schedule"])
    layer = keras.saving.deserialize_keras_object(
        config.pop("layer"), custom_objects=custom_objects)
    return cls(layer, **config)
