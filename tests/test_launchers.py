"""Launchers: flag files, flag errors, and runs end to end on small data."""

import glob
import json
import os
import re
import subprocess
import sys

from absl import app
from absl import flags
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds
import tf_keras as keras

import itop_tf
from launchers import datasets
from launchers import launcher_flags
from launchers import trainer
from launchers import training

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = sorted(glob.glob(os.path.join(ROOT, "launchers", "configs", "*.cfg")))


def parse(launcher, *args):
  fv = flags.FlagValues()
  launcher_flags.define_flags(*launcher, flag_values=fv)
  fv(["prog", "--frontend=tf_keras", *args])  # this file's front-end
  return fv


def _launcher(path):
  return launcher_flags.IMAGENET if "imagenet" in os.path.basename(path) else (
      launcher_flags.CIFAR)


def test_there_is_a_flag_file_for_every_run_of_the_paper():
  names = {os.path.basename(p)[:-4] for p in CONFIGS}
  for sp in (90, 95, 98):
    for tag in ("cifar10_vgg_c", "cifar100_resnet34"):
      assert {f"{tag}_set_itop_{sp}", f"{tag}_rigl_itop_{sp}",
              f"{tag}_static_{sp}", f"{tag}_dense"} <= names
  for sp in (80, 90):
    assert {f"imagenet_resnet50_rigl_itop_{sp}",
            f"imagenet_resnet50_rigl_itop_{sp}_2x",
            f"imagenet_resnet50_static_{sp}", "imagenet_resnet50_dense"} <= names


# cifar100_resnet34_rigl_itop_98, imagenet_resnet50_rigl_itop_80_2x, ...
_CONFIG_NAME = re.compile(
    r"(?P<dataset>cifar100|cifar10|imagenet)_(?P<model>resnet34|resnet50|"
    r"vgg_c)_(?P<method>dense|static|set_itop|rigl_itop)(_(?P<sparsity>\d+))?"
    r"(?P<longer>_2x)?$")
_METHOD = {"dense": "dense", "static": "static", "set_itop": "set",
           "rigl_itop": "rigl"}
_DATASET = {"cifar10": "cifar10", "cifar100": "cifar100",
            "imagenet": "imagenet2012"}
_MODEL = {"resnet34": "resnet34_cifar", "resnet50": "resnet50",
          "vgg_c": "vgg_c"}


def _parse_config(path):
  return parse(_launcher(path), f"--flagfile={path}", "--data_dir=/unused")


@pytest.mark.parametrize("path", CONFIGS, ids=os.path.basename)
def test_flag_file_parses_to_the_run_its_name_says(path):
  # A flag file copied from its neighbour and not fully edited (the
  # sparsity, method or multiplier of another run) fails here.
  fv = _parse_config(path)
  name = os.path.basename(path)[:-4]
  if name == "fashion_mnist_rigl_itop":
    assert (fv.dataset, fv.model, fv.method) == (
        "fashion_mnist", "small_cnn", "rigl")
    return
  m = _CONFIG_NAME.match(name)
  assert m, f"{name}: not a <dataset>_<model>_<method>[_<sparsity>][_2x] name"
  assert fv.dataset == _DATASET[m["dataset"]]
  assert fv.model == _MODEL[m["model"]]
  assert fv.method == _METHOD[m["method"]]
  if m["sparsity"]:
    assert round(fv.sparsity * 100) == int(m["sparsity"])
  else:
    assert fv.method == "dense"
  assert fv.multiplier == (2 if m["longer"] else 1)


def _one_per_model_and_method():
  """The flag files to build: per (dataset, model, method, multiplier), the
  sparsest (ERK's hardest case). The others of a group differ from it in
  flag values the build passes through (the sparsity, checked above, and
  the update interval); each build is a real 10-s model, 28 were 4 min."""
  chosen = {}
  for path in CONFIGS:
    fv = _parse_config(path)
    key = (fv.dataset, fv.model, fv.method, fv.multiplier)
    if key not in chosen or fv.sparsity > chosen[key][0]:
      chosen[key] = (fv.sparsity, path)
  return sorted(path for _, path in chosen.values())


@pytest.mark.slow
@pytest.mark.parametrize("path", _one_per_model_and_method(),
                         ids=os.path.basename)
def test_flag_file_builds_its_model(path):
  fv = _parse_config(path)
  spec = datasets.DATASETS[fv.dataset]
  if fv.dataset == "imagenet2012":
    spec = datasets.with_image_size(spec, fv.image_size)
  model = training.build_model(fv, spec, total_steps=10_000,
                             multiplier=fv.multiplier)
  assert model.output_shape == (None, spec.num_classes)
  if fv.method == "dense":
    assert not itop_tf.find_wrappers(model)
    return
  rows = itop_tf.sparsity_report(model)
  active, size = sum(r["active"] for r in rows), sum(r["size"] for r in rows)
  assert active == round((1 - fv.sparsity) * size)
  wrapper = itop_tf.MaskUpdater(model).wrappers[0]
  assert wrapper.grow == training.GROW[fv.method]
  schedule = wrapper.pruning_schedule
  assert schedule.update_interval == fv.update_interval
  assert schedule.initial_prune_fraction == (
      0.0 if fv.method == "static" else 0.5)
  assert schedule.end_step is None  # ITOP explores until the end


