"""Benchmark and reproduction scripts: smoke runs, labels and accounting."""

import json
import os
import re
import subprocess

from absl import flags
import numpy as np
import pytest
import tf_keras as keras

import itop_tf
from fashion_files import write_fashion_mnist
from benchmarks import end_to_end
from benchmarks import harness
from benchmarks import keras3_memory
from benchmarks import keras3_steps
from benchmarks import mask_update
from benchmarks import memory
from benchmarks import reproduce
from benchmarks import step_overhead
from benchmarks import tflite_export

pytestmark = [pytest.mark.slow, pytest.mark.benchmark]

BENCHMARKS_DIR = os.path.join(os.path.dirname(__file__), "..", "benchmarks")


def parse(module, *args):
  fv = flags.FlagValues()
  module.define_flags(fv)
  fv(["prog", *args])
  return fv


def tiny_cnn():
  inputs = keras.Input((8, 8, 3))
  x = keras.layers.Conv2D(8, 3, name="conv")(inputs)
  x = keras.layers.Flatten()(x)
  return keras.Model(inputs, keras.layers.Dense(4, name="fc")(x))


@pytest.mark.parametrize("kind", ["tfmot", "itop"])
def test_step_timer_labels_the_step_that_updates_the_masks(kind):
  variant = harness.make_variant(kind, tiny_cnn, sparsity=0.75,
                                 update_interval=3)
  timer = harness.StepTimer(variant, batch_size=4)
  layer = variant.model.get_layer(index=1)
  mask = (layer.pruning_vars[0][1] if kind == "tfmot"
          else layer.sparse_weights[0].mask)
  labels, changes = [], []
  before = mask.numpy().astype(bool)
  for _ in range(6):
    (seconds, update), = timer.run(1)
    assert seconds > 0
    after = mask.numpy().astype(bool)
    labels.append(update)
    changes.append(bool((after != before).any()))
    before = after
  # Updates in or after the steps that reach optimizer steps 3 and 6.
  assert labels == [False, False, True, False, False, True]
  if kind == "itop":
    assert changes == labels
  else:
    # TF-MOT takes the all-ones mask to 25% at the first; the second
    # recomputes it from the magnitudes (it may keep it).
    assert changes[2] and not any(changes[:2] + changes[3:5])
    assert before.mean() == pytest.approx(0.25, abs=0.02)


def test_make_variant_rejects_an_unknown_kind():
  with pytest.raises(ValueError, match="Unknown variant 'sparse'"):
    harness.make_variant("sparse", tiny_cnn)


def test_step_overhead_smoke_reports_every_variant(capsys):
  fv = parse(step_overhead, "--models=lenet_300_100", "--batch_size=2",
             "--steps=3", "--rounds=1", "--update_intervals=1,100",
             "--keras3_backends=")
  rows = step_overhead.run(fv)
  assert [r["variant"] for r in rows] == ["dense", "tfmot", "itop"]
  for r in rows:
    assert r["model"] == "lenet_300_100" and r["batch"] == 2
    assert r["image_size"] == 28  # the network's, not --image_size's
    assert r["plain_s"] > 0 and r["ratio_dt1"] > 0 and r["ratio_dt100"] > 0
  out = capsys.readouterr().out
  assert "lenet_300_100 ΔT=100: itop_tf" in out and "itop_tf / TF-MOT" in out


def test_step_overhead_amortizes_the_update_step_against_dense():
  samples = {
      "dense": [(0.5, False), (0.6, False), (0.4, False)],
      # Medians: plain 1.0 (the 9.0 outlier is ignored), update 11.0.
      "itop": [(1.0, False), (9.0, False), (0.9, False), (11.0, True)],
      "tfmot": [(0.5, False), (0.5, False)],  # no update step seen
  }
  rows = {r["variant"]: r for r in step_overhead.summarize(samples, [1, 10])}
  assert rows["itop"]["plain_s"] == 1.0 and rows["itop"]["update_step_s"] == 11.0
  assert rows["itop"]["ratio_dt10"] == pytest.approx((1.0 + 10.0 / 10) / 0.5)
  assert rows["itop"]["ratio_dt1"] == pytest.approx(11.0 / 0.5)
  assert rows["tfmot"]["ratio_dt10"] == pytest.approx(1.0)
  assert rows["dense"]["update_step_s"] == 0.5


