"""Two workers (MultiWorkerMirroredStrategy, 2 local processes) keep identical
masks and union, with RigL's gradient averaged over the workers."""

import json
import os
import socket
import subprocess
import sys

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.subprocess,
              pytest.mark.multi_device]

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _free_ports(n):
  socks = [socket.socket() for _ in range(n)]
  for s in socks:
    s.bind(("127.0.0.1", 0))
  ports = [s.getsockname()[1] for s in socks]
  for s in socks:
    s.close()
  return ports


def test_two_workers_end_with_identical_masks_and_union(fashion_data,
                                                        tmp_path):
  cluster = {"worker": [f"127.0.0.1:{p}" for p in _free_ports(2)]}
  command = [sys.executable, os.path.join(ROOT, "launchers", "train_cifar.py"),
             "--frontend=tf_keras", "--strategy=multi_worker",
             "--dataset=fashion_mnist",
             "--model=lenet_300_100", "--method=rigl", "--sparsity=0.9",
             "--update_interval=5", "--epochs=2", "--batch_size=32",
             "--checkpoint_every=20", "--verbose=0",
             # TF has no XLA collectives on CPU (b/194942685): plain step.
             "--nojit",
             f"--data_dir={fashion_data[0]}", f"--manual_dir={fashion_data[1]}",
             f"--model_dir={tmp_path}"]
  procs = []
  for index in range(2):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": "",
           "TF_CONFIG": json.dumps({"cluster": cluster,
                                    "task": {"type": "worker", "index": index}})}
    procs.append(subprocess.Popen(command, env=env, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True))
  outs = [p.communicate(timeout=600) for p in procs]
  for p, (_, err) in zip(procs, outs):
    assert p.returncode == 0, err[-4000:]
  chief = json.load(open(tmp_path / "results.json"))
  other = json.load(open(tmp_path / "workers" / "worker_1" / "results.json"))
  assert chief["step"] == other["step"] == 2 * (1024 // 32)
  assert chief["mask_digest"] == other["mask_digest"]
  assert chief["exploration_rate"] == other["exploration_rate"] > 0.15
  assert chief["layers"] == other["layers"]
  assert os.listdir(tmp_path / "checkpoints")  # the chief's
  assert not os.path.exists(tmp_path / "workers" / "worker_1" / "checkpoints")
