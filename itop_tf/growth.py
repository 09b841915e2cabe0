"""How a prune-and-regrow update picks the connections it grows.

A growth rule is a small object that scores every entry of a kernel; the
update grows the best-scored inactive entries (`updaters.prune_and_grow`).
Like jaxpruner's `SET`/`RigL`, the rules differ only in how they score and in
which state that needs:

- `RandomGrowth` ("random", SET): uniform random scores from a stateless RNG
  keyed by (layer seed, kernel, step), so a resumed run draws the same.
- `GradientGrowth` ("gradient", RigL): |dense gradient| of the loss on the
  global mini-batch of the step before the update (all replicas).
- `MomentumGrowth` ("momentum", SNFS): |moving average (decay 0.9) of the
  dense gradient|, updated every step.

Example:

>>> rule = itop_tf.growth.get("gradient")
>>> rule.needs_dense_gradient, rule.captures_every_step
(True, False)
>>> model = itop_tf.sparsify(model, 0.9, schedule=schedule, grow=rule)
"""



class Growth:
  """Base class of the growth rules.

  Attributes:
    name: the rule's `grow=` name (what configs and checkpoints store).
    needs_dense_gradient: whether the wrapper keeps a dense gradient of each
      kernel (`SparseWeight.dense_grad`) for this rule.
    captures_every_step: whether that gradient is written every step (a
      moving average) rather than only on the step before an update.
    gradient_decay: the moving average's decay when `captures_every_step`.
  """

  name = None
  needs_dense_gradient = False
  captures_every_step = False
  gradient_decay = None

  @property
  def captures_when_armed(self):
    """Whether the wrapper needs a `capture` variable: the dense gradient is
    written only in steps that `MaskUpdater.before_step` arms."""
    return self.needs_dense_gradient and not self.captures_every_step

  def scores(self, sparse_weight, step, ops):
    """Scores of every entry of `sparse_weight`'s kernel; higher grows first.

    Written against the array namespace `ops` (`itop_tf.array_ops`), so one
    rule serves both front-ends and every backend.

    Args:
      sparse_weight: a `core.SparseWeight`.
      step: the update's scheduled optimizer step (Python int).
      ops: the array namespace of the model's backend.

    Returns:
      A float tensor of the kernel's shape. Non-finite scores are allowed:
      the update ranks NaN last and clips +-Inf.
    """
    raise NotImplementedError

  def dense_gradient_steps(self, total_steps, num_updates):
    """How many of `total_steps` training steps need the dense gradient."""
    del total_steps, num_updates
    return 0

  def __eq__(self, other):
    return type(other) is type(self)

  def __hash__(self):
    return hash(type(self))

  def __repr__(self):
    return f"{type(self).__name__}()"


class RandomGrowth(Growth):
  """SET: grow uniformly at random among the inactive entries."""

  name = "random"

  def scores(self, sparse_weight, step, ops):
    return ops.uniform(sparse_weight.shape, sparse_weight.seed(), step)


class GradientGrowth(Growth):
  """RigL: grow where the dense gradient of the loss is largest."""

  name = "gradient"
  needs_dense_gradient = True

  def scores(self, sparse_weight, step, ops):
    del step
    return ops.abs(ops.convert_to_tensor(sparse_weight.dense_grad))

  def dense_gradient_steps(self, total_steps, num_updates):
    del total_steps
    return num_updates


class MomentumGrowth(GradientGrowth):
  """SNFS: grow where the momentum of the dense gradient is largest.

  The optimizer's own momentum would not do: gradients reaching the weights
  are masked, so its slot is 0 at every inactive entry.
  """

  name = "momentum"
  captures_every_step = True
  gradient_decay = 0.9

  def dense_gradient_steps(self, total_steps, num_updates):
    del num_updates
    return total_steps


RULES = {rule.name: rule for rule in (RandomGrowth, GradientGrowth,
                                      MomentumGrowth)}
GROW_METHODS = tuple(RULES)


def get(grow):
  """The growth rule `grow` names, or `grow` itself if it is one.

  Args:
    grow: "random", "gradient", "momentum" or a `Growth` instance.

  Returns:
    A `Growth` instance.

  Raises:
    ValueError: an unknown name or type.
  """
  if isinstance(grow, Growth):
    return grow
  if isinstance(grow, str) and grow in RULES:
    return RULES[grow]()
  raise ValueError(f"Unknown grow method {grow!r}: use one of {GROW_METHODS} "
                   "or an itop_tf.growth.Growth instance.")
