r"""Sparse training with ITOP on ImageNet (ResNet-50).

The defaults are the paper's ImageNet setting: ResNet-50, RigL-ITOP at 90%
(ERK), Delta T = 4000, batch 128, SGD 0.1 (momentum 0.9), 5 epochs of linear
warm-up, x0.1 at epochs 30/60/90 of 100, label smoothing 0.1, weight decay
1e-4 with none on BatchNorm. The data is TFDS `imagenet2012`, prepared
under --data_dir (TFDS needs the tars from image-net.org in --manual_dir).

  python launchers/train_imagenet.py \
      --flagfile=launchers/configs/imagenet_resnet50_rigl_itop_90.cfg \
      --data_dir=gs://my-bucket/tfds --model_dir=gs://my-bucket/runs/r50_90 \
      --strategy=mirrored

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

launcher_flags.define_flags(*launcher_flags.IMAGENET)

if __name__ == "__main__":
  app.run(trainer.run)
