"""The GAN's own demo: base GAN on representative concepts, then a LoRA for one new concept.

It shows the whole GAN half of the pipeline (prompts -> pairs -> base -> LoRA) from nothing, on
bundled photos, on a CPU, in a few minutes, with the zoo's own base and LoRA recipes under
wall-clock budgets. Every stage is resumable: a rerun skips what is already on disk.
"""

from __future__ import annotations

from dataclasses import asdict, replace
from pathlib import Path

from gan.base import load_base, train_base
from gan.config import LoraSettings
from gan.data import PairedData
from gan.io import write_json
from gan.lora import count_lora_params, save_adapter
from gan.lora_training import train_lora
from gan.metrics import evaluate_pairs, generate
from gan.perceptual import StyleEmbedder
from gan.viz import write_grid
from prompts import load_prompt_set
from weightgen.pairs.build import build_pairs
from weightgen.pairs.config import PairsConfig
from weightgen.text_encoders import load_text_encoder
from weightgen.zoo.config import DemoConfig, default_base_train, default_zoo_train
from weightgen.zoo.plan import base_concepts as plan_base_concepts


def run_demo(config: DemoConfig) -> dict:
    """Run (or resume) the demo; returns the summary that is also written to <out>/summary.json."""
    out = Path(config.out)
    encoder = load_text_encoder("minilm")
    base_texts = plan_base_concepts(load_prompt_set(), config.n_base_concepts, encoder, config.seed)
    print(f"base concepts (k-means representatives): {base_texts}")
    pairs_dir = out / "pairs"
    build_pairs([*base_texts, config.concept], PairsConfig(out=str(pairs_dir), seed=config.seed),
                editor=None)

    base_dir = out / "base"
    if not (base_dir / "weightgen.json").is_file():
        recipe = default_base_train()
        train = replace(recipe.train, max_steps=100_000, max_seconds=config.base_seconds, seed=config.seed)
        train_base(pairs_dir, base_texts, replace(recipe, train=train), base_dir, overwrite=True)
    generator, discriminator = load_base(base_dir)

    data = PairedData.load(pairs_dir, [config.concept])
    pairs = data.concepts[0]
    embedder = StyleEmbedder(threads=1)
    base_metrics = evaluate_pairs(generator, pairs.test_source, pairs.test_target, embedder=embedder)
    base_images = generate(generator, pairs.test_source)
    train = replace(default_zoo_train(), max_steps=100_000, max_seconds=config.lora_seconds, seed=config.seed)
    model, history = train_lora(generator, discriminator, data, LoraSettings(), train)
    last = history[-1]
    lora_metrics = evaluate_pairs(model, pairs.test_source, pairs.test_target, embedder=embedder)
    lora_dir = out / "lora"
    save_adapter(model, lora_dir, {"concept": pairs.id, "concept_text": pairs.text, "step": last["step"],
                                   "metrics": lora_metrics, "base_metrics": base_metrics}, overwrite=True)
    grid = out / "before_after.png"
    write_grid(grid, {"source": pairs.test_source, "target": pairs.test_target, "base": base_images,
                      "lora": generate(model, pairs.test_source)})
    summary = {"config": asdict(config), "base_concepts": base_texts, "lora_params": count_lora_params(model),
               "lora_steps": last["step"], "lora_seconds": last["seconds"], "base": base_metrics,
               "lora": lora_metrics, "adapter": str(lora_dir), "grid": str(grid)}
    write_json(out / "summary.json", summary)
    return summary
