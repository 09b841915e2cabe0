r"""Sparse training with ITOP on CIFAR-10/100 and (offline) Fashion-MNIST.

The defaults are the paper's CIFAR setting: VGG-C, RigL-ITOP at 90% (ERK),
Delta T = 4000, SGD 0.1 with Nesterov momentum, weight decay 5e-4, batch 128,
250 epochs with x0.1 at 1/2 and 3/4. Flag files in launchers/configs/ hold
every run of the paper's tables.

  python launchers/train_cifar.py \
      --flagfile=launchers/configs/cifar100_resnet34_rigl_itop_98.cfg \
      --data_dir=~/tensorflow_datasets --model_dir=runs/r34_rigl_98

  # Offline (apt-get install dataset-fashion-mnist), a few minutes on CPU:
  python launchers/train_cifar.py \
      --flagfile=launchers/configs/fashion_mnist_rigl_itop.cfg

See launchers/trainer.py for what a run does (resume, TensorBoard, summary).
"""

import os
import sys

if __package__ in (None, ""):  # run as a script: make `launchers` importable
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# pylint: disable=g-import-not-at-top,wrong-import-position
import itop_tf  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TF loads)
from absl import app

from launchers import launcher_flags
from launchers import trainer

launcher_flags.define_flags(*launcher_flags.CIFAR)

if __name__ == "__main__":
  app.run(trainer.run)