def test_step_overhead_keras3_child_times_dense_and_itop(capsys):
  """The Keras 3 rows, measured in this process (Keras 3 on TensorFlow)."""
  fv = parse(step_overhead, "--models=resnet20", "--batch_size=2",
             "--steps=3", "--rounds=1", "--update_intervals=1,100",
             "--keras3_child=1", "--nojit")
  rows = step_overhead.run(fv)
  assert [r["variant"] for r in rows] == ["dense", "itop"]
  assert {r["frontend"] for r in rows} == {"keras3/tensorflow"}
  for r in rows:
    assert r["plain_s"] > 0 and r["ratio_dt100"] > 0
  assert capsys.readouterr().out.startswith("ROWS [")


def test_step_overhead_children_measure_what_the_parent_was_told():
  fv = parse(step_overhead, "--models=resnet20", "--batch_size=4",
             "--steps=3", "--rounds=2", "--update_intervals=5,50", "--nojit",
             "--distribution=uniform")
  args = step_overhead.child_args(fv)
  child = parse(step_overhead, *args)
  for name in step_overhead._CHILD_FLAGS:  # pylint: disable=protected-access
    assert child[name].value == fv[name].value, name
  assert child.keras3_child == "1"


def test_step_overhead_keras3_counts_the_update_and_the_step_after_it():
  # One round of 9 steps, updates after steps 3, 6 and 9. Step 1 includes
  # the fit call's start and is not used; steps 4 and 7 follow an update.
  itop_round = [9.0, 1.0, 3.0, 1.5, 1.0, 3.0, 1.5, 1.0, 3.0]
  dense_round = [9.0] + [0.5] * 8
  rows = {r["variant"]: r for r in step_overhead.summarize_keras3(
      {"dense": [dense_round], "itop": [itop_round]}, 3, [1, 10])}
  # plain 1.0 (steps 2, 5, 8); extra per update = 3.0 + 1.5 - 2 = 2.5.
  assert rows["itop"]["plain_s"] == 1.0
  assert rows["itop"]["update_step_s"] == pytest.approx(3.5)
  assert rows["itop"]["ratio_dt10"] == pytest.approx((1.0 + 0.25) / 0.5)
  assert rows["dense"]["ratio_dt10"] == pytest.approx(1.0)


def test_step_overhead_rejects_unknown_models():
  with pytest.raises(flags.IllegalFlagValueError, match="--models must be some of"):
    parse(step_overhead, "--models=vgg")


def test_mask_update_smoke_keeps_exact_counts(capsys):
  fv = parse(mask_update, "--params=0.05", "--noresnet50", "--repeats=1",
             "--steps=1", "--mlp_batch_size=8")
  row, = mask_update.run(fv)
  assert row["sparse_weights"] == 1024 * 1024 + 1024 * 10
  for method in ("threshold", "sort"):
    assert row[f"update_{method}_backend_s"] > 0
    assert row[f"update_{method}_numpy_s"] > 0
  mode = row["default_mode"]
  assert mode == ("backend" if itop_tf.updaters.resolve_jit_compile(
      "auto", "tensorflow") else "numpy")
  method = row["default_method"]
  assert method == "threshold"
  assert row["update_over_step"] == pytest.approx(
      row[f"update_{method}_{mode}_s"] / row["step_s"])
  out = capsys.readouterr().out
  assert "threshold / sort, XLA" in out and "threshold / sort, NumPy" in out


def test_mask_update_rejects_unknown_rank_methods():
  with pytest.raises(flags.IllegalFlagValueError, match="--rank_methods"):
    parse(mask_update, "--rank_methods=bisect")


def test_mask_update_mlp_has_the_requested_size():
  model = mask_update.mlp(5)()
  kernels = [l.kernel for l in model.layers if hasattr(l, "kernel")]
  assert len(kernels) == 6  # 5 hidden layers of 1024 x 1024, then logits
  assert sum(np.prod(k.shape) for k in kernels) == pytest.approx(5.25e6,
                                                                 rel=0.01)


def test_memory_state_accounting_per_sparse_weight():
  fv = parse(memory, "--models=resnet20", "--steps=0")
  rows = {r["variant"]: r for r in memory.state_rows("resnet20", fv)}
  # Bool mask + bool union (+ float32 dense gradient for RigL), plus a few
  # scalars per layer; TF-MOT: a float32 mask.
  assert rows["itop (SET)"]["extra_bytes_per_weight"] == pytest.approx(
      2.0, abs=0.01)
  assert rows["itop (RigL)"]["extra_float32_per_weight"] == pytest.approx(
      1.5, abs=0.01)
  assert rows["tfmot"]["extra_bytes_per_weight"] == pytest.approx(4.0,
                                                                  abs=0.01)
  assert rows["itop (RigL)"]["sparse_weights"] == (
      rows["tfmot"]["sparse_weights"])


