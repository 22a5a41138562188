#!/usr/bin/env bash
# One command for a session that is lent a GPU (H100/H200): the CUDA tests, compress/decompress
# timed on the GPU against the CPU, then the rest of at most BUDGET minutes continuing the vq
# ladder's training from the landed weights; improved weights go to $OUT (at most 8 files of
# at most 16 MiB). Smoke-test it on a CPU with tiny budgets:
#   OUT=/tmp/out DEVICE=cpu STEPS=4 BATCH=2 BUDGET=3 LEVELS=4 IMAGES=1 KODAK= bash bin/gpu_burst.sh
#
# What it trains: for each level in LEVELS, decoder-only fine-tuning of the shipped weights (the
# indices and the prior stay, so the new weights decode the files of the old ones), for an even
# share of the time left; then it exports each into $OUT, measured on Kodak.
set -euo pipefail
OUT=${OUT:?set OUT to the folder whose files come back}
DEVICE=${DEVICE:-cuda}
BUDGET=${BUDGET:-9}        # minutes in all
LEVELS=${LEVELS:-"7 6 5 3 1 2"}  # q7 first: its decoder has had no fine-tuning yet
STEPS=${STEPS:-}           # default: each level's configs/vq-qN-finetune.toml (the time share stops it earlier)
BATCH=${BATCH:-32}         # a GPU wants larger batches than the configs' 8
IMAGES=${IMAGES:-3}        # Kodak images to time
KODAK=${KODAK-../shared/data/kodak}  # where the export measures each level (empty: not measured)
start=$(date +%s)
left() { echo $(( BUDGET * 60 - ($(date +%s) - start) )); }

python3 -m pip install -q --disable-pip-version-check -e ".[test]" 2>&1 | tail -1 || true
if [ "$DEVICE" = cuda ]; then
  timeout 120 python3 -m pytest -q tests/test_api.py tests/test_entropy.py tests/test_quantization.py tests/test_zoo.py \
    2>&1 | tail -3 | tee "$OUT/cuda-tests.txt" || true
fi
for device in cpu "$DEVICE"; do
  timeout 120 python3 bin/bench_speed.py --images "$IMAGES" --no-compressai --device "$device" 2>&1 \
    | tee "$OUT/speed-$device.txt" | tail -12 || true
done

set -- $LEVELS
share=$(( ($(left) - 60 * $#) / $# / 60 ))  # minutes per level, keeping a minute each to export
[ "$share" -ge 1 ] || share=1
for q in "$@"; do
  weights="vqcodec/weights/vq-q$q.safetensors"
  vqcodec train decoder --config "configs/vq-q$q-finetune.toml" --vqvae "$weights" --out "runs/gpu-q$q" \
    --device "$DEVICE" --batch "$BATCH" ${STEPS:+--steps "$STEPS"} --minutes "$share" 2>&1 | tr '\r' '\n' | tail -2
  vqcodec train export --vqvae "runs/gpu-q$q" --prior "$weights" --quality "$q" --out "$OUT/vq-q$q.safetensors" \
    --kodak "$KODAK" 2>&1 | tail -1
  [ "$(left)" -gt 60 ] || break
done
ls -la "$OUT"
