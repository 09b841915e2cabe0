"""The package's import graph: siblings above one engine, no circle.

Read from the source with `ast` (module-level imports only: an import inside
a function runs when called, not when the module loads).
"""

import ast
import os

import pytest

ROOT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))), "itop_tf")
TENSORFLOW = ("tensorflow", "tf_keras", "tensorflow_model_optimization")
# The algorithm and the engine: no Keras, no TensorFlow, no front-end.
SHARED = ("array_ops", "core", "distributions", "frontends", "growth",
          "metrics", "prune", "schedules", "summaries", "updaters")


def _modules():
  """{dotted name: path} of every module of the package."""
  out = {}
  for folder, _, files in os.walk(ROOT):
    for f in files:
      if f.endswith(".py"):
        rel = os.path.relpath(os.path.join(folder, f), os.path.dirname(ROOT))
        name = rel[:-3].replace(os.sep, ".")
        out[name[:-len(".__init__")] if name.endswith(".__init__")
            else name] = os.path.join(folder, f)
  return out


MODULES = _modules()


def top_level_imports(path, package, known=None):
  """Modules imported when the module at `path` loads (not in functions).

  `from a import b` counts as a.b where a.b is in `known` (default: the
  package's modules), else as a.
  """
  known = MODULES if known is None else known
  tree = ast.parse(open(path, encoding="utf-8").read())
  found = set()
  for node in tree.body:
    if isinstance(node, ast.Import):
      found.update(a.name for a in node.names)
    elif isinstance(node, ast.ImportFrom):
      base = node.module or ""
      if node.level:  # relative
        parts = package.split(".")[:len(package.split(".")) - node.level + 1]
        base = ".".join(parts + ([base] if base else []))
      # `from a import b` loads a.b where that is a module, else a.
      for a in node.names:
        sub = f"{base}.{a.name}"
        found.add(sub if sub in known else base)
  return found


def _internal_graph():
  graph = {}
  for name, path in MODULES.items():
    package = name if path.endswith("__init__.py") else name.rpartition(".")[0]
    graph[name] = {m for m in top_level_imports(path, package)
                   if m in MODULES and m != name}
  return graph


def test_every_module_is_read():
  assert {"itop_tf.core", "itop_tf.frontends", "itop_tf.tf_keras.wrapper",
          "itop_tf.keras3.wrapper"} <= set(MODULES)


@pytest.mark.parametrize("name", SHARED)
def test_shared_code_imports_no_keras_and_no_tensorflow(name):
  imports = top_level_imports(MODULES[f"itop_tf.{name}"], "itop_tf")
  roots = {m.split(".")[0] for m in imports}
  assert not roots & (set(TENSORFLOW) | {"keras"}), sorted(imports)
  assert not any(m.startswith(("itop_tf.tf_keras", "itop_tf.keras3"))
                 for m in imports), sorted(imports)


def test_front_ends_are_siblings():
  graph = _internal_graph()
  for name, deps in graph.items():
    for front, other in (("itop_tf.keras3", "itop_tf.tf_keras"),
                         ("itop_tf.tf_keras", "itop_tf.keras3")):
      if name.startswith(front):
        assert not any(d.startswith(other) for d in deps), (name, deps)


def test_only_the_tf_keras_front_end_imports_tf_mot():
  for name, path in MODULES.items():
    imports = top_level_imports(path, name)
    if any(m.startswith("tensorflow_model_optimization") for m in imports):
      assert name.startswith("itop_tf.tf_keras"), name


def test_the_package_root_imports_no_tensorflow():
  imports = top_level_imports(MODULES["itop_tf"], "itop_tf")
  assert not {m.split(".")[0] for m in imports} & set(TENSORFLOW)
  assert "itop_tf.tf_keras" not in imports and "itop_tf.export" not in imports


