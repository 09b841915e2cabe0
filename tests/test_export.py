"""LiteRT export: round trip, zeros read back from the file, sizes, errors."""

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras
from sklearn.datasets import load_digits

import itop_tf
from itop_tf import export

import export_checks
from tf_keras_helpers import compile_sgd, kernels, mlp, small_cnn

# Each test converts with the LiteRT converter (1-2 s a model): slow tier.
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def digits_model():
  """An MLP trained 90%-sparse on digits, with train and test arrays."""
  keras.utils.set_random_seed(0)
  x, y = load_digits(return_X_y=True)
  x = (x / 16.0).astype("float32")
  model = keras.Sequential([keras.Input((64,)),
                            keras.layers.Dense(256, activation="relu",
                                               name="fc1"),
                            keras.layers.Dense(128, activation="relu",
                                               name="fc2"),
                            keras.layers.Dense(10, name="fc3")])
  model = itop_tf.sparsify(model, 0.9, grow="gradient",
                           schedule=itop_tf.RegrowthSchedule(20, 500))
  compile_sgd(model, lr=0.1).fit(x[:1500], y[:1500], batch_size=64,
                                 epochs=12, verbose=0,
                                 callbacks=[itop_tf.ITOPCallback()])
  return model, (x[:1500], y[:1500]), (x[1500:], y[1500:])


def _by_shape(report):
  # LiteRT stores a Dense kernel (in, out) as (out, in).
  return {t.shape: t for t in report.tensors}


def _kernel_zero_fractions(model):
  plain = itop_tf.strip(model)
  return {tuple(reversed(l.kernel.shape)): float(np.mean(l.kernel.numpy() == 0))
          for l in plain.layers}


def test_float_export_predicts_as_keras_and_keeps_every_zero(digits_model,
                                                              tmp_path):
  model, _, (x_test, y_test) = digits_model
  report = itop_tf.export_tflite(model, str(tmp_path / "m.tflite"),
                                 eval_data=(x_test, y_test))
  content = (tmp_path / "m.tflite").read_bytes()
  assert len(content) == report.bytes
  keras_out = itop_tf.strip(model).predict(x_test, verbose=0)
  np.testing.assert_allclose(export.predict_tflite(content, x_test), keras_out,
                             rtol=1e-5, atol=1e-5)
  assert report.accuracy == pytest.approx(report.keras_accuracy, abs=1e-3)
  assert report.accuracy > 0.8
  # Zero fractions read from the file are those of the stripped kernels,
  # at least the model's sparsity per kernel.
  tensors = _by_shape(report)
  for shape, zeros in _kernel_zero_fractions(model).items():
    assert tensors[shape].zero_fraction == pytest.approx(zeros, abs=1e-9)
  for row in itop_tf.sparsity_report(model):
    t = tensors[tuple(reversed(row["shape"]))]
    assert t.zero_fraction >= 1 - row["density"] - 1e-9
  # The sparsest kernels are stored sparse, expanded by DENSIFY at load.
  assert tensors[(128, 256)].sparse and "DENSIFY" in report.ops
  assert tensors[(128, 256)].stored_values < 0.1 * 128 * 256
  assert report.sparse_encoding and report.default_delegates
  assert report.size_ratio > 4  # dense float file / this one
  assert report.bytes < report.dense_bytes


def test_float16_export_keeps_zeros_and_predictions(digits_model, tmp_path):
  model, _, (x_test, _) = digits_model
  report = itop_tf.export_tflite(model, str(tmp_path / "m16.tflite"),
                                 quantize="float16")
  assert {t.dtype for t in report.tensors} == {"float16"}
  tensors = _by_shape(report)
  for shape, zeros in _kernel_zero_fractions(model).items():
    assert tensors[shape].zero_fraction >= zeros - 1e-9
  content = (tmp_path / "m16.tflite").read_bytes()
  keras_out = itop_tf.strip(model).predict(x_test, verbose=0)
  np.testing.assert_allclose(export.predict_tflite(content, x_test), keras_out,
                             rtol=2e-2, atol=2e-2)
  float_report = itop_tf.export_tflite(model, str(tmp_path / "m.tflite"))
  assert report.bytes < float_report.bytes


