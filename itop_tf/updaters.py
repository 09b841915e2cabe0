"""The update engine: `MaskUpdater` runs ITOP's prune-and-regrow updates.

One engine for both front-ends (it imports neither; `frontends.frontend_of`
gives it the model's): it applies `core.update_kernels` to every sparse
kernel of a model, group by group, compiled where the backend compiles or
in NumPy on the host, masks the optimizer slots and keeps the ever-active
union. `ITOPCallback` drives it from `model.fit`; a custom training loop
drives it directly:

```python
updater = itop_tf.MaskUpdater(model, optimizer)
updater.initialize()
for x, y in dataset:
  updater.before_step()          # arms the dense-gradient capture (RigL)
  train_step(x, y)               # your tf.function, optimizer.apply_gradients
  updater.after_step()           # prune/grow when the schedule says so
```
"""

from absl import logging

from itop_tf import array_ops
from itop_tf import core
from itop_tf import frontends
from itop_tf import metrics


# Optimizers of Keras that move a weight whose gradient and state are 0
# (Muon orthogonalizes each kernel's whole momentum matrix).
NOT_ELEMENTWISE = ("Muon",)


def is_elementwise(optimizer):
  """Whether `optimizer` leaves a weight with zero gradient and state at 0.

  Between updates itop_tf masks the gradient of the inactive kernel entries,
  not the entries themselves (`PruneAndRegrow`): they stay exactly 0 only
  under such an optimizer. True for the optimizers of Keras and tf_keras
  (SGD, Adam, AdamW, RMSprop, Lion, Adafactor, ..., with weight decay, EMA
  and loss scaling), except `NOT_ELEMENTWISE`; False for any other class,
  which then gets the masked forward pass (`PruneAndRegrow.forward_mask`).

  Args:
    optimizer: a Keras or tf_keras optimizer, or None.

  Returns:
    bool.

  Example:

  >>> is_elementwise(keras.optimizers.SGD(0.1, momentum=0.9))
  True
  """
  if optimizer is None:
    return True
  cls = type(frontends.unwrap_optimizer(optimizer))
  if cls.__name__ in NOT_ELEMENTWISE:
    return False
  return (cls.__module__ or "").split(".")[0] in ("keras", "tf_keras")


# Entries of the kernels one compiled update call handles at most: 4M
# entries (16 MiB of float32). Larger models are updated group by group.
GROUP_ENTRIES = 1 << 22

# The compiled updates of the process, one per (front-end, jit, rank method,
# shapes and dtypes of a group), shared by every MaskUpdater: a new `fit`
# (a new ITOPCallback) must not compile again.
_COMPILED = {}


def update_ops(frontend, jit_compile):
  """The namespace an update runs in: the backend's (`frontend.ops`) where
  it is compiled (`jit_compile` resolved), else NumPy on the host."""
  return frontend.ops if jit_compile else array_ops.NUMPY


def compiled_update(frontend, jit_compile, rank, signature):
  """`core.update_kernels` compiled by `frontend` for one group's shapes."""
  key = (type(frontend).__name__, bool(jit_compile), rank, signature)
  fn = _COMPILED.get(key)
  if fn is None:
    ops = update_ops(frontend, jit_compile)

    def update(masks, weights, unions, scores, slots, ks, drops):
      (new_m, new_w, new_u, new_s, regrown, thresholds, non_finite,
       drifted) = core.update_kernels(masks, weights, unions, scores, slots,
                                      ks, ops, rank, drops)
      # The counts as one vector: one read to the host, not three per kernel
      # (on a GPU each small read costs a round trip).
      counts = ops.stack(regrown + non_finite + drifted)
      return new_m, new_w, new_u, new_s, thresholds, counts

    # Not compiled: NumPy on the host.
    fn = _COMPILED[key] = (array_ops.on_host(update) if ops is array_ops.NUMPY
                           else frontend.compile(update, bool(jit_compile)))
  return fn


