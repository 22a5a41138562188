#!/usr/bin/env bash
# One command for a session that is lent a GPU (H100/H200), run by the device tool in the checkout:
# compress/decompress timed on the GPU against the CPU, the CUDA tests, and in the rest of at most
# BUDGET seconds one training burst per level of LEVELS, all at once on the one GPU: the level's
# VQ-VAE continued from its shipped weights (larger batches and crops than the CPU affords), then a
# prior on its new indices started from the shipped one (PRIOR_LEVELS; the others are trained at
# home on every photo),
# each on a schedule timed to its share of the time (--timed), then the export into $OUT. New
# weights mean a new model id: the session that lands them measures them on validation and Kodak
# here, and retires the old ids (vqcodec/weights/retired.json).
#
# Before the call, here: `python bin/gpu_pack.py` (the downscaled training photos, validation and
# timing images, the wheels the device lacks, into the ignored .gpu/). The call carries at most
# 64 MiB, and the tracked weights alone are more: untrack them for the call and carry the levels'
# (q1-q5's are 37 MB: `python bin/gpu_pack.py --megabytes 20` leaves room for the tracked files):
#   git rm -rq --cached vqcodec/weights checkpoints && printf '/vqcodec/weights/*.safetensors\n/checkpoints/\n' >> .git/info/exclude
#   device run: command `bash bin/gpu_burst.sh`, carry [.gpu, vqcodec/weights/vq-q4.safetensors, ...], timeout_s 590
#   git reset -q && sed -i '/^\/vqcodec\/weights\|^\/checkpoints/d' .git/info/exclude
# The baselines (issue 14: the same compute as the ladder, GPU time included) in a call of their own,
# carrying checkpoints/ae.pt and vae.pt (the levels' weights and both packs exceed 64 MiB together):
#   LEVELS= FAMILIES="ae vae" bash bin/gpu_burst.sh   -> $OUT/ae.pt, vae.pt: `cp` them to checkpoints/
# The hyper-VQ model (issue 40) the same way, carrying checkpoints/hvq.pt (its run resumes from the pack,
# at the GPU batch, and comes back packed; count its GPU-hours apart from its core-hours):
#   LEVELS= FAMILIES=hvq bash bin/gpu_burst.sh          -> $OUT/hvq.pt: `cp` it to checkpoints/
# Smoke-test it on a CPU with tiny budgets:
#   OUT=/tmp/out DEVICE=cpu BUDGET=240 LEVELS=6 BATCH=2 CROP=64 IMAGES=1 bash bin/gpu_burst.sh
#   OUT=/tmp/out DEVICE=cpu BUDGET=150 LEVELS= TIMINGS=0 BATCH=2 CROP=64 NEW="q3-k128:configs/vq-q3-k128-vqvae.toml:vqcodec/weights/vq-q4.safetensors" bash bin/gpu_burst.sh
set -uo pipefail
OUT=${OUT:?set OUT to the folder whose files come back}
DEVICE=${DEVICE:-cuda}
PACK=${PACK:-.gpu}
BUDGET=${BUDGET:-530}       # seconds in all, from the start of this script
# trained side by side (empty: none); each level's weights file must be here. In 0.14's call q4 and q5
# gained 0.14 and 0.26 dB at equal rate on validation, q6 and q7 nothing (more bits for their PSNR);
# in 0.15's (8.2 minutes each) q2-q5 gained 0.05-0.15 dB with the shipped priors, and a second call
# of 2.75 minutes from those weights nothing: the continuation has saturated at this batch and crop
LEVELS=${LEVELS-"5 4 3 2 1"}
BATCH=${BATCH:-32}          # the CPU configs' 8 would leave a GPU idle
CROP=${CROP:-128}
LR=${LR:-2e-4}
PRIOR_SHARE=${PRIOR_SHARE:-40}  # percent of each level's minutes for its prior
# levels whose prior is trained there: the pack's photos give a factor-2 level 4x the index cells of a
# factor-4 one; measured (0.4 -> 0.5), the priors of q4 and q5 over-fitted the pack within 500 steps
# (validation bits rising from there, 6.45 -> 8.6 for q4) while those of q6 and q7 still improved at the end;
# in 0.14's burst q6's prior, started from the shipped one (lr 5e-4), got worse on validation from its
# first evaluation (5.092 -> 5.097 bits over 10,400 steps): the shipped priors had CPU hours on every
# full-size photo. So by default every prior is continued at home, from the shipped one:
#   vqcodec train prior --vqvae $OUT/vqvae-qN.safetensors --init vqcodec/weights/vq-qN.safetensors ...
PRIOR_LEVELS=${PRIOR_LEVELS-}
PRIOR_LR=${PRIOR_LR:-5e-4}  # those priors start from the shipped ones (a continued VQ-VAE keeps its codes' places)
FAMILIES=${FAMILIES:-}      # variable-rate runs (ae, vae, hvq) to continue from checkpoints/FAMILY.pt, beside the levels
# new operating points (issue 11: the continuation has saturated, structure is what is left), side by side
# with the levels: "tag:config:init ..." trains config's VQ-VAE from the init weights file (layers whose
# shapes agree; a codebook of another size starts from k-means of the init's latents) for the whole time
# and packs the run into $OUT/tag-vqvae.pt; at home: `python bin/pack_run.py --unpack FILE runs/tag-vqvae`,
# then its prior (configs/vq-TAG-prior.toml) and the comparison with the level it would replace, e.g.
#   NEW="q3-k128:configs/vq-q3-k128-vqvae.toml:vqcodec/weights/vq-q4.safetensors q3-k256:configs/vq-q3-k256-vqvae.toml:vqcodec/weights/vq-q4.safetensors"
NEW=${NEW:-}
NEW_LR=${NEW_LR:-4e-4}      # a new codebook and the layers around it move further than a continuation
IMAGES=${IMAGES:-3}         # Kodak images to time
EXPORT_S=${EXPORT_S:-60}    # seconds kept for the exports (four took 15 s on an H200)
TIMINGS=${TIMINGS:-1}       # 0: no timings (about 3 minutes more training, when the decode path has not changed)
mkdir -p "$OUT/logs"
left() { echo $(( BUDGET - SECONDS )); }  # SECONDS: bash's clock since this script started

