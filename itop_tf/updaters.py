"""Prune-and-regrow updates: the tensor math and the `MaskUpdater` engine.

`prune_and_grow` is a pure function on tensors: given a kernel's mask, the
number `k` of connections to replace and the scores that rank candidates,
it returns the new mask with exactly as many active entries as before.
`MaskUpdater` applies it to every `PruneAndRegrow` wrapper of a model in one
XLA-compiled function, masks the kernels and optimizer slots, and keeps the
ever-active union. `ITOPCallback` drives it from `model.fit`; a custom
training loop drives it directly:

```python
updater = itop_tf.MaskUpdater(model, optimizer)
updater.initialize()
for x, y in dataset:
  updater.before_step()          # arms the dense-gradient capture (RigL)
  train_step(x, y)               # your tf.function, optimizer.apply_gradients
  updater.after_step()           # prune/grow when the schedule says so
```
"""

import math

import numpy as np
import tensorflow as tf
import tf_keras as keras

from itop_tf import wrapper as wrapper_lib


def rank_select(scores, k):
  """Bool mask of the `k` largest `scores` (ties: lower index first).

  Works under XLA with a dynamic `k`: it ranks with a stable full `top_k`
  and compares ranks with `k`, so no shape depends on `k`.

  Args:
    scores: 1-D float tensor.
    k: scalar int32 tensor, 0 <= k <= size.

  Returns:
    1-D bool tensor, True at exactly `k` positions.
  """
  n = scores.shape[0]
  order = tf.math.top_k(scores, k=n, sorted=True).indices
  rank = tf.scatter_nd(order[:, None], tf.range(n, dtype=tf.int32), [n])
  return rank < k


def prune_and_grow(mask, weight, k, grow_scores):
  """One update of one kernel: drop `k` smallest active, grow `k` inactive.

  Args:
    mask: bool tensor, the active connections.
    weight: float tensor of the same shape.
    k: scalar int32, number of connections to replace (<= active count).
    grow_scores: float tensor of the mask's shape; the `k` inactive entries
      (after pruning; just-pruned ones are eligible) with the largest score
      are grown.

  Returns:
    (new_mask, kept): bool tensors; `kept = mask & new_mask` are the entries
    whose value and optimizer state survive (a connection pruned and regrown
    in the same update keeps its value; newly grown ones start at 0).
  """
  shape = mask.shape
  m = tf.reshape(mask, [-1])
  w = tf.reshape(tf.abs(tf.cast(weight, tf.float32)), [-1])
  neg_inf = tf.constant(-np.inf, tf.float32)
  prune = rank_select(tf.where(m, -w, neg_inf), k)
  after_prune = tf.logical_and(m, tf.logical_not(prune))
  s = tf.reshape(tf.cast(grow_scores, tf.float32), [-1])
  s = tf.where(tf.math.is_nan(s), tf.zeros_like(s), s)
  grow = rank_select(tf.where(after_prune, neg_inf, s), k)
  new_mask = tf.reshape(tf.logical_or(after_prune, grow), shape)
  return new_mask, tf.logical_and(mask, new_mask)


def _unwrap(optimizer):
  while hasattr(optimizer, "inner_optimizer"):
    optimizer = optimizer.inner_optimizer
  return optimizer


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
  opt = _unwrap(optimizer)
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
  key = opt._var_key(variable)
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


def find_wrappers(model):
  """All `PruneAndRegrow` layers in `model`, at any depth, in a fixed order.

  Wrappers inside nested models and inside custom layers are found too.
  """
  found, seen = [], set()
  for m in [model] + list(model._flatten_modules(include_self=False)):
    if isinstance(m, wrapper_lib.PruneAndRegrow) and id(m) not in seen:
      seen.add(id(m))
      found.append(m)
  return found


