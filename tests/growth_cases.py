"""Growth rules of one's own, registered once for both front-ends' tests."""

from itop_tf import growth


@growth.register
class ScaledGradient(growth.GradientGrowth):
  """RigL with a factor in its config (to see the config come back)."""

  name = "test_scaled_gradient"

  def __init__(self, factor=2.0):
    self.factor = float(factor)

  def get_config(self):
    return {"factor": self.factor}


@growth.register
class DropLargest(growth.RandomGrowth):
  """Drops the largest weights (the opposite of magnitude pruning) and grows
  at random among the entries inactive before the update, so no dropped
  entry is regrown."""

  name = "test_drop_largest"

  def drop_scores(self, sparse_weight, step, ops):
    return -ops.abs(ops.convert_to_tensor(sparse_weight.weight))

  def scores(self, sparse_weight, step, ops):
    uniform = super().scores(sparse_weight, step, ops)
    return ops.where(ops.convert_to_tensor(sparse_weight.mask),
                     ops.full_like(uniform, -1.0), uniform)
