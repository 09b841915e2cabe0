"""Growth rules of one's own (tf_keras): registered, saved, loaded; drop scores."""

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

import itop_tf
from itop_tf import array_ops
from itop_tf import core
from itop_tf import growth
from tf_keras_helpers import compile_sgd, kernels, mlp, toy_data
from growth_cases import ScaledGradient


def _sparse(grow):
  return itop_tf.sparsify(
      mlp(), sparsity=0.8, grow=grow, seed=0,
      schedule=itop_tf.RegrowthSchedule(update_interval=1000,
                                        total_steps=2000))


def test_registered_rule_is_found_by_name():
  assert isinstance(growth.get("test_scaled_gradient"), ScaledGradient)
  rule = ScaledGradient(5.0)
  assert growth.get(growth.serialize(rule)) == rule
  assert growth.serialize(growth.get("gradient")) == "gradient"


@pytest.mark.parametrize("fmt", ["keras", "h5"])
def test_model_trained_with_a_registered_rule_loads_back_with_it(tmp_path,
                                                                  fmt):
  model = compile_sgd(_sparse(ScaledGradient(3.0)))
  path = str(tmp_path / f"m.{fmt}")
  model.save(path)
  with itop_tf.tf_keras.scope():
    loaded = keras.models.load_model(path)
  rules = [w.growth for w in itop_tf.find_wrappers(loaded)]
  assert rules and all(r == ScaledGradient(3.0) for r in rules)
  assert rules[0] != ScaledGradient(2.0)  # the config came back too


def test_unregistered_rule_is_refused_with_the_way_to_register():

  class Mine(growth.RandomGrowth):
    pass  # saved as "random", it would load back as SET

  with pytest.raises(ValueError, match="@itop_tf.growth.register"):
    _sparse(Mine())


def test_register_refuses_a_class_without_a_name_of_its_own():

  class Nameless(growth.GradientGrowth):
    pass

  with pytest.raises(ValueError, match="needs a name of its own"):
    growth.register(Nameless)


def test_register_refuses_a_name_another_class_has():

  class Other(growth.RandomGrowth):
    name = "gradient"

  with pytest.raises(ValueError, match="taken by"):
    growth.register(Other)
  assert growth.get("gradient").__class__ is growth.GradientGrowth


def test_unknown_name_says_how_to_register():
  with pytest.raises(ValueError, match="@itop_tf.growth.register"):
    growth.get("no_such_rule")


def test_drop_scores_choose_the_pruned_entries():
  mask = tf.constant([True, True, True, False, False])
  w = tf.constant([0.1, -3.0, 2.0, 0.0, 0.0])
  grow = tf.constant([0.0, 0.0, 0.0, 1.0, 0.5])
  ops = array_ops.tensorflow_ops()
  _, _, by_magnitude = core.prune_and_grow(mask, w, 1, grow, ops)
  _, _, by_score = core.prune_and_grow(mask, w, 1, grow, ops,
                                       drop_scores=-tf.abs(w))
  assert by_magnitude.numpy().tolist() == [True, False, False, False, False]
  assert by_score.numpy().tolist() == [False, True, False, False, False]


def test_update_drops_by_the_rule_s_drop_scores():
  model = compile_sgd(_sparse("test_drop_largest"))
  x, y = toy_data()
  model.fit(x, y, batch_size=32, epochs=1, verbose=0)
  updater = itop_tf.MaskUpdater(model)
  updater.initialize()
  old = [(sw.mask.numpy(), np.abs(sw.weight.numpy())) for _, sw in
         kernels(model)]
  stats = updater.update(1000)
  for (_, sw), (mask, magnitude) in zip(kernels(model), old):
    new = sw.mask.numpy()
    dropped = mask & ~new  # no dropped entry is regrown (the rule's scores)
    stayed = mask & new
    assert dropped.sum() == stats["regrown"][sw.name] > 0
    # Every dropped weight is at least as large as every one that stayed.
    assert magnitude[dropped].min() >= magnitude[stayed].max()
