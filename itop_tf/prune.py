"""Turn a Keras model sparse (`sparsify`), and back (`strip`).

Example:

>>> import keras, itop_tf                 # or: import tf_keras as keras
>>> model = keras.Sequential([keras.Input((64,)), keras.layers.Dense(32),
...                           keras.layers.Dense(10)])
>>> sparse = itop_tf.sparsify(
...     model, sparsity=0.9,
...     schedule=itop_tf.RegrowthSchedule(update_interval=100, total_steps=5000))
>>> plain = itop_tf.strip(sparse)   # after training: plain layers, zeros kept
"""

import fnmatch
import numbers
import re

from absl import logging
import numpy as np

from itop_tf import distributions
from itop_tf import frontends
from itop_tf import growth as growth_lib
from itop_tf import schedules


def _check_model(model, what, frontend):
  if not isinstance(model, frontend.keras.Model):
    raise ValueError(
        f"{what} needs a Keras Model, got {type(model).__name__}.")
  if not frontend.is_functional(model):
    raise ValueError(
        f"{what} needs a Sequential or functional model, got the subclassed "
        f"model {type(model).__name__}: it rebuilds the model with wrapped "
        "layers, which a subclassed model does not allow. Build the model "
        "with the functional API, or wrap its layers yourself in __init__ "
        f"with itop_tf.{frontend.name}.PruneAndRegrow"
        "(layer, schedule, density=...); ITOPCallback finds them anywhere in "
        "the model.")


def leaf_layers(model, keras_module, seen=None):
  """Leaf layers of `model` in order, recursing into nested models; each
  once (a task model also uses its backbone's tied embedding itself)."""
  seen = set() if seen is None else seen
  for layer in model.layers:
    if id(layer) in seen:
      continue
    seen.add(id(layer))
    if isinstance(layer, keras_module.Model):
      yield from leaf_layers(layer, keras_module, seen)
    else:
      yield layer


def _clone(model, make_layer, frontend, made=None):
  """Clones a Sequential/functional model, copying weights.

  `make_layer(layer)` returns the replacement of a leaf layer and a function
  `copy(new)` that fills in its weights once it is built. A layer used in a
  nested model and outside it (a task model's tied embedding) gets one
  replacement (`made`: {id(layer): replacement}, over the nested models).
  """
  copies = []
  made = {} if made is None else made

  def clone_fn(layer):
    if id(layer) in made:
      return made[id(layer)]
    if isinstance(layer, frontend.keras.Model):
      new = _clone(layer, make_layer, frontend, made)
    elif not hasattr(layer, "set_weights"):
      # A raw op of a Keras 3 functional graph (`h + x`, `h[:, 0]`,
      # `keras.ops.mean`): no weights to copy, nothing to make sparse.
      new = _fresh(layer)
    else:
      new, copy = make_layer(layer)
      copies.append((new, copy))
    made[id(layer)] = new
    return new

  new_model = frontend.keras.models.clone_model(model, clone_function=clone_fn)
  if not new_model.built:
    new_model.build(model.input_shape)
  for new, copy in copies:
    copy(new)
  return new_model


def _fresh(layer, dtype=None):
  config = layer.get_config()
  if dtype is not None:
    config["dtype"] = dtype
  return layer.__class__.from_config(config)


def _rebuilt(layer, dtype=None):
  """A copy of `layer` from its config, or None where that fails.

  Some layers' configs do not round-trip (keras_hub 0.32's
  `ViTPatchingAndEmbedding` writes arguments its constructor refuses);
  `sparsify` and `strip` then use the layer itself (in place).
  """
  try:
    return _fresh(layer, dtype)
  except (TypeError, ValueError) as e:
    if dtype is not None and dtype != getattr(layer.dtype_policy, "name",
                                              dtype):
      raise ValueError(
          f"Layer {layer.name!r} cannot be rebuilt from its config ({e}), so "
          f"it cannot change its dtype to {dtype!r}.") from e
    logging.warning(
        "itop_tf: layer %r cannot be rebuilt from its config (%s); it is "
        "used in place, shared with the model it came from.", layer.name, e)
    return None


