"""The weight generator, the paper's contribution: text -> LoRA weight chunks, by denoising.

Modules, in the order data flows through them:
  config      sizes, the noise process's settings and the training recipe (no torch: the CLI reads them)
  network     WeightUNet1D: a 1D UNet over weight blocks, chunk-index and text conditioning (diffusers ModelMixin)
  diffusion   WeightDiffusion: training loss and single-step / DDIM sampling on diffusers schedulers
  pipeline    WeightGenPipeline: load a generator folder, concepts -> adapters (`weightgen init`)
  training    GeneratorTrainer: the training loop on accelerate, EMA, resumable checkpoints
  validation  the generator judged by its GAN: validation hook, guidance pick, train_validate_pick
"""
