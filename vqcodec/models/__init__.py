"""Neural networks of the codecs: the VQ-VAE and its PixelCNN prior (and baselines)."""
