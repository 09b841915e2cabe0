"""The benchmarks' Keras 3 mode on this backend (`--frontend=keras3`)."""

from absl import flags

import itop_tf
import k3util
from benchmarks import mask_update


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
                                 resolve_jit_compile("auto", k3util.BACKEND)
                                 else "numpy")
  out = capsys.readouterr().out
  assert f"front-end: keras3 ({k3util.BACKEND})" in out
  label = mask_update.BACKEND_MODE[k3util.BACKEND]
  assert f"update, threshold, {label} (ms)" in out