@tf.function(jit_compile=True)
def _compute_update(masks, weights, unions, scores, slots, ks):
  """New (masks, weights, unions, slots, regrown counts) for all kernels."""
  out_m, out_w, out_u, out_s, out_n = [], [], [], [], []
  for m, w, u, s, sl, k in zip(masks, weights, unions, scores, slots, ks):
    new_m, kept = prune_and_grow(m, w, k, s)
    out_m.append(new_m)
    out_w.append(tf.where(kept, w, tf.zeros_like(w)))
    out_u.append(tf.logical_or(u, new_m))
    out_s.append([tf.where(kept, v, tf.zeros_like(v)) for v in sl])
    out_n.append(tf.reduce_sum(tf.cast(
        tf.logical_and(new_m, tf.logical_not(m)), tf.int32)))
  return out_m, out_w, out_u, out_s, out_n


class MaskUpdater:
  """Runs ITOP's prune-and-regrow updates for every wrapper of a model.

  Args:
    model: a tf_keras model containing `PruneAndRegrow` layers (from
      `itop_tf.sparsify`, or placed by hand in a subclassed model).
    optimizer: the optimizer that trains the model (its slots are masked);
      defaults to `model.optimizer`.
    jit_compile: compile the update with XLA (default True).

  Raises:
    ValueError: the model has no wrappers, its wrappers disagree on the
      schedule.

  Example:

  >>> updater = MaskUpdater(model)          # after model.compile(...)
  >>> updater.initialize()
  >>> stats = updater.update(step=100)      # force one update now
  """

  def __init__(self, model, optimizer=None, jit_compile=True):
    self.model = model
    self.optimizer = optimizer if optimizer is not None else getattr(
        model, "optimizer", None)
    self.wrappers = find_wrappers(model)
    if not self.wrappers:
      raise ValueError(
          "The model has no itop_tf layers: build it with itop_tf.sparsify("
          "model, ...) or wrap layers in itop_tf.PruneAndRegrow.")
    for w in self.wrappers:
      if not w.built:
        raise ValueError(
            f"Layer {w.name!r} is not built: call the model once (or "
            "model.build(input_shape)) before training.")
    self.schedule = self.wrappers[0].pruning_schedule
    for w in self.wrappers[1:]:
      if w.pruning_schedule != self.schedule:
        raise ValueError(
            f"Layers {self.wrappers[0].name!r} and {w.name!r} have different "
            "RegrowthSchedules; one model needs one schedule.")
    self.entries = [(w, i, sw) for w in self.wrappers
                    for i, sw in enumerate(w.sparse_weights)]
    self._sparse = [(w, i, sw) for w, i, sw in self.entries if not sw.is_dense]
    self._strategy = getattr(model, "distribute_strategy", None) or (
        tf.distribute.get_strategy())
    self._compute = _compute_update if jit_compile else (
        tf.function(_compute_update.python_function))
    self.handled_step = None
    self.last_stats = None
    self._armed = None

  @property
  def step(self):
    """The optimizer's step (`optimizer.iterations`) as a Python int."""
    if self.optimizer is None:
      raise ValueError("MaskUpdater needs the optimizer to know the step.")
    return int(self.optimizer.iterations.numpy())

  def initialize(self, step=None):
    """Zeroes inactive kernel entries and their optimizer slots.

    Idempotent: call it before training and after restoring a checkpoint.
    Updates scheduled at or before `step` (default: the optimizer's step)
    count as done; they are already in the masks.

    Args:
      step: the optimizer step training starts (or resumes) from.
    """
    with self._strategy.scope():
      for w in self.wrappers:
        w.apply_masks()
      for _, _, sw in self.entries:
        for slot in optimizer_slots(self.optimizer, sw.weight):
          v = tf.convert_to_tensor(slot)
          slot.assign(tf.where(sw.mask, v, tf.zeros_like(v)))
    if step is None:
      step = self.step if self.optimizer is not None else 0
    self.handled_step = int(step)

  def _needs_gradient(self):
    return any(w.grow == "gradient" for w in self.wrappers)

  def before_step(self, step=None, steps=1):
    """Call before a training call that runs `steps` steps from `step`.

    Arms the dense-gradient capture when one of those steps ends on an
    update step (only for grow="gradient").
    """
    if not self._needs_gradient():
      return
    step = self.step if step is None else int(step)
    nxt = self.schedule.next_update_step(step)
    arm = nxt is not None and nxt <= step + steps
    self._set_capture(arm)

  def _set_capture(self, value):
    if value == self._armed:
      return  # no per-step variable writes while nothing changes
    self._armed = value
    with self._strategy.scope():
      for w in self.wrappers:
        if w.capture is not None:
          w.capture.assign(value)

  def after_step(self, step=None):
    """Call after a training step: updates masks if an update is due.

    Args:
      step: the optimizer step just completed (`optimizer.iterations`);
        read from the optimizer when None.

    Returns:
      The update's statistics (see `update`) or None if no update ran.
    """
    step = self.step if step is None else int(step)
    if self.handled_step is None:
      self.handled_step = step - 1
    due = self.schedule.latest_update_step(step)
    done = self.handled_step
    self.handled_step = max(self.handled_step, step)
    if due is None or due <= done:
      return None
    return self.update(due)

  def update(self, step):
    """Runs one prune-and-regrow update as scheduled at `step`.

    The prune fraction and the random-growth seed depend on `step` only, so a
    run restored from a checkpoint repeats the updates of one that never
    stopped.

    Args:
      step: the scheduled update step.

    Returns:
      dict with "step", "prune_fraction", "regrown" ({kernel: count}) and
      "exploration_rate".
    """
    frac = self.schedule.prune_fraction(step)
    stats = {"step": int(step), "prune_fraction": frac, "regrown": {}}
    if self._sparse:
      with self._strategy.scope():
        regrown = self._apply(step, frac)
      for (w, i, sw), n in zip(self._sparse, regrown):
        stats["regrown"][kernel_name(w, i)] = int(n)
    if self._needs_gradient():
      self._set_capture(False)
    stats["exploration_rate"] = self.exploration_rate()
    self.last_stats = stats
    return stats

  def _grow_scores(self, w, i, sw, step):
    if w.grow in ("gradient", "momentum"):
      return tf.abs(tf.convert_to_tensor(sw.dense_grad))
    seed = tf.stack([tf.convert_to_tensor(w.rng_seed) * 16 + i,
                     tf.constant(int(step), tf.int64)])
    return tf.random.stateless_uniform(sw.weight.shape, seed=seed)

  def _apply(self, step, frac):
    masks, weights, unions, scores, slots, ks = [], [], [], [], [], []
    slot_vars = []
    for w, i, sw in self._sparse:
      masks.append(tf.convert_to_tensor(sw.mask))
      weights.append(tf.convert_to_tensor(sw.weight))
      unions.append(tf.convert_to_tensor(sw.ever_active))
      scores.append(self._grow_scores(w, i, sw, step))
      sv = optimizer_slots(self.optimizer, sw.weight)
      slot_vars.append(sv)
      slots.append([tf.convert_to_tensor(v) for v in sv])
      ks.append(tf.constant(min(math.ceil(frac * sw.count), sw.count),
                            tf.int32))
    new_m, new_w, new_u, new_s, counts = self._compute(
        masks, weights, unions, scores, slots, ks)
    for (w, i, sw), m, wt, u, s, sv in zip(self._sparse, new_m, new_w, new_u,
                                           new_s, slot_vars):
      sw.mask.assign(m)
      sw.weight.assign(wt)
      sw.ever_active.assign(u)
      for var, val in zip(sv, s):
        var.assign(val)
    return [int(c) for c in counts]

  def exploration_rate(self):
    """Global ITOP rate R_s: ever-active weights over all sparse weights."""
    return exploration_rate_of(self.entries)


def kernel_name(wrapper, index):
  """Display name of a wrapper's `index`-th sparse kernel."""
  base = wrapper.layer.name
  return base if index == 0 else f"{base}/{index}"


def exploration_rate_of(entries):
  ever = sum(int(tf.reduce_sum(tf.cast(sw.ever_active, tf.int64)))
             for _, _, sw in entries)
  total = sum(sw.size for _, _, sw in entries)
  return ever / float(total) if total else 1.0
