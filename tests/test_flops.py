"""FLOPs are counted per layer as the RigL/ITOP papers do."""

import numpy as np
import pytest
import tf_keras as keras

import itop_tf
from tf_keras_helpers import mlp


def test_dense_mlp_flops_are_two_per_weight():
  dense, sparse = itop_tf.tf_keras.forward_flops(
      mlp(inputs=16, hidden=32, classes=4))
  assert dense == sparse == 2 * (16 * 32 + 32 * 4)


def test_conv_flops_count_output_positions_and_groups():
  inp = keras.Input((8, 8, 4))
  x = keras.layers.Conv2D(6, 3, strides=2, padding="same")(inp)     # 4x4x6
  x = keras.layers.Conv2D(6, 3, padding="same", groups=2)(x)        # 4x4x6
  x = keras.layers.DepthwiseConv2D(3, padding="same")(x)            # 4x4x6
  model = keras.Model(inp, x)
  dense, _ = itop_tf.tf_keras.forward_flops(model)
  assert dense == 2 * (16 * 6 * 9 * 4 + 16 * 6 * 9 * 3 + 16 * 6 * 9)


def test_sparse_flops_scale_with_each_layers_density():
  model = itop_tf.sparsify(
      mlp(inputs=16, hidden=32, classes=4), sparsity=0.75,
      schedule=itop_tf.RegrowthSchedule(10, 100), distribution="uniform")
  dense, sparse = itop_tf.tf_keras.forward_flops(model)
  active = sum(r["active"] for r in itop_tf.sparsity_report(model))
  assert sparse == pytest.approx(2 * active)
  assert dense == 2 * (16 * 32 + 32 * 4)


def test_rigl_update_steps_pay_for_the_dense_gradient():
  f_d, f_s, steps, updates = 100.0, 10.0, 1000, 10

  def flops(grow):
    return itop_tf.tf_keras.training_flops(f_d, f_s, steps, updates, grow)

  assert flops("random") == 3 * f_s * steps
  assert flops("gradient") == (
      3 * f_s * (steps - updates) + (2 * f_s + f_d) * updates)
  assert flops("momentum") == (2 * f_s + f_d) * steps


def test_flops_ratio_uses_schedule_and_multiplier():
  schedule = itop_tf.RegrowthSchedule(update_interval=10, total_steps=100)
  model = itop_tf.sparsify(mlp(), sparsity=0.8, schedule=schedule,
                           grow="gradient")
  f_d, f_s = itop_tf.tf_keras.forward_flops(model)
  expected = (3 * f_s * 91 + (2 * f_s + f_d) * 9) / (3 * f_d * 100)
  ratio = itop_tf.tf_keras.training_flops_ratio
  assert ratio(model) == pytest.approx(expected)
  assert ratio(model, multiplier=2) == pytest.approx(2 * expected)


@pytest.mark.parametrize("interval,total,end,begin", [
    (10, 100, None, 0), (7, 100, None, 0), (10, 100, 75, 0), (10, 100, 500, 0),
    (10, 100, None, 5), (1, 3, None, 0), (200, 100, None, 0)])
def test_num_updates_matches_counting_update_steps(interval, total, end, begin):
  # initial_prune_fraction=0 admits a schedule with no update (200 > 100).
  s = itop_tf.RegrowthSchedule(interval, total, end_step=end, begin_step=begin,
                               initial_prune_fraction=0.0)
  assert s.num_updates == sum(s.is_update_step(t) for t in range(total + 1))


@pytest.mark.slow
def test_resnet50_training_flops_match_the_papers_ratios():
  # Paper (RigL, ERK): 0.42x at 80% and 0.25x at 90%. We count conv/dense
  # only, which lands within 0.03 of both.
  base = keras.applications.ResNet50(weights=None, input_shape=(224, 224, 3))
  for sparsity, paper in ((0.8, 0.42), (0.9, 0.25)):
    model = itop_tf.sparsify(
        base, sparsity=sparsity, grow="gradient",
        schedule=itop_tf.RegrowthSchedule(4000, 1_000_000))
    assert abs(itop_tf.tf_keras.training_flops_ratio(model) - paper) < 0.03
  assert np.isclose(itop_tf.tf_keras.forward_flops(base)[0], 7.7e9, rtol=0.01)
