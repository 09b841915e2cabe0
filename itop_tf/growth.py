"""How a prune-and-regrow update picks the connections it drops and grows.

A growth rule is a small object that scores every entry of a kernel; the
update grows the best-scored inactive entries (`core.prune_and_grow`) and,
unless the rule says otherwise (`drop_scores`), drops the active entries of
smallest magnitude. Like jaxpruner's `SET`/`RigL` updaters, the rules differ
only in how they score and in which state that needs:

- `RandomGrowth` ("random", SET): uniform random scores from a stateless RNG
  keyed by (layer seed, kernel, step), so a resumed run draws the same.
- `GradientGrowth` ("gradient", RigL): |dense gradient| of the loss on the
  global mini-batch of the step before the update (all replicas).
- `MomentumGrowth` ("momentum", SNFS): |moving average (decay 0.9) of the
  dense gradient|, updated every step.

A rule of your own subclasses `Growth`, gives itself a `name` and is
registered with `register`, so that a model trained with it saves its name
(and `get_config()`) and loads back with the same rule.

Example:

>>> rule = itop_tf.growth.get("gradient")
>>> rule.needs_dense_gradient, rule.captures_every_step
(True, False)
>>> @itop_tf.growth.register
... class Sensitivity(itop_tf.growth.GradientGrowth):
...   name = "sensitivity"           # grow by |w * dL/dw|, drop by it too
...   def drop_scores(self, sparse_weight, step, ops):
...     return ops.abs(ops.convert_to_tensor(sparse_weight.weight) *
...                    ops.convert_to_tensor(sparse_weight.dense_grad))
>>> model = itop_tf.sparsify(model, 0.9, schedule=schedule,
...                          grow="sensitivity")
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

  def drop_scores(self, sparse_weight, step, ops):
    """Scores of the active entries to keep; the `k` lowest are dropped.

    None (the default) drops by magnitude, `|w|`, as SET and RigL do.
    Whatever the scores, an active weight that is NaN or +-Inf is dropped
    first, and the count stays exact.

    Args:
      sparse_weight: a `core.SparseWeight`.
      step: the update's scheduled optimizer step (Python int).
      ops: the array namespace of the model's backend.

    Returns:
      None, or a float tensor of the kernel's shape (higher is kept).
    """
    del sparse_weight, step, ops
    return None

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

  def get_config(self):
    """The rule's arguments, what a saved model stores with its `name`."""
    return {}

  @classmethod
  def from_config(cls, config):
    return cls(**config)

  def __eq__(self, other):
    return type(other) is type(self) and (
        other.get_config() == self.get_config())

  def __hash__(self):
    return hash(type(self))

  def __repr__(self):
    args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
    return f"{type(self).__name__}({args})"


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


RULES = {}


def register(cls):
  """Class decorator: makes a `Growth` subclass known by its `name`.

  `get(name)` (so `sparsify(grow=name)`) then gives it, and a model trained
  with it saves the name and loads back with it.

  Args:
    cls: a subclass of `Growth` with a `name` of its own.

  Returns:
    `cls`.

  Raises:
    ValueError: not a `Growth` subclass, no name of its own, or the name
      is taken by another class.
  """
  if not (isinstance(cls, type) and issubclass(cls, Growth)):
    raise ValueError(f"itop_tf.growth.register takes a subclass of "
                     f"itop_tf.growth.Growth, got {cls!r}.")
  name = cls.__dict__.get("name")
  if not isinstance(name, str) or not name:
    raise ValueError(
        f"{cls.__name__} needs a name of its own (class attribute `name = "
        "'...'`): saved models store it to find the rule again.")
  taken = RULES.get(name)
  if taken is not None and (taken.__module__, taken.__qualname__) != (
      cls.__module__, cls.__qualname__):
    raise ValueError(
        f"The growth rule name {name!r} is taken by "
        f"{taken.__module__}.{taken.__qualname__}; give {cls.__name__} "
        "another name.")
  RULES[name] = cls
  return cls


for _rule in (RandomGrowth, GradientGrowth, MomentumGrowth):
  register(_rule)


def serialize(rule):
  """What a saved model stores for `rule`: its name, with its config if any.

  Example:

  >>> serialize(get("gradient"))
  'gradient'
  """
  config = rule.get_config()
  return rule.name if not config else {"name": rule.name, "config": config}


def get(grow):
  """The growth rule `grow` names, or `grow` itself if it is one.

  Args:
    grow: a registered name ("random", "gradient", "momentum", or one given
      to `register`), what `serialize` returns, or a `Growth` instance.

  Returns:
    A `Growth` instance.

  Raises:
    ValueError: an unknown name or type, or an instance of a class that is
      not registered under its name.
  """
  if isinstance(grow, Growth):
    if RULES.get(grow.name) is not type(grow):
      raise ValueError(
          f"The growth rule {type(grow).__name__} is not registered under "
          f"its name {grow.name!r}, so a model trained with it could not load "
          "it back: give the class a name of its own and decorate it with "
          "@itop_tf.growth.register.")
    return grow
  if isinstance(grow, dict) and set(grow) == {"name", "config"}:
    return _rule_class(grow["name"]).from_config(grow["config"])
  if isinstance(grow, str):
    return _rule_class(grow)()
  raise ValueError(f"Unknown grow method {grow!r}: use one of "
                   f"{tuple(RULES)} or an itop_tf.growth.Growth instance.")


def _rule_class(name):
  if name not in RULES:
    raise ValueError(
        f"Unknown grow method {name!r}: use one of {tuple(RULES)}, or "
        "register your own Growth subclass with @itop_tf.growth.register "
        "(before loading a model trained with it).")
  return RULES[name]
