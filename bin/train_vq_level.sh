#!/usr/bin/env bash
# Train and export one quality level of the vq model, as shipped: the VQ-VAE (started from
# another level's weights where the shapes agree), decoder-only fine-tuning where the level has
# a configs/vq-qN-decoder.toml, its PixelCNN prior, then export (which measures the level on
# Kodak and writes the numbers into the weights' metadata). Every stage resumes from its
# checkpoint; runs/ is not committed. Level 4 has its own recipe (configs/vq-q4-*.toml, in
# the README); level 2 starts from level 1's run.
#   bash bin/train_vq_level.sh 1 [threads]
set -euo pipefail
q=${1:?usage: train_vq_level.sh QUALITY [threads]}
threads=${2:-0}
declare -A init=(
  [1]=vqcodec/weights/vq-q4.safetensors [2]=runs/vq-q1-vqvae [3]=vqcodec/weights/vq-q4.safetensors
  [5]=vqcodec/weights/vq-q4.safetensors [6]=vqcodec/weights/vq-q4.safetensors
  [7]=vqcodec/weights/vq-q6.safetensors
)
vqcodec train vqvae --config "configs/vq-q$q-vqvae.toml" --init "${init[$q]}" --out "runs/vq-q$q-vqvae" --threads "$threads"
vqcodec train prior --config "configs/vq-q$q-prior.toml" --vqvae "runs/vq-q$q-vqvae" --out "runs/vq-q$q-prior" --threads "$threads"
final="runs/vq-q$q-vqvae"
if [ -f "configs/vq-q$q-decoder.toml" ]; then
  vqcodec train decoder --config "configs/vq-q$q-decoder.toml" --vqvae "runs/vq-q$q-vqvae" --out "runs/vq-q$q-decoder" \
    --threads "$threads"
  final="runs/vq-q$q-decoder"
fi
vqcodec train export --vqvae "$final" --prior "runs/vq-q$q-prior" --quality "$q" --out "vqcodec/weights/vq-q$q.safetensors" \
  --kodak ../shared/data/kodak
