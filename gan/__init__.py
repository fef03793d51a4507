"""The image-to-image GAN (E2GAN-style pix2pix) whose LoRA weights weightgen generates.

Modules, one job each:
  config        typed, validated configs (GeneratorConfig, DiscriminatorConfig, LoraSettings, TrainConfig)
  generator     Generator: strided convs, ResNet blocks, one transformer block, resize + conv (diffusers ModelMixin)
  discriminator Discriminator: conditional PatchGAN (diffusers ModelMixin)
  losses        cGAN (bce | lsgan) + lambda * L1, as loss dicts
  data          PairedData: the pairs folder in memory, a fast seeded sampler
  lora          peft LoRA: add_lora / save_adapter / load_adapter / fingerprint
  trainer       Pix2PixTrainer on accelerate (base, LoRA or from-scratch training)
  base          train_base / load_base: the base folder
  finetune      train_lora: one concept's LoRA on the frozen base
  metrics       L1 / PSNR / SSIM, FID / KID with local Inception weights
  viz           before/after grids
  synthetic     a tiny synthetic pairs folder for tests and smoke runs
"""

import weightgen  # noqa: E402,F401  (sets OMP_WAIT_POLICY before torch loads)
