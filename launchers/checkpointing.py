"""Checkpoints of a launcher run: restore, periodic saves, preemption.

A run restores the latest `tf.train.Checkpoint` under --model_dir (model,
masks, union, growth seed, optimizer slots and step) before it builds the
data, saves every --checkpoint_every steps, at the end, and on SIGTERM
(`tf.distribute.experimental.PreemptionCheckpointHandler`; the process then
exits with `PREEMPTED_EXIT_CODE`). Non-chief workers of a multi-worker job
write to a scratch directory of their own, removed at the end.

Example:

>>> checkpoints = RunCheckpoints(f.model_dir, strategy, model, optimizer,
...                              every=1000)
>>> model.fit(..., callbacks=[checkpoints.callback()])
>>> checkpoints.save(step)
"""

import os
import shutil
import sys

from absl import logging
import tensorflow as tf
import tf_keras as keras

from launchers import keras3_checkpoints
from launchers import strategies

PREEMPTED_EXIT_CODE = keras3_checkpoints.PREEMPTED_EXIT_CODE


class CheckpointEverySteps(keras.callbacks.Callback):
  """Saves every `every` optimizer steps and when the job is preempted.

  Preemption (SIGTERM) is `tf.distribute.experimental.
  PreemptionCheckpointHandler`'s: it saves at a step all workers agree on,
  then exits the process with `PREEMPTED_EXIT_CODE`.
  """

  def __init__(self, manager, handler, every):
    super().__init__()
    self.manager = manager
    self.handler = handler
    self.every = every

  def on_train_begin(self, logs=None):
    # Read the step once; counting batches avoids a device sync every step.
    self._step = int(self.model.optimizer.iterations.numpy())

  def on_train_batch_end(self, batch, logs=None):
    self._step += 1
    self.handler.save_checkpoint_if_preempted(checkpoint_number=self._step)
    if self.every and self._step % self.every == 0:
      self.manager.save(checkpoint_number=self._step)


def _preempted():
  logging.warning("Preempted: checkpoint saved, exiting with code %d.",
                  PREEMPTED_EXIT_CODE)
  sys.exit(PREEMPTED_EXIT_CODE)


def worker_dir(model_dir, strategy):
  """(is_chief, directory this worker writes to)."""
  return strategies.worker_dir(model_dir,
                               strategies.Placement(strategy=strategy))


class RunCheckpoints:
  """The checkpoints of one run, restored at construction.

  Args:
    model_dir: the run's directory (checkpoints go to `<dir>/checkpoints`).
    strategy: the run's `tf.distribute` strategy.
    model, optimizer: what a checkpoint holds.
    every: save every this many optimizer steps (0: only at the end and on
      preemption).

  Attributes:
    is_chief: whether this worker writes the run's outputs.
    write_dir: where this worker writes (the model_dir, for the chief).
    restored: the checkpoint path restored, or None.
  """

  def __init__(self, model_dir, strategy, model, optimizer, every):
    self.is_chief, self.write_dir = worker_dir(model_dir, strategy)
    with strategy.scope():
      checkpoint = tf.train.Checkpoint(model=model, optimizer=optimizer)
    self.restored = tf.train.latest_checkpoint(
        os.path.join(model_dir, "checkpoints"))
    if self.restored:
      checkpoint.restore(self.restored).assert_existing_objects_matched()
    self._dir = os.path.join(self.write_dir, "checkpoints")
    if not self.is_chief and os.path.isdir(self._dir):
      shutil.rmtree(self._dir)
    self._manager = tf.train.CheckpointManager(checkpoint, self._dir,
                                               max_to_keep=3)
    self._handler = tf.distribute.experimental.PreemptionCheckpointHandler(
        strategy.cluster_resolver, self._manager,
        termination_config=tf.distribute.experimental.TerminationConfig(
            exit_fn=_preempted))
    self._every = every

  def callback(self):
    """The Keras callback that saves periodically and on preemption."""
    return CheckpointEverySteps(self._manager, self._handler, self._every)

  def save(self, step):
    """Saves a checkpoint numbered `step`."""
    self._manager.save(checkpoint_number=step)

  def finish(self):
    """Removes a non-chief worker's scratch checkpoints."""
    if not self.is_chief:
      shutil.rmtree(self._dir, ignore_errors=True)
