"""Bad input gets a ValueError that names the problem and the fix."""

import re

import pytest
import tf_keras as keras

import itop_tf
from tf_keras_helpers import mlp


def _schedule():
  return itop_tf.RegrowthSchedule(update_interval=10, total_steps=100)


@pytest.mark.parametrize("sparsity", [1.0, -0.1, 1.5, "0.9", True])
def test_sparsity_outside_range(sparsity):
  with pytest.raises(ValueError, match=r"sparsity must be a number in \[0, 1\)"):
    itop_tf.sparsify(mlp(), sparsity, schedule=_schedule())


def test_unknown_distribution():
  with pytest.raises(ValueError, match="Unknown distribution 'erx'.*erk"):
    itop_tf.sparsify(mlp(), 0.9, schedule=_schedule(), distribution="erx")


def test_unknown_grow():
  with pytest.raises(ValueError, match="Unknown grow method 'rigl'.*gradient"):
    itop_tf.sparsify(mlp(), 0.9, schedule=_schedule(), grow="rigl")


def test_missing_schedule_says_how_to_make_one():
  with pytest.raises(ValueError, match="RegrowthSchedule\\(update_interval"):
    itop_tf.sparsify(mlp(), 0.9)


def test_update_interval_below_one():
  with pytest.raises(ValueError, match="update_interval must be >= 1"):
    itop_tf.RegrowthSchedule(update_interval=0, total_steps=100)


def test_keras3_layer_in_the_tf_keras_wrapper_names_the_keras3_wrapper():
  import keras as keras3  # pylint: disable=g-import-not-at-top
  with pytest.raises(ValueError, match="itop_tf.keras3.PruneAndRegrow"):
    itop_tf.tf_keras.PruneAndRegrow(keras3.layers.Dense(2),
                                    schedule=_schedule())


def test_tf_keras_layer_in_the_keras3_wrapper_names_the_tf_keras_wrapper():
  with pytest.raises(ValueError,
                     match="tf_keras layer takes itop_tf.tf_keras.Prune"):
    itop_tf.keras3.PruneAndRegrow(keras.layers.Dense(2), schedule=_schedule())


@pytest.mark.parametrize("name,where", [
    ("PruneAndRegrow", "itop_tf.tf_keras.PruneAndRegrow (tf_keras) or "
                       "itop_tf.keras3.PruneAndRegrow"),
    ("scope", "itop_tf.tf_keras.scope"),
    ("custom_objects", "itop_tf.tf_keras.custom_objects")])
def test_a_name_of_one_keras_says_which_front_end_holds_it(name, where):
  with pytest.raises(AttributeError, match=re.escape(where)):
    getattr(itop_tf, name)


def test_a_name_that_never_existed_is_a_plain_attribute_error():
  with pytest.raises(AttributeError, match="no attribute 'prune_low'"):
    itop_tf.prune_low  # pylint: disable=pointless-statement


def test_subclassed_model_says_how_to_wrap_by_hand():

  class Net(keras.Model):

    def __init__(self):
      super().__init__()
      self.fc = keras.layers.Dense(2)

    def call(self, x):
      return self.fc(x)

  net = Net()
  net(keras.backend.ones((1, 4)))
  with pytest.raises(ValueError, match="subclassed.*PruneAndRegrow"):
    itop_tf.sparsify(net, 0.9, schedule=_schedule())


def test_no_prunable_layers():
  model = keras.Sequential([keras.Input((4,)), keras.layers.ReLU()])
  with pytest.raises(ValueError, match="no layer itop_tf can make sparse"):
    itop_tf.sparsify(model, 0.9, schedule=_schedule())


def test_already_sparsified():
  sparse = itop_tf.sparsify(mlp(), 0.9, schedule=_schedule())
  with pytest.raises(ValueError, match="already sparsified.*strip"):
    itop_tf.sparsify(sparse, 0.9, schedule=_schedule())


def test_tfmot_pruned_model_counts_as_sparsified():
  import tensorflow_model_optimization as tfmot
  pruned = tfmot.sparsity.keras.prune_low_magnitude(mlp())
  with pytest.raises(ValueError, match="already sparsified"):
    itop_tf.sparsify(pruned, 0.9, schedule=_schedule())


def test_unbuilt_model():
  model = keras.Sequential([keras.layers.Dense(4)])
  with pytest.raises(ValueError, match="not built.*keras.Input"):
    itop_tf.sparsify(model, 0.9, schedule=_schedule())


def test_unknown_layer_names():
  with pytest.raises(ValueError,
                     match=r"dense_layers \['fc9'\] matches no layer"):
    itop_tf.sparsify(mlp(), 0.9, schedule=_schedule(), dense_layers=["fc9"])


def test_wrapper_rejects_unsupported_layer_and_bad_density():
  with pytest.raises(ValueError, match="no kernel itop_tf can make sparse"):
    itop_tf.tf_keras.PruneAndRegrow(keras.layers.BatchNormalization(),
                                    _schedule())
  with pytest.raises(ValueError, match="density must be in"):
    itop_tf.tf_keras.PruneAndRegrow(keras.layers.Dense(2), _schedule(),
                                    density=0.0)


def test_callback_on_a_model_without_wrappers():
  model = mlp()
  model.compile("sgd", "mse")
  with pytest.raises(ValueError, match="no itop_tf layers.*sparsify"):
    model.fit(keras.backend.ones((4, 16)), keras.backend.ones((4, 4)),
              verbose=0, callbacks=[itop_tf.ITOPCallback()])


def test_counts_must_give_one_count_per_kernel():
  layer = itop_tf.tf_keras.PruneAndRegrow(
      keras.layers.Dense(4), schedule=_schedule(), counts=[3, 3])
  with pytest.raises(ValueError, match="counts has 2 entries but layer"):
    layer.build((None, 8))
