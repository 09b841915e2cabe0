"""Keras 3 on JAX or PyTorch where TensorFlow cannot be imported.

Each test runs a child process that hides tensorflow, tf_keras and TF-MOT
from every import finder (as if they were not installed: `import
tensorflow` raises ModuleNotFoundError and `importlib.util.find_spec` finds
nothing), then trains, saves, loads and strips a sparse model with the
public API. The child fails if any of them was imported after all.
"""

import os
import subprocess
import sys
import textwrap

import keras
import pytest

pytestmark = [
    pytest.mark.slow,
    pytest.mark.subprocess,
    pytest.mark.skipif(keras.backend.backend() == "tensorflow",
                       reason="the TensorFlow backend needs TensorFlow"),
]

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))

HIDE = textwrap.dedent("""
    import sys
    HIDDEN = ("tensorflow", "tf_keras", "tensorflow_model_optimization")

    class Hiding:
      def __init__(self, finder):
        self.finder = finder
      def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in HIDDEN:
          return None
        find = getattr(self.finder, "find_spec", None)
        return find(name, path, target) if find else None
      def __getattr__(self, name):
        return getattr(self.finder, name)

    sys.meta_path[:] = [Hiding(f) for f in sys.meta_path]
    try:
      import tensorflow
      raise SystemExit("tensorflow is still importable")
    except ModuleNotFoundError:
      pass
""")

CHECK = textwrap.dedent("""
    leaked = sorted({m.split(".")[0] for m in sys.modules} & set(HIDDEN))
    assert not leaked, leaked
    print("OK")
""")


def run_hidden(body, tmp_path):
  """Runs `body` in a child without TensorFlow; returns its stdout."""
  script = HIDE + textwrap.dedent(body) + CHECK
  env = dict(os.environ, PYTHONPATH=ROOT)
  out = subprocess.run([sys.executable, "-c", script], cwd=str(tmp_path),
                       env=env, capture_output=True, text=True, timeout=300)
  assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-4000:]
  return out.stdout


def test_sparse_training_runs_where_tensorflow_cannot_be_imported(tmp_path):
  out = run_hidden("""
      import numpy as np
      import keras
      import itop_tf

      inp = keras.Input((16,))
      h = keras.layers.Dense(32, activation="relu", name="fc1")(inp)
      model = keras.Model(inp, keras.layers.Dense(4, name="fc2")(h))
      sparse = itop_tf.sparsify(
          model, sparsity=0.8, grow="gradient", seed=0,
          schedule=itop_tf.RegrowthSchedule(update_interval=4, total_steps=24))
      sparse.compile(keras.optimizers.SGD(0.1, momentum=0.9),
                     keras.losses.SparseCategoricalCrossentropy(from_logits=True))
      rng = np.random.default_rng(0)
      x = rng.normal(size=(128, 16)).astype("float32")
      y = rng.integers(0, 4, size=128)
      callback = itop_tf.ITOPCallback()
      history = sparse.fit(x, y, batch_size=32, epochs=6, verbose=0,
                           callbacks=[callback])
      # Updates ran: the union grew past the initial 20%, R_s is in History.
      rate = itop_tf.exploration_rate(sparse)
      assert callback.updater.last_stats is not None
      assert rate > 0.21, rate
      assert history.history["itop_rate"][-1] == rate
      rows = itop_tf.sparsity_report(sparse)
      assert sum(r["active"] for r in rows) == round(0.2 * (16 * 32 + 32 * 4))

      sparse.save("m.keras")
      loaded = keras.models.load_model("m.keras")
      assert itop_tf.exploration_rate(loaded) == rate
      for a, b in zip(itop_tf.find_wrappers(sparse),
                      itop_tf.find_wrappers(loaded)):
        np.testing.assert_array_equal(
            keras.ops.convert_to_numpy(a.sparse_weights[0].mask),
            keras.ops.convert_to_numpy(b.sparse_weights[0].mask))
      plain = itop_tf.strip(loaded)
      assert not itop_tf.find_wrappers(plain)
      np.testing.assert_allclose(keras.ops.convert_to_numpy(plain(x[:8])),
                                 keras.ops.convert_to_numpy(loaded(x[:8])),
                                 atol=1e-6)
  """, tmp_path)
  assert out.strip().endswith("OK")


def test_summaries_and_export_name_tensorflow_when_it_is_missing(tmp_path):
  out = run_hidden("""
      import keras
      import itop_tf

      try:
        itop_tf.summaries.SummaryWriter("logs")
        raise SystemExit("no error")
      except ValueError as e:
        assert "log_dir=None" in str(e) and "tensorflow" in str(e), e
      try:
        itop_tf.export_tflite
        raise SystemExit("no error")
      except ImportError as e:
        assert "tensorflow" in str(e), e
  """, tmp_path)
  assert out.strip().endswith("OK")