def _leaves(x):
  """The tensors of nested lists/tuples `x` (no TensorFlow: any backend)."""
  if isinstance(x, (list, tuple)):
    for y in x:
      yield from _leaves(y)
  else:
    yield x


def _signature(*tensor_lists):
  return tuple(None if x is None else (tuple(x.shape), str(x.dtype))
               for x in _leaves(tensor_lists))


JIT_CHOICES = (True, False, "auto")


def resolve_jit_compile(jit_compile, backend="tensorflow"):
  """Whether the update runs in the backend, for a `jit_compile` setting.

  True: in the backend's ops on the model's device, compiled where the
  backend compiles (XLA on TensorFlow, `jax.jit` on JAX; PyTorch is never
  compiled, `torch.compile` took minutes for small models, so its update
  runs in eager torch ops). False: in NumPy on the host (`array_ops.NUMPY`).

  The rule of "auto", from measurements (BENCHMARKS.md, "One mask update
  against model size" and "GPU"): True with a GPU or TPU (PyTorch: CUDA),
  where the compiled update measured several times faster than NumPy (XLA on a TensorFlow GPU is
  assumed, not yet measured); False on a CPU, where NumPy, which ranks each
  kernel's candidates alone, measured faster than XLA and eager torch ops at
  every size, has nothing to compile, and peaks lower.

  Args:
    jit_compile: True, False or "auto".
    backend: "tensorflow", "jax" or "torch".

  Returns:
    bool.

  Raises:
    ValueError: another value.

  Example:

  >>> resolve_jit_compile("auto", "tensorflow")   # on a CPU
  False
  """
  if isinstance(jit_compile, bool):
    return jit_compile
  if jit_compile != "auto":
    raise ValueError(f"jit_compile must be one of {JIT_CHOICES}, got "
                     f"{jit_compile!r}.")
  if backend == "jax":
    import jax  # pylint: disable=g-import-not-at-top
    return jax.default_backend() != "cpu"
  if backend == "torch":
    import torch  # pylint: disable=g-import-not-at-top
    return torch.cuda.is_available()
  if backend != "tensorflow":
    return False
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  return bool(tf.config.list_logical_devices("GPU") or
              tf.config.list_logical_devices("TPU"))


RANK_CHOICES = core.RANK_METHODS + ("auto",)


def resolve_rank_method(rank_method):
  """The `core.rank_select` method an update uses, for a `rank_method`.

  "auto" is "threshold" (the radix search; in NumPy one partition), faster
  than "sort" everywhere it was measured (BENCHMARKS.md).

  Args:
    rank_method: one of `RANK_CHOICES`.

  Returns:
    One of `core.RANK_METHODS`.

  Example:

  >>> resolve_rank_method("auto")
  'threshold'
  """
  return "threshold" if rank_method == "auto" else rank_method


def check_update_options(rank_method, group_entries):
  """Raises ValueError for a `rank_method` or `group_entries` out of range."""
  if rank_method not in RANK_CHOICES:
    raise ValueError(f"rank_method must be one of {RANK_CHOICES}, "
                     f"got {rank_method!r}.")
  if not isinstance(group_entries, int) or group_entries < 1:
    raise ValueError(f"group_entries must be an int >= 1, got "
                     f"{group_entries!r}.")