def test_memory_peak_runs_each_variant_in_its_own_process():
  fv = parse(memory, "--models=lenet_300_100", "--steps=1", "--batch_size=2")
  rows = memory.peak_rows("lenet_300_100", fv)
  assert [r["variant"] for r in rows] == list(harness.VARIANTS)
  # Each row was measured by a child that ran that variant, in a process
  # of its own.
  assert [r["measured"] for r in rows] == list(harness.VARIANTS)
  assert len({r["pid"] for r in rows}) == len(rows)
  dense = rows[0]["peak_mib"]
  assert rows[0]["sparse_weights"] == 0
  for r in rows[1:]:
    assert r["over_dense_mib"] == pytest.approx(r["peak_mib"] - dense)
    assert r["sparse_weights"] > 0
    assert r["over_dense_float32_per_weight"] == pytest.approx(
        r["over_dense_mib"] * 2**20 / 4 / r["sparse_weights"])
  itop = rows[-1]
  assert itop["variant"] == "itop"
  assert itop["update_first_float32_per_weight"] == pytest.approx(
      itop["update_first_mib"] * 2**20 / 4 / itop["sparse_weights"])
  assert itop["update_float32_per_weight"] == pytest.approx(
      itop["update_mib"] * 2**20 / 4 / itop["sparse_weights"])


def test_update_peaks_sees_what_an_update_allocates_and_no_earlier_peak():
  class Updater:  # an "update" that touches 64 MiB, then frees them

    def update(self, step):
      del step
      np.ones(16 * 2**20, np.float32).sum()

  np.ones(128 * 2**20, np.float32).sum()  # an earlier peak of 512 MiB
  peaks = memory.update_peaks(Updater(), step=0)
  if peaks is None:
    pytest.skip("No /proc/self/clear_refs: the peak cannot be reset here.")
  assert len(peaks) == 2
  for peak in peaks:  # reset before each: the 512 MiB are not counted
    assert 60 * 2**20 <= peak < 200 * 2**20


def test_reproduce_smoke_writes_table_and_plots(tmp_path, fashion_data):
  data_dir, manual = fashion_data
  args = ["--models=lenet_300_100:2", "--sparsities=0.9",
          "--methods=dense,rigl,set_itop", "--seeds=0",
          "--itop_update_interval=2", f"--data_dir={data_dir}",
          f"--manual_dir={manual}", f"--work_dir={tmp_path / 'runs'}",
          f"--out={tmp_path / 'docs'}"]
  rows = reproduce.run(parse(reproduce, *args))
  assert [r["method"] for r in rows] == ["dense", "rigl", "set_itop"]
  for name in ("reproduction_table.md", "reproduction.json",
               "reproduction_rate.png", "reproduction_accuracy.png"):
    assert os.path.getsize(tmp_path / "docs" / name) > 0
  table = (tmp_path / "docs" / "reproduction_table.md").read_text()
  assert "| lenet_300_100 | 0.9 | set_itop | 2 |" in table
  # Too few methods to check the R_s order; the correlation is over 2 runs.
  assert "| lenet_300_100 | 0.9 | n/a | n/a (2 runs) | n/a |" in table

  by = {r["method"]: r for r in rows}
  assert by["dense"]["exploration_rate"] == 1.0
  # 1024 examples / 128 = 8 steps per epoch, 16 steps: RigL updates once a
  # epoch until 75% (step 8); SET-ITOP every 2 steps until the end (no
  # update at the last step, 16).
  curve = reproduce.read_rate_curve(
      str(tmp_path / "runs" / "lenet_300_100_set_itop_0.9_seed0" /
          "tensorboard" / "itop"))
  steps = [s for s, _ in curve]
  rates = [r for _, r in curve]
  assert steps == list(range(0, 16, 2))
  assert rates[0] == pytest.approx(0.1, abs=1e-3)
  assert all(b >= a for a, b in zip(rates, rates[1:])) and rates[-1] > 0.15
  assert rates[-1] == pytest.approx(by["set_itop"]["exploration_rate"])
  assert 0.1 < by["rigl"]["exploration_rate"] < rates[-1]

  # A second call reuses the finished runs instead of training again.
  for path in (tmp_path / "runs").glob("*/checkpoints/*"):
    path.unlink()
  again = reproduce.run(parse(reproduce, *args))
  assert again == rows
  assert not list((tmp_path / "runs").glob("*/checkpoints/*"))


