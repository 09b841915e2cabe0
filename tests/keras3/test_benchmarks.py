"""The benchmarks' Keras 3 mode on this backend (`--frontend=keras3`)."""

import json
import os
import subprocess
import sys

from absl import flags
import pytest

from fashion_files import write_fashion_mnist
import itop_tf
import keras3_helpers as helpers
from benchmarks import keras3_memory
from benchmarks import keras3_steps
from benchmarks import mask_update
from benchmarks import tflite_export
from benchmarks import without_tensorflow

pytestmark = [pytest.mark.slow, pytest.mark.benchmark]

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))  # the repository: the runner's cwd


def test_mask_update_times_the_update_in_the_backend_and_in_numpy(capsys):
  fv = flags.FlagValues()
  mask_update.define_flags(fv)
  fv(["prog", "--frontend=keras3", "--params=0.05", "--noresnet50",
      "--repeats=1", "--steps=1", "--mlp_batch_size=8",
      "--rank_methods=threshold"])
  row, = mask_update.run(fv)
  assert row["sparse_weights"] == 1024 * 1024 + 1024 * 10
  assert row["update_threshold_backend_s"] > 0
  assert row["update_threshold_numpy_s"] > 0
  assert row["default_mode"] == ("backend" if itop_tf.updaters.
                                 resolve_jit_compile("auto", helpers.BACKEND)
                                 else "numpy")
  out = capsys.readouterr().out
  assert f"front-end: keras3 ({helpers.BACKEND})" in out
  label = mask_update.BACKEND_MODE[helpers.BACKEND]
  assert f"update, threshold, {label} (ms)" in out


def _flags(module, *args):
  fv = flags.FlagValues()
  module.define_flags(fv)
  fv(["prog", *args])
  return fv


def test_keras3_steps_times_each_variant_and_the_default_update(capsys):
  row = keras3_steps.run(_flags(keras3_steps, "--steps=2", "--rounds=1",
                                "--updates=1", "--batch_size=16"))
  assert sorted(row["step_s"]) == sorted(keras3_steps.VARIANTS)
  assert all(t > 0 for t in row["step_s"].values())
  assert row["update_s"] > 0
  assert row["update_jit_compile"] == itop_tf.updaters.resolve_jit_compile(
      "auto", helpers.BACKEND)
  assert "| dense | set_nocb | set | rigl_nocb | rigl |" in (
      capsys.readouterr().out)


def test_keras3_memory_prints_one_row_per_update_and_mode():
  rows = keras3_memory.run(_flags(keras3_memory, "--model=lenet_300_100",
                                  "--updates=1"))
  assert [r["jit_compile"] for r in rows] == [True, False]
  assert all(r["sparse_weights"] == 266200 for r in rows)


@pytest.mark.skipif(helpers.BACKEND != "tensorflow",
                    reason="LiteRT converts Keras 3 models on TensorFlow.")
def test_tflite_export_trains_and_exports_keras3_models(tmp_path, capsys):
  from launchers import datasets  # pylint: disable=g-import-not-at-top
  manual = write_fashion_mnist(str(tmp_path / "idx"))
  datasets.builder(datasets.DATASETS["fashion_mnist"], str(tmp_path / "tfds"),
                   manual)
  sizes, latency = tflite_export.run(_flags(
      tflite_export, "--frontend=keras3", "--models=lenet_300_100:1",
      "--sparsities=0.9", "--latency_models=lenet_300_100", "--threads=1",
      "--rounds=1", "--invokes=3", "--batch_size=64", "--update_interval=4",
      f"--data_dir={tmp_path / 'tfds'}", f"--manual_dir={manual}",
      f"--work_dir={tmp_path}"))
  by = {(r["type"], r["sparse_encoding"]): r for r in sizes}
  assert set(by) == {("float32", True), ("int8", False), ("int8", True)}
  assert by[("float32", True)]["size_ratio"] > 3
  for r in sizes:
    assert abs(r["accuracy_delta"]) <= 0.02 and r["accuracy"] > 0.3
  row, = latency
  assert row["densify_ops"] >= 1 and row["sparse_tensors"] >= 1
  # Every model trained and exported was a Keras 3 one.
  assert {r["frontend"] for r in sizes + latency} == {"keras3"}
  assert "front-end: keras3" in capsys.readouterr().out


@pytest.mark.skipif(helpers.BACKEND == "tensorflow",
                    reason="Keras 3 on TensorFlow can export.")
def test_tflite_export_refuses_keras3_off_tensorflow():
  with pytest.raises(flags.IllegalFlagValueError,
                     match="KERAS_BACKEND=tensorflow"):
    _flags(tflite_export, "--frontend=keras3")


