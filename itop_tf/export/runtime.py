"""The LiteRT runtime: an interpreter for exported bytes, and what it predicts.

Example:

>>> y = predict_tflite(content, x_test)
"""

import numpy as np


def interpreter(tflite_bytes, num_threads=None, default_delegates=True):
  """A LiteRT interpreter (`ai_edge_litert`) for `tflite_bytes`.

  Args:
    tflite_bytes: a LiteRT flatbuffer.
    num_threads: interpreter threads (None: LiteRT's default).
    default_delegates: use LiteRT's default delegate (XNNPACK on CPU), as an
      app would; False runs the builtin kernels only.

  Returns:
    An `ai_edge_litert.interpreter.Interpreter`, tensors not allocated.
  """
  from ai_edge_litert import interpreter as litert  # pylint: disable=g-import-not-at-top
  resolver = (litert.OpResolverType.AUTO if default_delegates else
              litert.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
  return litert.Interpreter(model_content=tflite_bytes,
                            num_threads=num_threads,
                            experimental_op_resolver_type=resolver)


def loads_with_default_delegates(tflite_bytes):
  """Whether LiteRT's default runtime (XNNPACK included) can run the file.

  The file is loaded and invoked once on zeros: XNNPACK prepares a layer
  whose input shape is computed at run time (a Keras 3 `Flatten` exports as
  SHAPE/PACK/RESHAPE) only when it first runs, so loading alone can pass
  where running fails.

  Args:
    tflite_bytes: a LiteRT flatbuffer.

  Returns:
    True if it loads and runs.
  """
  try:
    interp = interpreter(tflite_bytes)
    interp.allocate_tensors()
    for detail in interp.get_input_details():
      interp.set_tensor(detail["index"],
                        np.zeros(detail["shape"], detail["dtype"]))
    interp.invoke()
  except RuntimeError:
    return False
  return True


def predict_tflite(tflite_bytes, x, batch_size=256, num_threads=None,
                   default_delegates=True):
  """Outputs of the LiteRT interpreter on `x`, in batches.

  Args:
    tflite_bytes: a LiteRT flatbuffer with one input and one output.
    x: inputs, an array with the batch first.
    batch_size: examples per `invoke`.
    num_threads: interpreter threads (None: LiteRT's default).
    default_delegates: run with LiteRT's default delegate (XNNPACK).

  Returns:
    The outputs as one array.
  """
  interp = interpreter(tflite_bytes, num_threads, default_delegates)
  inp = interp.get_input_details()[0]
  out = interp.get_output_details()[0]
  x = np.asarray(x, dtype=inp["dtype"])
  results, current = [], None
  for start in range(0, len(x), batch_size):
    batch = x[start:start + batch_size]
    if current != len(batch):
      interp.resize_tensor_input(inp["index"], [len(batch)] +
                                 list(x.shape[1:]))
      interp.allocate_tensors()
      current = len(batch)
    interp.set_tensor(inp["index"], batch)
    interp.invoke()
    results.append(interp.get_tensor(out["index"]).copy())
  return np.concatenate(results)
