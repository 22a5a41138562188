#!/usr/bin/env bash
# One half of a shipped vq level fine-tuned alone, then the level exported in place.
#   decoder: the encoder, codebook and prior stay as shipped, so the level's files and rate do
#            not change (configs/vq-qN-finetune.toml);
#   encoder: the decoder, codebook and prior stay, so the indices change but every file of the
#            old weights still decodes, unchanged (configs/vq-qN-encoder.toml).
# Either way the new weights list the old id under "supersedes" and decode its files; the export
# measures the level on Kodak and writes the numbers into the metadata. Resumes from runs/.
#   bash bin/finetune_vq.sh decoder|encoder QUALITY [threads] [minutes]
set -euo pipefail
usage="usage: finetune_vq.sh decoder|encoder QUALITY [threads] [minutes]"
part=${1:?$usage}
q=${2:?$usage}
case "$part" in
  decoder) config="configs/vq-q$q-finetune.toml"; run="runs/vq-q$q-finetune" ;;
  encoder) config="configs/vq-q$q-encoder.toml"; run="runs/vq-q$q-encoder" ;;
  *) echo "$usage" >&2; exit 2 ;;
esac
weights="vqcodec/weights/vq-q$q.safetensors"
default=$(python -c "from vqcodec.zoo import read_info; print(int(bool(read_info('$weights').meta.get('default'))))")
vqcodec train "$part" --config "$config" --vqvae "$weights" --out "$run" --threads "${3:-0}" --minutes "${4:-0}"
vqcodec train export --vqvae "$run" --prior "$weights" --quality "$q" --out "runs/vq-q$q.safetensors" \
  $([ "$default" = 1 ] && echo --default)
mv "runs/vq-q$q.safetensors" "$weights"
