"""`ITOPCallback`: runs ITOP's mask updates inside `model.fit`.

Example:

>>> model.fit(ds, epochs=10, callbacks=[itop_tf.ITOPCallback(log_dir="logs")])
"""

import threading

from absl import logging
import keras

from itop_tf import metrics
from itop_tf import summaries
from itop_tf import updaters


class ITOPCallback(keras.callbacks.Callback):
  """Applies masks at train begin and prunes/regrows every Delta T steps.

  At train begin it zeroes inactive weights and their optimizer slots (the
  masks themselves are drawn by `sparsify` with exact ERK counts, and come
  back from a checkpoint on resume) and makes sure the model has the
  `itop_rate` metric (its front-end's `ExplorationRate`, the global R_s).
  After every step it checks the schedule against `optimizer.iterations`
  and runs the compiled update when one is due, then puts the new R_s into
  that step's logs, so the progress bar, `History` and Keras' `TensorBoard` show
  R_s as it is after the update.

  It is async-safe: on Keras 3's JAX and PyTorch backends, where every other
  batch-end callback is async-safe too (the progress bar and `History` are),
  Keras runs batch-end hooks in a thread of its own, so the host keeps
  queueing steps instead of waiting for each (on a GPU a callback that
  waits costs a large share of a small model's step; BENCHMARKS.md, "GPU").
  The update due after a step then runs at
  the start of the next batch, or at epoch end after the epoch's last step:
  the same training, step for step (tested), but that step's logs show R_s
  from before the update. A callback that is not async-safe makes Keras run
  every hook in step, and the update at the step's end: Keras'
  `ModelCheckpoint`, `BackupAndRestore`, `TensorBoard` and `TerminateOnNaN`
  are such. A checkpoint callback of your own that saves at epoch end with
  no batch-end hook should come after `ITOPCallback` in `callbacks`, so that
  its checkpoint holds an update due at the epoch's last step.

  Keras runs callbacks between training calls: with `steps_per_execution`
  > 1 an update scheduled inside a call runs at the call's end, keyed by its
  scheduled step. Unless every update step ends a call, train begin logs a
  warning with the most steps an update can wait
  (`RegrowthSchedule.update_lateness`).

  With grow="gradient" (RigL) only the step before an update writes the
  dense gradient RigL grows by: `MaskUpdater.before_step` arms each
  wrapper's `capture` variable for it. At the end of `fit` Keras 3 wrappers
  capture every step again, as they do without the callback.

  Under `log_dir` it writes TensorBoard scalars `itop/exploration_rate`
  (global and per layer), `itop/density/<layer>`, `itop/regrown/<layer>` and
  `itop/prune_fraction`.

  It replaces TF-MOT's `UpdatePruningStep`, which is not needed (and does no
  harm: it only re-applies the masks at epoch end).

  One class for both Kerases: a Keras 3 `Callback` that also answers
  tf_keras' `CallbackList`, which asks each callback which batch hooks it
  implements. It imports no TensorFlow unless `log_dir` is given.

  Args:
    log_dir: directory for TensorBoard summaries; None writes none.
    jit_compile: where the update runs: True, False or "auto" (default).
      True: in the backend, XLA on TensorFlow, `jax.jit` on JAX, eager
      torch ops on PyTorch; False: NumPy on the host. "auto" is True with a
      GPU or TPU (PyTorch: CUDA), False on a CPU.
    per_layer_logs: also put `itop_rate/<layer>`, `itop_density/<layer>` and
      `itop_regrown/<layer>` (regrown in the last update) in the epoch logs,
      and so in `History`. Off by default: it floods the progress bar of
      large models.
    rank_method: "auto" (default), "threshold" or "sort": how the
      update ranks each kernel's entries (`itop_tf.MaskUpdater`; the same
      masks).
    group_entries: the update runs over groups of kernels of at most this
      many entries, one compiled call each (`itop_tf.MaskUpdater`).

  Raises:
    ValueError: at train begin, if the model has no itop_tf layers; with a
      `log_dir`, if TensorFlow (which writes the summaries) is missing.

  Example:

  >>> model.fit(ds, epochs=5, callbacks=[itop_tf.ITOPCallback(log_dir="logs")])
  >>> model.history.history["itop_rate"]
  [0.14, 0.19, 0.23, 0.26, 0.28]
  """

  def __init__(self, log_dir=None, jit_compile="auto", per_layer_logs=False,
               rank_method="auto",
               group_entries=updaters.GROUP_ENTRIES):
    super().__init__()
    if jit_compile not in updaters.JIT_CHOICES:
      raise ValueError(f"jit_compile must be one of {updaters.JIT_CHOICES}, "
                       f"got {jit_compile!r}.")
    updaters.check_update_options(rank_method, group_entries)
    self.rank_method, self.group_entries = rank_method, int(group_entries)
    self.per_layer_logs = per_layer_logs
    self.log_dir = log_dir
    self.jit_compile = jit_compile
    self.updater = None
    self._writer = None
    self._supports_tf_logs = True
    # Keras 3 may run batch-end hooks in a thread of its own (async
    # dispatch, JAX and PyTorch), which keeps the accelerator fed; this
    # callback then updates at the next batch's start instead.
    self.async_safe = True
    self._rate = None
    self._fit_thread = None

  def on_train_begin(self, logs=None):
    self._fit_thread = threading.get_ident()  # Keras calls this one in step
    self.updater = updaters.MaskUpdater(
        self.model, self.model.optimizer, jit_compile=self.jit_compile,
        rank_method=self.rank_method, group_entries=self.group_entries)
    metrics.attach_exploration_metric(self.model)
    self._step = self.updater.step
    self.updater.initialize(self._step)
    spe = getattr(self.model, "_steps_per_execution", None)
    if spe is None:  # Keras 3 keeps a Python int
      spe = getattr(self.model, "steps_per_execution", 1)
    self._spe = int(spe.numpy()) if hasattr(spe, "numpy") else int(spe or 1)
    steps = (getattr(self, "params", None) or {}).get("steps")
    late = self.updater.schedule.update_lateness(self._spe, steps)
    if late:
      logging.warning(
          "ITOPCallback: with steps_per_execution=%d an update scheduled "
          "inside a training call runs at the call's end, up to %d steps "
          "late (keyed by its scheduled step; RigL grows by the call's last "
          "gradient). For updates on their steps, use a steps_per_execution "
          "that divides update_interval (%d), begin_step (%d) and the "
          "epoch's steps (%s).", self._spe, late,
          self.updater.schedule.update_interval,
          self.updater.schedule.begin_step, steps)
    if self.log_dir and self._writer is None:
      self._writer = summaries.SummaryWriter(self.log_dir)
    self._rate = self.updater.exploration_rate()
    self._write_state(self._step, None)

  def on_epoch_begin(self, epoch, logs=None):
    self._done_in_epoch = 0  # the epoch's batches counted into self._step

  def on_train_batch_begin(self, batch, logs=None):
    # Under Keras 3's async dispatch the last batch's end ran (or runs) in
    # Keras' thread: its update, if due, runs here, before this step.
    self._catch_up(batch)
    self.updater.before_step(self._step, self._spe)

  def on_train_batch_end(self, batch, logs=None):
    if threading.get_ident() != self._fit_thread:
      return  # Keras' thread (async dispatch): see on_train_batch_begin
    updated = self._catch_up(batch + 1)
    # The metric in the logs was read before this update; a train function
    # traced before the metric was attached has none.
    if logs is not None and (updated or metrics.METRIC_NAME not in logs):
      logs[metrics.METRIC_NAME] = self._rate

  def _catch_up(self, done_in_epoch):
    """Counts the epoch's first `done_in_epoch` steps; runs a due update.

    Returns:
      Whether an update ran.
    """
    self._step += done_in_epoch - self._done_in_epoch
    self._done_in_epoch = done_in_epoch
    if self.updater.update_due(self._step) is None:
      return False
    # Near an update: trust the optimizer (LossScaleOptimizer may skip).
    self._step = self.updater.step
    return self._after_step()

  def _after_step(self):
    stats = self.updater.after_step(self._step)
    if stats is None:
      return False
    self._rate = stats["exploration_rate"]
    self._write_state(stats["step"], stats)
    return True

  def on_epoch_end(self, epoch, logs=None):
    # Keras has run every batch-end hook by now; an update due at the last
    # step (deferred under async dispatch) runs before the epoch's logs.
    self._step = self.updater.step
    self._after_step()
    if logs is None:
      return
    logs[metrics.METRIC_NAME] = self._rate
    if self.per_layer_logs:
      last = self.updater.last_stats or {"regrown": {}}
      for r in metrics.sparsity_report(self.model):
        logs[f"itop_rate/{r['layer']}"] = r["exploration_rate"]
        logs[f"itop_density/{r['layer']}"] = r["density"]
        logs[f"itop_regrown/{r['layer']}"] = last["regrown"].get(r["layer"], 0)

  def on_train_end(self, logs=None):
    self.updater.release_capture()
    if self._writer is not None:
      self._writer.flush()

  def _write_state(self, step, stats):
    if self._writer is not None:
      self._writer.write(step, self._rate,
                         metrics.sparsity_report(self.model), stats)

  # tf_keras' CallbackList asks which batch hooks to call.
  def _implements_train_batch_hooks(self):
    return True

  def _implements_test_batch_hooks(self):
    return False

  def _implements_predict_batch_hooks(self):
    return False
