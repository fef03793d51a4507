"""weightgen: a text-conditioned diffusion model that writes LoRA weights for pix2pix-style GANs."""

import os as _os

# Idle OpenMP threads spin by default; with any other process on a small CPU that made a GAN step
# 15x slower (0.24 s -> 3.6 s on 2 cores). Set before torch loads; a user's own setting wins.
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"
