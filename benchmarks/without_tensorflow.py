r"""Runs a Keras 3 benchmark on JAX or PyTorch where TensorFlow is absent.

`import itop_tf` needs no TensorFlow (tests/keras3/test_without_tensorflow.py),
but the benchmarks' shared parts still import it: `benchmarks/harness.py`
(tf_keras and TF-MOT for the tf_keras variants) and the launchers' modules
(`models`, `datasets`: TensorFlow and TFDS). The GPU machine lent to this
project has JAX and PyTorch but no TensorFlow. This runner lets the
benchmark's imports succeed with stand-ins for those packages, then hides
them again: Keras 3 then sees no TensorFlow, importing it raises, and any
use of a stand-in raises, so a figure measured this way cannot have gone
through TensorFlow. It goes once the launchers and the harness import
TensorFlow only where they use it.

MODULE is a benchmark of `benchmarks/` with `define_flags` and `run`; each
row its `measure`/`measure_keras3` returns also prints at once ("ROW ..."),
so a run cut short by a time limit keeps the rows it made.

  KERAS_BACKEND=jax python benchmarks/without_tensorflow.py mask_update \
      --frontend=keras3 --params=1,5,25
  KERAS_BACKEND=jax python benchmarks/without_tensorflow.py keras3_steps \
      --model=resnet20 --steps=100
  KERAS_BACKEND=torch python benchmarks/without_tensorflow.py keras3_memory
  KERAS_BACKEND=jax python benchmarks/without_tensorflow.py step_overhead \
      --keras3_child=1 --models=resnet50 --image_size=224 --rounds=3
  KERAS_BACKEND=jax python benchmarks/without_tensorflow.py end_to_end \
      --task=quickstart --frontends=keras3:jax --models=lenet_300_100

A module with a `CHILD_PREFIX` (end_to_end) starts each run in a child
process: the runner sets it so that the children run through it too.
"""

import importlib
import importlib.abc
import importlib.machinery
import json
import os
import platform
import sys
import types

STANDING_IN = ("tensorflow", "tf_keras", "tensorflow_model_optimization",
               "tensorflow_datasets")


def _stand_in(path):
  """A class standing in for `path`: attributes are stand-ins, calls raise."""
  return _StandIn(path.rsplit(".", 1)[-1], (), {"_path": path})


class _StandIn(type):

  def __getattr__(cls, name):
    if name.startswith("__"):
      raise AttributeError(name)
    return _stand_in(f"{cls._path}.{name}")

  def __call__(cls, *args, **kwargs):
    if "_path" not in cls.__dict__:  # a class built on a stand-in (TFDS)
      return super().__call__(*args, **kwargs)
    if cls._path in AT_IMPORT:
      return AT_IMPORT[cls._path](*args, **kwargs)
    raise RuntimeError(f"{cls._path} used without TensorFlow "
                       "(benchmarks/without_tensorflow.py)")


# Called while the benchmark's modules load.
AT_IMPORT = {"tensorflow_datasets.core.Version": str}


class _Module(types.ModuleType):

  def __getattr__(self, name):
    if name.startswith("__"):
      raise AttributeError(name)
    return _stand_in(f"{self.__name__}.{name}")


class _StandInFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):

  def find_spec(self, fullname, path, target=None):
    del path, target
    if fullname.split(".")[0] in STANDING_IN:
      return importlib.machinery.ModuleSpec(fullname, self, is_package=True)
    return None

  def create_module(self, spec):
    module = _Module(spec.name)
    module.__path__ = []
    return module

  def exec_module(self, module):
    del module


class _Absent(importlib.abc.MetaPathFinder):

  def find_spec(self, fullname, path, target=None):
    del path, target
    if fullname.split(".")[0] in STANDING_IN:
      raise ModuleNotFoundError(
          f"No module named {fullname!r} (benchmarks/without_tensorflow.py)")
    return None


def import_without_tensorflow(*names):
  """Imports modules `names` with the stand-ins, then hides TensorFlow.

  Returns:
    The imported modules.

  Raises:
    ValueError: KERAS_BACKEND is tensorflow (or unset), or TensorFlow is
      already imported.
  """
  import keras  # pylint: disable=g-import-not-at-top
  if keras.backend.backend() not in ("jax", "torch"):
    raise ValueError(
        "benchmarks/without_tensorflow.py runs Keras 3 on JAX or PyTorch: "
        f"set KERAS_BACKEND=jax or torch (now {keras.backend.backend()!r}).")
  already = sorted(n for n in sys.modules if n.split(".")[0] in STANDING_IN)
  if already:
    raise ValueError(f"{already[0]} is already imported: run this module "
                     "first, in a fresh process.")
  finder = _StandInFinder()
  sys.meta_path.insert(0, finder)
  try:
    modules = [importlib.import_module(n) for n in names]
  finally:
    sys.meta_path.remove(finder)
    for name in list(sys.modules):
      if name.split(".")[0] in STANDING_IN:
        del sys.modules[name]
    sys.meta_path.insert(0, _Absent())
  return modules


def machine():
  """One line saying where the numbers were taken (no TensorFlow)."""
  import keras  # pylint: disable=g-import-not-at-top
  if keras.backend.backend() == "jax":
    import jax  # pylint: disable=g-import-not-at-top
    device = f"JAX {jax.__version__} on {jax.devices()[0].device_kind}"
  else:
    import torch  # pylint: disable=g-import-not-at-top
    device = f"PyTorch {torch.__version__} on " + (
        torch.cuda.get_device_name(0) if torch.cuda.is_available() else "CPU")
  return (f"{device}; {os.cpu_count()} logical cores, "
          f"{platform.processor() or platform.machine()}; "
          f"Keras {keras.__version__}; no TensorFlow")


def main(argv):
  """`without_tensorflow.py MODULE FLAGS...`: runs benchmarks.MODULE."""
  if len(argv) < 2:
    raise SystemExit(__doc__)
  from absl import flags  # pylint: disable=g-import-not-at-top
  from absl import logging  # pylint: disable=g-import-not-at-top
  module, harness = import_without_tensorflow(f"benchmarks.{argv[1]}",
                                              "benchmarks.harness")
  harness.machine = machine
  for name in ("measure", "measure_keras3"):
    fn = getattr(module, name, None)
    if fn is not None:
      def printing(*args, _fn=fn, **kwargs):
        out = _fn(*args, **kwargs)
        print("ROW " + json.dumps(out), flush=True)
        return out
      setattr(module, name, printing)
  if hasattr(module, "CHILD_PREFIX"):  # its child processes run through here
    module.CHILD_PREFIX = [sys.executable, os.path.abspath(__file__), argv[1]]
  module.define_flags()
  flags.FLAGS(argv[1:])
  logging.set_verbosity(logging.WARNING)
  module.run(flags.FLAGS)
  loaded = sorted(n for n in sys.modules if n.split(".")[0] in STANDING_IN)
  print(f"TensorFlow modules loaded: {', '.join(loaded) or 'none'}")


if __name__ == "__main__":
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(
      __file__))))
  main(sys.argv)
