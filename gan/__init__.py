"""The image-to-image GAN (E2GAN-style pix2pix) whose LoRA weights weightgen generates.

Modules, one job each:
  config        typed, validated configs (GeneratorConfig, DiscriminatorConfig, LoraSettings, GanTrainConfig)
  generator     Generator: strided convs, ResNet blocks, one transformer block, resize + conv (diffusers ModelMixin)
  discriminator Discriminator: conditional PatchGAN (diffusers ModelMixin)
  losses        cGAN (bce | lsgan) + lambda * L1, as loss dicts
  data          PairedData: the pairs folder in memory, a fast seeded sampler
  lora          peft LoRA: add_lora / save_adapter / load_adapter / fingerprint
  trainer       Pix2PixTrainer on accelerate (base, LoRA or from-scratch training)
  multi_lora    MultiLoraGenerator / multi_discriminate: C concepts' LoRAs and Ds in one batched pass
  multi_trainer MultiLoraTrainer: C concepts' LoRAs trained at once, each as if alone; slots refill
  convergence   when a LoRA run saves and stops: fixed steps, or a plateau of its validation L1
  base          train_base / load_base: the base folder
  lora_training train_lora: one concept's LoRA on the frozen base
  metrics       L1 / PSNR / SSIM, FID / KID with local Inception weights
  viz           before/after grids
  io            atomic file writes (temp + rename), JSON and safetensors readers
  errors        GanError, the one exception for problems a user can fix

A leaf library: it imports nothing from weightgen (import-linter checks it).
"""

import os as _os
from importlib.metadata import PackageNotFoundError, version

# Idle OpenMP threads spin by default; with any other process on a small CPU that made a GAN step
# 15x slower (0.24 s -> 3.6 s on 2 cores). Set before torch loads; a user's own setting wins.
# `import weightgen` imports this package first, so every entry point gets it.
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

try:  # recorded in every checkpoint; the number itself lives only in pyproject.toml
    __version__ = version("weightgen")
except PackageNotFoundError:  # a source tree that was never installed
    __version__ = "0+unknown"