class GradientCapture:
  """RigL's capture switch: the `capture` variable of each wrapper.

  A wrapper whose growth rule grows by the gradient of the step before an
  update (grow="gradient") has a bool `capture` variable that its compiled
  train step reads: where it is False the step keeps the stored gradient.
  Keras 3 wrappers capture every step until the switch follows the schedule
  (a bare `fit` captures); tf_keras ones only when it is set. A fit whose
  `ITOPCallback` did not see its end (an exception) may have left a Keras 3
  capture off, so a new switch sets it again.

  Attributes:
    variables: the `capture` variables (empty without such a rule).
    by_schedule: whether the capture follows the schedule (on only for
      training calls that end on an update step) rather than being on.
  """

  def __init__(self, frontend, model, wrappers):
    self._frontend, self._model = frontend, model
    self.variables = [w.capture for w in wrappers
                      if getattr(w, "capture", None) is not None]
    self._value = None
    self.by_schedule = not frontend.captures_by_default
    if not self.by_schedule:
      self._set(True)

  def follow_schedule(self, due):
    """Captures in the next training call only if it ends on an update."""
    self.by_schedule = True
    self._set(due)

  def after_update(self):
    """The update has read the gradient: off until the next one is due."""
    if self.by_schedule:
      self._set(False)

  def release(self):
    """Back to the front-end's default: Keras 3 captures every step."""
    if self._frontend.captures_by_default:
      self.by_schedule = False
      self._set(True)

  def _set(self, value):
    if not self.variables or value == self._value:
      return  # no per-step variable writes while nothing changes
    self._value = value
    self._frontend.sync(self._model)  # JAX: the next step re-reads them
    with self._frontend.scope(self._model):
      for v in self.variables:
        v.assign(value)


