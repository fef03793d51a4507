"""A whole tiny pipeline on disk (pairs -> base -> zoo -> chunks -> generator) for end-to-end tests.

Built once per test session (a few seconds): 4 training concepts and 2 held-out ones on 32x32
synthetic pairs, a tiny base GAN, a rank-2 zoo with 2 checkpoints per concept, its chunk dataset,
and a tiny generator trained for a few steps. Tests of evaluation, inits, finetune, bench and the
pipeline all run on the same folders, so they exercise the real formats between stages.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

TRAIN = ["warm sepia", "cold blue", "green tint", "deep red"]
HELDOUT = ["pink glow", "icy teal"]
TINY_G = dict(base_channels=8, n_downsample=2, n_res_blocks=1, attention_heads=2, image_size=32)
BLOCK = 64


@dataclass
class TinyWorld:
    root: Path
    pairs: Path
    base: Path
    zoo: Path
    chunks: Path
    run: Path  # `weightgen train --out`; the generator is run / "generator"

    @property
    def generator(self) -> Path:
        return self.run / "generator"


def build_tiny_world(root: Path, generator_steps: int = 40) -> TinyWorld:
    from gan.config import (
        BaseTrainConfig,
        DiscriminatorConfig,
        GanTrainConfig,
        GeneratorConfig,
        LoraSettings,
    )
    from weightgen.chunks.dataset import build_chunk_dataset
    from weightgen.generator.config import GeneratorTrainConfig
    from weightgen.generator.training import train_generator
    from weightgen.pairs.synthetic import write_synthetic_pairs
    from weightgen.zoo.base import build_base
    from weightgen.zoo.build import build_zoo
    from weightgen.zoo.config import BaseConfig, ZooConfig
    from weightgen.zoo.plan import ZooConcept

    pairs = write_synthetic_pairs(root / "pairs", TRAIN + HELDOUT, n_train=8, n_test=4, image_size=32)
    base = root / "base"
    build_base(BaseConfig(out=str(base), pairs=str(pairs), model=BaseTrainConfig(
        GeneratorConfig(**TINY_G), DiscriminatorConfig(base_channels=8), GanTrainConfig(max_steps=4, eval_every=0))),
        TRAIN[:2], progress=False)
    zoo = root / "zoo"
    plan = [ZooConcept(t, "train") for t in TRAIN] + [ZooConcept(t, "heldout") for t in HELDOUT]
    build_zoo(ZooConfig(out=str(zoo), base=str(base), pairs=str(pairs), lora=LoraSettings(rank=2, rank_pattern={}),
                        train=GanTrainConfig(batch_size=4, max_steps=6, eval_every=0, lr=1e-2, lr_d=2e-4), k=2,
                        checkpoint_window=0.5), plan, progress=False)
    chunks = build_chunk_dataset(zoo, root / "chunks", block_size=BLOCK, progress=False)
    run = root / "run"
    train_generator(chunks, run, GeneratorTrainConfig(steps=generator_steps, batch_size=32, lr=1e-3, warmup_steps=5,
                                                model_size="tiny", cpu=True, log_every=10), progress=False)
    return TinyWorld(root, Path(pairs), base, zoo, chunks, run)
