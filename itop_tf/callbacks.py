"""`ITOPCallback`: runs ITOP's mask updates inside `model.fit`.

Example:

>>> model.fit(ds, epochs=10, callbacks=[itop_tf.ITOPCallback(log_dir="logs")])
"""

import tensorflow as tf
import tf_keras as keras

from itop_tf import metrics
from itop_tf import updaters


class ITOPCallback(keras.callbacks.Callback):
  """Applies masks at train begin and prunes/regrows every Delta T steps.

  At train begin it zeroes inactive weights and their optimizer slots (the
  masks themselves are drawn by `sparsify` with exact ERK counts, and come
  back from a checkpoint on resume) and makes sure the model has the
  `itop_rate` metric (`itop_tf.ExplorationRate`, the global R_s). After every
  step it checks the schedule against `optimizer.iterations` and runs the
  compiled update when one is due, then puts the new R_s into that
  step's logs, so the progress bar, `History` and Keras' `TensorBoard` show
  R_s as it is after the update. Under `log_dir` it writes TensorBoard
  scalars `itop/exploration_rate` (global and per layer),
  `itop/density/<layer>`, `itop/regrown/<layer>` and `itop/prune_fraction`.

  It replaces TF-MOT's `UpdatePruningStep`, which is not needed (and does no
  harm: it only re-applies the masks at epoch end).

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
    ValueError: at train begin, if the model has no itop_tf layers.

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
    self._rate = None

  def on_train_begin(self, logs=None):
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
    if self.log_dir and self._writer is None:
      self._writer = tf.summary.create_file_writer(self.log_dir)
    self._rate = self.updater.exploration_rate()
    self._write_state(self._step, None)

  def on_epoch_begin(self, epoch, logs=None):
    self._last_batch = -1

  def on_train_batch_begin(self, batch, logs=None):
    self.updater.before_step(self._step, self._spe)

  def on_train_batch_end(self, batch, logs=None):
    self._step += batch - self._last_batch
    self._last_batch = batch
    updated = False
    if self.updater.update_due(self._step) is not None:
      # Near an update: trust the optimizer (LossScaleOptimizer may skip).
      self._step = self.updater.step
      stats = self.updater.after_step(self._step)
      if stats is not None:
        updated = True
        self._rate = stats["exploration_rate"]
        self._write_state(stats["step"], stats)
    # The metric in the logs was read before this update; a train function
    # traced before the metric was attached has none.
    if logs is not None and (updated or metrics.METRIC_NAME not in logs):
      logs[metrics.METRIC_NAME] = self._rate

  def on_epoch_end(self, epoch, logs=None):
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
    if self._writer is not None:
      self._writer.flush()

  def _write_state(self, step, stats):
    if self._writer is None:
      return
    rows = metrics.sparsity_report(self.model)
    with self._writer.as_default(step=step):
      tf.summary.scalar("itop/exploration_rate", self._rate)
      for r in rows:
        tf.summary.scalar(f"itop/exploration_rate/{r['layer']}",
                          r["exploration_rate"])
        tf.summary.scalar(f"itop/density/{r['layer']}", r["density"])
      if stats is not None:
        tf.summary.scalar("itop/prune_fraction", stats["prune_fraction"])
        for name, n in stats["regrown"].items():
          tf.summary.scalar(f"itop/regrown/{name}", n)
    self._writer.flush()