def test_reproduce_method_flags_stop_rigl_at_three_quarters():
  fv = parse(reproduce, "--itop_update_interval=50", "--itop_multiplier=2")
  assert reproduce.method_flags("rigl", 100, 4, fv) == [
      "--method=rigl", "--update_interval=100", "--end_step=300"]
  assert reproduce.method_flags("set", 100, 4, fv)[-1] == "--end_step=0"
  assert reproduce.method_flags("rigl_itop", 100, 4, fv) == [
      "--method=rigl", "--update_interval=50", "--end_step=0",
      "--multiplier=2"]


def test_reproduce_rejects_bad_model_entries():
  with pytest.raises(flags.IllegalFlagValueError, match="small_cnn:EPOCHS"):
    parse(reproduce, "--models=small_cnn")


def test_sparsify_is_what_the_benchmarks_time():
  variant = harness.make_variant("itop", tiny_cnn, sparsity=0.75)
  assert [type(w) for w in itop_tf.find_wrappers(variant.model)] == [
      itop_tf.tf_keras.PruneAndRegrow] * 2
  # The update as a user's ITOPCallback() runs it, unless a flag says not.
  assert variant.callbacks[0].jit_compile == itop_tf.ITOPCallback().jit_compile
  assert memory.update_jit_compile(parse(memory)) == "auto"
  assert memory.update_jit_compile(parse(memory, "--noupdate_jit")) is False


def test_resnet20_is_the_027m_parameter_cifar_network():
  from launchers import models  # pylint: disable=g-import-not-at-top
  model = models.build("resnet20_cifar", (32, 32, 3), 10)
  assert model.output_shape == (None, 10)
  assert 0.26e6 < model.count_params() < 0.28e6
  convs = [l for l in model.layers if isinstance(l, keras.layers.Conv2D)]
  assert len(convs) == 19 + 2  # 19 3x3 convs and 2 projection shortcuts


def test_claims_check_order_correlation_and_gap_to_dense():
  def run(method, rate, acc, seed=0):
    return {"model": "m", "sparsity_target": 0.0 if method == "dense" else 0.9,
            "method": method, "exploration_rate": rate, "test_accuracy": acc,
            "seed": seed, "epochs": 1, "multiplier": 1, "train_flops": 1.0}
  results = [run("dense", 1.0, 0.90), run("dense", 1.0, 0.92, 1)]
  for i, m in enumerate(["static", "set", "rigl", "set_itop", "rigl_itop"]):
    results.append(run(m, 0.1 + 0.1 * i, 0.80 + 0.02 * i))
  rows = reproduce.aggregate(results)
  lines = reproduce.claims(results, rows)
  # R_s in the expected order, accuracy rising with it, RigL-ITOP at 0.88
  # against dense 0.91 +- 0.01.
  assert lines[2] == "| m | 0.9 | yes | +1.00 (5 runs) | -3.00 (beyond 1 std) |"
  results[3]["exploration_rate"] = 0.05  # SET below static
  lines = reproduce.claims(results, reproduce.aggregate(results))
  assert "| m | 0.9 | no | +0.90 (5 runs) |" in lines[2]


def test_tflite_export_smoke_reports_sizes_accuracy_and_latency(
    tmp_path, fashion_data, capsys):
  data_dir, manual = fashion_data
  fv = parse(tflite_export, "--models=lenet_300_100:1", "--sparsities=0.9",
             "--latency_models=lenet_300_100", "--threads=1", "--rounds=1",
             "--invokes=3", "--batch_size=64", "--update_interval=4",
             f"--data_dir={data_dir}",
             f"--manual_dir={manual}", f"--work_dir={tmp_path}",
             f"--out={tmp_path / 'rows.json'}")
  sizes, latency = tflite_export.run(fv)
  by = {(r["type"], r["sparse_encoding"]): r for r in sizes}
  assert set(by) == {("float32", True), ("int8", False), ("int8", True)}
  assert by[("float32", True)]["size_ratio"] > 3
  assert by[("int8", False)]["default_delegates"]
  assert not by[("int8", True)]["default_delegates"]
  assert by[("int8", True)]["bytes"] < by[("int8", False)]["bytes"]
  for r in sizes:  # the interpreter's accuracy, next to Keras'
    assert abs(r["accuracy_delta"]) <= 0.02 and r["accuracy"] > 0.3
  row, = latency
  assert row["densify_ops"] >= 1 and row["sparse_tensors"] >= 1
  assert row["dense_ms"] > 0 and row["sparse_ms"] > 0
  assert {r["frontend"] for r in sizes + latency} == {"tf_keras"}
  assert "| lenet_300_100 | 0.9 | int8 |" in capsys.readouterr().out
  assert (tmp_path / "rows.json").exists()