def sparsify(model, sparsity, schedule=None, distribution="erk",
             grow="random", dense_layers=(), layer_densities=None,
             erk_power_scale=1.0, seed=0, select=None):
  """Returns a copy of `model` whose kernels train sparse with ITOP.

  Every kernel of a Dense, EinsumDense, Conv, DepthwiseConv2D,
  SeparableConv, Embedding or (tf_keras) recurrent layer, nested models
  included, gets a `PruneAndRegrow` wrapper, and so do the kernels of such
  layers inside other layers (MultiHeadAttention's projections, Transformer
  blocks, custom layers: one wrapper of the outer layer); biases and
  normalisation stay dense. Layer
  densities follow `distribution` so that the active weights are exactly
  `round((1 - sparsity) * N)` of the `N` weights in the wrapped kernels, and
  each layer's initial mask is random with an exact count. The original
  model is left unchanged; weights are copied (then masked). A layer type
  that cannot be wrapped is left dense, with a logged warning when it has
  weights.

  Args:
    model: a built Sequential or functional model, tf_keras or Keras 3
      (`import keras`; TensorFlow, JAX or PyTorch backend).
    sparsity: global fraction of zeros over all wrapped kernels, in [0, 1).
    schedule: a `RegrowthSchedule` (Delta T, total steps, prune fraction).
    distribution: "erk" (default), "er" or "uniform".
    grow: "random" (SET), "gradient" (RigL), "momentum" (SNFS) or an
      `itop_tf.growth.Growth` instance.
    dense_layers: names or patterns of layers or kernels to keep dense;
      they are not wrapped and not counted in the sparsity or R_s. A
      pattern is a glob string (e.g. "head*", "*/query/kernel") or a
      compiled `re.Pattern` matching a whole name; it matches layer names
      and kernel paths (layer, nested layers, variable:
      "encoder/self_attention/query/kernel").
    layer_densities: optional `{name or pattern: density}` over the same
      names; an exact name wins over a pattern, and the first matching
      pattern over later ones. The other kernels share the rest of the
      global budget.
    erk_power_scale: exponent on the ERK scores.
    seed: integer; masks and random growth are deterministic given it.
    select: which kernels to make sparse: None (every one that can be), a
      pattern or a list of them over layer names and kernel paths (e.g.
      `["conv*", "*/query/kernel", re.compile(r"block_\d+/.*")]`), or a
      callable taking a layer and returning a bool. What is left out stays
      dense and is not counted. A selected layer with a kernel that cannot
      be wrapped is an error, not left dense.

  Returns:
    A new model of the same Keras with `PruneAndRegrow` layers
    (`itop_tf.keras3.PruneAndRegrow` on Keras 3,
    `itop_tf.tf_keras.PruneAndRegrow` on tf_keras) and the `itop_rate`
    metric (`ExplorationRate`) in its `metrics`. A subclass of
    `keras.Model` built with the functional API (e.g. a KerasHub backbone)
    comes back as a plain functional model with its graph: the subclass'
    own methods are not carried over, as with `keras.models.clone_model`.

  Raises:
    ValueError: bad sparsity, distribution, grow method or schedule; a
      subclassed model; an unbuilt model; a model already sparsified; no
      layer to make sparse; names or patterns that match no layer; a layer
      named in `layer_densities` or chosen by `select` that cannot be
      wrapped.

  Example:

  >>> sparse = itop_tf.sparsify(model, sparsity=0.9, grow="gradient",
  ...     schedule=itop_tf.RegrowthSchedule(update_interval=100,
  ...                                       total_steps=10000))
  """
  frontend = frontends.frontend_of(model)
  grow = _validate(model, frontend, sparsity, distribution, grow, schedule)
  plan = _plan(model, frontend, sparsity, distribution, dense_layers,
               layer_densities, erk_power_scale, select)

  def make_layer(layer):
    new = _rebuilt(layer)
    if id(layer) not in plan:
      if new is None:
        return layer, lambda n: None
      return new, lambda n: n.set_weights(layer.get_weights())
    counts, index, kernels = plan[id(layer)]
    if new is None:
      new = layer   # wrapped in place: its kernels are masked where they are
    else:
      frontend.prepare(new, layer)
    extra = {} if kernels is None else {"kernels": kernels}
    wrapped = frontend.wrapper(
        new, schedule=schedule, counts=counts, grow=grow,
        seed=(int(seed) * 7919 + index) % (2**31 - 1), **extra)

    def copy(w):
      if w.layer is not layer:
        w.layer.set_weights(layer.get_weights())
      w.apply_masks()

    return wrapped, copy

  sparse = _clone(model, make_layer, frontend)
  frontend.attach_metric(sparse)
  return sparse


