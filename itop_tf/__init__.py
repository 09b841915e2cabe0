"""itop_tf: dynamic sparse training with In-Time Over-Parameterization.

For Keras 3 (`import keras`; TensorFlow, JAX or PyTorch backend) and for
tf_keras, where it extends TF-MOT pruning; one algorithm (`itop_tf.core`)
under both. A network starts sparse (random masks, ERK layer densities) and
keeps exploring its connectivity: every Delta T steps each layer drops its
smallest weights and regrows as many (randomly = SET, by dense gradient =
RigL).

The names here take a model of either Keras. Each Keras' own layer and
metric are in its front-end: `itop_tf.keras3` and `itop_tf.tf_keras`.
`import itop_tf` imports no TensorFlow: with Keras 3 on JAX or PyTorch it
runs where TensorFlow is not installed (`export_tflite` and TensorBoard
summaries need it; `itop_tf.tf_keras` is TensorFlow's).

Example:

>>> import keras, itop_tf                 # or: import tf_keras as keras
>>> model = itop_tf.sparsify(model, sparsity=0.9, grow="gradient",
...     schedule=itop_tf.RegrowthSchedule(update_interval=100, total_steps=N))
>>> model.compile("sgd", "sparse_categorical_crossentropy", jit_compile=True)
>>> model.fit(ds, callbacks=[itop_tf.ITOPCallback(log_dir="logs")])
>>> itop_tf.exploration_rate(model)
"""

import importlib
import os

# TF-MOT needs Keras 2; make tf.keras mean tf_keras before TensorFlow loads.
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
if os.environ.get("KERAS_BACKEND") == "torch":
  # Keras 3 on PyTorch 2.14 loaded after TensorFlow 2.21 crashes the process
  # (segmentation fault); loaded before it, both work.
  import keras  # pylint: disable=g-import-not-at-top,unused-import

# pylint: disable=g-import-not-at-top,wrong-import-position
from itop_tf import growth
from itop_tf import keras3
from itop_tf.callbacks import ITOPCallback
from itop_tf.distributions import layer_counts
from itop_tf.distributions import layer_densities
from itop_tf.flops import forward_flops
from itop_tf.flops import training_flops
from itop_tf.flops import training_flops_ratio
from itop_tf.frontends import find_wrappers
from itop_tf.metrics import exploration_rate
from itop_tf.metrics import format_report
from itop_tf.metrics import sparsity_report
from itop_tf.prune import sparsify
from itop_tf.prune import strip
from itop_tf.schedules import RegrowthSchedule
from itop_tf.updaters import MaskUpdater

__version__ = "0.1.0"

# Loaded on first use: they import TensorFlow.
_LAZY = {
    "tf_keras": ("itop_tf.tf_keras", None),
    "export_tflite": ("itop_tf.export", "export_tflite"),
    "ExportReport": ("itop_tf.export", "ExportReport"),
}

# Names that take one Keras only, and where they are now.
_MOVED = {
    "PruneAndRegrow": "itop_tf.tf_keras.PruneAndRegrow (tf_keras) or "
                      "itop_tf.keras3.PruneAndRegrow (Keras 3)",
    "ExplorationRate": "itop_tf.tf_keras.ExplorationRate (tf_keras) or "
                       "itop_tf.keras3.ExplorationRate (Keras 3)",
    "scope": "itop_tf.tf_keras.scope (Keras 3 needs no scope)",
    "custom_objects": "itop_tf.tf_keras.custom_objects",
}


def __getattr__(name):
  if name in _LAZY:
    module, attr = _LAZY[name]
    try:
      value = importlib.import_module(module)
    except ImportError as e:
      raise ImportError(
          f"itop_tf.{name} needs TensorFlow, which cannot be imported here "
          f"({e}). Install tensorflow (pip install itop_tf[tf_keras]); to "
          "export a model trained on JAX or PyTorch, save it as .keras and "
          "export it in a process with KERAS_BACKEND=tensorflow.") from e
    return value if attr is None else getattr(value, attr)
  if name in _MOVED:
    raise AttributeError(
        f"itop_tf.{name} takes one Keras and lives in its front-end: use "
        f"{_MOVED[name]}.")
  raise AttributeError(f"module 'itop_tf' has no attribute {name!r}")


__all__ = [
    "ExportReport", "ITOPCallback", "MaskUpdater", "RegrowthSchedule",
    "exploration_rate", "export_tflite", "find_wrappers", "format_report",
    "forward_flops", "growth", "keras3", "layer_counts", "layer_densities", "sparsify",
    "sparsity_report", "strip", "tf_keras", "training_flops",
    "training_flops_ratio",
]
