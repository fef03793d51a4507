"""The image-to-image GAN (E2GAN-style pix2pix) whose LoRA weights weightgen generates."""
