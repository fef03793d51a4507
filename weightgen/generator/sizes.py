"""Networks of the weight generator (diffusers ModelMixin subclasses, so save/load_pretrained work).

This file stays free of torch so the CLI can offer `--model-size` choices without importing it.
"""

# Named sizes (DiT's `DiT_models` habit): the CLI offers these keys as `--model-size`.
# "small" (the class defaults) is the CPU default: all ~200 blocks of a concept in < 0.1 s and 64
# concepts in < 3 s on 2 CPU cores (scripts/bench_init.py). "base" is closer to the paper (full
# resolution, attention in the two deeper stages) and wants a GPU.
MODEL_SIZES: dict[str, dict] = {
    "tiny": dict(channels=(16, 32, 32), num_heads=2, patch_size=8, norm_groups=4, attention_stages=(False, True, True)),
    "small": dict(channels=(32, 48, 64), num_heads=4, patch_size=8, norm_groups=8, attention_stages=(False, False, True)),
    "base": dict(channels=(64, 128, 256), num_heads=8, patch_size=2, layers_per_stage=2, norm_groups=16,
                 attention_stages=(False, True, True)),
}
