"""weightgen: a text-conditioned diffusion model that writes LoRA weights for pix2pix-style GANs."""

__version__ = "0.1.0"
