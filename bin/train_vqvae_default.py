"""Train the default VQ-VAE in the background: python bin/train_vqvae_default.py OUT STEPS."""

import sys

from vqcodec.models.vqvae import VQVAEConfig
from vqcodec.train import TrainConfig, train_vqvae

out, steps = sys.argv[1], int(sys.argv[2])
train_vqvae(VQVAEConfig(), TrainConfig(out=out, steps=steps, batch=8, crop=128, lr=3e-4))
