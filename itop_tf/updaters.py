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

from absl import logging
import numpy as np
import tensorflow as tf

from itop_tf import metrics
from itop_tf import wrapper as wrapper_lib


_MAX = float(np.finfo(np.float32).max)
# The lowest score a non-NaN candidate gets: one step above NaN's (-_MAX).
_LOWEST = float(np.nextafter(np.float32(-_MAX), np.float32(0)))


def rank_select(scores, candidates, k):
  """Bool mask of the `k` best-scored `candidates` (ties: lower index first).

  Every candidate ranks above every non-candidate, whatever the scores hold:
  +-Inf scores are clipped to the largest finite float32 values and NaN
  scores rank below all of them, so exactly `min(k, number of candidates)`
  entries come back.
  Works under XLA with a dynamic `k`: it ranks with a stable full `top_k` and
  compares ranks with `k`, so no shape depends on `k`.

  Args:
    scores: 1-D float tensor.
    candidates: 1-D bool tensor of the same size: the entries that may be
      selected.
    k: scalar int32 tensor, 0 <= k.

  Returns:
    1-D bool tensor, True at exactly `min(k, sum(candidates))` candidates.

  Example:

  >>> rank_select(tf.constant([0.5, 2.0, float("nan"), 2.0]),
  ...             tf.constant([True, True, True, False]),
  ...             tf.constant(2)).numpy()
  array([ True,  True, False, False])
  """
  n = scores.shape[0]
  s = tf.cast(scores, tf.float32)
  s = tf.where(tf.math.is_nan(s), -_MAX, tf.clip_by_value(s, _LOWEST, _MAX))
  key = tf.where(candidates, s, tf.constant(-np.inf, tf.float32))
  order = tf.math.top_k(key, k=n, sorted=True).indices
  rank = tf.scatter_nd(order[:, None], tf.range(n, dtype=tf.int32), [n])
  return tf.logical_and(rank < k, candidates)


def prune_and_grow(mask, weight, k, grow_scores):
  """One update of one kernel: drop `k` smallest active, grow `k` inactive.

  Non-finite values never break the exact count: NaN or +-Inf weights that
  are active are the first pruned (they are no use to the network, and
  pruning them zeroes them), and NaN grow scores rank last.

  Args:
    mask: bool tensor, the active connections.
    weight: float tensor of the same shape.
    k: scalar int32, number of connections to replace (<= active count).
    grow_scores: float tensor of the mask's shape; the `k` inactive entries
      (after pruning; just-pruned ones are eligible) with the largest score
      are grown.

  Returns:
    (new_mask, kept, pruned): bool tensors of the mask's shape. `new_mask`
    has exactly as many active entries as `mask`; `kept` (within
    `mask & new_mask`) are the entries whose value and optimizer state
    survive: a connection pruned and regrown in the same update keeps its
    value unless it was NaN or Inf, newly grown ones start at 0; `pruned`
    are the `k` entries pruned, regrown or not.
  """
  shape = mask.shape
  m = tf.reshape(mask, [-1])
  w = tf.reshape(tf.cast(weight, tf.float32), [-1])
  finite = tf.math.is_finite(w)
  # Smallest magnitude first; a non-finite weight before any finite one.
  prune_key = tf.where(finite, -tf.abs(w), tf.constant(np.inf, tf.float32))
  prune = rank_select(prune_key, m, k)
  after_prune = tf.logical_and(m, tf.logical_not(prune))
  s = tf.reshape(grow_scores, [-1])
  grow = rank_select(s, tf.logical_not(after_prune), k)
  new_mask = tf.logical_or(after_prune, grow)
  # A weight pruned and regrown keeps its value, unless it was not finite.
  kept = tf.logical_and(new_mask, tf.logical_or(
      after_prune, tf.logical_and(prune, finite)))
  return (tf.reshape(new_mask, shape), tf.reshape(kept, shape),
          tf.reshape(prune, shape))


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


