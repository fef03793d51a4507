"""weightgen: a text-conditioned diffusion model that writes LoRA weights for pix2pix-style GANs."""

from gan import __version__  # noqa: F401  (also sets OMP_WAIT_POLICY=PASSIVE before torch loads)