def test_mobilenet_style_meets_xnnpack_sparse_inference_conditions():
  model, shape = tflite_export.latency_model("mobilenet_style")
  assert shape == (1, 96, 96, 3)
  rows = {r["layer"]: r for r in itop_tf.sparsity_report(model)}
  pointwise = [n for n in rows if n.startswith("pw")]
  assert len(pointwise) == 6
  # At least 2/3 of the 1x1 weights zero (here 80% each).
  assert all(rows[n]["density"] == pytest.approx(0.2, abs=1e-3)
             for n in pointwise)
  assert not any(n.startswith("dw") or n == "stem" for n in rows)
  stem = model.get_layer("stem")
  assert stem.kernel_size == (3, 3) and stem.strides == (2, 2)
  assert stem.padding == "valid" and stem.input_shape[-1] == 3
  assert isinstance(model.layers[1], keras.layers.ZeroPadding2D)


@pytest.mark.parametrize("distribution", ["erk", "uniform"])
def test_itop_variant_takes_the_layer_distribution(distribution):
  variant = harness.make_variant("itop", tiny_cnn, sparsity=0.75,
                                 distribution=distribution)
  density = {r["layer"]: r["density"]
             for r in itop_tf.sparsity_report(variant.model)}
  if distribution == "uniform":  # every layer at the target, as TF-MOT
    assert all(d == pytest.approx(0.25, abs=0.01) for d in density.values())
  else:  # ERK: the small dense head denser than the conv
    assert density["fc"] > density["conv"]


def test_step_overhead_rounds_alternate_the_variant_order():
  kinds = ["dense", "tfmot", "itop"]
  orders = [step_overhead.interleaved(kinds, r) for r in range(4)]
  assert orders[0] == kinds and orders[1] == kinds[::-1]
  # Every variant's mean position is the same: a drift within rounds
  # favours none of them.
  mean = {k: np.mean([o.index(k) for o in orders]) for k in kinds}
  assert set(mean.values()) == {1.0}
  assert kinds == ["dense", "tfmot", "itop"]  # the caller's list untouched


def test_end_to_end_run_is_deterministic_and_reports_its_sparsity(tmp_path):
  data = write_fashion_mnist(str(tmp_path / "idx"), n_train=1280, n_test=64)
  fv = parse(end_to_end, "--task=paper", f"--data_dir={data}", "--epochs=11")
  run = {"frontend": "tf_keras", "model": "lenet_300_100",
         "method": "rigl_itop", "steps_per_execution": 1}
  first, second = end_to_end.train(run, fv), end_to_end.train(run, fv)
  assert first["steps"] == 110  # one update, at step 100
  assert first["digest"] == second["digest"]
  assert first["sparsity"] == pytest.approx(0.98, abs=0.002)
  assert first["rate"] > 0.02  # the update grew new connections
  assert first["seconds"] > 0 and 0 <= first["accuracy"] <= 1


def test_end_to_end_reports_the_sparsity_tfmot_reached(tmp_path):
  # TF-MOT's row used to read 0.000: only itop_tf runs were measured.
  data = write_fashion_mnist(str(tmp_path / "idx"), n_train=1280, n_test=64)
  fv = parse(end_to_end, "--task=quickstart", f"--data_dir={data}",
             "--epochs=11")  # 110 steps: TF-MOT prunes at step 100
  run = {"frontend": "tf_keras", "model": "lenet_300_100",
         "method": "tfmot", "steps_per_execution": 1}
  result = end_to_end.train(run, fv)
  assert result["sparsity"] == pytest.approx(0.9, abs=0.002)
  assert result["rate"] is None


def test_end_to_end_children_run_each_frontend(tmp_path, capsys):
  data = write_fashion_mnist(str(tmp_path / "idx"), n_train=1280, n_test=64)
  fv = parse(end_to_end, "--task=paper", f"--data_dir={data}", "--epochs=11",
             "--frontends=keras3:jax,torch_loop", "--methods=dense,static",
             "--steps_per_execution=5", "--repeats=1")
  assert len(end_to_end.runs(fv)) == 5  # jax: 2 methods x 2 spe; torch: 1
  fv.methods = ["static"]
  fv.steps_per_execution = 1
  rows = end_to_end.run_all(fv)
  got = {(r["frontend"], r["steps_per_execution"], r["method"]) for r in rows}
  assert got == {("keras3:jax", 1, "static"), ("torch_loop", 1, "dense")}
  static, = [r for r in rows if r["method"] == "static"]
  assert static["rate"] == pytest.approx(0.02, abs=0.002)
  assert static["sparsity"] == pytest.approx(0.98, abs=0.002)
  assert "| keras3:jax | lenet_300_100 | 1 | static |" in capsys.readouterr().out