@tf.function(jit_compile=True)
def _compute_update(masks, weights, unions, scores, slots, ks):
  """New masks, weights, unions, slots and per-kernel statistics.

  Returns:
    (masks, weights, unions, slots, regrown, thresholds, non_finite): lists
    with one entry per kernel; `regrown` counts newly active entries,
    `thresholds` is the largest finite magnitude pruned, `non_finite` counts
    active non-finite weights before the update.
  """
  out = {k: [] for k in ("m", "w", "u", "s", "n", "t", "nf")}
  for m, w, u, s, sl, k in zip(masks, weights, unions, scores, slots, ks):
    new_m, kept, pruned = prune_and_grow(m, w, k, s)
    zero = tf.zeros_like(w)
    finite = tf.math.is_finite(w)
    out["m"].append(new_m)
    out["w"].append(tf.where(kept, w, zero))
    out["u"].append(tf.logical_or(u, new_m))
    out["s"].append([tf.where(kept, v, tf.zeros_like(v)) for v in sl])
    out["n"].append(tf.reduce_sum(tf.cast(
        tf.logical_and(new_m, tf.logical_not(m)), tf.int32)))
    out["t"].append(tf.reduce_max(tf.where(
        tf.logical_and(pruned, finite), tf.abs(tf.cast(w, tf.float32)),
        tf.zeros(w.shape, tf.float32))))
    out["nf"].append(tf.reduce_sum(tf.cast(
        tf.logical_and(m, tf.logical_not(finite)), tf.int32)))
  return (out["m"], out["w"], out["u"], out["s"], out["n"], out["t"],
          out["nf"])


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
    self.sparse_weights = wrapper_lib.sparse_weights(model)
    # Every built wrapper holds at least one kernel.
    self.wrappers = list(dict.fromkeys(sw.wrapper
                                       for sw in self.sparse_weights))
    self.schedule = self.wrappers[0].schedule
    for w in self.wrappers[1:]:
      if w.schedule != self.schedule:
        raise ValueError(
            f"Layers {self.wrappers[0].name!r} and {w.name!r} have different "
            "RegrowthSchedules; one model needs one schedule.")
    self._sparse = [sw for sw in self.sparse_weights if not sw.is_dense]
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
      for sw in self.sparse_weights:
        for slot in optimizer_slots(self.optimizer, sw.weight):
          v = tf.convert_to_tensor(slot)
          slot.assign(tf.where(sw.mask, v, tf.zeros_like(v)))
    if step is None:
      step = self.step if self.optimizer is not None else 0
    self.handled_step = int(step)

  def _arms_capture(self):
    return any(w.capture is not None for w in self.wrappers)

  def before_step(self, step=None, steps=1):
    """Call before a training call that runs `steps` steps from `step`.

    Arms the dense-gradient capture when one of those steps ends on an
    update step (only for growth rules that read the gradient of that step,
    i.e. grow="gradient").
    """
    if not self._arms_capture():
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

  def update_due(self, step):
    """The scheduled update step not yet run at optimizer step `step`.

    Args:
      step: the optimizer step just completed.

    Returns:
      The latest update step at or before `step` that has not run yet, or
      None. With `steps_per_execution > 1` an update can be due a few steps
      after its scheduled step; it runs keyed by the scheduled step.
    """
    due = self.schedule.latest_update_step(step)
    done = self.handled_step if self.handled_step is not None else step - 1
    return due if due is not None and due > done else None

  def after_step(self, step=None):
    """Call after a training step: updates masks if an update is due.

    Args:
      step: the optimizer step just completed (`optimizer.iterations`);
        read from the optimizer when None.

    Returns:
      The update's statistics (see `update`) or None if no update ran.
    """
    step = self.step if step is None else int(step)
    due = self.update_due(step)
    self.handled_step = max(self.handled_step
                            if self.handled_step is not None else step, step)
    if due is None:
      return None
    return self.update(due)

  def update(self, step):
    """Runs one prune-and-regrow update as scheduled at `step`.

    The prune fraction and the random-growth seed depend on `step` only, so a
    run restored from a checkpoint repeats the updates of one that never
    stopped. Active weights that are NaN or +-Inf are pruned first (with a
    warning), so every kernel keeps its exact count.

    Args:
      step: the scheduled update step.

    Returns:
      dict with "step", "prune_fraction", "regrown" ({kernel: count}),
      "non_finite" ({kernel: active non-finite weights before the update},
      only kernels that had some) and "exploration_rate".
    """
    frac = self.schedule.prune_fraction(step)
    stats = {"step": int(step), "prune_fraction": frac, "regrown": {},
             "non_finite": {}}
    if self._sparse:
      with self._strategy.scope():
        regrown, non_finite = self._apply(step, frac)
      for sw, n, bad in zip(self._sparse, regrown, non_finite):
        stats["regrown"][sw.name] = n
        if bad:
          stats["non_finite"][sw.name] = bad
    if stats["non_finite"]:
      logging.warning(
          "itop_tf update at step %d: active weights that are NaN or Inf "
          "were pruned first (%s). Training has diverged; "
          "keras.callbacks.TerminateOnNaN stops it.", step,
          ", ".join(f"{k}: {v}" for k, v in stats["non_finite"].items()))
    if self._arms_capture():
      self._set_capture(False)
    stats["exploration_rate"] = self.exploration_rate()
    self.last_stats = stats
    return stats

  def _apply(self, step, frac):
    masks, weights, unions, scores, slots, ks = [], [], [], [], [], []
    slot_vars = []
    for sw in self._sparse:
      masks.append(tf.convert_to_tensor(sw.mask))
      weights.append(tf.convert_to_tensor(sw.weight))
      unions.append(tf.convert_to_tensor(sw.ever_active))
      scores.append(sw.wrapper.growth.scores(sw, step))
      sv = optimizer_slots(self.optimizer, sw.weight)
      slot_vars.append(sv)
      slots.append([tf.convert_to_tensor(v) for v in sv])
      ks.append(tf.constant(min(math.ceil(frac * sw.count), sw.count),
                            tf.int32))
    new_m, new_w, new_u, new_s, counts, thresholds, non_finite = (
        self._compute(masks, weights, unions, scores, slots, ks))
    for sw, m, wt, u, s, sv, t in zip(self._sparse, new_m, new_w, new_u,
                                      new_s, slot_vars, thresholds):
      sw.mask.assign(m)
      sw.weight.assign(wt)
      sw.ever_active.assign(u)
      sw.threshold.assign(t)
      for var, val in zip(sv, s):
        var.assign(val)
    return [int(c) for c in counts], [int(c) for c in non_finite]

  def exploration_rate(self):
    """Global ITOP rate R_s: ever-active weights over all sparse weights."""
    return float(metrics.exploration_rate_of(self.sparse_weights))
