#!/usr/bin/env bash
# The whole test suite: the tf_keras/TF-MOT tests, then the Keras 3 tests once
# per backend, each in its own process (Keras 3 picks its backend at import).
# Extra arguments go to every pytest run (e.g. -x).
set -uo pipefail
cd "$(dirname "$0")/.."
export TF_CPP_MIN_LOG_LEVEL=${TF_CPP_MIN_LOG_LEVEL:-2}
status=0
echo "== tf_keras / TF-MOT front-end"
python3 -m pytest "$@" || status=1
for backend in tensorflow jax torch; do
  echo "== Keras 3 front-end, KERAS_BACKEND=$backend"
  KERAS_BACKEND=$backend python3 -m pytest tests/keras3 "$@" || status=1
done
exit $status