def _validate(model, frontend, sparsity, distribution, grow, schedule):
  """`sparsify`'s checks of its arguments; returns the growth rule."""
  _check_model(model, "itop_tf.sparsify", frontend)
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
  if frontend.is_sparsified(model):
    raise ValueError(
        "The model is already sparsified (it has pruning wrappers): pass the "
        "original model, or itop_tf.strip(model) first.")
  if not model.built:
    raise ValueError(
        "The model is not built: layer densities need the kernel shapes. Give "
        "it an input shape (keras.Input) or call model.build(input_shape).")
  return grow


def _matching(pattern, names):
  """The names `pattern` picks: itself if a name, else its matches.

  A string is a glob pattern (`fnmatch`), a compiled `re.Pattern` a regular
  expression that must match a whole name.
  """
  if isinstance(pattern, re.Pattern):
    return [n for n in names if pattern.fullmatch(n)]
  if pattern in names:
    return [pattern]
  return [n for n in names if fnmatch.fnmatchcase(n, pattern)]


def _patterns(value, what):
  """A pattern or a list of them as a list; ValueError for anything else."""
  patterns = [value] if isinstance(value, (str, re.Pattern)) else list(value)
  if not all(isinstance(p, (str, re.Pattern)) for p in patterns):
    raise ValueError(
        f"{what} must be a glob pattern, a compiled regular expression, a "
        f"list of them" + (" or a callable taking a layer" if what == "select"
                           else "") + f", got {value!r}.")
  return patterns


def _chosen(patterns, names, what, available):
  """Every name the patterns pick; ValueError for one that picks none."""
  unknown = [p if isinstance(p, str) else p.pattern for p in patterns
             if not _matching(p, names)]
  if unknown:
    raise ValueError(
        f"{what} {unknown} matches no layer or kernel; layers are "
        f"{sorted(available)} and kernels are named like "
        f"{sorted(names - set(available))[:4]} (layer/sublayer/variable).")
  return {n for p in patterns for n in _matching(p, names)}


def _selector(select, names, layer_names):
  """`sparsify`'s `select` as a function of (layer, kernel path)."""
  if select is None:
    return lambda layer, path: True
  if callable(select) and not isinstance(select, re.Pattern):
    return lambda layer, path: bool(select(layer))
  patterns = _patterns(select, "select")
  if not patterns:
    raise ValueError("select is an empty list: it would select nothing.")
  chosen = _chosen(patterns, names, "select", layer_names)
  return lambda layer, path: layer.name in chosen or path in chosen


