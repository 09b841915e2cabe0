"""The tf_keras/TF-MOT front-end of itop_tf (`import tf_keras as keras`).

`itop_tf.sparsify`, `strip`, `exploration_rate`, `sparsity_report`,
`ITOPCallback` and `MaskUpdater` take tf_keras models and come here for the
Keras side; this package holds the tf_keras layer (`PruneAndRegrow`, a
TF-MOT `PruneLowMagnitude`), metric (`ExplorationRate`), the loading scope
for files with itop_tf layers, and FLOPs accounting. The algorithm is
`itop_tf.core`, shared with the Keras 3 front-end.

Importing it imports TensorFlow, tf_keras and TF-MOT; `import itop_tf` does
not.

Example:

>>> import tf_keras as keras, itop_tf
>>> model = itop_tf.sparsify(model, sparsity=0.9,
...     schedule=itop_tf.RegrowthSchedule(100, total_steps))
>>> with itop_tf.tf_keras.scope():
...   loaded = keras.models.load_model("sparse.h5")
"""

import contextlib

import tf_keras as keras

from itop_tf import schedules
from itop_tf.flops import forward_flops
from itop_tf.flops import training_flops
from itop_tf.flops import training_flops_ratio
from itop_tf.tf_keras.metrics import ExplorationRate
from itop_tf.tf_keras.wrapper import ExactCountMask
from itop_tf.tf_keras.wrapper import PruneAndRegrow


def custom_objects():
  """The classes tf_keras needs to load a model saved with itop_tf layers."""
  return {
      "PruneAndRegrow": PruneAndRegrow,
      "RegrowthSchedule": schedules.RegrowthSchedule,
      "ExactCountMask": ExactCountMask,
      "ExplorationRate": ExplorationRate,
  }


@contextlib.contextmanager
def scope():
  """Context in which tf_keras can load models saved with itop_tf layers.

  Example:

  >>> with itop_tf.tf_keras.scope():
  ...   model = keras.models.load_model("sparse.h5")
  """
  with keras.utils.custom_object_scope(custom_objects()):
    yield


__all__ = ["ExplorationRate", "PruneAndRegrow", "custom_objects",
           "forward_flops", "scope", "training_flops", "training_flops_ratio"]
