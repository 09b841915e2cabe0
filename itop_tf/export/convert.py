"""Converting a plain (stripped) Keras model to LiteRT bytes.

Example:

>>> content = convert(itop_tf.strip(model), quantize="float16")
"""

import contextlib

import numpy as np
import tensorflow as tf

from itop_tf import frontends

QUANTIZE = (None, "float16", "int8")
_REPRESENTATIVE_SAMPLES = 200


def _representative(data):
  """A TFLite representative-dataset generator over `data`'s first samples."""
  if isinstance(data, tf.data.Dataset):
    samples = []
    for item in data:
      x = item[0] if isinstance(item, (tuple, list)) else item
      samples.extend(np.asarray(x))
      if len(samples) >= _REPRESENTATIVE_SAMPLES:
        break
    data = samples
  data = np.asarray(data, dtype=np.float32)[:_REPRESENTATIVE_SAMPLES]
  if not len(data):
    raise ValueError("representative_data is empty.")

  def generate():
    for sample in data:
      yield [sample[None]]

  return generate


def check_convertible(model):
  """Raises unless TensorFlow's LiteRT converter can take `model` here.

  tf_keras models can be converted; Keras 3 models on the TensorFlow backend
  only (Keras 3 itself exports LiteRT from TensorFlow, and from PyTorch only
  through `litert_torch`).

  Args:
    model: a tf_keras or Keras 3 model.

  Raises:
    ValueError: a Keras 3 model on another backend, with the way round.
  """
  if frontends.keras_of(model) != "keras3":
    return
  import keras  # pylint: disable=g-import-not-at-top
  backend = keras.backend.backend()
  if backend != "tensorflow":
    raise ValueError(
        "LiteRT export converts Keras 3 models on the TensorFlow backend; "
        f"this process runs Keras 3 on {backend!r}. Save the model "
        "(model.save('m.keras')), then in a process started with "
        "KERAS_BACKEND=tensorflow, `import itop_tf` and export "
        "keras.models.load_model('m.keras', compile=False): the file loads "
        "with its masks on any backend (compile=False: a PyTorch "
        "optimizer's config would import torch after TensorFlow, which "
        "crashes).")


@contextlib.contextmanager
def _quiet(model):
  """Keeps Keras 3's export messages (its temporary SavedModel) off stdout."""
  if frontends.keras_of(model) != "keras3":
    yield
    return
  import keras  # pylint: disable=g-import-not-at-top
  was = keras.config.is_interactive_logging_enabled()
  keras.config.disable_interactive_logging()
  try:
    yield
  finally:
    if was:
      keras.config.enable_interactive_logging()


def convert(model, quantize=None, representative_data=None, sparse=True):
  """Converts a plain (stripped) model to LiteRT flatbuffer bytes.

  Args:
    model: a tf_keras model, or a Keras 3 model on the TensorFlow backend,
      without itop_tf layers.
    quantize: None (float32), "float16" (weights) or "int8" (post-training
      quantization of weights and activations; float input and output).
    representative_data: inputs to calibrate int8 activations (an array of
      examples, or a `tf.data.Dataset` of inputs or (inputs, labels)).
    sparse: encode sparse weights (`Optimize.EXPERIMENTAL_SPARSITY`).

  Returns:
    The flatbuffer as bytes.

  Raises:
    ValueError: an unknown `quantize`, int8 without representative data, a
      Keras 3 model on a backend other than TensorFlow, or a model the
      converter cannot take (its message is quoted).
  """
  check_convertible(model)
  if quantize not in QUANTIZE:
    raise ValueError(f"quantize must be one of {QUANTIZE}, got {quantize!r}.")
  if quantize == "int8" and representative_data is None:
    raise ValueError(
        "quantize='int8' needs representative_data: a few hundred training "
        "inputs, to calibrate the activations' int8 ranges.")
  converter = tf.lite.TFLiteConverter.from_keras_model(model)
  optimizations = []
  if quantize is not None:
    optimizations.append(tf.lite.Optimize.DEFAULT)
  if sparse:
    optimizations.append(tf.lite.Optimize.EXPERIMENTAL_SPARSITY)
  converter.optimizations = optimizations
  if quantize == "float16":
    converter.target_spec.supported_types = [tf.float16]
  if quantize == "int8":
    converter.representative_dataset = _representative(representative_data)
  try:
    with _quiet(model):
      return converter.convert()
  except Exception as e:  # pylint: disable=broad-except
    # The converter raises ConverterError (and others) with long MLIR logs.
    first = [l.strip() for l in str(e).splitlines() if l.strip()]
    detail = " ".join(l for l in first if "error" in l.lower())[:600]
    raise ValueError(
        "The LiteRT converter cannot convert this model: "
        f"{detail or first[:3]}. Replace the layers or ops it names with "
        "LiteRT builtins, or keep them out of the exported model.") from e
