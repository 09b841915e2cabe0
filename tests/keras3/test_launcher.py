"""The launchers on Keras 3 (--frontend=keras3), on this process's backend.

Runs in-process on small IDX files (tests/fashion_files.py) and in
subprocesses (resume after SIGTERM/SIGKILL, 2 JAX processes as 2 hosts, a
process without TensorFlow, the LiteRT export from JAX); every training run
is marked slow, as the tf_keras launcher's are: the fast tier keeps the
streams, flags, schedules and checks.
"""

import glob
import json
import os
import signal
import socket
import subprocess
import sys
import time

from absl import app
from absl import flags
import keras
import numpy as np
import pytest

import itop_tf
from benchmarks import harness
import keras3_helpers as helpers
from fashion_files import write_fashion_mnist
from launchers import arrays
from launchers import datasets
from launchers import keras3_checkpoints
from launchers import keras3_training
from launchers import launcher_flags
from launchers import models
from launchers import strategies
from launchers import trainer

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
BACKEND = helpers.BACKEND
QUICKSTART = os.path.join(ROOT, "launchers", "configs",
                          "fashion_mnist_rigl_itop.cfg")
SMALL = ["--dataset=fashion_mnist", "--model=lenet_300_100", "--method=rigl",
         "--sparsity=0.9", "--update_interval=5", "--epochs=2",
         "--batch_size=32", "--verbose=0", "--input=idx"]


@pytest.fixture(scope="module")
def idx_dir(tmp_path_factory):
  return write_fashion_mnist(str(tmp_path_factory.mktemp("idx")))


def parse(*args):
  fv = flags.FlagValues()
  launcher_flags.define_flags(*launcher_flags.CIFAR, flag_values=fv)
  fv(["prog", *args])
  return fv


def train(tmp_path, idx_dir, *args, name="run"):
  fv = parse(*SMALL, f"--manual_dir={idx_dir}",
             f"--model_dir={tmp_path / name}", *args)
  return trainer.train(fv)


def test_keras3_is_the_default_front_end():
  assert parse().frontend == "keras3"