@pytest.mark.parametrize("name", ["lenet_300_100", "small_cnn"])
def test_torch_init_draws_kernels_and_biases_as_pytorch_layers_do(name):
  """U(+-1/sqrt(fan_in)) for kernels and biases, fan_in = kh * kw * c_in for
  a convolution (a bound from the first dimension alone would let a 3x3
  kernel reach +-0.58); the same seed draws the same values."""
  from launchers import models  # pylint: disable=g-import-not-at-top

  def drawn(seed):
    model = models.build(name, (28, 28, 1), 10)
    return end_to_end.torch_style_init(model, seed)

  model = drawn(0)
  layers = [l for l in model.layers if hasattr(l, "kernel")]
  assert len(layers) >= 3
  for layer in layers:
    bound = 1 / np.sqrt(np.prod(layer.kernel.shape[:-1]))
    for var in (layer.kernel, layer.bias):
      values = var.numpy()
      assert np.abs(values).max() <= bound, var.name
      assert np.abs(values).max() > 0.5 * bound, var.name  # not Keras' zeros
      if values.size >= 100:  # uniform: the mean |value| is bound / 2
        assert np.abs(values).mean() == pytest.approx(bound / 2, rel=0.2)
  again, other = drawn(0), drawn(1)
  np.testing.assert_array_equal(again.layers[-1].kernel.numpy(),
                                model.layers[-1].kernel.numpy())
  assert not np.array_equal(other.layers[-1].kernel.numpy(),
                            model.layers[-1].kernel.numpy())


def test_torch_init_reaches_the_child_and_its_model(tmp_path, monkeypatch):
  """A child is started with its own command line: a flag it is not given
  is silently off there."""
  data = write_fashion_mnist(str(tmp_path / "idx"), n_train=128, n_test=64)
  run = {"frontend": "tf_keras", "model": "lenet_300_100", "method": "dense",
         "steps_per_execution": 1}
  fv = parse(end_to_end, "--task=paper", f"--data_dir={data}", "--epochs=1",
             "--torch_init", "--seed=3")
  child = parse(end_to_end, *end_to_end.child_args(run, fv)[2:])
  assert child.torch_init and child.seed == 3
  assert not parse(end_to_end, *end_to_end.child_args(
      run, parse(end_to_end, "--task=paper"))[2:]).torch_init
  seeds = []
  monkeypatch.setattr(end_to_end, "torch_style_init",
                      lambda model, seed: seeds.append(seed))
  end_to_end.train(run, child)
  child.torch_init = False
  end_to_end.train(run, child)
  assert seeds == [3]


def test_end_to_end_summary_divides_by_dense_of_the_same_setting():
  def result(method, spe, seconds, digest="a"):
    return {"frontend": "tf_keras", "model": "m", "method": method,
            "steps_per_execution": spe, "seconds": seconds, "accuracy": 0.5,
            "rate": None, "sparsity": 0.0, "digest": digest}
  rows = end_to_end.summarize([
      result("dense", 1, 10.0), result("dense", 1, 30.0),
      result("dense", 10, 5.0), result("rigl_itop", 1, 30.0),
      result("rigl_itop", 10, 6.0, "a"), result("rigl_itop", 10, 6.0, "b")])
  by = {(r["method"], r["steps_per_execution"]): r for r in rows}
  assert by[("rigl_itop", 1)]["over_dense"] == pytest.approx(30.0 / 20.0)
  assert by[("rigl_itop", 10)]["over_dense"] == pytest.approx(6.0 / 5.0)
  assert by[("rigl_itop", 1)]["deterministic"]
  assert not by[("rigl_itop", 10)]["deterministic"]


# A stand-in for the paper's official code (not shipped): the interface
# end_to_end drives, recording in its masks what it was driven with.
FAKE_OFFICIAL_CORE = """
import torch

class CosineDecay:
  def __init__(self, death_rate, T_max, eta_min=0.005, last_epoch=-1):
    assert death_rate == 0.5 and T_max > 0

class Masking:
  def __init__(self, optimizer, death_rate=0.3, death_rate_decay=None,
               death_mode="momentum", growth_mode="momentum",
               redistribution_mode="momentum", args=None):
    assert death_mode == "magnitude" and redistribution_mode == "none"
    assert growth_mode in ("random", "gradient"), growth_mode
    assert args.update_frequency == 100
    self.optimizer, self.args, self.steps = optimizer, args, 0

  def add_module(self, module, density, sparse_init="ER"):
    assert sparse_init == "ERK"
    self.masks = {"w": torch.zeros(1000)}
    self.masks["w"][:round(density * 1000)] = 1
    self.fired_masks = {"w": self.masks["w"].clone()}

  def step(self):  # R_s counts the steps taken while exploring
    self.optimizer.step()
    self.steps += 1
    if not self.args.fix:
      self.fired_masks["w"][:20 + self.steps] = 1
"""
FAKE_OFFICIAL_MODELS = """
import torch

class LeNet_300_100(torch.nn.Module):
  def __init__(self, save_features=None, bench_model=False):
    super().__init__()
    self.fc = torch.nn.Linear(784, 10)

  def forward(self, x):
    return torch.nn.functional.log_softmax(self.fc(x.view(-1, 784)), dim=1)
"""


