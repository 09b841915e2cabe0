"""Keras 3 front-end: R_s as a metric everywhere Keras shows one; bad input."""

import glob

import keras
import numpy as np
import pytest

import itop_tf
import keras3_helpers as helpers
from keras3_helpers import value


class _Record(keras.callbacks.Callback):
  """Records logs["itop_rate"] and the true R_s after every batch."""

  def __init__(self):
    super().__init__()
    self.shown, self.true = [], []

  def on_train_batch_end(self, batch, logs=None):
    self.shown.append(float(logs["itop_rate"]))
    self.true.append(itop_tf.exploration_rate(self.model))


def test_itop_rate_in_the_batch_logs_is_the_rate_after_each_step():
  model = helpers.compile_model(helpers.sparse_mlp(grow="random", interval=3))
  assert "itop_rate" in [m.name for m in model.metrics]
  x, y = helpers.toy_data()
  rec = _Record()
  model.fit(x, y, batch_size=32, epochs=2, verbose=0,
            callbacks=[itop_tf.ITOPCallback(), rec])
  np.testing.assert_allclose(rec.shown, rec.true, rtol=1e-6)
  changes = [i + 1 for i in range(1, len(rec.true))
             if rec.true[i] != rec.true[i - 1]]
  assert changes and all(step % 3 == 0 for step in changes)


def test_progress_bar_history_and_evaluate_show_itop_rate(capsys):
  model = helpers.compile_model(helpers.sparse_mlp(grow="gradient"))
  x, y = helpers.toy_data()
  hist = model.fit(x, y, batch_size=32, epochs=2, verbose=2,
                   callbacks=[itop_tf.ITOPCallback()])
  out = capsys.readouterr().out
  rate = itop_tf.exploration_rate(model)
  assert f"itop_rate: {rate:.4f}" in out
  assert hist.history["itop_rate"][-1] == pytest.approx(rate)
  res = model.evaluate(x, y, verbose=0, return_dict=True)
  assert res["itop_rate"] == pytest.approx(rate)


def test_tensorboard_gets_epoch_itop_rate_and_per_layer_scalars(tmp_path):
  from tensorboard.backend.event_processing import event_accumulator  # pylint: disable=g-import-not-at-top
  model = helpers.compile_model(helpers.sparse_mlp(grow="random", interval=3))
  x, y = helpers.toy_data()
  model.fit(x, y, batch_size=32, epochs=2, verbose=0, callbacks=[
      itop_tf.ITOPCallback(log_dir=str(tmp_path / "itop")),
      keras.callbacks.TensorBoard(str(tmp_path / "tb"))])

  def tags(path):
    found = set()
    for f in glob.glob(str(path) + "/**/events.*", recursive=True):
      acc = event_accumulator.EventAccumulator(
          f, size_guidance={event_accumulator.TENSORS: 0})
      acc.Reload()
      found |= set(acc.Tags()["tensors"]) | set(acc.Tags()["scalars"])
    return found

  assert "epoch_itop_rate" in tags(tmp_path / "tb")
  assert {"itop/exploration_rate", "itop/exploration_rate/fc1",
          "itop/density/fc2", "itop/regrown/fc1",
          "itop/prune_fraction"} <= tags(tmp_path / "itop")


def test_sparsity_report_rows_match_the_masks():
  model = helpers.sparse_mlp(0.5)
  rows = itop_tf.sparsity_report(model)
  assert [r["layer"] for r in rows] == ["fc1", "fc2"]
  for r, sw in zip(rows, helpers.kernels(model)):
    assert r["active"] == int(value(sw.mask).sum()) == sw.count
    assert r["shape"] == sw.shape


def test_subclassed_model_says_how_to_wrap_by_hand():

  class Net(keras.Model):

    def __init__(self):
      super().__init__()
      self.fc = keras.layers.Dense(4)

    def call(self, x):
      return self.fc(x)

  net = Net()
  net(np.zeros((1, 3), "float32"))
  with pytest.raises(ValueError, match="itop_tf.keras3.PruneAndRegrow"):
    itop_tf.sparsify(net, 0.9, schedule=helpers.schedule())