def _run_in_process(launcher, tmp_path, *args):
  fv = parse(launcher, f"--model_dir={tmp_path / 'run'}", "--verbose=0",
             "--checkpoint_every=0", *args)
  return trainer.train(fv), fv


@pytest.mark.slow
def test_cifar_launcher_runs_end_to_end_on_mock_data(tmp_path, monkeypatch):
  # Mock data has no split metadata: say how big the mock split is.
  monkeypatch.setattr(datasets, "num_train_examples", lambda b, spec: 16)
  with tfds.testing.mock_data(num_examples=16):
    results, _ = _run_in_process(
        launcher_flags.CIFAR, tmp_path, "--dataset=cifar100", "--model=vgg_c",
        "--method=set", "--sparsity=0.95", "--batch_size=8", "--epochs=2",
        "--update_interval=1", "--nojit")
  assert results["step"] == 4 and results["method"] == "set"
  assert results["sparsity"] == pytest.approx(0.95, abs=1e-6)
  assert results["exploration_rate"] > 0.05 + 0.01  # it explored
  assert 0 < results["train_flops"] < 0.2
  saved = json.load(open(tmp_path / "run" / "results.json"))
  assert saved["mask_digest"] == results["mask_digest"]
  assert tf.train.latest_checkpoint(str(tmp_path / "run" / "checkpoints"))


@pytest.mark.slow
def test_imagenet_launcher_runs_resnet50_on_mock_data(tmp_path, monkeypatch):
  monkeypatch.setattr(datasets, "num_train_examples", lambda b, spec: 8)
  with tfds.testing.mock_data(num_examples=8):
    results, _ = _run_in_process(
        launcher_flags.IMAGENET, tmp_path, "--data_dir=/mock", "--image_size=32",
        "--batch_size=4", "--epochs=1", "--warmup_epochs=0.5",
        "--update_interval=1", "--sparsity=0.8", "--nojit")
  assert results["step"] == 2 and results["method"] == "rigl"
  assert "test_top5" in results
  assert results["sparsity"] == pytest.approx(0.8, abs=1e-6)


@pytest.mark.slow
def test_dense_method_trains_without_masks(tmp_path, fashion_data):
  results, _ = _run_in_process(
      launcher_flags.CIFAR, tmp_path, "--dataset=fashion_mnist",
      "--model=lenet_300_100", "--method=dense", "--epochs=1",
      "--batch_size=64", f"--data_dir={fashion_data[0]}",
      f"--manual_dir={fashion_data[1]}")
  assert results["sparsity"] == 0 and results["exploration_rate"] == 1.0
  assert results["train_flops"] == 1.0 and "mask_digest" not in results


@pytest.mark.slow
@pytest.mark.parametrize("policy", ["float16", "bfloat16"])
def test_mixed_precision_run_keeps_exact_sparsity(tmp_path, fashion_data,
                                                  policy):
  try:
    results, _ = _run_in_process(
        launcher_flags.CIFAR, tmp_path, f"--mixed_precision={policy}",
        "--dataset=fashion_mnist", "--model=lenet_300_100", "--epochs=1",
        "--batch_size=64", "--update_interval=3", "--eval_every=0",
        "--export=tflite",
        f"--data_dir={fashion_data[0]}", f"--manual_dir={fashion_data[1]}")
  finally:
    keras.mixed_precision.set_global_policy("float32")
  assert results["step"] == 16 and results["exploration_rate"] > 0.15
  assert results["sparsity"] == pytest.approx(0.9, abs=1e-6)
  # Exported computing in float32 (LiteRT has no float16/bfloat16 kernels
  # for these ops): the file agrees with the float32 copy it came from and,
  # give or take rounding, with the mixed-precision test accuracy.
  lite = results["tflite"]
  assert lite["accuracy"] == pytest.approx(lite["keras_accuracy"], abs=1e-3)
  assert lite["keras_accuracy"] == pytest.approx(results["test_accuracy"],
                                                 abs=0.02)


