"""A launcher killed mid-run resumes from its checkpoint and loses nothing.

Real signals to a real subprocess: SIGTERM (preemption: the run saves a
checkpoint at the next step and exits with code 42) and SIGKILL (no warning:
the run resumes from its last periodic checkpoint). Either way the resumed
run ends with the masks, union, R_s and accuracy of an uninterrupted run.
"""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import tensorflow as tf

from launchers import checkpointing

pytestmark = [pytest.mark.slow, pytest.mark.subprocess]

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _command(fashion_data, model_dir):
  return [sys.executable, os.path.join(ROOT, "launchers", "train_cifar.py"),
          "--frontend=tf_keras", "--dataset=fashion_mnist",
          "--model=lenet_300_100", "--method=rigl",
          "--sparsity=0.9", "--update_interval=7", "--epochs=8",
          "--batch_size=16", "--checkpoint_every=50", "--verbose=0",
          f"--data_dir={fashion_data[0]}", f"--manual_dir={fashion_data[1]}",
          f"--model_dir={model_dir}"]


def _env():
  return {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": ""}


def _run(fashion_data, model_dir):
  out = subprocess.run(_command(fashion_data, model_dir), capture_output=True,
                       text=True, env=_env(), timeout=600)
  assert out.returncode == 0, out.stderr[-3000:]
  return out, json.load(open(os.path.join(model_dir, "results.json")))


@pytest.fixture(scope="module")
def uninterrupted(fashion_data, tmp_path_factory):
  return _run(fashion_data, str(tmp_path_factory.mktemp("full")))[1]


@pytest.mark.parametrize("sig,code", [(signal.SIGTERM,
                                       checkpointing.PREEMPTED_EXIT_CODE),
                                      (signal.SIGKILL, -signal.SIGKILL)])
def test_killed_run_resumes_to_the_same_masks_and_rate(
    fashion_data, uninterrupted, tmp_path, sig, code):
  model_dir = str(tmp_path)
  proc = subprocess.Popen(_command(fashion_data, model_dir), env=_env(),
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True)
  deadline = time.time() + 300
  # A checkpoint counts once the manager has recorded it in its state file
  # (its .index file appears a moment before).
  while not tf.train.latest_checkpoint(os.path.join(model_dir, "checkpoints")):
    assert proc.poll() is None and time.time() < deadline, "no checkpoint"
    time.sleep(0.02)
  proc.send_signal(sig)
  _, err = proc.communicate(timeout=300)
  assert proc.returncode == code, err[-3000:]
  assert not os.path.exists(os.path.join(model_dir, "results.json"))
  latest = tf.train.latest_checkpoint(os.path.join(model_dir, "checkpoints"))
  saved = [int(latest.rsplit("-", 1)[1])]  # what a restart restores
  assert 0 < saved[-1] < uninterrupted["step"]  # it really stopped mid-run
  if sig == signal.SIGTERM:  # exit code 42 comes after the preemption save
    assert "Preempted: checkpoint saved" in err

  out, resumed = _run(fashion_data, model_dir)
  assert f"at step {saved[-1]} of {uninterrupted['step']}" in out.stdout
  assert resumed["step"] == uninterrupted["step"]
  assert resumed["mask_digest"] == uninterrupted["mask_digest"]
  assert resumed["exploration_rate"] == uninterrupted["exploration_rate"]
  assert resumed["test_accuracy"] == uninterrupted["test_accuracy"]
  assert resumed["layers"] == uninterrupted["layers"]
