#!/usr/bin/env bash
# The Keras 3 GPU figures on a machine with JAX and PyTorch but no
# TensorFlow (the GPU machine lent to this project: TensorFlow and its CUDA 12
# libraries do not fit what a call may carry there). Every benchmark runs
# through benchmarks/without_tensorflow.py, which hides TensorFlow before the
# benchmark loads, so that no figure can go through it.
#
#   bash benchmarks/gpu_keras3.sh [OUT_DIR [PART...]]  # OUT_DIR: gpu_results
#
# Without PART names it runs every `part` below, under 10 minutes on one
# H100 (each part has its own time limit). The `extra` parts, whole training
# runs, run only when named, as any part can be:
#   bash benchmarks/gpu_keras3.sh out end_to_end_quickstart end_to_end_paper
# (under 5 minutes). A name that is no part stops the script before it runs.
#
# It needs Keras 3 (carry the wheels of keras, namex and optree where it is
# missing). It writes OUT_DIR/<part>.txt and OUT_DIR/devices.txt.
#   mask_update_*  : one update in the backend (jax.jit, eager torch ops on
#                    CUDA) against NumPy on the host: settles "auto" on GPU.
#   memory_*       : accelerator memory one ResNet-50 update adds.
#   steps_*        : a plain step's cost per part of itop_tf (masking, RigL's
#                    gradient capture, ITOPCallback) and one update.
#   step_overhead  : ResNet-50 at 224 px, amortized step against dense.
#   end_to_end_*   : (extra) whole training runs of Keras 3 JAX on the GPU;
#                    the paper's task beside the bare PyTorch loop on the same
#                    GPU. They read Fashion-MNIST from
#                    /usr/share/datasets/fashion-mnist.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-gpu_results}
ONLY=" ${*:2} "
for name in $ONLY; do
  grep -qE "^(part|extra) $name " "$0" || {
    echo "no part named $name: see the part and extra lines of $0" >&2
    exit 2
  }
done
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_PREALLOCATE=false
status=0

run_part() {  # run_part NAME SECONDS BACKEND MODULE FLAGS...
  local name=$1 limit=$2 backend=$3
  shift 3
  echo "== $name (limit ${limit}s, KERAS_BACKEND=$backend): $*"
  local start=$SECONDS
  KERAS_BACKEND=$backend timeout "$limit" python3 \
    benchmarks/without_tensorflow.py "$@" >"$OUT/$name.txt" 2>&1
  local rc=$?
  echo "   rc=$rc in $((SECONDS - start))s"
  [ "$rc" -eq 0 ] || status=1
}

part() {  # part NAME ...: runs unless other parts are named
  if [ "$ONLY" = "  " ] || [[ "$ONLY" == *" $1 "* ]]; then run_part "$@"; fi
}

extra() {  # extra NAME ...: runs only when named
  if [[ "$ONLY" == *" $1 "* ]]; then run_part "$@"; fi
}

{
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv \
    2>&1 || true
  python3 -c "import jax; print('jax', jax.__version__, jax.devices())"
  python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"
} >"$OUT/devices.txt" 2>&1
cat "$OUT/devices.txt"

# Limits: with room over what each part took on an H100 (BENCHMARKS.md, "GPU").
part mask_update_jax 100 jax mask_update --frontend=keras3 \
  --params=1,5,25 --noresnet50 --repeats=5 --steps=3
part mask_update_jax_resnet50 80 jax mask_update --frontend=keras3 \
  --params=0.27 --rank_methods=threshold --repeats=3 --steps=2
part mask_update_torch 80 torch mask_update --frontend=keras3 \
  --params=1,5,25 --rank_methods=threshold --repeats=3 --steps=3
part memory_jax 60 jax keras3_memory --model=resnet50 --image_size=224
part memory_torch 40 torch keras3_memory --model=resnet50 --image_size=224
part steps_jax_resnet20 70 jax keras3_steps --model=resnet20 \
  --steps=100 --rounds=3
part steps_jax_lenet 35 jax keras3_steps --model=lenet_300_100 --steps=200 \
  --rounds=3
part step_overhead 90 jax step_overhead --keras3_child=1 --models=resnet50 \
  --image_size=224 --rounds=3
extra end_to_end_quickstart 100 jax end_to_end --task=quickstart \
  --frontends=keras3:jax --models=lenet_300_100 --methods=dense,rigl_itop \
  --epochs=2 --steps_per_execution=100 --repeats=1
extra end_to_end_paper 150 jax end_to_end --task=paper \
  --frontends=torch_loop,keras3:jax --methods=dense,rigl_itop --repeats=1
exit $status
