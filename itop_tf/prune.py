"""Turn a Keras model sparse (`sparsify`), and back (`strip`).

Example:

>>> import tf_keras as keras, itop_tf
>>> model = keras.Sequential([keras.Input((64,)), keras.layers.Dense(32),
...                           keras.layers.Dense(10)])
>>> sparse = itop_tf.sparsify(
...     model, sparsity=0.9,
...     schedule=itop_tf.RegrowthSchedule(update_interval=100, total_steps=5000))
>>> plain = itop_tf.strip(sparse)   # after training: plain layers, zeros kept
"""

import contextlib
import numbers

import numpy as np
import tf_keras as keras
from tensorflow_model_optimization.python.core.sparsity.keras import pruning_wrapper

from itop_tf import distributions
from itop_tf import growth as growth_lib
from itop_tf import metrics
from itop_tf import schedules
from itop_tf import wrapper as wrapper_lib

_KERAS3_MESSAGE = (
    "itop_tf got a Keras 3 model ({cls}). TF-MOT, and so itop_tf, works on "
    "Keras 2 only: build the model with `import tf_keras as keras` (pip "
    "install tf-keras), or set TF_USE_LEGACY_KERAS=1 before importing "
    "TensorFlow and use tf.keras.")


def _check_model(model, what):
  if isinstance(model, keras.Model):
    if not (isinstance(model, keras.Sequential) or model._is_graph_network):
      raise ValueError(
          f"{what} needs a Sequential or functional model, got the subclassed "
          f"model {type(model).__name__}: it rebuilds the model with wrapped "
          "layers, which a subclassed model does not allow. Build the model "
          "with the functional API, or wrap its layers yourself in __init__ "
          "with itop_tf.PruneAndRegrow(layer, schedule, density=...); "
          "ITOPCallback finds them anywhere in the model.")
    return
  modules = [c.__module__ for c in type(model).__mro__]
  if any(m.split(".")[0] == "keras" for m in modules):
    raise ValueError(_KERAS3_MESSAGE.format(cls=type(model).__name__))
  raise ValueError(
      f"{what} needs a tf_keras Model, got {type(model).__name__}.")


def leaf_layers(model):
  """Leaf layers of `model` in order, recursing into nested models."""
  for layer in model.layers:
    if isinstance(layer, keras.Model):
      yield from leaf_layers(layer)
    else:
      yield layer


def _clone(model, make_layer):
  """Clones a Sequential/functional model, copying weights.

  `make_layer(layer)` returns the replacement of a leaf layer and a function
  `copy(new)` that fills in its weights once it is built.
  """
  copies = []

  def clone_fn(layer):
    if isinstance(layer, keras.Model):
      return _clone(layer, make_layer)
    new, copy = make_layer(layer)
    copies.append((new, copy))
    return new

  new_model = keras.models.clone_model(model, clone_function=clone_fn)
  if not new_model.built:
    new_model.build(model.input_shape)
  for new, copy in copies:
    copy(new)
  return new_model


def _fresh(layer):
  return layer.__class__.from_config(layer.get_config())