class MaskUpdater:
  """Runs ITOP's prune-and-regrow updates for every wrapper of a model.

  One engine for both front-ends: on a tf_keras model it drives
  `itop_tf.tf_keras.PruneAndRegrow` layers, on a Keras 3 model (TensorFlow,
  JAX or PyTorch backend) `itop_tf.keras3.PruneAndRegrow` layers. The update itself
  is `core.update_kernels`, compiled once per model: XLA through
  `tf.function` on TensorFlow, `jax.jit` on JAX, eager torch ops on PyTorch;
  or, not compiled (on a CPU), run in NumPy on the host.

  Args:
    model: a model containing itop_tf wrappers (from `itop_tf.sparsify`, or
      placed by hand in a subclassed model).
    optimizer: the optimizer that trains the model (its slots are masked);
      defaults to `model.optimizer`.
    jit_compile: True, False or "auto" (default). True runs the update in
      the backend, compiled: XLA on TensorFlow, `jax.jit` on JAX (PyTorch:
      eager torch ops, never compiled); False in NumPy on the host. "auto"
      is True with a GPU or TPU (PyTorch: CUDA), False on a CPU, where
      NumPy measured faster (see `resolve_jit_compile`).
    rank_method: how each kernel finds its `k` entries to prune and grow
      (`core.rank_select`; every method gives the same masks): "auto"
      (default) or "threshold" (a radix search on the float bits; in NumPy
      one partition), or "sort" (the full sort, the reference).
    group_entries: the update runs over groups of kernels of at most this
      many entries (a larger kernel alone), one compiled call per group, so
      its transient memory is bounded by the group, not the model.

  Raises:
    ValueError: the model has no wrappers, its wrappers disagree on the
      schedule, or (Keras 3) an EMA optimizer Keras cannot run with the
      dense-gradient capture (`Keras3Frontend.check_optimizer`).

  Example:

  >>> updater = MaskUpdater(model)          # after model.compile(...)
  >>> updater.initialize()
  >>> stats = updater.update(step=100)      # force one update now
  """

  def __init__(self, model, optimizer=None, jit_compile="auto",
               rank_method="auto", group_entries=GROUP_ENTRIES):
    check_update_options(rank_method, group_entries)
    self.model = model
    self.optimizer = optimizer if optimizer is not None else getattr(
        model, "optimizer", None)
    self.frontend = frontends.frontend_of(model)
    self.sparse_weights = self.frontend.sparse_weights(model)
    self.jit_compile = resolve_jit_compile(jit_compile,
                                           self.frontend.ops.name)
    self.rank_method = resolve_rank_method(rank_method)
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
    self._groups = core.size_groups([sw.size for sw in self._sparse],
                                    group_entries)
    self.frontend.check_optimizer(self.optimizer, self.wrappers)
    self.handled_step = None
    self.last_stats = None
    self.capture = GradientCapture(self.frontend, model, self.wrappers)
    self._set_forward_mask(not is_elementwise(self.optimizer))

  def _set_forward_mask(self, value):
    """Sets every wrapper's `forward_mask`; retraces a traced train step."""
    changed = False
    for w in self.wrappers:
      if getattr(w, "forward_mask", value) != value:
        w.forward_mask = value
        changed = True
    if changed and getattr(self.model, "train_function", None) is not None:
      self.frontend.retrace(self.model)

  @property
  def step(self):
    """The optimizer's step (`optimizer.iterations`) as a Python int."""
    if self.optimizer is None:
      raise ValueError("MaskUpdater needs the optimizer to know the step.")
    self.frontend.sync(self.model)
    return int(self.optimizer.iterations.numpy())

  def initialize(self, step=None):
    """Zeroes inactive kernel entries and their optimizer slots.

    Idempotent: call it before training and after restoring a checkpoint.
    Updates scheduled at or before `step` (default: the optimizer's step)
    count as done; they are already in the masks.

    Args:
      step: the optimizer step training starts (or resumes) from.
    """
    frontend, ops = self.frontend, self.frontend.ops
    frontend.sync(self.model)
    with frontend.scope(self.model):
      for w in self.wrappers:
        w.apply_masks()
      for sw in self.sparse_weights:
        mask = frontend.read(sw.mask)
        for slot in frontend.slots(self.optimizer, sw.weight):
          v = frontend.read(slot)
          frontend.assign(slot, ops.where(mask, v, ops.zeros_like(v)))
    if step is None:
      step = self.step if self.optimizer is not None else 0
    self.handled_step = int(step)
    frontend.set_rate(self.model, self.exploration_rate())

  def before_step(self, step=None, steps=1):
    """Call before a training call that runs `steps` steps from `step`.

    Arms the dense-gradient capture when one of those steps ends on an
    update step, and disarms it otherwise, for a growth rule that reads the
    gradient of that step (grow="gradient"): each wrapper's `capture`
    variable, which the compiled step reads. On Keras 3 the capture is on
    until the first `before_step` (a bare `fit` or a loop that never calls
    it captures every step), and `release_capture` turns it on again.
    """
    if not self.capture.variables:
      return
    step = self.step if step is None else int(step)
    self.capture.follow_schedule(self.capture_due(step, steps))

  def release_capture(self):
    """After a loop that called `before_step`: gives the capture back.

    Keras 3 RigL captures every step again (what `ITOPCallback` does at the
    end of `fit`, so a later bare `fit` or custom loop captures); tf_keras
    keeps it off until the next `before_step`.
    """
    self.capture.release()

  def capture_due(self, step, steps=1):
    """Whether steps `step + 1 .. step + steps` include an update step.

    The gradient RigL grows by is the one of the last step before an
    update, so only a training call that runs such a step must capture it.
    """
    nxt = self.schedule.next_update_step(int(step))
    return nxt is not None and nxt <= int(step) + steps

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
    warning), so every kernel keeps its exact count. With a prune fraction
    of 0 (static sparse training) there is nothing to replace, and nothing
    runs.

    Args:
      step: the scheduled update step.

    Returns:
      dict with "step", "prune_fraction", "regrown" ({kernel: count}),
      "non_finite" ({kernel: active non-finite weights before the update},
      only kernels that had some), "drifted" ({kernel: inactive entries that
      were not 0}, only kernels that had some; the update zeroes them, and
      warns unless the wrapper has `forward_mask`, where the optimizer is
      known to move them) and "exploration_rate".
    """
    frac = self.schedule.prune_fraction(step)
    stats = {"step": int(step), "prune_fraction": frac, "regrown": {},
             "non_finite": {}, "drifted": {}}
    unexpected = {}  # drift where only gradients are masked
    if self._sparse and frac > 0:
      self.frontend.sync(self.model)
      with self.frontend.scope(self.model):
        regrown, non_finite, drifted = self._apply(step, frac)
      for sw, n, bad, moved in zip(self._sparse, regrown, non_finite,
                                   drifted):
        stats["regrown"][sw.name] = n
        if bad:
          stats["non_finite"][sw.name] = bad
        if moved:
          stats["drifted"][sw.name] = moved
          if not getattr(sw.wrapper, "forward_mask", False):
            unexpected[sw.name] = moved
    if stats["non_finite"]:
      logging.warning(
          "itop_tf update at step %d: active weights that are NaN or Inf "
          "were pruned first (%s). Training has diverged; "
          "keras.callbacks.TerminateOnNaN stops it.", step,
          ", ".join(f"{k}: {v}" for k, v in stats["non_finite"].items()))
    if unexpected:  # expected under a non-elementwise optimizer (Muon)
      logging.warning(
          "itop_tf update at step %d: inactive kernel entries were not 0 "
          "(%s); the update zeroed them. Training masks their gradients, so "
          "they move only if the optimizer is not elementwise (see "
          "itop_tf.updaters.is_elementwise), a regularizer or constraint "
          "moves a zero weight, or something wrote to the kernels: call "
          "MaskUpdater.initialize() after writing to them.", step,
          ", ".join(f"{k}: {v}" for k, v in unexpected.items()))
    self.capture.after_update()
    stats["exploration_rate"] = self.exploration_rate()
    self.frontend.set_rate(self.model, stats["exploration_rate"])
    self.last_stats = stats
    return stats

  def _apply(self, step, frac):
    """Updates every sparse kernel, one group (one compiled call) at a time.

    Returns:
      (regrown, non_finite, drifted): per-kernel counts, in `self._sparse`
      order.
    """
    regrown, non_finite, drifted = [], [], []
    for group in self._groups:
      counts, bad, moved = self._apply_group(
          [self._sparse[i] for i in group], step, frac)
      regrown += counts
      non_finite += bad
      drifted += moved
    return regrown, non_finite, drifted

  def _apply_group(self, group, step, frac):
    frontend = self.frontend
    masks, weights, unions, scores, slots, ks, drops = ([] for _ in range(7))
    slot_vars = []
    for sw in group:
      masks.append(frontend.read(sw.mask))
      weights.append(frontend.read(sw.weight))
      unions.append(frontend.read(sw.ever_active))
      scores.append(sw.wrapper.growth.scores(sw, step, frontend.ops))
      drops.append(sw.wrapper.growth.drop_scores(sw, step, frontend.ops))
      sv = frontend.slots(self.optimizer, sw.weight)
      slot_vars.append(sv)
      slots.append([frontend.read(v) for v in sv])
      ks.append(frontend.int32(core.prune_count(frac, sw.count)))
    compute = compiled_update(
        frontend, self.jit_compile, self.rank_method,
        _signature(masks, weights, unions, scores, slots, drops))
    new_m, new_w, new_u, new_s, thresholds, counts = compute(
        masks, weights, unions, scores, slots, ks, drops)
    for sw, m, wt, u, s, sv, t in zip(group, new_m, new_w, new_u, new_s,
                                      slot_vars, thresholds):
      frontend.assign(sw.mask, m)
      frontend.assign(sw.weight, wt)
      frontend.assign(sw.ever_active, u)
      frontend.assign(sw.threshold, t)
      for var, val in zip(sv, s):
        frontend.assign(var, val)
    counts = array_ops.to_numpy(counts).tolist()
    n = len(group)
    return counts[:n], counts[n:2 * n], counts[2 * n:]

  def exploration_rate(self):
    """Global ITOP rate R_s: ever-active weights over all sparse weights."""
    return metrics.exploration_rate_of(self.sparse_weights, self.frontend)