def test_layer_that_cannot_be_wrapped_is_left_dense_or_named():
  inp = keras.Input((5, 8))
  x = keras.layers.LSTM(16, name="lstm")(inp)
  out = keras.layers.Dense(4, name="head")(x)
  model = keras.Model(inp, out)
  sparse = itop_tf.sparsify(model, 0.5, schedule=helpers.schedule())
  assert [r["layer"] for r in itop_tf.sparsity_report(sparse)] == ["head"]
  with pytest.raises(ValueError, match="'lstm'.*LSTM is not a layer type"):
    itop_tf.sparsify(model, 0.5, schedule=helpers.schedule(),
                     layer_densities={"lstm": 0.5})
  with pytest.raises(ValueError, match="LSTM is not a layer type"):
    itop_tf.keras3.PruneAndRegrow(keras.layers.LSTM(3), helpers.schedule())
  # Chosen by select, it is an error too, not left dense.
  with pytest.raises(ValueError, match="select chose 'lstm'.*Leave it out"):
    itop_tf.sparsify(model, 0.5, schedule=helpers.schedule(), select="*")
  sparse = itop_tf.sparsify(model, 0.5, schedule=helpers.schedule(),
                            select="h*")
  assert [r["layer"] for r in itop_tf.sparsity_report(sparse)] == ["head"]


@pytest.mark.parametrize("sparsity", [1.0, -0.1, "0.9", True])
def test_bad_sparsity_says_the_range(sparsity):
  with pytest.raises(ValueError, match=r"sparsity must be a number in \[0, 1\)"):
    itop_tf.sparsify(helpers.mlp(), sparsity, schedule=helpers.schedule())


def test_model_already_sparsified_and_missing_schedule_are_refused():
  sparse = helpers.sparse_mlp()
  with pytest.raises(ValueError, match="already sparsified"):
    itop_tf.sparsify(sparse, 0.9, schedule=helpers.schedule())
  with pytest.raises(ValueError, match="RegrowthSchedule"):
    itop_tf.sparsify(helpers.mlp(), 0.9)


def test_callback_on_a_model_without_itop_layers_says_what_to_do():
  model = helpers.compile_model(helpers.mlp())
  x, y = helpers.toy_data(n=32)
  with pytest.raises(ValueError, match="no itop_tf layers"):
    model.fit(x, y, epochs=1, verbose=0, callbacks=[itop_tf.ITOPCallback()])


@pytest.mark.parametrize("spe, late", [(3, 2), (4, 0)])
def test_callback_warns_when_steps_per_execution_delays_updates(spe, late,
                                                                 caplog):
  # 8 steps an epoch, updates due at 4 and 8: calls of 3 end at 3, 6, 8
  # (the update of step 4 waits 2 steps); calls of 4 end on both.
  if keras.backend.backend() == "torch":
    pytest.skip("Keras runs PyTorch with steps_per_execution=1 only.")
  model = helpers.sparse_mlp(interval=4)
  model.compile(keras.optimizers.SGD(0.05),
                keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                steps_per_execution=spe)
  x, y = helpers.toy_data()
  with caplog.at_level("WARNING"):
    model.fit(x, y, batch_size=32, epochs=1, verbose=0,
              callbacks=[itop_tf.ITOPCallback()])
  warned = [m for m in caplog.messages if "steps_per_execution" in m]
  if late:
    assert len(warned) == 1 and f"up to {late} steps late" in warned[0]
  else:
    assert not warned


def test_counts_must_give_one_count_per_kernel():
  layer = itop_tf.keras3.PruneAndRegrow(keras.layers.Dense(4),
                                        helpers.schedule(), counts=[3, 3])
  with pytest.raises(ValueError, match="counts has 2 entries but layer"):
    layer.build((None, 8))
