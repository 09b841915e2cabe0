"""Checkpoints of a Keras 3 launcher run: Keras `.weights.h5` files.

`model.save_weights` writes every variable of the model and its optimizer:
weights, masks, union, captured gradients, optimizer slots and the step
(`optimizer.iterations`); the growth RNG is a function of (seed, step), so
nothing else is needed. Files are `<model_dir>/checkpoints/ckpt-<step>
.weights.h5`, written under a temporary name and renamed, so a run killed
while saving leaves the previous one whole; the newest 3 are kept.

A run saves every --checkpoint_every steps, at the end, and on SIGTERM: the
signal is noted, the step running finishes, the checkpoint is written and
the process exits with `PREEMPTED_EXIT_CODE`. Restarted with the same
flags, the run loads the newest file before it builds its data stream.
In a multi-process job every process reads the chief's (process 0's) files
and every process saves at the same steps (saving creates variables, which
on JAX is a collective): the others into a scratch directory of their own,
removed at the end.

Example:

>>> checkpoints = StepCheckpoints(f.model_dir, f.model_dir, model,
...                               every=1000)
>>> checkpoints.restore()
>>> model.fit(..., callbacks=[itop_callback, checkpoints.callback()])
"""

import os
import re
import shutil
import signal
import sys

from absl import logging
import keras

from itop_tf.keras3 import frontend

PREEMPTED_EXIT_CODE = 42
_NAME = re.compile(r"ckpt-(\d+)\.weights\.h5$")


class StepCheckpoints:
  """The `.weights.h5` checkpoints of one run.

  Args:
    model_dir: the run's directory (the chief's files are in
      `<model_dir>/checkpoints`).
    write_dir: where this process saves (`strategies.worker_dir`): the
      model_dir for the chief, a scratch directory for the others.
    model: the compiled model (its optimizer built).
    every: save every this many optimizer steps (0: at the end and on
      SIGTERM only).
    keep: how many files to keep.
  """

  def __init__(self, model_dir, write_dir, model, every, keep=3):
    self.directory = os.path.join(model_dir, "checkpoints")
    self.write_to = os.path.join(write_dir, "checkpoints")
    self.model, self.every, self.keep = model, every, keep

  def files(self, directory=None):
    """[(step, path)] of the saved checkpoints, oldest first."""
    directory = directory or self.directory
    if not os.path.isdir(directory):
      return []
    found = [(int(m.group(1)), os.path.join(directory, name))
             for name in os.listdir(directory)
             for m in [_NAME.match(name)] if m]
    return sorted(found)

  def restore(self):
    """Loads the chief's newest checkpoint, if any; returns its path or None."""
    found = self.files()
    if not found:
      return None
    path = found[-1][1]
    self.model.load_weights(path)
    return path

  def save(self, step):
    """Writes `ckpt-<step>.weights.h5` and drops the oldest beyond `keep`."""
    frontend.FRONTEND.sync(self.model)  # JAX: fit's state into variables
    os.makedirs(self.write_to, exist_ok=True)
    path = os.path.join(self.write_to, f"ckpt-{step}.weights.h5")
    partial = os.path.join(self.write_to, f"partial-{step}.weights.h5")
    self.model.save_weights(partial, overwrite=True)
    os.replace(partial, path)
    for _, old in self.files(self.write_to)[:-self.keep]:
      os.remove(old)

  def finish(self):
    """Removes a non-chief process's scratch checkpoints."""
    if self.write_to != self.directory:
      shutil.rmtree(self.write_to, ignore_errors=True)

  def callback(self):
    """The Keras callback that saves periodically and on SIGTERM."""
    return _SaveEverySteps(self)


class _SaveEverySteps(keras.callbacks.Callback):
  """Saves every `every` steps, and on SIGTERM saves and exits the process."""

  def __init__(self, checkpoints):
    super().__init__()
    self.checkpoints = checkpoints
    self._preempted = False
    self._previous = None

  def _on_sigterm(self, signum, frame):
    del signum, frame
    self._preempted = True

  def on_train_begin(self, logs=None):
    self._step = int(keras.ops.convert_to_numpy(
        self.model.optimizer.iterations))
    self._previous = signal.signal(signal.SIGTERM, self._on_sigterm)

  def on_train_end(self, logs=None):
    signal.signal(signal.SIGTERM, self._previous or signal.SIG_DFL)

  def on_train_batch_end(self, batch, logs=None):
    self._step += 1
    if self._preempted:
      self.checkpoints.save(self._step)
      logging.warning("Preempted: checkpoint saved at step %d, exiting with "
                      "code %d.", self._step, PREEMPTED_EXIT_CODE)
      sys.exit(PREEMPTED_EXIT_CODE)
    every = self.checkpoints.every
    if every and self._step % every == 0:
      self.checkpoints.save(self._step)
