#!/usr/bin/env bash
# Train and export one quality level of the vq model, as shipped: the VQ-VAE (started from
# another level's weights where the shapes agree), its PixelCNN prior, then export (which
# measures the level on Kodak and writes the numbers into the weights' metadata).
# Every stage resumes from its checkpoint; runs/ is not committed. Level 4 has its own recipe
# (configs/vq-q4-*.toml, in the README); levels 2 and 5 start from levels 1 and 6.
#   bash bin/train_vq_level.sh 1 [threads]
set -euo pipefail
q=${1:?usage: train_vq_level.sh QUALITY [threads]}
threads=${2:-0}
declare -A init=(
  [1]=vqcodec/weights/vq-q4.safetensors [2]=runs/vq-q1-vqvae [3]=vqcodec/weights/vq-q4.safetensors
  [5]=runs/vq-q6-vqvae [6]=vqcodec/weights/vq-q4.safetensors
)
vqcodec train vqvae --config "configs/vq-q$q-vqvae.toml" --init "${init[$q]}" --out "runs/vq-q$q-vqvae" --threads "$threads"
vqcodec train prior --config "configs/vq-q$q-prior.toml" --vqvae "runs/vq-q$q-vqvae" --out "runs/vq-q$q-prior" --threads "$threads"
vqcodec train export --vqvae "runs/vq-q$q-vqvae" --prior "runs/vq-q$q-prior" --quality "$q" \
  --out "vqcodec/weights/vq-q$q.safetensors"
