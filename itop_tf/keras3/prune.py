"""What `itop_tf.sparsify` and `itop_tf.strip` need to edit Keras 3 models.

`itop_tf.prune` holds the one `sparsify`/`strip`; this module describes the
Keras 3 side of it (`KERAS3`): its wrapper, which layers it can wrap and how
to read a mask.
"""

import keras

from itop_tf import prune
from itop_tf.keras3 import metrics
from itop_tf.keras3 import wrapper as wrapper_lib


def _is_functional(model):
  return isinstance(model, keras.Sequential) or (
      type(model).__name__ == "Functional")


KERAS3 = prune.ModelEditing(
    keras, wrapper_lib.PruneAndRegrow, wrapper_lib.SUPPORTED,
    wrapper_lib.unsupported_reason, wrapper_lib.prunable_kernels,
    _is_functional, keras.ops.convert_to_numpy,
    metrics.attach_exploration_metric,
    lambda m: any(isinstance(l, wrapper_lib.PruneAndRegrow)
                  for l in m._flatten_layers()))  # pylint: disable=protected-access
