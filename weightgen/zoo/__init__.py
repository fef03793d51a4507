"""The LoRA zoo: a base GAN on representative concepts, then one LoRA per concept with K late checkpoints.

    base:  build_base(BaseConfig(out, pairs), base_concepts(load_prompt_set(), 8))
    zoo:   build_zoo(ZooConfig(out, base, pairs), plan_from_prompt_set(load_prompt_set(), 64, 16))

Modules, one job each:
  config  ZooConfig / BaseConfig (validated), checkpoint_steps, the default recipe
  plan    ZooConcept; which concepts: representative picks by k-means over text embeddings
  inputs  pairs built on the fly (or required) and the frozen base
  store   the zoo folder: entries, plan, manifest (the contract with weightgen.chunks), damage checks
  ranks   sharding over `accelerate launch` / `torchrun` ranks: rank-local training, store barriers
  build   build_zoo / train_concept: resumable, kill -9 safe, with a progress bar
  base    build_base: E2GAN's base on representative concepts
  demo    `weightgen demo`: the GAN half alone (base on representative concepts, one LoRA), on a CPU in minutes
"""