def test_end_to_end_drives_the_official_code_one_mask_step_a_batch(
    tmp_path, capsys):
  code = tmp_path / "official" / "sparselearning"
  code.mkdir(parents=True)
  (code / "core.py").write_text(FAKE_OFFICIAL_CORE)
  (code / "models.py").write_text(FAKE_OFFICIAL_MODELS)
  data = write_fashion_mnist(str(tmp_path / "idx"), n_train=1280, n_test=64)
  fv = parse(end_to_end, "--task=paper", f"--data_dir={data}", "--epochs=3",
             f"--official_code={code.parent}", "--frontends=official",
             "--methods=static,rigl_itop", "--repeats=1")
  rows = {r["method"]: r for r in end_to_end.run_all(fv)}
  assert rows["rigl_itop"]["rate"] == pytest.approx((20 + 30) / 1000)
  assert rows["static"]["rate"] == pytest.approx(0.02)  # fix: no exploring
  assert rows["rigl_itop"]["sparsity"] == pytest.approx(0.98)
  assert rows["rigl_itop"]["over_official"] == pytest.approx(1.0)
  assert "| / official |" in capsys.readouterr().out


def test_end_to_end_summary_divides_by_the_official_run_of_the_method():
  def result(frontend, method, spe, seconds):
    return {"frontend": frontend, "model": "m", "method": method,
            "steps_per_execution": spe, "seconds": seconds, "accuracy": 0.5,
            "rate": None, "sparsity": 0.0, "digest": "a"}
  rows = end_to_end.summarize([
      result("official", "dense", 1, 8.0),
      result("official", "rigl_itop", 1, 20.0),
      result("keras3:jax", "dense", 100, 9.0),
      result("keras3:jax", "rigl_itop", 100, 10.0)])
  by = {(r["frontend"], r["method"]): r for r in rows}
  assert by[("keras3:jax", "rigl_itop")]["over_official"] == 0.5
  assert by[("keras3:jax", "dense")]["over_official"] == 9.0 / 8.0
  assert "| / official |" in end_to_end.format_rows(rows)
  # Without an official run the table has no such column.
  assert "/ official" not in end_to_end.format_rows(
      [dict(r, over_official=None) for r in rows])


def test_end_to_end_official_frontend_needs_a_checkout(tmp_path):
  with pytest.raises(flags.IllegalFlagValueError, match="--official_code"):
    parse(end_to_end, "--frontends=official")
  with pytest.raises(flags.IllegalFlagValueError, match="sparselearning"):
    parse(end_to_end, f"--official_code={tmp_path}")
  fv = parse(end_to_end, "--task=paper")
  assert "official" not in {r["frontend"] for r in end_to_end.runs(fv)}


def test_end_to_end_leaves_out_what_a_frontend_cannot_run():
  fv = parse(end_to_end, "--task=quickstart", "--steps_per_execution=10",
             "--frontends=keras3:torch,torch_loop,tf_keras")
  runs = {(r["frontend"], r["method"], r["steps_per_execution"])
          for r in end_to_end.runs(fv)}
  assert ("keras3:torch", "rigl_itop", 10) not in runs  # Keras refuses it
  assert ("keras3:torch", "tfmot", 1) not in runs  # TF-MOT is tf_keras only
  assert ("keras3:torch", "rigl_itop", 1) in runs
  # The yardstick trains the dense LeNet only, whatever --methods says.
  assert {r for r in runs if r[0] == "torch_loop"} == {
      ("torch_loop", "dense", 1)}
  fv.methods = ["rigl_itop"]
  assert [r["model"] for r in end_to_end.runs(fv)
          if r["frontend"] == "torch_loop"] == ["lenet_300_100"]
  assert ("tf_keras", "tfmot", 10) in runs


