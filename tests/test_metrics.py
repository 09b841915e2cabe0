"""itop_rate is a Keras metric: progress bar, History, TensorBoard, evaluate."""

import glob

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

import itop_tf
from tf_keras_helpers import compile_sgd, kernels, mlp, sparse_mlp, toy_data


class RecordingProgbar(keras.callbacks.ProgbarLogger):
  """The real progress bar, recording the R_s it would display each batch."""

  def __init__(self):
    super().__init__(count_mode="steps")
    self.shown, self.actual = [], []

  def on_train_batch_end(self, batch, logs=None):
    super().on_train_batch_end(batch, logs)
    total, count = self.progbar._values["itop_rate"]
    self.shown.append(total / max(1, count))
    self.actual.append(itop_tf.exploration_rate(self.model))


def _fit(model, callbacks, epochs=2, steps=6, verbose=1):
  x, y = toy_data()
  ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(32).repeat()
  return compile_sgd(model).fit(ds, steps_per_epoch=steps, epochs=epochs,
                                verbose=verbose, callbacks=callbacks)


def test_progress_bar_shows_the_current_rate_not_an_epoch_mean(capsys):
  model = sparse_mlp(sparsity=0.8, interval=2)
  bar = RecordingProgbar()
  _fit(model, [itop_tf.ITOPCallback(), bar])
  assert "itop_rate" in bar.stateful_metrics
  np.testing.assert_allclose(bar.shown, bar.actual, rtol=1e-6)
  # It changes at update steps (2, 4, ...) only.
  changes = [i + 1 for i in range(1, len(bar.shown))
             if bar.shown[i] != bar.shown[i - 1]]
  assert changes and all(step % 2 == 0 for step in changes)
  assert f"itop_rate: {bar.actual[-1]:.4f}" in capsys.readouterr().out


def test_rate_is_a_model_metric_in_history_and_evaluate():
  model = sparse_mlp(sparsity=0.8, interval=2)
  assert [m.name for m in model.metrics] == ["itop_rate"]
  assert isinstance(model.metrics[0], itop_tf.tf_keras.ExplorationRate)
  history = _fit(model, [itop_tf.ITOPCallback()], epochs=3, verbose=0)
  rates = history.history["itop_rate"]
  assert rates[0] > 0.2 and rates == sorted(rates)
  assert rates[-1] == pytest.approx(itop_tf.exploration_rate(model))
  x, y = toy_data(64)
  result = model.evaluate(x, y, verbose=0, return_dict=True)
  assert result["itop_rate"] == pytest.approx(itop_tf.exploration_rate(model))
  assert "itop_rate" in model.metrics_names


def test_keras_tensorboard_callback_writes_epoch_itop_rate(tmp_path):
  model = sparse_mlp(sparsity=0.8, interval=2)
  history = _fit(model, [itop_tf.ITOPCallback(),
                         keras.callbacks.TensorBoard(str(tmp_path))],
                 epochs=2, verbose=0)
  values = []
  for path in sorted(glob.glob(str(tmp_path / "train" / "events.*"))):
    for event in tf.compat.v1.train.summary_iterator(path):
      for v in event.summary.value:
        if v.tag == "epoch_itop_rate":
          values.append(float(tf.make_ndarray(v.tensor)))
  np.testing.assert_allclose(values, history.history["itop_rate"], rtol=1e-6)


def test_reset_state_leaves_the_union_alone():
  model = sparse_mlp(sparsity=0.8, interval=2)
  _fit(model, [itop_tf.ITOPCallback()], epochs=1, verbose=0)
  before = [sw.ever_active.numpy().copy() for _, sw in kernels(model)]
  rate = itop_tf.exploration_rate(model)
  assert rate > 0.2
  model.reset_metrics()
  for b, (_, sw) in zip(before, kernels(model)):
    np.testing.assert_array_equal(b, sw.ever_active.numpy())
  metric = itop_tf.tf_keras.metrics.exploration_metric(model)
  assert float(metric.result()) == pytest.approx(rate)
  assert not metric.variables  # nothing of its own to checkpoint or zero


