#!/usr/bin/env bash
# Train and export the four levels of a baseline family (ae or vae), as shipped:
# a shared stage at a middle lambda, four fine-tunings at the levels' lambdas, then export
# (which measures each level on Kodak and writes the numbers into the weights' metadata).
# Every stage resumes from its checkpoint; runs/ is not committed.
#   bash bin/train_baselines.sh ae [threads]
set -euo pipefail
family=${1:?usage: train_baselines.sh ae|vae [threads]}
threads=${2:-0}
vqcodec train "$family" --config "configs/$family-base.toml" --out "runs/$family-base" --threads "$threads"
for q in 1 2 3 4; do
  vqcodec train "$family" --config "configs/$family-q$q.toml" --init "runs/$family-base" \
    --out "runs/$family-q$q" --threads "$threads"
done
for q in 1 2 3 4; do
  default=(); [ "$q" = 2 ] && default=(--default)
  vqcodec train export --run "runs/$family-q$q" --quality "$q" \
    --out "vqcodec/weights/$family-q$q.safetensors" "${default[@]}"
done
