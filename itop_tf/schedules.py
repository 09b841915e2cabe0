"""When to prune and regrow, and how much: `RegrowthSchedule`.

`RegrowthSchedule` says *when* the masks move and *what fraction of the
active weights* each update replaces; the sparsity itself never changes (it
is `sparsify`'s `sparsity=`). The tf_keras front-end registers it as a
TF-MOT `PruningSchedule` (this module imports no TF-MOT), so that its
`PruneAndRegrow` (a TF-MOT wrapper) and TF-MOT's configs take it; but it is
not a target-sparsity schedule: TF-MOT's `prune_low_magnitude` would read
its prune fraction as a sparsity, so calling it the TF-MOT way raises an
error that says to use `itop_tf.sparsify`.

The prune fraction follows a cosine decay over the whole training, as in the
official ITOP code:

    f(t) = f_end + (f_0 - f_end) * (1 + cos(pi * (t - begin) / (total - begin))) / 2

Example:

>>> s = RegrowthSchedule(update_interval=100, total_steps=1000)
>>> s.is_update_step(100), s.is_update_step(150)
(True, False)
>>> round(s.prune_fraction(0), 3)
0.5
"""

import math

DEFAULT_FINAL_PRUNE_FRACTION = 0.005


def _int_arg(name, value, minimum):
  if isinstance(value, bool) or not hasattr(value, "__index__"):
    raise ValueError(f"{name} must be an integer, got {value!r}.")
  value = int(value)
  if value < minimum:
    raise ValueError(f"{name} must be >= {minimum}, got {value}.")
  return value


def check_schedule(schedule, who="PruneAndRegrow"):
  """Raises ValueError unless `schedule` is a `RegrowthSchedule`."""
  if not isinstance(schedule, RegrowthSchedule):
    raise ValueError(
        f"{who} needs schedule=itop_tf.RegrowthSchedule(...), got "
        f"{schedule!r}.")