def test_callback_attaches_the_metric_to_a_loaded_model(tmp_path):
  model = sparse_mlp(sparsity=0.8, interval=2)
  model.save(str(tmp_path / "m.h5"))
  with itop_tf.tf_keras.scope():
    loaded = keras.models.load_model(str(tmp_path / "m.h5"), compile=False)
  assert "itop_rate" not in [m.name for m in loaded.metrics]
  history = _fit(loaded, [itop_tf.ITOPCallback()], epochs=2, verbose=0)
  assert "itop_rate" in [m.name for m in loaded.metrics]
  assert history.history["itop_rate"][-1] == pytest.approx(
      itop_tf.exploration_rate(loaded))


def test_callback_writes_the_rate_when_the_train_function_predates_it():
  # A model trained once before the metric existed keeps its traced step.
  inner = mlp()
  model = itop_tf.sparsify(inner, 0.8, schedule=itop_tf.RegrowthSchedule(
      2, 200))
  model._metrics.clear()  # as if attached to nothing
  x, y = toy_data(64)
  compile_sgd(model).fit(x, y, verbose=0, epochs=1)  # traced without it
  history = model.fit(x, y, verbose=0, epochs=2,
                      callbacks=[itop_tf.ITOPCallback()])
  assert history.history["itop_rate"][-1] == pytest.approx(
      itop_tf.exploration_rate(model))
  assert history.history["itop_rate"][-1] > 0.2


def test_exploration_rate_metric_needs_itop_layers():
  with pytest.raises(ValueError, match="no itop_tf layers.*itop_tf.sparsify"):
    itop_tf.tf_keras.ExplorationRate(mlp())


def test_rate_is_held_between_updates_not_summed_every_step():
  # A write to the unions that bypasses the update engine must not show in
  # the metric until Keras resets it: the train step reads the held value.
  model = sparse_mlp(sparsity=0.8, interval=2)
  _fit(model, [itop_tf.ITOPCallback()], epochs=1, verbose=0)
  metric = itop_tf.tf_keras.metrics.exploration_metric(model)
  held = float(metric.result())
  assert held == pytest.approx(itop_tf.exploration_rate(model)) and held < 1
  for _, sw in kernels(model):
    sw.ever_active.assign(tf.ones_like(sw.ever_active))
  assert float(metric.result()) == pytest.approx(held)
  model.reset_metrics()
  assert float(metric.result()) == pytest.approx(1.0)


def test_evaluate_reports_the_rate_of_restored_weights(tmp_path):
  # The held value is read again when evaluate starts, so weights loaded
  # after the metric was attached are what it reports.
  trained = sparse_mlp(sparsity=0.8, interval=2)
  _fit(trained, [itop_tf.ITOPCallback()], epochs=2, verbose=0)
  path = str(tmp_path / "ckpt")
  trained.save_weights(path)
  fresh = compile_sgd(sparse_mlp(sparsity=0.8, interval=2))
  start = itop_tf.exploration_rate(fresh)
  fresh.load_weights(path)
  assert itop_tf.exploration_rate(fresh) > start + 0.05
  x, y = toy_data(64)
  result = fresh.evaluate(x, y, verbose=0, return_dict=True)
  assert result["itop_rate"] == pytest.approx(
      itop_tf.exploration_rate(trained))


def test_update_sets_every_rate_metric_of_the_model():
  # One attached by sparsify and one the user compiled in.
  model = sparse_mlp(sparsity=0.8, interval=2)
  mine = itop_tf.tf_keras.ExplorationRate(model, name="my_rate")
  x, y = toy_data()
  model.compile(keras.optimizers.SGD(0.1), "sparse_categorical_crossentropy",
                metrics=[mine])
  model.fit(x, y, batch_size=32, epochs=1, verbose=0,
            callbacks=[itop_tf.ITOPCallback()])
  rate = itop_tf.exploration_rate(model)
  assert rate > 0.25
  assert float(mine.result()) == pytest.approx(rate)
  assert float(itop_tf.tf_keras.metrics.exploration_metric(model).result()) == (
      pytest.approx(rate))
