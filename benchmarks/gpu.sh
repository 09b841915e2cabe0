#!/usr/bin/env bash
# Every benchmark's GPU variant in one go, in under 10 minutes on one
# H100/H200-class GPU (each part has its own time limit, so a slow part
# cannot eat the others' time). Run from the repository root on a machine
# with the project installed:
#
#   bash benchmarks/gpu.sh [OUT_DIR]        # default OUT_DIR: gpu_results
#
# It writes OUT_DIR/<part>.txt per part and OUT_DIR/devices.txt (what each
# framework sees: the numbers are only GPU numbers where it lists a GPU).
# Parts, in order of what they settle (BENCHMARKS.md, "GPU"):
#   1 mask_update : one prune/grow update, threshold vs sort rank, XLA vs
#                   NumPy, MLPs and ResNet-50 at 224 px (decides "auto");
#     mask_update_torch: the same on Keras 3 PyTorch, eager torch ops
#                   (CUDA) vs NumPy, MLPs (decides PyTorch's "auto").
#   2 memory      : update peak (GPU allocator) of ResNet-50, float32/weight.
#   3 step_overhead: ResNet-20 and ResNet-50 amortized step vs dense and
#                   TF-MOT, tf_keras and Keras 3 (TensorFlow, JAX).
#   4 end_to_end  : the paper task (LeNet-300-100, RigL-ITOP 98%, 20 epochs)
#                   per front-end, and the PyTorch loop that calibrates it.
# JAX runs on the GPU only with a CUDA jaxlib (pip install "jax[cuda12]");
# the pinned CPU jaxlib runs its rows on the CPU, as devices.txt then says.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-gpu_results}
mkdir -p "$OUT"
export TF_CPP_MIN_LOG_LEVEL=${TF_CPP_MIN_LOG_LEVEL:-2}
status=0

part() {  # part NAME SECONDS COMMAND...
  local name=$1 limit=$2
  shift 2
  echo "== $name (limit ${limit}s): $*"
  local start=$SECONDS
  timeout "$limit" "$@" >"$OUT/$name.txt" 2>"$OUT/$name.err"
  local rc=$?
  echo "   rc=$rc in $((SECONDS - start))s; $(tail -n 1 "$OUT/$name.txt")"
  [ "$rc" -eq 0 ] || status=1
}

{
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv \
    2>&1 || true
  python3 -c "import tensorflow as tf; print('tensorflow', tf.__version__, tf.config.list_physical_devices('GPU'))"
  KERAS_BACKEND=jax python3 -c "import jax; print('jax', jax.__version__, jax.devices())"
  python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"
} >"$OUT/devices.txt" 2>&1
cat "$OUT/devices.txt"

part mask_update 105 python3 benchmarks/mask_update.py \
  --params=1,5,25 --repeats=5 --steps=3
part mask_update_torch 40 env KERAS_BACKEND=torch \
  python3 benchmarks/mask_update.py --frontend=keras3 --params=1,5 \
  --noresnet50 --rank_methods=threshold --repeats=3 --steps=2
part memory 90 python3 benchmarks/memory.py --models=resnet50 --steps=3
part step_overhead 190 python3 benchmarks/step_overhead.py \
  --models=resnet20,resnet50 --image_size=224 --rounds=3
part end_to_end 140 python3 benchmarks/end_to_end.py --task=paper \
  --repeats=1 --frontends=torch_loop,tf_keras,keras3:tensorflow,keras3:jax \
  --methods=dense,rigl_itop --steps_per_execution=100
exit $status