def _plan(model, frontend, sparsity, distribution, dense_layers,
          layer_densities, erk_power_scale, select=None):
  """Which layers `sparsify` wraps, with which kernels and counts.

  Every pattern argument matches layer names and kernel paths
  (`frontend.kernel_paths`: "block/attention/query/kernel").

  Returns:
    `{id(layer): (active counts of its sparse kernels, its position among
    the wrapped layers, indices of those kernels among
    `frontend.prunable_kernels(layer)` or None for all of them)}`.
  """
  leaves = list(leaf_layers(model, frontend.keras))
  layer_names = {l.name for l in leaves}
  reasons = {id(l): frontend.unsupported_reason(l) for l in leaves}
  paths = {id(l): [] if reasons[id(l)] else frontend.kernel_paths(l)
           for l in leaves}
  names = layer_names | {p for ps in paths.values() for p in ps}
  dense = _chosen(_patterns(dense_layers or (), "dense_layers"), names,
                  "dense_layers", layer_names)
  # (pattern, density, the names it matches), matched once.
  densities = [(p, d, _chosen(_patterns(p, "layer_densities"), names,
                              "layer_densities", layer_names))
               for p, d in dict(layer_densities or {}).items()]
  named = set().union(*(m for _, _, m in densities))

  def density_of(layer, path):
    """The density `layer_densities` gives a kernel: an exact name first."""
    found = [(p, d) for p, d, m in densities if m & {layer.name, path}]
    exact = [d for p, d in found if p in (layer.name, path)]
    return (exact or [d for _, d in found] or [None])[0]
  selected = _selector(select, names, layer_names)
  kernels, targets, left_dense = [], [], []
  for l in leaves:
    reason = reasons[id(l)]
    has_kernel = any(len(w.shape) >= 2 for w in l.trainable_weights)
    if l.name in named and reason:
      raise ValueError(
          f"layer_densities names {l.name!r}, which cannot be made sparse: "
          f"{reason}. Leave it out of layer_densities, or wrap its sublayers "
          f"by hand (itop_tf.{frontend.name}.PruneAndRegrow).")
    if reason:
      if l.name not in dense and select is not None and selected(l, None):
        if has_kernel:
          raise ValueError(
              f"select chose {l.name!r}, which cannot be made sparse: "
              f"{reason}. Leave it out of select, or wrap its sublayers by "
              f"hand (itop_tf.{frontend.name}.PruneAndRegrow).")
      elif has_kernel and l.name not in dense and select is None:
        left_dense.append(f"{l.name} ({reason})")
      continue
    mine = [(i, owner, attr, path) for i, ((owner, attr), path) in
            enumerate(zip(frontend.prunable_kernels(l), paths[id(l)]))
            if l.name not in dense and path not in dense and
            selected(l, path)]
    if mine:
      targets.append((l, [i for i, _, _, _ in mine]
                      if len(mine) < len(paths[id(l)]) else None))
      kernels.extend((l, owner, attr, path) for _, owner, attr, path in mine)
  if left_dense:
    logging.warning(
        "itop_tf.sparsify left these layers dense: %s. Name them in "
        "dense_layers to keep them dense without this warning.",
        "; ".join(left_dense))
  if not kernels:
    raise ValueError(
        f"The model has no layer itop_tf can make sparse ({frontend.supported}).")
  shapes = [frontend.erk_shape(o, a) for _, o, a, _ in kernels]
  fixed = {i: density_of(l, path) for i, (l, _, _, path) in enumerate(kernels)}
  fixed = {i: d for i, d in fixed.items() if d is not None}
  _, counts = distributions.layer_counts(
      shapes, 1.0 - float(sparsity), distribution, erk_power_scale, fixed)
  per_layer = {}
  for (layer, _, _, _), count in zip(kernels, counts):
    per_layer.setdefault(id(layer), []).append(int(count))
  total = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
  covered = sum(int(np.prod(s)) for s in shapes)
  logging.info(
      "itop_tf.sparsify: %d kernels in %d layers, %d of the model's %d "
      "trainable parameters (%.1f%%), are made sparse.", len(kernels),
      len(targets), covered, total, 100.0 * covered / max(total, 1))
  return {id(l): (per_layer[id(l)], i, chosen)
          for i, (l, chosen) in enumerate(targets)}


def strip(model, dtype=None):
  """Returns a plain Keras copy of a sparsified model with exact zeros.

  Each `PruneAndRegrow` layer is replaced by its inner layer with inactive
  kernel entries set to 0: same predictions, same sparsity, no masks (and,
  on Keras 3, no captured gradients).

  Args:
    model: a Sequential or functional model from `sparsify` (tf_keras or
      Keras 3).
    dtype: None keeps each layer's dtype policy; a policy name (e.g.
      "float32") rebuilds every layer with it. `export_tflite` asks for
      float32: LiteRT has no float16 or bfloat16 compute for the ops that
      mixed precision leaves in the model.

  Returns:
    A new model of the same Keras without itop_tf layers.

  Raises:
    ValueError: a subclassed model, or wrappers inside custom layers (strip
      cannot replace those).
  """
  frontend = frontends.frontend_of(model)
  _check_model(model, "itop_tf.strip", frontend)
  frontend.sync(model)

  def make_layer(layer):
    if not isinstance(layer, frontend.wrapper):
      new = _rebuilt(layer, dtype)
      if new is None:
        return layer, lambda n: None
      return new, lambda n: n.set_weights(layer.get_weights())
    inner = layer.layer
    values = inner.get_weights()
    for sw in layer.sparse_weights:
      j = next(i for i, v in enumerate(inner.weights) if v is sw.weight)
      values[j] = np.where(frontend.to_numpy(sw.mask), values[j], 0).astype(
          values[j].dtype)
    new = _rebuilt(inner, dtype)
    if new is None:
      layer.apply_masks()   # the kernels already hold exact zeros
      return inner, lambda n: None
    frontend.prepare(new, inner)
    return new, lambda n: n.set_weights(values)

  plain = _clone(model, make_layer, frontend)
  left = frontend.find_wrappers(plain)
  if left:
    names = [w.name for w in left]
    raise ValueError(
        f"itop_tf.strip cannot reach the wrapped layers {names}: they sit "
        "inside custom layers, which strip rebuilds from their config without "
        "looking inside. Strip them in the custom layer's "
        "code (build it with the plain layer, and copy the wrapper's inner "
        "layer weights with the kernel times its mask), or wrap only "
        "top-level layers (itop_tf.sparsify does).")
  return plain
