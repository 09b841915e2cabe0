"""The Keras 3 front-end of itop_tf (`import keras`; TensorFlow, JAX, PyTorch).

`itop_tf.sparsify`, `strip`, `exploration_rate`, `sparsity_report`,
`ITOPCallback` and `MaskUpdater` take Keras 3 models and come here; this
package holds the Keras 3 layer (`PruneAndRegrow`) and metric
(`ExplorationRate`). The algorithm is `itop_tf.core`, shared with the
tf_keras/TF-MOT front-end.

Example:

>>> import keras, itop_tf
>>> model = itop_tf.sparsify(model, sparsity=0.9,
...     schedule=itop_tf.RegrowthSchedule(100, total_steps), grow="gradient")
>>> model.compile("sgd", "sparse_categorical_crossentropy", jit_compile=True)
>>> model.fit(ds, callbacks=[itop_tf.ITOPCallback()])
"""

from itop_tf.keras3.metrics import ExplorationRate
from itop_tf.keras3.wrapper import PruneAndRegrow

__all__ = ["ExplorationRate", "PruneAndRegrow"]