def test_no_import_circle():
  graph = _internal_graph()
  state = {}

  def visit(node, path):
    state[node] = "open"
    for dep in sorted(graph[node]):
      if state.get(dep) == "open":
        raise AssertionError("import circle: " + " -> ".join(path + [dep]))
      if dep not in state:
        visit(dep, path + [dep])
    state[node] = "done"

  for node in sorted(graph):
    if node not in state:
      visit(node, [node])


def _setup_keywords():
  """setup()'s keyword arguments in setup.py, read as literals."""
  path = os.path.join(os.path.dirname(ROOT), "setup.py")
  tree = ast.parse(open(path, encoding="utf-8").read())
  call = next(n for n in ast.walk(tree) if isinstance(n, ast.Call) and
              getattr(n.func, "attr", None) == "setup")
  return {k.arg: ast.literal_eval(k.value) for k in call.keywords
          if k.arg in ("install_requires", "extras_require")}


def test_installing_itop_tf_alone_brings_no_tensorflow():
  kw = _setup_keywords()
  names = [r.split("=")[0].split("<")[0].split(">")[0]
           for r in kw["install_requires"]]
  assert "keras" in names
  assert not {"tensorflow", "tf-keras", "tensorflow-model-optimization"} & set(
      names)
  extras = kw["extras_require"]
  assert {"jax", "torch", "tf_keras", "tensorflow"} <= set(extras)
  assert any(r.startswith("tensorflow-model-optimization")
             for r in extras["tf_keras"])


# What the Keras 3 launcher and benchmarks load: TensorFlow, TFDS, tf_keras and
# TF-MOT are imported where used (launchers/lazy_imports.py), so these load
# without them (the tf_keras launcher, tf_keras_trainer.py, is imported by
# trainer.py only for --frontend=tf_keras).
TENSORFLOW_FREE_SCRIPTS = (
    "launchers/datasets.py", "launchers/idx_files.py",
    "launchers/launcher_flags.py", "launchers/lazy_imports.py",
    "launchers/models.py", "launchers/train_cifar.py",
    "launchers/train_imagenet.py", "launchers/trainer.py",
    "launchers/keras3_trainer.py", "launchers/keras3_training.py",
    "launchers/keras3_checkpoints.py", "launchers/arrays.py",
    "launchers/litert.py", "launchers/recipe.py", "launchers/reporting.py",
    "launchers/strategies.py", "benchmarks/quickstart.py",
    "benchmarks/harness.py",
    "benchmarks/end_to_end.py", "benchmarks/keras3_memory.py",
    "benchmarks/keras3_steps.py", "benchmarks/mask_update.py",
    "benchmarks/step_overhead.py", "benchmarks/vit_fashion.py",
    "benchmarks/without_tensorflow.py")


@pytest.mark.parametrize("path", TENSORFLOW_FREE_SCRIPTS)
def test_keras3_benchmarks_and_their_launcher_parts_load_without_tensorflow(
    path):
  repo = os.path.dirname(ROOT)
  scripts = {f"{folder}.{f[:-3]}" for folder in ("launchers", "benchmarks")
             for f in os.listdir(os.path.join(repo, folder))
             if f.endswith(".py")}
  imports = top_level_imports(os.path.join(repo, path), "", known=scripts)
  hidden = set(TENSORFLOW) | {"tensorflow_datasets"}
  assert not {m.split(".")[0] for m in imports} & hidden, sorted(imports)
  # ... nor through the launcher modules they import.
  for module in imports:
    if module.startswith(("launchers.", "benchmarks.")):
      assert module.replace(".", "/") + ".py" in TENSORFLOW_FREE_SCRIPTS, (
          path, module)


def test_a_lazy_module_imports_on_first_use_and_names_the_extra():
  from launchers import lazy_imports  # pylint: disable=g-import-not-at-top
  missing = lazy_imports.LazyModule("no_such_module_here", "tf_keras")
  assert "no_such_module_here" in repr(missing)  # no import yet
  with pytest.raises(ImportError, match=r"pip install itop_tf\[tf_keras\]"):
    missing.anything  # pylint: disable=pointless-statement
  json = lazy_imports.LazyModule("json", "none")
  assert json.dumps([1]) == "[1]"