def test_end_to_end_rejects_unknown_frontends_methods_and_models():
  with pytest.raises(flags.IllegalFlagValueError, match="--frontends"):
    parse(end_to_end, "--frontends=keras2")
  with pytest.raises(flags.IllegalFlagValueError, match="--methods"):
    parse(end_to_end, "--methods=magnitude")
  with pytest.raises(flags.IllegalFlagValueError, match="--models"):
    parse(end_to_end, "--task=paper", "--models=small_cnn")
  fv = parse(end_to_end, "--task=quickstart", "--models=lenet_300_100")
  assert {r["model"] for r in end_to_end.runs(fv)} == {"lenet_300_100"}


def test_gpu_script_is_valid_bash_and_passes_flags_each_benchmark_knows():
  path = os.path.join(BENCHMARKS_DIR, "gpu.sh")
  subprocess.run(["bash", "-n", path], check=True)
  text = open(path).read().replace("\\\n", " ")
  calls = re.findall(r"python3 benchmarks/(\w+)\.py([^\n]*)", text)
  modules = {"mask_update": mask_update, "memory": memory,
             "step_overhead": step_overhead, "end_to_end": end_to_end}
  assert {name for name, _ in calls} == set(modules)
  for name, args in calls:
    parse(modules[name], *args.split())  # raises on an unknown flag
  limits = [int(n) for n in re.findall(r"^part \w+ (\d+) ", text, re.M)]
  assert len(limits) == len(calls) and sum(limits) < 600 - 30


def test_keras3_gpu_script_runs_known_benchmarks_without_tensorflow():
  path = os.path.join(BENCHMARKS_DIR, "gpu_keras3.sh")
  subprocess.run(["bash", "-n", path], check=True)
  text = open(path).read().replace("\\\n", " ")
  calls = re.findall(r"^(part|extra) (\w+) (\d+) (\w+) (\w+)([^\n]*)",
                     text, re.M)
  modules = {"mask_update": mask_update, "step_overhead": step_overhead,
             "keras3_memory": keras3_memory, "keras3_steps": keras3_steps,
             "end_to_end": end_to_end}
  assert {c[4] for c in calls} == set(modules)
  assert {c[3] for c in calls} == {"jax", "torch"}
  for _, _, _, _, name, args in calls:
    parse(modules[name], *args.split())  # raises on an unknown flag
  # The default run (every `part`) under 10 minutes; the extras under 5.
  assert sum(int(c[2]) for c in calls if c[0] == "part") < 600 - 30
  assert sum(int(c[2]) for c in calls if c[0] == "extra") < 300 - 30
  assert len({c[1] for c in calls}) == len(calls)  # names pick parts


def test_keras3_gpu_script_refuses_an_unknown_part_before_running(tmp_path):
  path = os.path.join(BENCHMARKS_DIR, "gpu_keras3.sh")
  out = subprocess.run(["bash", path, str(tmp_path / "out"), "steps_jax_lenet",
                        "steps_jax_lenett"], capture_output=True, text=True,
                       timeout=60, check=False)
  assert out.returncode == 2
  assert "no part named steps_jax_lenett" in out.stderr
  assert not (tmp_path / "out").exists()  # nothing ran


def test_quickstart_benchmark_times_each_front_end_against_tf_keras(
    fashion_data, tmp_path):
  from benchmarks import quickstart  # pylint: disable=g-import-not-at-top
  out = tmp_path / "rows.json"
  # One child (the launcher's Keras 3 runs are tested in tests/keras3).
  rows = quickstart.run(parse(
      quickstart, "--runs=keras3:jax", "--epochs=1",
      f"--extra=--manual_dir={fashion_data[1]},--update_interval=5",
      f"--out={out}"))
  # 8 steps of 128: the figures are times; the masks moved (R_s > 0.1).
  assert rows[0]["images_per_second"] > 0
  assert rows[0]["exploration_rate"] > 0.1
  assert 0 < rows[0]["train_seconds"] < rows[0]["wall_seconds"]
  assert rows[0]["over_tf_keras"] is None  # no tf_keras run to divide by
  assert [r["run"] for r in json.load(open(out))] == ["keras3:jax"]
  # The ratio and medians, on measurements of two rounds.
  measured = [dict(rows[0], run=run, wall_seconds=wall)
              for run, wall in (("tf_keras", 40.0), ("keras3:jax", 20.0),
                                ("tf_keras", 50.0), ("keras3:jax", 30.0))]
  by_run = {r["run"]: r for r in quickstart.summarize(measured)}
  assert by_run["tf_keras"]["over_tf_keras"] == 1.0
  assert by_run["keras3:jax"]["wall_seconds"] == 25.0
  assert by_run["keras3:jax"]["over_tf_keras"] == pytest.approx(25 / 45)
