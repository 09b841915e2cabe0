r"""Runs a Keras 3 benchmark on JAX or PyTorch where TensorFlow is absent.

Neither `import itop_tf` (tests/keras3/test_without_tensorflow.py) nor the
benchmarks and launchers they import need TensorFlow: those import it, TFDS,
tf_keras and TF-MOT where they use them (launchers/lazy_imports.py). This
runner makes sure of it where a figure is taken: it hides the four packages
before anything is imported, so Keras 3 sees no TensorFlow and any use of
one is an ImportError. A figure measured through it cannot have gone
through TensorFlow. The GPU machine lent to this project has JAX and PyTorch
but no TensorFlow.

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
import json
import os
import platform
import sys

HIDDEN = ("tensorflow", "tf_keras", "tensorflow_model_optimization",
          "tensorflow_datasets")


class _Absent(importlib.abc.MetaPathFinder):

  def find_spec(self, fullname, path, target=None):
    del path, target
    if fullname.split(".")[0] in HIDDEN:
      raise ModuleNotFoundError(
          f"No module named {fullname!r} (benchmarks/without_tensorflow.py)")
    return None


def import_without_tensorflow(*names):
  """Hides TensorFlow's packages, then imports modules `names`.

  Returns:
    The imported modules.

  Raises:
    ValueError: KERAS_BACKEND is tensorflow (or unset), or TensorFlow is
      already imported.
    ImportError: a module imports TensorFlow (or TFDS, tf_keras, TF-MOT).
  """
  import keras  # pylint: disable=g-import-not-at-top
  if keras.backend.backend() not in ("jax", "torch"):
    raise ValueError(
        "benchmarks/without_tensorflow.py runs Keras 3 on JAX or PyTorch: "
        f"set KERAS_BACKEND=jax or torch (now {keras.backend.backend()!r}).")
  already = sorted(n for n in sys.modules if n.split(".")[0] in HIDDEN)
  if already:
    raise ValueError(f"{already[0]} is already imported: run this module "
                     "first, in a fresh process.")
  sys.meta_path.insert(0, _Absent())
  return [importlib.import_module(n) for n in names]


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
  loaded = sorted(n for n in sys.modules if n.split(".")[0] in HIDDEN)
  print(f"TensorFlow modules loaded: {', '.join(loaded) or 'none'}")


if __name__ == "__main__":
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(
      __file__))))
  main(sys.argv)
