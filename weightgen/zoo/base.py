"""The zoo's base GAN: trained from scratch on a few representative training concepts (E2GAN).

E2GAN trains one base generator on representative concepts so every other concept is a small
LoRA step away from it. The concepts come from `plan.base_concepts` (k-means over text
embeddings); their pairs are built when missing; `gan.base.train_base` does the training and
writes the folder (config, concept list and history in its weightgen.json).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from gan.base import train_base
from prompts.identity import concept_id
from weightgen.errors import WeightgenError
from weightgen.pairs.build import unique_concepts
from weightgen.zoo.config import BaseConfig
from weightgen.zoo.inputs import ensure_pairs, pairs_manifest
from weightgen.zoo.ranks import Ranks, StoreBarrier, torch_threads


def build_base(config: BaseConfig, concepts: Sequence[str], progress: bool = True) -> list[dict]:
    """Build missing pairs of `concepts`, train the base on them, write `config.out`; returns the history.

    Under `accelerate launch` the main process builds the pairs, then all processes train the
    base together (data parallel through gan.trainer's accelerator). A single-process run is
    resumable: killed, it continues from its last saved state (`<out>.state/`) when rerun.
    """
    out = Path(config.out)
    if out.exists() and not config.overwrite:  # fail now, not after training
        raise WeightgenError(f"output folder already exists: {out} (pass --overwrite to replace it)")
    texts = unique_concepts(concepts)
    ranks = Ranks.from_env()
    if ranks.is_main:
        ensure_pairs(config.pairs, texts, config.pairs_settings, config.build_pairs)
    StoreBarrier(ranks, 3600.0, namespace="weightgen-zoo-base")("pairs")
    manifest = pairs_manifest(config.pairs) or {}
    model = config.model
    if manifest.get("image_size") not in (None, model.generator.image_size):
        # The generator's image_size records the training resolution: take it from the data.
        model = replace(model, generator=replace(model.generator, image_size=int(manifest["image_size"])))
    with torch_threads(config.threads):
        return train_base(config.pairs, [concept_id(t) for t in texts], model, out, overwrite=config.overwrite,
                          progress=progress, resumable=ranks.world == 1)
