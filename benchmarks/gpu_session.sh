#!/usr/bin/env bash
# Everything this project checks on a lent GPU machine, in one call (see docs/benchmarks.md).
# The machine's image has CUDA torch but not the eth/web/db packages: they travel as
# wheels in .whl/ (gitignored locally) and go to /tmp/site. Outputs go to $OUT.
set -u
export PYTHONUNBUFFERED=1 GENSYN_HOME=/tmp/gensyn-home
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:$PWD || exit 1
fi
OUT=${OUT:-/tmp/gpu-out}; mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, torch.cuda.get_device_name(0))'
only=" ${*:-pytest gpu_check determinism gpu_verify} "
run() { local name=$1; shift; [[ $only == *" $name "* ]] || return 0; echo "=== $name"; timeout "$@" 2>&1 | tee "$OUT/$name.log" | grep -v '^\[gensyn\] running' | tail -n 40; }
run pytest 150 python3 -m pytest -q -p no:cacheprovider -p no:benchmark tests/provider/test_placement.py tests/verify --ignore tests/verify/test_commitment.py -n 8  # that one imports IPython
run gpu_check 150 python3 -m benchmarks.gpu_check
run determinism 120 python3 -m benchmarks.determinism --device cuda
run gpu_verify 150 python3 -m benchmarks.gpu_verify --device cuda --epochs 4