class RegrowthSchedule:
  """Every `update_interval` steps, drop and regrow a cosine-decayed fraction.

  Updates happen at optimizer steps `t` with `begin_step < t < end`,
  `(t - begin_step) % update_interval == 0`, where `end` is `end_step` or,
  when that is None (the ITOP default: explore until the end), `total_steps`.

  Args:
    update_interval: steps between two updates (Delta T), >= 1.
    total_steps: length of the training in optimizer steps; the cosine decay
      of the prune fraction spans `[begin_step, total_steps]`.
    initial_prune_fraction: fraction of active weights replaced at the start,
      in [0, 1]. 0 gives static sparse training.
    end_step: last step (exclusive) at which updates happen; None explores
      until `total_steps` (ITOP). RigL stops at 75% of training.
    begin_step: first step of the schedule (no update at `begin_step`).
    final_prune_fraction: fraction the cosine decays to; None means
      `min(0.005, initial_prune_fraction)`.

  Raises:
    ValueError: an argument is out of range, or the schedule would make no
      update (`update_interval` too long for the steps given) while
      `initial_prune_fraction > 0`; the message says which.

  Example:

  >>> itop = RegrowthSchedule(update_interval=100, total_steps=10_000)
  >>> rigl = RegrowthSchedule(100, 10_000, end_step=7_500)  # stops at 75%
  >>> static = RegrowthSchedule(100, 10_000, initial_prune_fraction=0.0)
  >>> itop.num_updates, rigl.num_updates, static.final_prune_fraction
  (99, 74, 0.0)
  """

  def __init__(self, update_interval, total_steps, initial_prune_fraction=0.5,
               end_step=None, begin_step=0, final_prune_fraction=None):
    self.update_interval = _int_arg("update_interval", update_interval, 1)
    self.total_steps = _int_arg("total_steps", total_steps, 1)
    self.begin_step = _int_arg("begin_step", begin_step, 0)
    if self.begin_step >= self.total_steps:
      raise ValueError(
          f"begin_step ({self.begin_step}) must be < total_steps "
          f"({self.total_steps}).")
    if end_step is not None:
      end_step = _int_arg("end_step", end_step, 1)
      if end_step <= self.begin_step:
        raise ValueError(
            f"end_step ({end_step}) must be > begin_step ({self.begin_step}),"
            " or None to keep exploring until total_steps.")
    self.end_step = end_step
    if not 0.0 <= float(initial_prune_fraction) <= 1.0:
      raise ValueError(
          "initial_prune_fraction must be in [0, 1], got "
          f"{initial_prune_fraction!r}; use 0 for static sparse training.")
    self.initial_prune_fraction = float(initial_prune_fraction)
    if final_prune_fraction is None:
      final_prune_fraction = min(DEFAULT_FINAL_PRUNE_FRACTION,
                                 self.initial_prune_fraction)
    if not 0.0 <= float(final_prune_fraction) <= 1.0:
      raise ValueError(
          f"final_prune_fraction must be in [0, 1], got {final_prune_fraction!r}.")
    self.final_prune_fraction = float(final_prune_fraction)
    if self.num_updates == 0 and self.initial_prune_fraction > 0:
      raise ValueError(
          f"update_interval={self.update_interval} makes no update between "
          f"begin_step={self.begin_step} and "
          f"{'end_step' if end_step is not None else 'total_steps'}="
          f"{self.last_step}: lower update_interval (the paper uses 100-4000 "
          "steps), or pass initial_prune_fraction=0 for static sparse "
          "training.")

  @property
  def last_step(self):
    """Exclusive upper bound of the steps that may be updates."""
    return self.end_step if self.end_step is not None else self.total_steps

  @property
  def num_updates(self):
    """How many prune-and-regrow updates the whole schedule makes."""
    last = min(self.last_step, self.total_steps + 1)
    return max(0, (last - 1 - self.begin_step) // self.update_interval)

  def prune_fraction(self, step):
    """Cosine-decayed prune fraction at `step` (a Python float)."""
    span = self.total_steps - self.begin_step
    progress = min(max(step - self.begin_step, 0), span) / float(span)
    f0, f1 = self.initial_prune_fraction, self.final_prune_fraction
    return f1 + (f0 - f1) * 0.5 * (1.0 + math.cos(math.pi * progress))

  def is_update_step(self, step):
    """Whether a prune-and-regrow update follows optimizer step `step`."""
    step = int(step)
    return (self.begin_step < step < self.last_step and
            (step - self.begin_step) % self.update_interval == 0)

  def next_update_step(self, step):
    """First update step strictly after `step`, or None if there is none."""
    step = max(int(step), self.begin_step)
    k = (step - self.begin_step) // self.update_interval + 1
    nxt = self.begin_step + k * self.update_interval
    return nxt if nxt < self.last_step else None

  def latest_update_step(self, step):
    """Last update step at or before `step`, or None if there is none."""
    step = min(int(step), self.last_step - 1)
    if step <= self.begin_step:
      return None
    k = (step - self.begin_step) // self.update_interval
    return self.begin_step + k * self.update_interval if k > 0 else None

  def update_lateness(self, steps_per_execution, steps_per_epoch=None):
    """The most steps an update waits after its scheduled step under `fit`.

    Keras runs callbacks between training calls of `steps_per_execution`
    steps, counted from each epoch's first step (an epoch's last call may be
    shorter). `ITOPCallback` runs an update scheduled inside a call at the
    call's end, keyed by its scheduled step (its prune fraction; RigL grows
    by the gradient of the call's last step).

    Args:
      steps_per_execution: steps per training call (`model.compile`'s).
      steps_per_epoch: steps of an epoch; None: epochs that never end.

    Returns:
      0 when every update step ends a call, else the largest wait in steps.

    Example:

    >>> RegrowthSchedule(100, 9380).update_lateness(100, steps_per_epoch=469)
    97
    """
    spe, epoch = int(steps_per_execution), int(steps_per_epoch or 0)
    if spe <= 1:
      return 0
    # An update's wait depends on its step modulo the epoch (or the call),
    # which repeats after `period` updates.
    cycle = epoch or spe
    period = cycle // math.gcd(self.update_interval, cycle)
    worst, step = 0, self.next_update_step(0)
    for _ in range(period):
      if step is None:
        break
      done = step % cycle  # steps of its epoch (or call) done; 0: the last
      if done:
        end = -(-done // spe) * spe
        worst = max(worst, min(end, epoch) - done if epoch else end - done)
      step = self.next_update_step(step)
    return worst

  def __call__(self, step):
    """TF-MOT's protocol `(should_prune, sparsity)`: not meaningful here.

    Raises:
      ValueError: always. TF-MOT's `prune_low_magnitude` calls this to get a
        target sparsity, which a regrowth schedule does not have; it would
        read the prune fraction (0.5 decaying to 0.005) as the sparsity.
    """
    del step
    raise ValueError(
        "RegrowthSchedule is a prune-and-regrow schedule (when to update, "
        "what fraction of the active weights to replace), not a target-"
        "sparsity schedule for tfmot.sparsity.keras.prune_low_magnitude. Use "
        "itop_tf.sparsify(model, sparsity=..., schedule=RegrowthSchedule(...))"
        " instead.")

  def get_config(self):
    return {
        "class_name": self.__class__.__name__,
        "config": {
            "update_interval": self.update_interval,
            "total_steps": self.total_steps,
            "initial_prune_fraction": self.initial_prune_fraction,
            "end_step": self.end_step,
            "begin_step": self.begin_step,
            "final_prune_fraction": self.final_prune_fraction,
        },
    }

  @classmethod
  def from_config(cls, config):
    config = config.get("config", config)
    return cls(**config)

  def __eq__(self, other):
    return type(other) is type(self) and self.get_config() == other.get_config()

  def __repr__(self):
    c = self.get_config()["config"]
    args = ", ".join(f"{k}={v!r}" for k, v in c.items())
    return f"RegrowthSchedule({args})"
