#!/usr/bin/env bash
# The GPU items of issues 16 and 19 in one run on the device machine (one H200; about 6 minutes):
#   here:      bash benchmarks/gpu_wheels.sh
#   device:    run(command="bash benchmarks/gpu_check.sh", carry=[".whl"], timeout_s=540)
# 1. the CUDA tests (autocast fp16/bf16 against fp32; torchvision's deform_conv2d against the reference on the GPU);
# 2. benchmarks/bench_model.py on CUDA: s/tile of T/S/B/L (and roadmap-compact) at 1024 px in fp32/bf16/fp16, for
#    the reference and the fused sampling, the model's GFLOP/s against the GPU's matmul rate, peak GPU memory;
# 3. benchmarks/bench_train_step.py on CUDA with AMP (fp16 + loss scaling, bf16): the step `roadmap adapt` runs.
# Logs and JSON go to $OUT (the device tool brings them back), else ./gpu_out.  DEVICE=cpu VARIANTS=roadmap-compact
# REPEAT=1 runs the same plumbing on a CPU (a dry run).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-gpu_out}
DEVICE=${DEVICE:-cuda}
VARIANTS=${VARIANTS:-anchor-sam-t,anchor-sam-s,anchor-sam-b,anchor-sam-l,roadmap-compact}
REPEAT=${REPEAT:-5}
mkdir -p "$OUT"
if ls .whl/*.whl > /dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        || { echo "installing .whl/ failed"; exit 1; }
    export PYTHONPATH=/tmp/site:$PWD${PYTHONPATH:+:$PYTHONPATH}
else
    export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONUNBUFFERED=1
{
    nvidia-smi || true
    python3 -c "import torch, sam2; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(),
torch.cuda.get_device_name() if torch.cuda.is_available() else '')"
} > "$OUT/env.txt" 2>&1
cat "$OUT/env.txt"
echo "== tests"
timeout 150 python3 -m pytest -q -p no:cacheprovider tests/nn -k cuda -rs 2>&1 | tee "$OUT/tests.txt"
echo "== bench_model"
timeout 300 python3 benchmarks/bench_model.py --device "$DEVICE" --variants "$VARIANTS" --time "$VARIANTS" \
    --repeat "$REPEAT" --json "$OUT/bench_model.json" 2>&1 | tee "$OUT/bench_model.txt"
echo "== bench_train_step"
for p in fp32 fp16 bf16; do
    timeout 60 python3 benchmarks/bench_train_step.py --device "$DEVICE" --precision "$p" --rounds 4 2>&1 \
        || echo "{\"precision\": \"$p\", \"failed\": \"exit $? (124: over 60 s)\"}"
done | tee "$OUT/train_step.txt"
