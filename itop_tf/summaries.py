"""TensorBoard scalars of a sparse training run, through `tf.summary`.

TensorFlow's summary writer is what TensorBoard reads, and Keras' own
`TensorBoard` callback uses it on every backend; it is imported when a
writer is made, so a run without `log_dir` never needs TensorFlow.

Example:

>>> writer = SummaryWriter("logs")
>>> writer.write(step=100, rate=0.31, rows=itop_tf.sparsity_report(model))
"""


class SummaryWriter:
  """Writes R_s, per-layer density and regrown counts under `log_dir`.

  Scalars: `itop/exploration_rate` (global and `/<layer>`),
  `itop/density/<layer>`, and for an update `itop/prune_fraction` and
  `itop/regrown/<layer>`.

  Args:
    log_dir: the directory TensorBoard reads.

  Raises:
    ValueError: TensorFlow (its `tf.summary`) cannot be imported.
  """

  def __init__(self, log_dir):
    try:
      import tensorflow as tf  # pylint: disable=g-import-not-at-top
    except ImportError as e:
      raise ValueError(
          f"TensorBoard summaries (log_dir={log_dir!r}) are written with "
          f"TensorFlow's tf.summary, which cannot be imported here ({e}). "
          "Install tensorflow, or pass log_dir=None (R_s stays in the "
          "progress bar and History as the itop_rate metric).") from e
    self._tf = tf
    self._writer = tf.summary.create_file_writer(log_dir)

  def write(self, step, rate, rows, stats=None):
    """Writes one point of every scalar at `step`.

    Args:
      step: the optimizer step.
      rate: the global R_s.
      rows: `itop_tf.sparsity_report(model)`.
      stats: the update's statistics (`MaskUpdater.update`), or None.
    """
    summary = self._tf.summary
    with self._writer.as_default(step=step):
      summary.scalar("itop/exploration_rate", rate)
      for r in rows:
        summary.scalar(f"itop/exploration_rate/{r['layer']}",
                       r["exploration_rate"])
        summary.scalar(f"itop/density/{r['layer']}", r["density"])
      if stats is not None:
        summary.scalar("itop/prune_fraction", stats["prune_fraction"])
        for name, n in stats["regrown"].items():
          summary.scalar(f"itop/regrown/{name}", n)
    self._writer.flush()

  def flush(self):
    self._writer.flush()
