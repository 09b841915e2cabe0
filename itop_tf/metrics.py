"""Exploration metrics of a sparsified model of either Keras: R_s and a report.

R_s is the fraction of all sparse-able weights that have ever been active:
`|union of all masks so far| / |all weights of the wrapped kernels|`. It
starts at `1 - sparsity`, never decreases, and kernels that ERK made fully
dense count as fully explored.

The `itop_rate` metric that shows R_s in the progress bar, `History`,
Keras' `TensorBoard` and `evaluate` is each front-end's `ExplorationRate`
(`itop_tf.tf_keras.ExplorationRate`, `itop_tf.keras3.ExplorationRate`);
`sparsify` attaches it and the update engine sets it after every update.

Example:

>>> model = itop_tf.sparsify(model, sparsity=0.9, schedule=schedule)
>>> round(itop_tf.exploration_rate(model), 3)
0.1
>>> [m.name for m in model.metrics]
['itop_rate']
"""

import numpy as np

from itop_tf import frontends

METRIC_NAME = "itop_rate"


def exploration_rate_of(sparse_weights, frontend):
  """R_s of the kernels `sparse_weights` (`core.SparseWeight`s), a float.

  Args:
    sparse_weights: a list of `core.SparseWeight`.
    frontend: the `frontends.Frontend` of their model.

  Returns:
    Ever-active entries over all entries, rounded to float32 (the
    precision of the `itop_rate` metric, so logs, `History` and this agree
    exactly); 1.0 for an empty list.
  """
  total = sum(sw.size for sw in sparse_weights)
  if not total:
    return 1.0
  ever = sum(frontend.count(sw.ever_active) for sw in sparse_weights)
  return float(np.float32(ever / total))


def exploration_rate(model):
  """Global ITOP rate R_s of `model` as a Python float.

  Args:
    model: a tf_keras or Keras 3 model with itop_tf layers.

  Returns:
    float in (0, 1].

  Raises:
    ValueError: the model has no itop_tf layers.
  """
  frontend = frontends.frontend_of(model)
  frontend.sync(model)
  return exploration_rate_of(frontend.sparse_weights(model), frontend)


def sparsity_report(model):
  """Per sparse kernel: shape, size, active count, density and R_s.

  Args:
    model: a tf_keras or Keras 3 model with itop_tf layers.

  Returns:
    A list of dicts with keys "layer", "shape", "size", "active", "density"
    and "exploration_rate", in model order.

  Raises:
    ValueError: the model has no itop_tf layers.
  """
  frontend = frontends.frontend_of(model)
  frontend.sync(model)
  rows = []
  for sw in frontend.sparse_weights(model):
    active = frontend.count(sw.mask)
    rows.append({
        "layer": sw.name, "shape": sw.shape, "size": sw.size,
        "active": active, "density": active / float(sw.size),
        "exploration_rate": frontend.count(sw.ever_active) / float(sw.size),
    })
  return rows


def attach_exploration_metric(model):
  """Puts the front-end's `ExplorationRate` in `model.metrics`, once.

  `itop_tf.sparsify` calls it; `ITOPCallback` calls it at train begin for
  models made otherwise (subclassed models with hand-placed wrappers, models
  loaded from a file).

  Args:
    model: a tf_keras or Keras 3 model with itop_tf layers.

  Returns:
    The model's `ExplorationRate` metric.

  Raises:
    ValueError: the model has no itop_tf layers.
  """
  return frontends.frontend_of(model).attach_metric(model)


def format_report(rows):
  """The rows of `sparsity_report` as an aligned text table."""
  head = f"{'layer':<32} {'shape':<20} {'active':>10} {'density':>8} {'R_s':>6}"
  lines = [head, "-" * len(head)]
  for r in rows:
    lines.append(f"{r['layer']:<32} {str(r['shape']):<20} {r['active']:>10d} "
                 f"{r['density']:>8.4f} {r['exploration_rate']:>6.3f}")
  return "\n".join(lines)
