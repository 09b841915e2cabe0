"""Export checks shared by the tf_keras and Keras 3 suites (either Keras)."""

import numpy as np

import itop_tf
from itop_tf import export


def check_mixed_precision_export(model, path):
  """A `mixed_float16` small CNN from `sparsify` exports computing in float32.

  `strip` keeps the float16 layers; `strip(dtype="float32")` and the file
  compute in float32. The converter has no float16 Conv2D: without float32
  layers `export_tflite` raised "cannot convert".

  Args:
    model: the sparsified `small_cnn()` of tf_keras_helpers or
      keras3_helpers (8x8x3 inputs), built under `mixed_float16`.
    path: where the `.tflite` file goes.
  """
  assert {l.compute_dtype for l in itop_tf.strip(model).layers[1:]} == {
      "float16"}
  plain = itop_tf.strip(model, dtype="float32")
  assert {l.compute_dtype for l in plain.layers} == {"float32"}
  report = itop_tf.export_tflite(model, str(path))
  x = np.random.default_rng(0).random((32, 8, 8, 3), np.float32)
  out = export.predict_tflite(path.read_bytes(), x)
  np.testing.assert_allclose(out, plain.predict(x, verbose=0), rtol=1e-5,
                             atol=1e-5)
  np.testing.assert_allclose(out, model.predict(x, verbose=0), rtol=2e-2,
                             atol=2e-2)  # the float16 model, give or take
  assert {t.dtype for t in report.tensors} == {"float32"}
  assert max(t.zero_fraction for t in report.tensors) > 0.8
