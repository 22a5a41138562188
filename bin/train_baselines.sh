#!/usr/bin/env bash
# A baseline family (ae or vae): one variable-rate run (configs/FAMILY.toml: six lambdas, one
# network), resumable across sessions, then the export of its six levels as q1..q6 (each export
# measures the level on Kodak and writes the numbers into the weights' metadata).
#   bash bin/train_baselines.sh ae|vae train [threads] [minutes]   # 0 minutes: until the run's steps
#   bash bin/train_baselines.sh ae|vae export
set -euo pipefail
family=${1:?usage: train_baselines.sh ae|vae train [threads] [minutes] | export}
action=${2:?usage: train_baselines.sh ae|vae train [threads] [minutes] | export}
case "$action" in
  train)
    vqcodec train "$family" --config "configs/$family.toml" --out "runs/$family" \
      --threads "${3:-0}" --minutes "${4:-0}"
    ;;
  export)
    for level in 0 1 2 3 4 5; do
      q=$((level + 1))
      default=(); [ "$q" = 3 ] && default=(--default)
      vqcodec train export --run "runs/$family" --level "$level" --quality "$q" \
        --out "vqcodec/weights/$family-q$q.safetensors" "${default[@]}"
    done
    ;;
  *) echo "unknown action $action (train or export)" >&2; exit 2 ;;
esac
