"""TensorFlow's packages imported where they are used, not when a module loads.

The launchers and benchmarks also run Keras 3 on JAX or PyTorch, on hosts
where TensorFlow may be absent. Their modules name `tf`, `tfds`, `tf_keras`
and `tfmot` as `LazyModule`s: importing the module imports none of them, the
first attribute read imports the package, and a package that is missing is
an ImportError naming the extra that installs it.

Example:

>>> from launchers import lazy_imports
>>> tf = lazy_imports.TENSORFLOW
>>> tf.constant(1.0)  # TensorFlow is imported here, not above
"""

import importlib
import importlib.util


_MODULE_DUNDERS = ("__version__", "__name__", "__file__", "__path__")


class LazyModule:
  """A module imported on the first read of one of its attributes.

  Args:
    name: the module's import name, e.g. "tensorflow".
    extra: the `pip install itop_tf[extra]` that installs it.
  """

  def __init__(self, name, extra):
    self._name = name
    self._extra = extra
    self._module = None

  def load(self):
    """The module itself (imports it on the first call).

    Raises:
      ImportError: it is not installed (or cannot be imported here).
    """
    if self._module is not None:
      return self._module
    try:
      self._module = importlib.import_module(self._name)
      return self._module
    except ImportError as e:
      raise ImportError(
          f"This needs {self._name}, which cannot be imported here ({e}): "
          f"install it (pip install itop_tf[{self._extra}]), or take the "
          "Keras 3 path on JAX or PyTorch, which does not use it.") from e

  def __getattr__(self, attr):
    # Python's own probes (copy, pickle, inspect) do not import the module.
    if attr.startswith("__") and attr not in _MODULE_DUNDERS:
      raise AttributeError(attr)
    return getattr(self.load(), attr)

  def __repr__(self):
    return f"<lazy module {self._name!r}>"


def available(name):
  """Whether module `name` is installed (without importing it)."""
  try:
    return importlib.util.find_spec(name) is not None
  except (ImportError, ValueError):
    return False


TENSORFLOW = LazyModule("tensorflow", "tensorflow")
TENSORFLOW_DATASETS = LazyModule("tensorflow_datasets", "data")
TF_KERAS = LazyModule("tf_keras", "tf_keras")
TFMOT = LazyModule("tensorflow_model_optimization", "tf_keras")