if ! python3 -c 'import constriction, pytorch_msssim' 2>/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "$PACK"/whl/*.whl
  export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
vq() { python3 -m vqcodec "$@"; }
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1 | tee "$OUT/logs/gpu.txt"

# timings first, on a quiet GPU
[ "$TIMINGS" = 0 ] || {
  timeout 75 python3 bin/bench_speed.py --images "$IMAGES" --kodak "$PACK/kodak" --no-compressai --device "$DEVICE" \
    > "$OUT/logs/speed-$DEVICE.txt" 2>&1
  tail -8 "$OUT/logs/speed-$DEVICE.txt"
  # encoder-side refinement (--refine 40) at q4: its encode time on this device, and its gain on these images
  timeout 60 python3 bin/refine_gain.py --quality 4 --images "$IMAGES" --folder "$PACK/kodak" --device "$DEVICE" \
    > "$OUT/logs/refine-$DEVICE.txt" 2>&1
  tail -4 "$OUT/logs/refine-$DEVICE.txt"
  if [ "$DEVICE" != cpu ]; then  # the same first image on this machine's CPU, for the ratio
    timeout 50 python3 bin/bench_speed.py --images 1 --kodak "$PACK/kodak" --no-compressai --device cpu \
      > "$OUT/logs/speed-cpu.txt" 2>&1
  fi
}

# one burst per level, side by side: VQ-VAE, then prior, then export
burst() {
  local q=$1 vq_min=$2 prior_min=$3 whole_min=$4 weights="vqcodec/weights/vq-q$1.safetensors" run="runs/gpu-q$1"
  local common=(--device "$DEVICE" --data "$PACK/train" --val "$PACK/val" --scale 1 --steps 1000000 --timed --threads 4)
  local here=0; [[ " $PRIOR_LEVELS " == *" $q "* ]] || here=1  # 1: the prior is trained at home on every photo
  [ "$here" = 0 ] || vq_min=$whole_min  # the VQ-VAE has all the time
  vq train vqvae --config "configs/vq-q$q-vqvae.toml" --init "$weights" --out "$run-vqvae" "${common[@]}" \
    --batch "$BATCH" --crop "$CROP" --lr "$LR" --minutes "$vq_min" || return
  if [ "$here" = 1 ]; then  # the shipped prior carries the new VQ-VAE home, where it starts the new prior
    vq train export --vqvae "$run-vqvae" --prior "$weights" --quality "$q" --out "$OUT/vqvae-q$q.safetensors"
    return
  fi
  vq train prior --config "configs/vq-q$q-prior.toml" --vqvae "$run-vqvae" --init "$weights" --out "$run-prior" \
    "${common[@]}" --batch $((BATCH * 2)) --lr "$PRIOR_LR" --minutes "$prior_min" &&
  vq train export --vqvae "$run-vqvae" --prior "$run-prior" --quality "$q" --out "$OUT/vq-q$q.safetensors"
}
# a variable-rate family (ae, vae, hvq): its run resumed from its pack, on its own step schedule, packed back
baseline() {
  local family=$1 minutes=$2 run="runs/gpu-$1"
  rm -rf "$run" && python3 bin/pack_run.py --unpack "checkpoints/$family.pt" "$run" &&
  vq train "$family" --config "configs/$family.toml" --out "$run" --device "$DEVICE" --data "$PACK/train" \
    --val "$PACK/val" --scale 1 --threads 4 --batch "$BATCH" --minutes "$minutes" &&
  python3 bin/pack_run.py "$run" "$OUT/$family.pt"
}
# a new operating point: its VQ-VAE from another level's weights, packed (no prior yet: trained at home)
newlevel() {
  local tag=$1 config=$2 init=$3 minutes=$4 run="runs/gpu-$1-vqvae"
  vq train vqvae --config "$config" --init "$init" --out "$run" --device "$DEVICE" --data "$PACK/train" \
    --val "$PACK/val" --scale 1 --steps 1000000 --timed --threads 4 --batch "$BATCH" --crop "$CROP" --lr "$NEW_LR" \
    --minutes "$minutes" &&
  python3 bin/pack_run.py "$run" "$OUT/$tag-vqvae.pt"
}
set -- $LEVELS
avail=$(( $(left) - EXPORT_S ))  # seconds to train
vq_min=$(python3 -c "print(round($avail * (100 - $PRIOR_SHARE) / 100 / 60 - 0.25, 2))")  # less each stage's start
prior_min=$(python3 -c "print(round($avail * $PRIOR_SHARE / 100 / 60 - 0.25, 2))")
whole_min=$(python3 -c "print($vq_min + $prior_min + 0.25)")  # one stage in all the time
echo "training $* $FAMILIES $NEW: VQ-VAE $vq_min min, prior $prior_min min each, side by side"
for q in "$@"; do
  burst "$q" "$vq_min" "$prior_min" "$whole_min" > "$OUT/logs/q$q.log" 2>&1 &
done
for family in $FAMILIES; do
  baseline "$family" "$whole_min" > "$OUT/logs/$family.log" 2>&1 &
done
for entry in $NEW; do
  IFS=: read -r tag config init <<< "$entry"
  newlevel "$tag" "$config" "$init" "$whole_min" > "$OUT/logs/$tag.log" 2>&1 &
done

if [ "$DEVICE" = cuda ]; then  # correctness while they train
  timeout 150 python3 -m pytest -q -p no:cacheprovider tests/test_api.py tests/test_entropy.py tests/test_quantization.py \
    -k "cuda or gpu" > "$OUT/logs/cuda-tests.txt" 2>&1
  tail -3 "$OUT/logs/cuda-tests.txt"
fi
wait
for q in "$@"; do tr '\r' '\n' < "$OUT/logs/q$q.log" | grep -E 'id [0-9a-f]{8}|Error|error' | tail -2; done
for entry in $NEW; do tr '\r' '\n' < "$OUT/logs/${entry%%:*}.log" | grep -E 'step [0-9]|Error|error' | tail -2; done
cp --parents runs/gpu-*/metrics.jsonl runs/gpu-*/config.json "$OUT/logs/" 2>/dev/null
tar -czf "$OUT/logs.tar.gz" -C "$OUT" logs && rm -rf "$OUT/logs"
ls -la "$OUT"
echo "done in $SECONDS s"