@pytest.mark.slow
def test_run_reports_front_end_backend_and_exact_sparsity(
    tmp_path, idx_dir, capsys):
  results = train(tmp_path, idx_dir, "--checkpoint_every=20")
  assert (results["frontend"], results["backend"]) == ("keras3", BACKEND)
  assert results["input"] == "idx"
  assert results["sparsity"] == pytest.approx(0.9, abs=1e-3)
  assert results["exploration_rate"] > 0.1 + 1e-3  # masks moved
  assert results["test_accuracy"] > 0.5  # learnable bands; chance is 0.1
  assert 0 < results["train_flops"] < 0.3
  assert results["images_per_second"] > 0
  assert results["step"] == 2 * (1024 // 32)
  saved = json.load(open(tmp_path / "run" / "results.json"))
  assert saved["mask_digest"] == results["mask_digest"]
  last = capsys.readouterr().out.strip().splitlines()[-1]
  assert last.startswith("final: test_accuracy=")
  assert f"keras3/{BACKEND}" in last
  # Periodic checkpoints at 20, 40 and 60 and the last at 64: newest 3 kept.
  names = sorted(os.listdir(tmp_path / "run" / "checkpoints"))
  assert names == ["ckpt-40.weights.h5", "ckpt-60.weights.h5",
                   "ckpt-64.weights.h5"]


@pytest.mark.slow
def test_dense_method_trains_without_masks(tmp_path, idx_dir):
  results = train(tmp_path, idx_dir, "--method=dense", "--epochs=1")
  assert results["sparsity"] == 0.0 and "mask_digest" not in results
  assert results["test_accuracy"] > 0.5


@pytest.mark.slow
def test_recipe_options_keep_exact_sparsity(tmp_path, idx_dir):
  # Mixed precision, cosine LR with warm-up, label smoothing, --multiplier
  # (which BatchNorm weights decay: test_weight_decay_... below).
  results = train(tmp_path, idx_dir, "--mixed_precision=bfloat16",
                  "--lr_schedule=cosine", "--warmup_epochs=0.5",
                  "--label_smoothing=0.1", "--epochs=1", "--multiplier=2",
                  "--eval_every=0")
  assert results["step"] == 2 * (1024 // 32)  # 1 epoch x 2
  assert results["sparsity"] == pytest.approx(0.9, abs=1e-3)
  assert np.isfinite(results["test_loss"])


@pytest.mark.slow
def test_float16_run_keeps_exact_sparsity_under_loss_scaling(tmp_path,
                                                             idx_dir):
  results = train(tmp_path, idx_dir, "--mixed_precision=float16",
                  "--epochs=1")
  assert results["sparsity"] == pytest.approx(0.9, abs=1e-3)
  assert results["exploration_rate"] > 0.1 + 1e-3
  assert np.isfinite(results["test_loss"])
  assert keras.mixed_precision.global_policy().name == "float32"  # restored


@pytest.mark.slow
def test_weight_decay_regularizes_kernels_and_batch_norm_only_if_asked():
  spec = datasets.DATASETS["cifar10"]
  for bn, expected in ((True, {"kernel", "gamma", "beta"}),
                       (False, {"kernel"})):
    fv = parse("--model=resnet20_cifar", "--method=dense",
               f"--{'' if bn else 'no'}bn_weight_decay",
               "--weight_decay=1e-4")
    model = keras3_training.build_model(fv, spec, 100, 1)
    decayed = {v.path.split("/")[-1] for layer in model.layers
               for v in layer.trainable_weights
               if getattr(v, "regularizer", None) is not None}
    assert decayed == expected
    assert len(model.losses) == sum(
        1 for layer in model.layers for v in layer.trainable_weights
        if getattr(v, "regularizer", None) is not None)


def test_step_schedule_warms_up_then_decays_at_milestones():
  fv = parse("--lr=0.1", "--warmup_epochs=1", "--lr_milestones=0.5,0.75")
  schedule = keras3_training.WarmupStepDecay(0.1, 10, [50, 75], 0.1)
  got = [float(keras.ops.convert_to_numpy(schedule(s)))
         for s in (0, 4, 9, 49, 50, 75)]
  assert got == pytest.approx([0.01, 0.05, 0.1, 0.1, 0.01, 0.001])
  del fv


def test_train_stream_is_a_function_of_seed_and_step(idx_dir):
  source = arrays.open_source(datasets.DATASETS["fashion_mnist"], "idx",
                              manual_dir=idx_dir)
  spec = datasets.DATASETS["fashion_mnist"]

  def stream(first, rows=(0, 32), seed=0):
    return arrays.TrainStream(source.train, spec, 32, seed, 32, first, rows)

  whole = stream(0)
  resumed = stream(45)  # mid-epoch 1
  for i in range(3):
    np.testing.assert_array_equal(resumed[i][0], whole[45 + i][0])
    np.testing.assert_array_equal(resumed[i][1], whole[45 + i][1])
  # Two processes' rows make up the global batch.
  halves = [stream(7, rows) for rows in ((0, 16), (16, 32))]
  np.testing.assert_array_equal(
      np.concatenate([h[0][0] for h in halves]), whole[7][0])
  # Each epoch is a permutation of the split, another seed another one.
  epoch = np.concatenate([whole.batch_indices(s) for s in range(32)])
  assert len(set(epoch.tolist())) == 32 * 32
  assert not np.array_equal(stream(0, seed=1).batch_indices(0),
                            whole.batch_indices(0))


def test_cifar_augmentation_depends_only_on_seed_and_step():
  spec = datasets.DATASETS["cifar10"]
  rng = np.random.default_rng(0)
  split = arrays.ArraySplit(rng.integers(0, 255, (64, 32, 32, 3), np.uint8),
                            rng.integers(0, 10, 64))
  a = arrays.TrainStream(split, spec, 16, 3, 4, 0, (0, 16))
  b = arrays.TrainStream(split, spec, 16, 3, 4, 2, (0, 16))
  np.testing.assert_array_equal(a[2][0], b[0][0])
  images = split.take(a.batch_indices(2))[0]
  assert not np.array_equal(a[2][0], arrays.normalize(images, spec))


def test_eval_stream_pads_the_last_batch_with_zero_weights(idx_dir):
  source = arrays.open_source(datasets.DATASETS["fashion_mnist"], "idx",
                              manual_dir=idx_dir)
  spec = datasets.DATASETS["fashion_mnist"]
  stream = arrays.EvalStream(source.test, spec, 100, (50, 100), pad=True)
  x, y, w = stream[len(stream) - 1]  # 256 = 2 x 100 + 56
  assert x.shape[0] == y.shape[0] == 50
  assert w.tolist() == [1.0] * 6 + [0.0] * 44


@pytest.mark.parametrize("args,message", [
    (["--input=idx", "--dataset=cifar10"], "--input=idx reads Fashion-MNIST"),
    (["--frontend=tf_keras", "--input=idx"], "tf_keras reads TFDS"),
    (["--process_id=2", "--num_processes=2"], "--process_id must be in"),
])
def test_bad_flags_get_one_clear_error_at_parse_time(args, message):
  with pytest.raises(flags.IllegalFlagValueError, match=message):
    parse(*args)


def test_batch_not_divisible_by_devices_stops_before_training(tmp_path,
                                                                idx_dir):
  fv = parse(*SMALL, "--batch_size=31", f"--manual_dir={idx_dir}",
             f"--model_dir={tmp_path}")
  place = strategies.Placement(replicas=2)
  with pytest.raises(app.UsageError, match="not divisible by the 2"):
    strategies.check_batch(fv, place.replicas)


def test_export_without_tensorflow_stops_before_training(monkeypatch):
  from launchers import litert  # pylint: disable=g-import-not-at-top
  monkeypatch.setattr(litert.lazy_imports, "available", lambda name: False)
  with pytest.raises(app.UsageError, match="converts with TensorFlow"):
    litert.check_available("tflite")
  litert.check_available("none")


@pytest.mark.skipif(BACKEND != "tensorflow", reason="TensorFlow backend only")
def test_multi_worker_is_refused_on_keras3_tensorflow():
  with pytest.raises(app.UsageError, match="keras-team/keras#20585"):
    strategies.placement(parse("--strategy=multi_worker"), "tensorflow")


@pytest.mark.skipif(BACKEND != "torch", reason="PyTorch backend only")
def test_strategy_other_than_default_is_refused_on_torch():
  with pytest.raises(app.UsageError, match="not available on Keras' PyTorch"):
    strategies.placement(parse("--strategy=mirrored"), "torch")


@pytest.mark.slow
def test_data_source_input_reads_array_record_without_tf_data(
    tmp_path, idx_dir):
  tfds = pytest.importorskip("tensorflow_datasets")
  from launchers import fashion_mnist_offline  # pylint: disable=g-import-not-at-top,unused-import
  data_dir = str(tmp_path / "tfds")
  tfds.builder("fashion_mnist_offline", data_dir=data_dir,
               file_format="array_record").download_and_prepare(
                   download_config=tfds.download.DownloadConfig(
                       manual_dir=idx_dir))
  results = train(tmp_path, idx_dir, "--input=data_source",
                  f"--data_dir={data_dir}", "--epochs=1")
  assert results["input"] == "data_source"
  assert results["test_accuracy"] > 0.5
  with pytest.raises(app.UsageError, match="prepared as ArrayRecord"):
    train(tmp_path, idx_dir, "--input=data_source",
          f"--data_dir={tmp_path / 'empty'}", name="empty")


@pytest.mark.slow
@pytest.mark.skipif(BACKEND != "jax", reason="keras.distribution: JAX")
def test_two_devices_end_like_one_on_the_same_global_batches(
    tmp_path, idx_dir, monkeypatch):
  import jax  # pylint: disable=g-import-not-at-top
  assert len(jax.devices()) == 2  # XLA_FLAGS in tests/conftest.py
  two = train(tmp_path, idx_dir, name="two")
  assert keras.distribution.distribution() is None  # the caller's, back
  assert two["replicas"] == 2
  monkeypatch.setattr(strategies, "placement",
                      lambda f, backend: strategies.Placement())
  one = train(tmp_path, idx_dir, name="one")
  assert one["replicas"] == 1
  assert two["mask_digest"] == one["mask_digest"]
  assert two["exploration_rate"] == one["exploration_rate"]
  assert two["test_accuracy"] == pytest.approx(one["test_accuracy"],
                                               abs=0.01)


# --- subprocess runs -------------------------------------------------------


def _env(**extra):
  # Without TPU_ML_PLATFORM (set by importing TensorFlow): a JAX child
  # started with it took about 35 s longer (harness.child_environment).
  env = harness.child_environment(BACKEND)
  env.update({"CUDA_VISIBLE_DEVICES": "", "PYTHONPATH": ROOT})
  env.update(extra)
  return env


def _command(idx_dir, model_dir, *extra):
  return [sys.executable, os.path.join(ROOT, "launchers", "train_cifar.py"),
          *SMALL, "--epochs=4", "--checkpoint_every=20",
          f"--manual_dir={idx_dir}", f"--model_dir={model_dir}", *extra]


def _results(model_dir):
  return json.load(open(os.path.join(model_dir, "results.json")))


@pytest.fixture(scope="module")
def uninterrupted(idx_dir, tmp_path_factory):
  model_dir = str(tmp_path_factory.mktemp("full"))
  out = subprocess.run(_command(idx_dir, model_dir), capture_output=True,
                       text=True, env=_env(), timeout=600)
  assert out.returncode == 0, out.stderr[-3000:]
  return _results(model_dir)


@pytest.mark.slow
@pytest.mark.subprocess
@pytest.mark.skipif(BACKEND == "torch", reason="resume: JAX and TensorFlow")
@pytest.mark.parametrize("sig,code", [
    (signal.SIGTERM, keras3_checkpoints.PREEMPTED_EXIT_CODE),
    (signal.SIGKILL, -signal.SIGKILL)])
def test_killed_run_resumes_to_the_same_masks_rate_and_accuracy(
    idx_dir, uninterrupted, tmp_path, sig, code):
  model_dir = str(tmp_path)
  proc = subprocess.Popen(_command(idx_dir, model_dir), env=_env(),
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True)
  deadline = time.time() + 300
  pattern = os.path.join(model_dir, "checkpoints", "ckpt-*.weights.h5")
  while not glob.glob(pattern) and time.time() < deadline:
    time.sleep(0.05)
  proc.send_signal(sig)
  _, err = proc.communicate(timeout=300)
  assert proc.returncode == code, err[-3000:]
  assert not os.path.exists(os.path.join(model_dir, "results.json"))
  out = subprocess.run(_command(idx_dir, model_dir), capture_output=True,
                       text=True, env=_env(), timeout=600)
  assert out.returncode == 0, out.stderr[-3000:]
  assert "Resuming from" in out.stdout
  resumed = _results(model_dir)
  for key in ("mask_digest", "exploration_rate", "step", "test_accuracy",
              "test_loss"):
    assert resumed[key] == uninterrupted[key], key


def _free_port():
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


@pytest.mark.slow
@pytest.mark.subprocess
@pytest.mark.skipif(BACKEND != "jax", reason="keras.distribution: JAX")
def test_two_processes_as_two_hosts_end_like_one_device(idx_dir, tmp_path):
  one_device = {"XLA_FLAGS": "--xla_force_host_platform_device_count=1"}
  single = str(tmp_path / "single")
  out = subprocess.run(_command(idx_dir, single, "--epochs=2"),
                       capture_output=True, text=True, env=_env(**one_device),
                       timeout=600)
  assert out.returncode == 0, out.stderr[-3000:]
  hosts = str(tmp_path / "hosts")
  address = f"127.0.0.1:{_free_port()}"
  procs = [subprocess.Popen(
      _command(idx_dir, hosts, "--epochs=2", "--strategy=multi_worker",
               f"--coordinator_address={address}", "--num_processes=2",
               f"--process_id={i}"),
      env=_env(**one_device), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
      text=True) for i in range(2)]
  try:
    for p in procs:
      _, err = p.communicate(timeout=600)
      assert p.returncode == 0, err[-3000:]
  finally:
    for p in procs:
      p.kill()  # a process left waiting on its peer
  chief = _results(hosts)
  other = _results(os.path.join(hosts, "workers", "process_1"))
  reference = _results(single)
  assert chief["processes"] == other["processes"] == 2
  assert chief["replicas"] == 2 and reference["replicas"] == 1
  for r in (chief, other):
    assert r["mask_digest"] == reference["mask_digest"]
    assert r["exploration_rate"] == reference["exploration_rate"]
    assert r["test_accuracy"] == pytest.approx(reference["test_accuracy"],
                                               abs=0.01)


_WITHOUT_TF = """
import runpy, sys
sys.path.insert(0, {root!r})
from benchmarks import without_tensorflow
without_tensorflow.import_without_tensorflow()
sys.argv = [{script!r}] + {args!r}
try:
  runpy.run_path({script!r}, run_name="__main__")
finally:
  loaded = sorted(n for n in sys.modules
                  if n.split(".")[0] in without_tensorflow.HIDDEN)
  print("hidden modules loaded:", loaded)
"""


@pytest.mark.slow
@pytest.mark.subprocess
@pytest.mark.skipif(BACKEND != "jax", reason="without TensorFlow: JAX")
def test_quickstart_trains_where_tensorflow_cannot_be_imported(idx_dir,
                                                               tmp_path):
  script = os.path.join(ROOT, "launchers", "train_cifar.py")
  args = [f"--flagfile={QUICKSTART}", f"--manual_dir={idx_dir}",
          f"--model_dir={tmp_path}", "--epochs=1", "--update_interval=5",
          "--verbose=0"]
  out = subprocess.run(
      [sys.executable, "-c", _WITHOUT_TF.format(root=ROOT, script=script,
                                                args=args)],
      capture_output=True, text=True, env=_env(), timeout=600)
  assert out.returncode == 0, out.stderr[-3000:]
  assert "hidden modules loaded: []" in out.stdout
  assert "keras3/jax" in out.stdout
  results = _results(str(tmp_path))
  assert results["input"] == "idx" and results["model"] == "small_cnn"
  assert results["sparsity"] == pytest.approx(0.9, abs=1e-3)


@pytest.mark.slow
@pytest.mark.subprocess
@pytest.mark.skipif(BACKEND != "jax", reason="the .keras route: JAX")
def test_export_from_jax_writes_a_smaller_litert_file(idx_dir, tmp_path):
  out = subprocess.run(
      _command(idx_dir, str(tmp_path), "--epochs=1", "--export=tflite"),
      capture_output=True, text=True, env=_env(), timeout=600)
  assert out.returncode == 0, out.stderr[-3000:]
  lite = _results(str(tmp_path))["tflite"]
  assert os.path.exists(tmp_path / "model.tflite")
  assert lite["bytes"] < lite["dense_bytes"]
  assert lite["accuracy"] > 0.5
  assert "tflite=" in out.stdout.strip().splitlines()[-1]


@pytest.mark.slow
def test_tensorboard_has_rate_density_and_learning_rate(tmp_path, idx_dir):
  tf = pytest.importorskip("tensorflow")
  train(tmp_path, idx_dir, "--epochs=1")
  tags = set()
  for path in glob.glob(str(tmp_path / "run" / "tensorboard" / "**" /
                            "events.*"), recursive=True):
    for event in tf.compat.v1.train.summary_iterator(path):
      tags.update(v.tag for v in event.summary.value)
  assert {"epoch_loss", "epoch_accuracy", "epoch_learning_rate",
          "itop/exploration_rate", "itop/exploration_rate/fc1",
          "itop/density/fc1", "itop/regrown/fc1"} <= tags


def test_flops_are_counted_on_keras3_models():
  model = models.build("lenet_300_100", (28, 28, 1), 10, keras)
  dense, sparse = itop_tf.forward_flops(model)
  assert dense == sparse == 2.0 * (784 * 300 + 300 * 100 + 100 * 10)
  sparse_model = itop_tf.sparsify(
      model, 0.9, schedule=itop_tf.RegrowthSchedule(10, 100))
  dense2, sparse2 = itop_tf.forward_flops(sparse_model)
  assert dense2 == dense
  assert sparse2 == pytest.approx(2.0 * sum(
      r["active"] for r in itop_tf.sparsity_report(sparse_model)))


@pytest.mark.slow
@pytest.mark.skipif(BACKEND != "tensorflow", reason="tf.distribute: TF")
def test_mirrored_strategy_ends_like_one_device(tmp_path, idx_dir,
                                                monkeypatch):
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  one = train(tmp_path, idx_dir, "--nojit", name="one")
  mirrored = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
  monkeypatch.setattr(strategies, "make_strategy", lambda f: mirrored)
  two = train(tmp_path, idx_dir, "--nojit", "--strategy=mirrored",
              name="two")
  assert (one["replicas"], two["replicas"]) == (1, 2)
  assert two["mask_digest"] == one["mask_digest"]
  assert two["exploration_rate"] == one["exploration_rate"]
  assert two["test_accuracy"] == pytest.approx(one["test_accuracy"],
                                               abs=0.01)


def test_imagenet_without_tf_data_is_refused_with_the_way_out():
  with pytest.raises(ValueError, match="use --input=tfds"):
    arrays.open_source(datasets.DATASETS["imagenet2012"], "data_source")


def test_auto_input_reads_idx_files_beside_jax_and_tfds_on_tensorflow(
    idx_dir, tmp_path, monkeypatch):
  fashion = datasets.DATASETS["fashion_mnist"]
  assert arrays.resolve_input("auto", fashion, "tensorflow", idx_dir) == "tfds"
  for backend in ("jax", "torch"):
    assert arrays.resolve_input("auto", fashion, backend, idx_dir) == "idx"
    assert arrays.resolve_input("auto", fashion, backend,
                                str(tmp_path)) == "tfds"  # no IDX files
  monkeypatch.setattr(arrays.lazy_imports, "available", lambda name: False)
  assert arrays.resolve_input("auto", datasets.DATASETS["cifar10"],
                              "jax") == "data_source"
  assert arrays.resolve_input("tfds", fashion, "jax", idx_dir) == "tfds"