def test_without_tensorflow_refuses_a_process_that_has_it():
  # Here TensorFlow is loaded (itop_tf imports it), and on the TensorFlow
  # backend Keras needs it: both would measure with TensorFlow present.
  with pytest.raises(ValueError, match="KERAS_BACKEND=jax or torch"
                     if helpers.BACKEND == "tensorflow" else
                     "already imported"):
    without_tensorflow.import_without_tensorflow("itop_tf")


@pytest.mark.skipif(helpers.BACKEND == "tensorflow",
                    reason="Keras 3 on TensorFlow needs TensorFlow.")
def test_keras3_path_trains_and_updates_where_tensorflow_is_absent():
  # The GPU machine has JAX and PyTorch but no TensorFlow: sparsify, fit with
  # ITOPCallback and MaskUpdater.update must not touch it on these backends
  # (a tf.nest call in the shared update path once did).
  out = subprocess.run(
      [sys.executable, "benchmarks/without_tensorflow.py", "keras3_steps",
       "--steps=2", "--rounds=1", "--updates=1", "--batch_size=16"],
      cwd=ROOT, env=dict(os.environ, KERAS_BACKEND=helpers.BACKEND),
      capture_output=True, text=True, timeout=600, check=False)
  assert out.returncode == 0, out.stderr[-3000:]
  assert "no TensorFlow" in out.stdout
  assert "TensorFlow modules loaded: none" in out.stdout


@pytest.mark.skipif(helpers.BACKEND != "jax",
                    reason="The children's path does not depend on the "
                    "backend; JAX is the one the GPU runs take.")
def test_end_to_end_children_run_where_tensorflow_is_absent(tmp_path):
  # end_to_end trains each run in a child process. On the GPU machine the
  # children must go through the runner as well: here a `tensorflow` that
  # cannot be imported stands for its absence, so a child started as a plain
  # script (whose `import itop_tf` imports TensorFlow) fails the run.
  fake = tmp_path / "no_tf" / "tensorflow"
  fake.mkdir(parents=True)
  (fake / "__init__.py").write_text(
      "raise ModuleNotFoundError('no TensorFlow on this machine')\n")
  data = write_fashion_mnist(str(tmp_path / "idx"), n_train=1280, n_test=64)
  env = dict(os.environ, KERAS_BACKEND=helpers.BACKEND,
             PYTHONPATH=os.pathsep.join(
                 [str(tmp_path / "no_tf"), os.environ.get("PYTHONPATH", "")]))
  out = subprocess.run(
      [sys.executable, "benchmarks/without_tensorflow.py", "end_to_end",
       "--task=paper", f"--data_dir={data}", "--epochs=11",  # one update
       f"--frontends=keras3:{helpers.BACKEND}", "--methods=rigl_itop",
       "--steps_per_execution=1", "--repeats=1"],
      cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
      check=False)
  assert out.returncode == 0, out.stderr[-3000:]
  assert "no TensorFlow" in out.stdout
  row = f"| keras3:{helpers.BACKEND} | lenet_300_100 | 1 | rigl_itop |"
  assert row in out.stdout
  assert "| 0.980 |" in out.stdout  # the child trained the sparse model


def test_vit_fashion_trains_each_variant_and_sizes_its_litert_file(tmp_path):
  data_dir = write_fashion_mnist(str(tmp_path / "idx"))
  out = tmp_path / "vit.json"
  done = subprocess.run(
      [sys.executable, "benchmarks/vit_fashion.py", f"--data_dir={data_dir}",
       "--epochs=2", "--seeds=1", "--train_examples=64", "--batch_size=32",
       "--depth=1", "--dim=16", "--heads=2", "--variants=dense,rigl",
       "--sparsities=0.9", "--update_interval=1", f"--output={out}"],
      cwd=ROOT, capture_output=True, text=True, check=False,
      env=dict(os.environ, KERAS_BACKEND=helpers.BACKEND))
  assert done.returncode == 0, done.stderr[-3000:]
  assert "| rigl_0.9 |" in done.stdout
  rows = {r["variant"]: r for r in json.loads(out.read_text())["rows"]}
  assert rows["rigl_0.9"]["itop_rate"] > 0.1
  assert rows["rigl_0.9"]["step_vs_dense"] > 0
  # Every kernel 90% sparse and stored sparse: a smaller file, even for this
  # tiny model whose file is mostly graph (0.79x measured; 0.26x at dim 64).
  assert rows["rigl_0.9"]["tflite_bytes"] < 0.9 * rows["dense"]["tflite_bytes"]