def test_int8_export_agrees_with_keras_and_runs_on_default_litert(
    digits_model, tmp_path):
  model, (x_train, _), (x_test, y_test) = digits_model
  report = itop_tf.export_tflite(model, str(tmp_path / "m8.tflite"),
                                 quantize="int8",
                                 representative_data=x_train[:200],
                                 eval_data=(x_test, y_test))
  assert {t.dtype for t in report.tensors} == {"int8"}
  # LiteRT's XNNPACK cannot run int8 weights stored sparse: auto stores
  # them dense (zeros kept) and says so.
  assert report.default_delegates and not report.sparse_encoding
  assert "XNNPACK" in report.note
  content = (tmp_path / "m8.tflite").read_bytes()
  keras_out = itop_tf.strip(model).predict(x_test, verbose=0)
  agree = np.mean(export.predict_tflite(content, x_test).argmax(-1) ==
                  keras_out.argmax(-1))
  assert agree >= 0.99
  assert abs(report.accuracy_delta) <= 0.01
  tensors = _by_shape(report)
  for shape, zeros in _kernel_zero_fractions(model).items():
    assert tensors[shape].zero_fraction >= zeros - 1e-9  # zeros stay 0


def test_int8_with_forced_sparse_encoding_runs_without_xnnpack(digits_model,
                                                                tmp_path):
  model, (x_train, _), (x_test, y_test) = digits_model
  auto = itop_tf.export_tflite(model, str(tmp_path / "a.tflite"),
                               quantize="int8",
                               representative_data=x_train[:200])
  forced = itop_tf.export_tflite(model, str(tmp_path / "s.tflite"),
                                 quantize="int8",
                                 representative_data=x_train[:200],
                                 eval_data=(x_test, y_test),
                                 sparse_encoding=True)
  assert forced.sparse_encoding and not forced.default_delegates
  assert not export.loads_with_default_delegates(
      (tmp_path / "s.tflite").read_bytes())
  assert forced.bytes < auto.bytes
  assert abs(forced.accuracy_delta) <= 0.01  # builtin kernels ran it


def test_representative_data_may_be_a_dataset(digits_model, tmp_path):
  model, (x_train, y_train), _ = digits_model
  ds = tf.data.Dataset.from_tensor_slices((x_train, y_train)).batch(32)
  report = itop_tf.export_tflite(model, str(tmp_path / "m.tflite"),
                                 quantize="int8", representative_data=ds)
  assert {t.dtype for t in report.tensors} == {"int8"}


def test_mixed_precision_model_exports_computing_in_float32(tmp_path):
  keras.mixed_precision.set_global_policy("mixed_float16")
  try:
    model = itop_tf.sparsify(small_cnn(), 0.9,
                             schedule=itop_tf.RegrowthSchedule(10, 100))
  finally:
    keras.mixed_precision.set_global_policy("float32")
  export_checks.check_mixed_precision_export(model, tmp_path / "m.tflite")


def test_export_rejects_a_model_without_itop_layers(tmp_path):
  with pytest.raises(ValueError, match="no itop_tf layers"):
    itop_tf.export_tflite(mlp(), str(tmp_path / "m.tflite"))
  assert not (tmp_path / "m.tflite").exists()


@pytest.mark.parametrize("kwargs,message", [
    ({"quantize": "int8"}, "needs representative_data"),
    ({"quantize": "int4"}, "quantize must be one of"),
    ({"sparse_encoding": "yes"}, "sparse_encoding must be"),
])
def test_export_rejects_bad_arguments(kwargs, message, tmp_path):
  model = itop_tf.sparsify(mlp(), 0.9,
                           schedule=itop_tf.RegrowthSchedule(10, 100))
  with pytest.raises(ValueError, match=message):
    itop_tf.export_tflite(model, str(tmp_path / "m.tflite"), **kwargs)
  assert not (tmp_path / "m.tflite").exists()


def test_export_names_what_the_converter_cannot_take(tmp_path):
  inp = keras.Input((16,))
  x = keras.layers.Dense(8, name="fc")(inp)
  x = keras.layers.Lambda(lambda t: tf.numpy_function(
      np.tanh, [t], tf.float32, stateful=False), name="py")(x)
  model = itop_tf.sparsify(keras.Model(inp, x), 0.5,
                           schedule=itop_tf.RegrowthSchedule(10, 100))
  with pytest.raises(ValueError, match="LiteRT converter cannot convert"):
    itop_tf.export_tflite(model, str(tmp_path / "m.tflite"))
  assert kernels(model)  # the model itself is untouched