def sparsify(model, sparsity, schedule=None, distribution="erk",
             grow="random", dense_layers=(), layer_densities=None,
             erk_power_scale=1.0, seed=0):
  """Returns a copy of `model` whose kernels train sparse with ITOP.

  Every kernel of a Dense, Conv, DepthwiseConv2D, SeparableConv, Embedding
  or recurrent layer (nested models included) gets a `PruneAndRegrow`
  wrapper; biases and normalisation stay dense. Layer densities follow
  `distribution` so that the active weights are exactly
  `round((1 - sparsity) * N)` of the `N` weights in the wrapped kernels, and
  each layer's initial mask is random with an exact count. The original
  model is left unchanged; weights are copied (then masked).

  Args:
    model: a built tf_keras Sequential or functional model.
    sparsity: global fraction of zeros over all wrapped kernels, in [0, 1).
    schedule: a `RegrowthSchedule` (Delta T, total steps, prune fraction).
    distribution: "erk" (default), "er" or "uniform".
    grow: "random" (SET), "gradient" (RigL), "momentum" (SNFS) or an
      `itop_tf.growth.Growth` instance.
    dense_layers: names of layers to keep dense; they are not wrapped and not
      counted in the sparsity or R_s.
    layer_densities: optional `{layer name: density}`; the other layers
      share the rest of the global budget.
    erk_power_scale: exponent on the ERK scores.
    seed: integer; masks and random growth are deterministic given it.

  Returns:
    A new tf_keras model with `PruneAndRegrow` layers and the `itop_rate`
    metric (`ExplorationRate`) in its `metrics`.

  Raises:
    ValueError: bad sparsity, distribution, grow method or schedule; a Keras 3
      or subclassed model; an unbuilt model; a model already sparsified; no
      layer to make sparse; unknown layer names.

  Example:

  >>> sparse = itop_tf.sparsify(model, sparsity=0.9, grow="gradient",
  ...     schedule=itop_tf.RegrowthSchedule(update_interval=100,
  ...                                       total_steps=10000))
  """
  _check_model(model, "itop_tf.sparsify")
  if (isinstance(sparsity, bool) or not isinstance(sparsity, numbers.Real) or
      not 0.0 <= float(sparsity) < 1.0):
    raise ValueError(
        f"sparsity must be a number in [0, 1), got {sparsity!r}: 0.9 keeps "
        "10% of the weights.")
  if distribution not in distributions.DISTRIBUTIONS:
    raise ValueError(f"Unknown distribution {distribution!r}: use one of "
                     f"{distributions.DISTRIBUTIONS}.")
  grow = growth_lib.get(grow)
  if not isinstance(schedule, schedules.RegrowthSchedule):
    raise ValueError(
        "sparsify needs schedule=itop_tf.RegrowthSchedule(update_interval=..., "
        f"total_steps=...), got {schedule!r}; use initial_prune_fraction=0 "
        "for static sparse training.")
  if any(isinstance(m, pruning_wrapper.PruneLowMagnitude)
         for m in model._flatten_modules()):
    raise ValueError(
        "The model is already sparsified (it has pruning wrappers): pass the "
        "original model, or itop_tf.strip(model) first.")
  if not model.built:
    raise ValueError(
        "The model is not built: layer densities need the kernel shapes. Give "
        "it an input shape (keras.Input) or call model.build(input_shape).")
  dense_layers = set(dense_layers or ())
  layer_densities = dict(layer_densities or {})
  leaves = list(leaf_layers(model))
  names = {l.name for l in leaves}
  unknown = (dense_layers | set(layer_densities)) - names
  if unknown:
    raise ValueError(f"No layer named {sorted(unknown)} in the model; layers "
                     f"are {sorted(names)}.")
  targets = [l for l in leaves
             if l.name not in dense_layers and wrapper_lib.supports(l)]
  kernels = [(l, owner, attr) for l in targets
             for owner, attr in wrapper_lib.prunable_kernels(l)]
  if not kernels:
    raise ValueError(
        "The model has no layer itop_tf can make sparse (Dense, Conv, "
        "DepthwiseConv2D, SeparableConv, Embedding, LSTM/GRU/SimpleRNN).")
  shapes = [tuple(int(d) for d in getattr(o, a).shape) for _, o, a in kernels]
  fixed = {i: layer_densities[l.name] for i, (l, _, _) in enumerate(kernels)
           if l.name in layer_densities}
  _, counts = distributions.layer_counts(
      shapes, 1.0 - float(sparsity), distribution, erk_power_scale, fixed)
  plan = {}
  for (layer, _, _), count in zip(kernels, counts):
    plan.setdefault(id(layer), []).append(int(count))
  index = {id(l): i for i, l in enumerate(targets)}

  def make_layer(layer):
    new = _fresh(layer)
    if id(layer) not in plan:
      return new, lambda n: n.set_weights(layer.get_weights())
    wrapped = wrapper_lib.PruneAndRegrow(
        new, schedule=schedule, counts=plan[id(layer)], grow=grow,
        seed=(int(seed) * 7919 + index[id(layer)]) % (2**31 - 1))

    def copy(w):
      w.layer.set_weights(layer.get_weights())
      w.apply_masks()

    return wrapped, copy

  sparse = _clone(model, make_layer)
  metrics.attach_exploration_metric(sparse)
  return sparse


def strip(model):
  """Returns a plain Keras copy of a sparsified model with exact zeros.

  Each `PruneAndRegrow` layer is replaced by its inner layer with inactive
  kernel entries set to 0: same predictions, same sparsity, no masks.

  Args:
    model: a Sequential or functional model from `sparsify`.

  Returns:
    A new tf_keras model without itop_tf layers.

  Raises:
    ValueError: a Keras 3 or subclassed model.
  """
  _check_model(model, "itop_tf.strip")

  def make_layer(layer):
    if not isinstance(layer, wrapper_lib.PruneAndRegrow):
      return _fresh(layer), lambda n: n.set_weights(layer.get_weights())
    inner = layer.layer
    values = inner.get_weights()
    for sw in layer.sparse_weights:
      j = next(i for i, v in enumerate(inner.weights) if v is sw.weight)
      values[j] = np.where(sw.mask.numpy(), values[j], 0).astype(
          values[j].dtype)
    return _fresh(inner), lambda n: n.set_weights(values)

  return _clone(model, make_layer)


def custom_objects():
  """The classes Keras needs to load a model saved with itop_tf layers."""
  return {
      "PruneAndRegrow": wrapper_lib.PruneAndRegrow,
      "RegrowthSchedule": schedules.RegrowthSchedule,
      "ExactCountMask": wrapper_lib.ExactCountMask,
      "ExplorationRate": metrics.ExplorationRate,
  }


@contextlib.contextmanager
def scope():
  """Context in which Keras can load models saved with itop_tf layers.

  Example:

  >>> with itop_tf.scope():
  ...   model = keras.models.load_model("sparse.h5")
  """
  with keras.utils.custom_object_scope(custom_objects()):
    yield
