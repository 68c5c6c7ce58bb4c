#!/usr/bin/env bash
# The GPU measurements of docs/performance.md in one call, for a lent machine that reaches no
# package index: every step under a timeout, every log under $OUT.
#
# Prepare here first (the folder .gpu/ is git-ignored; about 31 MB):
#   pip download --no-deps --only-binary=:all: --python-version 3.12 \
#       --platform manylinux2014_x86_64 -d .gpu/whl jsonargparse docstring_parser typeshed_client pytorch_optimizer
#   mkdir -p .gpu/MNIST/raw && gzip -c ../shared/datasets/MNIST/raw/train-images-idx3-ubyte > .gpu/MNIST/raw/train-images-idx3-ubyte.gz
#   (the same for the other three MNIST files), cp ../shared/datasets/cifar10-jpg.tar.gz .gpu/
# Then, on the machine (its python3 has torch, lightning, torchmetrics, torchvision, tensorboard):
#   bash benchmarks/gpu_session.sh          (try it here first with DEVICE=cpu QUICK=1)
set -u
OUT=${OUT:-/tmp/lit_opt_gpu}
DEVICE=${DEVICE:-cuda}
PY=${PY:-python3}
mkdir -p "$OUT"
DATA=$(mktemp -d)
step() {  # name, seconds, command...
    local name=$1 seconds=$2; shift 2
    echo "== $name ($(date +%T))" | tee -a "$OUT/steps.log"
    timeout "$seconds" "$@" > "$OUT/$name.log" 2>&1
    echo "   exit $?" | tee -a "$OUT/steps.log"
}
step wheels 120 $PY -m pip install --no-deps --no-index --find-links .gpu/whl \
    jsonargparse docstring_parser typeshed_client pytorch_optimizer
step data 120 bash -c "mkdir -p $DATA/MNIST/raw && for f in .gpu/MNIST/raw/*.gz; do gunzip -c \$f > $DATA/MNIST/raw/\$(basename \$f .gz); done && cp .gpu/cifar10-jpg.tar.gz $DATA/"
export LIT_OPT_DATA=$DATA
$PY -c "import torch; print(torch.__version__, torch.cuda.get_device_name() if torch.cuda.is_available() else 'cpu')" > "$OUT/device.log" 2>&1
if [ "${QUICK:-0}" = 1 ]; then  # a check of this script: seconds, not measurements
    step anchors 600 $PY benchmarks/anchor_speed.py --device "$DEVICE" --rounds 1 --train-size 2048 --test-size 500 --epochs 1
    step epoch 300 $PY benchmarks/epoch.py --device "$DEVICE" --nets mlp --repeats 1 --only a d
else
    # Decoding the CIFAR-10 JPEGs (about 21 s) happens once, before anything is timed.
    step anchors 420 $PY benchmarks/anchor_speed.py --device "$DEVICE" --rounds 5
    step epoch 240 $PY benchmarks/epoch.py --device "$DEVICE" --repeats 3 --only a b d
fi
grep -h "lit_opt/anchor\|ratios:" "$OUT"/*.log | tee "$OUT/summary.txt"
