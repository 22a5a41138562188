#!/usr/bin/env bash
# Decoder-only fine-tuning of a shipped vq level, then its export in place. The encoder,
# codebook and prior stay as shipped, so the level's files and rate do not change, and the new
# weights decode the files of the old ones (their id is listed under "supersedes"); the export
# measures the level on Kodak and writes the numbers into the metadata. Resumes from runs/.
#   bash bin/finetune_vq_decoder.sh QUALITY [threads]
set -euo pipefail
q=${1:?usage: finetune_vq_decoder.sh QUALITY [threads]}
threads=${2:-0}
weights="vqcodec/weights/vq-q$q.safetensors"
default=$(python -c "from vqcodec.zoo import read_info; print(int(bool(read_info('$weights').meta.get('default'))))")
vqcodec train decoder --config "configs/vq-q$q-finetune.toml" --vqvae "$weights" --out "runs/vq-q$q-finetune" \
  --threads "$threads"
vqcodec train export --vqvae "runs/vq-q$q-finetune" --prior "$weights" --quality "$q" --out "runs/vq-q$q.safetensors" --kodak ../shared/data/kodak \
  $([ "$default" = 1 ] && echo --default)
mv "runs/vq-q$q.safetensors" "$weights"
