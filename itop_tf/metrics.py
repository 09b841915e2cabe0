"""Exploration metrics: the ITOP rate R_s and a per-layer sparsity report.

R_s is the fraction of all sparse-able weights that have ever been active:
`|union of all masks so far| / |all weights of the wrapped kernels|`. It
starts at `1 - sparsity`, never decreases, and kernels that ERK made fully
dense count as fully explored.

Example:

>>> model = itop_tf.sparsify(model, sparsity=0.9, schedule=schedule)
>>> round(itop_tf.exploration_rate(model), 3)
0.1
"""

import tensorflow as tf

from itop_tf import updaters


def _entries(model):
  wrappers = updaters.find_wrappers(model)
  if not wrappers:
    raise ValueError(
        "The model has no itop_tf layers: build it with itop_tf.sparsify().")
  return [(w, i, sw) for w in wrappers for i, sw in enumerate(w.sparse_weights)]


def exploration_rate(model):
  """Global ITOP rate R_s of `model` as a Python float.

  Args:
    model: a model with `PruneAndRegrow` layers.

  Returns:
    float in (0, 1].

  Raises:
    ValueError: the model has no itop_tf layers.
  """
  return updaters.exploration_rate_of(_entries(model))


def _count(var):
  return int(tf.reduce_sum(tf.cast(var, tf.int64)))


def sparsity_report(model):
  """Per sparse kernel: shape, size, active count, density and R_s.

  Args:
    model: a model with `PruneAndRegrow` layers.

  Returns:
    A list of dicts with keys "layer", "shape", "size", "active", "density"
    and "exploration_rate", in model order.

  Raises:
    ValueError: the model has no itop_tf layers.
  """
  rows = []
  for w, i, sw in _entries(model):
    active = _count(sw.mask)
    rows.append({
        "layer": updaters.kernel_name(w, i),
        "shape": tuple(int(d) for d in sw.weight.shape),
        "size": sw.size,
        "active": active,
        "density": active / float(sw.size),
        "exploration_rate": _count(sw.ever_active) / float(sw.size),
    })
  return rows


def format_report(rows):
  """The rows of `sparsity_report` as an aligned text table."""
  head = f"{'layer':<32} {'shape':<20} {'active':>10} {'density':>8} {'R_s':>6}"
  lines = [head, "-" * len(head)]
  for r in rows:
    lines.append(f"{r['layer']:<32} {str(r['shape']):<20} {r['active']:>10d} "
                 f"{r['density']:>8.4f} {r['exploration_rate']:>6.3f}")
  return "\n".join(lines)
