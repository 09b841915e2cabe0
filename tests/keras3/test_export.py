"""LiteRT export of Keras 3 models: TensorFlow backend; the way round on others.

On the TensorFlow backend `itop_tf.export_tflite` converts a Keras 3 model as
it does a tf_keras one. On JAX and PyTorch it refuses and names the way: save
`.keras`, load and export under `KERAS_BACKEND=tensorflow`, which the last
test walks.
"""

import os
import subprocess
import sys

import keras
import numpy as np
import pytest

import digits_task
import export_checks
import itop_tf
import keras3_helpers as helpers
from itop_tf import export

# Each test converts with the LiteRT converter (1-2 s a model): slow tier.
pytestmark = pytest.mark.slow

on_tensorflow = pytest.mark.skipif(
    helpers.BACKEND != "tensorflow",
    reason="LiteRT export converts Keras 3 models on TensorFlow only")
elsewhere = pytest.mark.skipif(
    helpers.BACKEND == "tensorflow",
    reason="the way round is for the JAX and PyTorch backends")

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))))


@pytest.fixture(scope="module")
def digits_model():
  """The digits conv net, 90% sparse, RigL-ITOP for 4 epochs."""
  keras.utils.set_random_seed(0)
  (x_train, y_train), test = digits_task.data()
  model = itop_tf.sparsify(
      digits_task.conv_net(keras), 0.9, grow="gradient",
      schedule=itop_tf.RegrowthSchedule(20, 500))
  helpers.compile_model(model).fit(x_train, y_train, batch_size=64,
                                  epochs=4, verbose=0,
                                  callbacks=[itop_tf.ITOPCallback()])
  return model, x_train, test


def _litert_shape(shape):
  """How LiteRT stores a Keras kernel: Dense (out, in), Conv2D (O, H, W, I)."""
  if len(shape) == 4:
    return (shape[3],) + tuple(shape[:3])
  return tuple(reversed(shape))


def _kernel_zero_fractions(plain):
  return {_litert_shape(tuple(l.kernel.shape)):
          float(np.mean(helpers.value(l.kernel) == 0))
          for l in plain.layers if hasattr(l, "kernel")}


@on_tensorflow
def test_float_export_predicts_as_keras_and_keeps_every_zero(digits_model,
                                                              tmp_path,
                                                              capsys):
  model, _, (x_test, y_test) = digits_model
  assert keras.config.is_interactive_logging_enabled()
  report = itop_tf.export_tflite(model, str(tmp_path / "m.tflite"),
                                 eval_data=(x_test, y_test))
  # Keras 3 would print its temporary SavedModel's path and endpoints.
  assert "Saved artifact" not in capsys.readouterr().out
  assert keras.config.is_interactive_logging_enabled()  # restored
  content = (tmp_path / "m.tflite").read_bytes()
  assert len(content) == report.bytes
  plain = itop_tf.strip(model)
  np.testing.assert_allclose(export.predict_tflite(content, x_test),
                             plain.predict(x_test, verbose=0),
                             rtol=1e-4, atol=1e-4)
  assert report.accuracy == pytest.approx(report.keras_accuracy, abs=1e-3)
  # Every kernel's zeros, read back from the file, are the stripped
  # kernel's: nothing densified, nothing of RigL's captured gradient.
  tensors = {t.shape: t for t in report.tensors}
  zeros = _kernel_zero_fractions(plain)
  assert len(zeros) == 4
  for shape, fraction in zeros.items():
    assert tensors[shape].zero_fraction == pytest.approx(fraction, abs=1e-9)
  for row in itop_tf.sparsity_report(model):
    fraction = zeros[_litert_shape(tuple(row["shape"]))]
    assert fraction >= 1 - row["density"] - 1e-9
  # The largest kernel is stored sparse and expanded at load time.
  assert tensors[(128, 1024)].sparse and "DENSIFY" in report.ops
  assert report.sparse_encoding and report.default_delegates
  assert report.size_ratio > 4


