#!/usr/bin/env bash
# A baseline family (ae or vae): one variable-rate run (configs/FAMILY.toml: one network, a gain
# vector and density per lambda), resumable across sessions, then the export of its levels as
# q1..qN, lowest lambda first (each export measures the level on Kodak, writes the numbers into the
# weights' metadata and the per-image rows into docs/kodak-measurements.jsonl, which the report
# reuses), bundled into one file; the default is the level of lambda 0.0067 (CompressAI's quality 3).
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
    lambdas=$(python3 -c "import json; print(*json.load(open('runs/$family/config.json'))['model']['lambdas'])")
    level=0
    for lambda in $lambdas; do
      q=$((level + 1))
      default=(); [ "$lambda" = 0.0067 ] && default=(--default)
      vqcodec train export --run "runs/$family" --level "$level" --quality "$q" \
        --out "vqcodec/weights/$family-q$q.safetensors" --kodak ../shared/data/kodak --measurements docs/kodak-measurements.jsonl "${default[@]}"
      level=$q
    done
    python3 bin/bundle_weights.py "$family"  # the levels in one file: vqcodec/weights/FAMILY.safetensors
    ;;
  *) echo "unknown action $action (train or export)" >&2; exit 2 ;;
esac
