"""Keras 3: growth rules of one's own, registered, saved, loaded; drop scores;
the initial masks every front-end draws."""

import keras
import numpy as np
import pytest

import itop_tf
import keras3_helpers as helpers
from growth_cases import ScaledGradient
from keras3_helpers import value


def test_model_trained_with_a_registered_rule_loads_back_with_it(tmp_path):
  model = helpers.compile_model(helpers.sparse_mlp(grow=ScaledGradient(3.0)))
  x, y = helpers.toy_data()
  model.fit(x, y, batch_size=32, epochs=1, verbose=0,
            callbacks=[itop_tf.ITOPCallback()])
  path = str(tmp_path / "m.keras")
  model.save(path)
  loaded = keras.models.load_model(path)
  rules = [w.growth for w in itop_tf.find_wrappers(loaded)]
  assert rules and all(r == ScaledGradient(3.0) for r in rules)
  assert rules[0] != ScaledGradient(2.0)  # the config came back too


@pytest.mark.parametrize("jit_compile", [False, True])
def test_update_drops_by_the_rule_s_drop_scores(jit_compile):
  model = helpers.compile_model(
      helpers.sparse_mlp(grow="test_drop_largest", interval=1000,
                        total=2000))
  x, y = helpers.toy_data()
  model.fit(x, y, batch_size=32, epochs=1, verbose=0)
  updater = itop_tf.MaskUpdater(model, jit_compile=jit_compile)
  updater.initialize()
  old = [(value(sw.mask), np.abs(value(sw.weight)))
         for sw in helpers.kernels(model)]
  stats = updater.update(1000)
  for sw, (mask, magnitude) in zip(helpers.kernels(model), old):
    new = value(sw.mask)
    dropped, stayed = mask & ~new, mask & new
    assert dropped.sum() == stats["regrown"][sw.name] > 0
    assert magnitude[dropped].min() >= magnitude[stayed].max()