@on_tensorflow
def test_int8_export_agrees_with_keras_and_keeps_every_zero(digits_model,
                                                            tmp_path):
  model, x_train, (x_test, y_test) = digits_model
  report = itop_tf.export_tflite(model, str(tmp_path / "m8.tflite"),
                                 quantize="int8",
                                 representative_data=x_train[:200],
                                 eval_data=(x_test, y_test))
  assert {t.dtype for t in report.tensors} == {"int8"}
  # XNNPACK cannot run int8 weights stored sparse, which it finds out only
  # when the runtime-shaped FULLY_CONNECTED first runs: auto stores dense.
  assert report.default_delegates and not report.sparse_encoding
  assert "XNNPACK" in report.note
  plain = itop_tf.strip(model)
  agree = np.mean(
      export.predict_tflite((tmp_path / "m8.tflite").read_bytes(),
                            x_test).argmax(-1) ==
      plain.predict(x_test, verbose=0).argmax(-1))
  assert agree >= 0.97
  tensors = {t.shape: t for t in report.tensors}
  for shape, fraction in _kernel_zero_fractions(plain).items():
    assert tensors[shape].zero_fraction >= fraction - 1e-9  # zeros stay 0


@on_tensorflow
def test_mixed_precision_model_exports_computing_in_float32(tmp_path):
  keras.config.set_dtype_policy("mixed_float16")  # conftest resets it
  model = itop_tf.sparsify(helpers.small_cnn(), 0.9,
                           schedule=itop_tf.RegrowthSchedule(10, 100))
  keras.config.set_dtype_policy("float32")
  export_checks.check_mixed_precision_export(model, tmp_path / "m.tflite")


@elsewhere
def test_export_on_another_backend_names_the_way_round(tmp_path):
  model = helpers.sparse_mlp()
  with pytest.raises(ValueError, match="KERAS_BACKEND=tensorflow"):
    itop_tf.export_tflite(model, str(tmp_path / "m.tflite"))
  with pytest.raises(ValueError, match=helpers.BACKEND):
    export.convert(itop_tf.strip(model))
  assert not (tmp_path / "m.tflite").exists()


_EXPORT_UNDER_TENSORFLOW = """
import sys
import itop_tf
import keras
model = keras.models.load_model(sys.argv[1], compile=False)
itop_tf.export_tflite(model, sys.argv[2])
"""


@pytest.mark.slow
@pytest.mark.subprocess
@elsewhere
def test_a_model_saved_here_exports_under_tensorflow(tmp_path):
  model = helpers.compile_model(helpers.sparse_mlp(sparsity=0.9))
  x, y = helpers.toy_data()
  model.fit(x, y, batch_size=32, epochs=2, verbose=0,
            callbacks=[itop_tf.ITOPCallback()])
  assert itop_tf.exploration_rate(model) > 0.1 + 1e-3  # masks have moved
  x_test = helpers.toy_data(n=64, seed=1)[0]
  model.save(str(tmp_path / "m.keras"))
  env = dict(os.environ, KERAS_BACKEND="tensorflow",
             PYTHONPATH=os.pathsep.join([REPO, os.environ.get("PYTHONPATH",
                                                              "")]))
  out = subprocess.run([sys.executable, "-c", _EXPORT_UNDER_TENSORFLOW,
                        str(tmp_path / "m.keras"), str(tmp_path / "m.tflite")],
                       env=env, capture_output=True, text=True, timeout=300,
                       check=False)
  assert out.returncode == 0, out.stderr[-3000:]
  content = (tmp_path / "m.tflite").read_bytes()
  plain = itop_tf.strip(model)
  np.testing.assert_allclose(export.predict_tflite(content, x_test),
                             plain.predict(x_test, verbose=0),
                             rtol=1e-4, atol=1e-4)
  tensors = {t.shape: t for t in export.weight_tensors(content)}
  for shape, fraction in _kernel_zero_fractions(plain).items():
    assert tensors[shape].zero_fraction == pytest.approx(fraction, abs=1e-9)
