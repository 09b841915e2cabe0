"""RegrowthSchedule: update steps, cosine prune fraction, serialization."""

import doctest

import numpy as np
import pytest
import tensorflow as tf
from tensorflow_model_optimization.python.core.sparsity.keras import pruning_schedule

import itop_tf


def test_is_a_tfmot_pruning_schedule():
  assert isinstance(itop_tf.RegrowthSchedule(10, 100),
                    pruning_schedule.PruningSchedule)


def test_update_steps_every_interval_until_total():
  s = itop_tf.RegrowthSchedule(update_interval=10, total_steps=50)
  assert [t for t in range(0, 60) if s.is_update_step(t)] == [10, 20, 30, 40]


def test_end_step_stops_exploration_like_rigl():
  s = itop_tf.RegrowthSchedule(10, 100, end_step=35)
  assert [t for t in range(0, 101) if s.is_update_step(t)] == [10, 20, 30]


def test_begin_step_shifts_updates():
  s = itop_tf.RegrowthSchedule(10, 100, begin_step=5)
  assert [t for t in range(0, 40) if s.is_update_step(t)] == [15, 25, 35]


def test_next_and_latest_update_steps():
  s = itop_tf.RegrowthSchedule(10, 45)
  assert s.next_update_step(0) == 10 and s.next_update_step(10) == 20
  assert s.next_update_step(40) is None
  assert s.latest_update_step(9) is None and s.latest_update_step(25) == 20
  assert s.latest_update_step(100) == 40


def test_cosine_decay_from_half_to_final():
  s = itop_tf.RegrowthSchedule(10, 1000)
  assert s.prune_fraction(0) == pytest.approx(0.5)
  assert s.prune_fraction(500) == pytest.approx(0.005 + 0.495 * 0.5)
  assert s.prune_fraction(1000) == pytest.approx(0.005)
  f = [s.prune_fraction(t) for t in range(0, 1001, 50)]
  assert all(a >= b for a, b in zip(f, f[1:]))


def test_zero_initial_fraction_is_static():
  s = itop_tf.RegrowthSchedule(10, 100, initial_prune_fraction=0.0)
  assert all(s.prune_fraction(t) == 0.0 for t in range(0, 101, 10))


def test_calling_it_as_a_tfmot_sparsity_schedule_raises():
  s = itop_tf.RegrowthSchedule(7, 300)
  with pytest.raises(ValueError, match="not a target-sparsity schedule"):
    s(tf.constant(7))


def test_tfmot_prune_low_magnitude_with_it_fails_with_the_fix():
  # TF-MOT would read the prune fraction (0.5 -> 0.005) as the sparsity.
  import tensorflow_model_optimization as tfmot  # pylint: disable=g-import-not-at-top
  from tf_keras_helpers import compile_sgd, mlp, toy_data  # pylint: disable=g-import-not-at-top
  model = tfmot.sparsity.keras.prune_low_magnitude(
      mlp(), pruning_schedule=itop_tf.RegrowthSchedule(2, 100))
  x, y = toy_data(32)
  with pytest.raises(ValueError, match=r"Use itop_tf.sparsify\(model"):
    compile_sgd(model).fit(x, y, epochs=1, verbose=0, callbacks=[
        tfmot.sparsity.keras.UpdatePruningStep()])


def test_a_schedule_that_never_updates_is_refused():
  with pytest.raises(ValueError, match="update_interval=1000 makes no update"
                     ".*initial_prune_fraction=0 for static"):
    itop_tf.RegrowthSchedule(update_interval=1000, total_steps=100)
  with pytest.raises(ValueError, match="end_step=10"):
    itop_tf.RegrowthSchedule(update_interval=10, total_steps=100, end_step=10)
  static = itop_tf.RegrowthSchedule(1000, 100, initial_prune_fraction=0.0)
  assert static.num_updates == 0


def test_config_round_trip():
  s = itop_tf.RegrowthSchedule(3, 90, 0.4, end_step=60, begin_step=2,
                               final_prune_fraction=0.01)
  again = itop_tf.RegrowthSchedule.from_config(s.get_config())
  assert again == s and again.get_config() == s.get_config()


@pytest.mark.parametrize("kwargs, match", [
    (dict(update_interval=0, total_steps=10), "update_interval must be >= 1"),
    (dict(update_interval=1.5, total_steps=10), "update_interval must be an"),
    (dict(update_interval=1, total_steps=0), "total_steps must be >= 1"),
    (dict(update_interval=1, total_steps=10, initial_prune_fraction=1.5),
     "initial_prune_fraction"),
    (dict(update_interval=1, total_steps=10, end_step=0), "end_step"),
    (dict(update_interval=1, total_steps=10, begin_step=10), "begin_step"),
])
def test_bad_arguments_raise(kwargs, match):
  with pytest.raises(ValueError, match=match):
    itop_tf.RegrowthSchedule(**kwargs)


def _walk_fit(schedule, steps_per_execution, steps_per_epoch):
  """The most steps an update waits, walking `fit`'s calls step by step."""
  worst, step = 0, 0
  while step < schedule.total_steps:  # epochs of fit, however many it takes
    epoch_end = step + (steps_per_epoch or 10**9)
    while step < min(epoch_end, schedule.total_steps):
      call_end = min(step + steps_per_execution, epoch_end)
      for t in range(step + 1, call_end + 1):
        if schedule.is_update_step(t):
          worst = max(worst, call_end - t)
      step = call_end
  return worst


def test_update_lateness_is_what_fit_s_calls_make_updates_wait():
  rng = np.random.default_rng(0)
  for _ in range(150):
    interval = int(rng.integers(1, 40))
    begin = int(rng.integers(0, 20))
    schedule = itop_tf.RegrowthSchedule(
        interval, int(rng.integers(begin + interval + 1, 600)),
        begin_step=begin)
    spe = int(rng.integers(1, 30))
    epoch = int(rng.integers(1, 90)) if rng.random() < 0.8 else None
    assert schedule.update_lateness(spe, epoch) == _walk_fit(
        schedule, spe, epoch), (interval, begin, spe, epoch)


def test_update_lateness_of_the_paper_task_and_of_dividing_calls():
  paper = itop_tf.RegrowthSchedule(100, 9380)  # 20 epochs of 469 steps
  assert paper.update_lateness(100, steps_per_epoch=469) == 97
  assert paper.update_lateness(1, steps_per_epoch=469) == 0
  assert itop_tf.RegrowthSchedule(100, 10000).update_lateness(50, 500) == 0
  # Without epochs: updates at 10, 20, 30 in calls ending at 12, 20, 32.
  assert itop_tf.RegrowthSchedule(10, 35).update_lateness(4) == 2


def test_the_module_s_examples_give_what_they_show():
  from itop_tf import schedules  # pylint: disable=g-import-not-at-top
  result = doctest.testmod(schedules)
  assert result.attempted >= 8 and result.failed == 0
