"""itop_tf: dynamic sparse training with In-Time Over-Parameterization.

For Keras 3 (`import keras`; TensorFlow, JAX or PyTorch backend) and for
tf_keras, where it extends TF-MOT pruning; one algorithm (`itop_tf.core`)
under both. A network starts sparse (random masks, ERK layer densities) and
keeps exploring its connectivity: every Delta T steps each layer drops its
smallest weights and regrows as many (randomly = SET, by dense gradient =
RigL).

Example:

>>> import keras, itop_tf                 # or: import tf_keras as keras
>>> model = itop_tf.sparsify(model, sparsity=0.9, grow="gradient",
...     schedule=itop_tf.RegrowthSchedule(update_interval=100, total_steps=N))
>>> model.compile("sgd", "sparse_categorical_crossentropy", jit_compile=True)
>>> model.fit(ds, callbacks=[itop_tf.ITOPCallback(log_dir="logs")])
>>> itop_tf.exploration_rate(model)
"""

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
from itop_tf.export import ExportReport
from itop_tf.export import export_tflite
from itop_tf.distributions import layer_densities
from itop_tf.flops import forward_flops
from itop_tf.flops import training_flops
from itop_tf.flops import training_flops_ratio
from itop_tf.metrics import ExplorationRate
from itop_tf.metrics import exploration_rate
from itop_tf.metrics import format_report
from itop_tf.metrics import sparsity_report
from itop_tf.prune import custom_objects
from itop_tf.prune import scope
from itop_tf.prune import sparsify
from itop_tf.prune import strip
from itop_tf.schedules import RegrowthSchedule
from itop_tf.updaters import MaskUpdater
from itop_tf.wrapper import PruneAndRegrow
from itop_tf.wrapper import find_wrappers

__version__ = "0.1.0"

__all__ = [
    "ExplorationRate", "ExportReport", "ITOPCallback", "MaskUpdater", "PruneAndRegrow",
    "RegrowthSchedule", "custom_objects", "exploration_rate", "export_tflite", "find_wrappers",
    "format_report", "forward_flops", "growth", "keras3", "layer_counts",
    "layer_densities", "scope", "sparsify", "sparsity_report", "strip",
    "training_flops", "training_flops_ratio",
]