@pytest.mark.slow
def test_export_flag_writes_int8_litert_file_and_reports_it(
    tmp_path, fashion_data, capsys):
  results, _ = _run_in_process(
      launcher_flags.CIFAR, tmp_path, "--dataset=fashion_mnist",
      "--model=lenet_300_100", "--epochs=1", "--batch_size=64",
      "--update_interval=4", "--export=tflite_int8",
      f"--data_dir={fashion_data[0]}", f"--manual_dir={fashion_data[1]}")
  lite = results["tflite"]
  assert lite["path"] == str(tmp_path / "run" / "model_int8.tflite")
  assert os.path.getsize(lite["path"]) == lite["bytes"]
  assert lite["quantize"] == "int8" and lite["size_ratio"] > 2
  # The interpreter's accuracy is the launcher's test accuracy, give or
  # take int8 rounding; the Keras side is the same evaluation.
  assert lite["keras_accuracy"] == pytest.approx(results["test_accuracy"],
                                                 abs=1e-6)
  assert abs(lite["accuracy_delta"]) <= 0.02
  saved = json.load(open(tmp_path / "run" / "results.json"))
  assert saved["tflite"] == lite
  last = capsys.readouterr().out.strip().splitlines()[-1]
  assert f"tflite_accuracy={lite['accuracy']:.4f}" in last


def test_batch_not_divisible_by_replicas_stops_before_training(tmp_path):
  fv = parse(launcher_flags.CIFAR, "--strategy=mirrored", "--batch_size=7",
             f"--model_dir={tmp_path}")
  with pytest.raises(app.UsageError, match="not divisible by the 2 replicas"):
    trainer.train(fv)
  assert not os.listdir(tmp_path)


def test_jit_on_several_cpu_replicas_stops_before_training(tmp_path):
  fv = parse(launcher_flags.CIFAR, "--strategy=mirrored", "--batch_size=8", "--jit",
             f"--model_dir={tmp_path}")
  with pytest.raises(app.UsageError, match="pass --nojit"):
    trainer.train(fv)
  assert not os.listdir(tmp_path)


@pytest.mark.parametrize("args,message", [
    (["--sparsity=1.0"], "--sparsity must be in [0, 1)"),
    (["--dataset=mnist"], "value should be one of <cifar10|cifar100|fashion"),
    (["--multiplier=0"], "--multiplier must be an integer >= 1"),
    (["--lr_milestones=0.75,0.5"], "--lr_milestones must be increasing"),
    (["--model=resnet50"], "--model=resnet50 is the ImageNet network"),
    (["--export=tflite", "--method=dense"], "--export writes a sparse model"),
    (["--export=onnx"], "value should be one of <none|tflite|tflite_int8>"),
])
def test_bad_flags_get_one_clear_error_at_parse_time(args, message):
  with pytest.raises(flags.IllegalFlagValueError) as error:
    parse(launcher_flags.CIFAR, *args)
  assert message in str(error.value)


def _launch(script, *args, **kwargs):
  env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": ""}
  return subprocess.run(
      [sys.executable, os.path.join(ROOT, "launchers", script),
       "--frontend=tf_keras", *args],
      capture_output=True, text=True, env=env, timeout=600, **kwargs)


@pytest.mark.slow
@pytest.mark.subprocess
def test_imagenet_without_data_dir_fails_on_the_command_line(tmp_path):
  out = _launch("train_imagenet.py", f"--model_dir={tmp_path}")
  assert out.returncode == 1
  assert "--dataset=imagenet2012 needs --data_dir" in out.stderr
  assert "Traceback" not in out.stderr and not os.listdir(tmp_path)


@pytest.mark.slow
def test_fashion_mnist_launcher_prints_summary_and_writes_tensorboard(
    tmp_path, fashion_data):
  out = _launch(
      "train_cifar.py",
      f"--flagfile={ROOT}/launchers/configs/fashion_mnist_rigl_itop.cfg",
      f"--data_dir={fashion_data[0]}", f"--manual_dir={fashion_data[1]}",
      f"--model_dir={tmp_path}", "--epochs=2", "--update_interval=4",
      "--verbose=2")
  assert out.returncode == 0, out.stderr[-3000:]
  last = out.stdout.strip().splitlines()[-1]
  assert last.startswith("final: test_accuracy=") and "sparsity=0.900" in last
  results = json.load(open(tmp_path / "results.json"))
  assert results["test_accuracy"] > 0.5  # the bands are easy; chance is 0.1
  assert results["exploration_rate"] > 0.15
  # One progress line per epoch (--verbose=2) shows R_s as it is after the
  # epoch's last update: non-decreasing, and the last is the final R_s.
  shown = [float(m) for m in re.findall(r" - itop_rate: ([0-9.]+)",
                                        out.stdout)]
  assert len(shown) == 2 and shown[0] > 0.1 and shown == sorted(shown)
  assert shown[-1] == pytest.approx(results["exploration_rate"], abs=1e-4)
  tags = set()
  for path in glob.glob(str(tmp_path / "tensorboard" / "**" / "events.*"),
                        recursive=True):
    for event in tf.compat.v1.train.summary_iterator(path):
      tags.update(v.tag for v in event.summary.value)
  assert {"epoch_loss", "epoch_accuracy", "epoch_learning_rate",
          "itop/exploration_rate", "itop/exploration_rate/fc1",
          "itop/density/fc1", "itop/regrown/fc1"} <= tags
