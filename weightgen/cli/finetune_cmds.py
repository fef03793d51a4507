"""CLI verb `weightgen finetune`: a LoRA for a new concept within a time budget (the product's main job)."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path
from typing import Optional

import typer

from weightgen.cli.options import option
from weightgen.finetune.config import INIT_KINDS, FinetuneConfig
from weightgen.pairs.editors import REGISTRY as EDITORS

_INIT_HELP = ("Where the LoRA starts: " + "; ".join(f"{k}: {v}" for k, v in INIT_KINDS.items())
              + ". Or a peft adapter folder (e.g. from `weightgen init`) trained on the same base.")


def _opt(field: str, *param_decls: str, **kwargs):
    return option(FinetuneConfig, field, *param_decls, **kwargs)


def register(app: typer.Typer) -> None:
    """Add this stage's verbs to the app."""

    @app.command("finetune")
    def finetune_cmd(
        concept: str = typer.Option(..., "--concept", "-c", help="The new concept, e.g. 'van gogh style'."),
        seconds: float = _opt("seconds", "--seconds", help="Training budget in seconds (evaluations excluded); must be > 0."),
        init: str = _opt("init", "--init", help=_INIT_HELP),
        out: Optional[Path] = _opt(
            "out", "--out", "-o",
            help="Working folder: pairs/, adapter/ (the best adapter so far), history.json, summary.json, "
                 "curve.png, grid.png. Default: runs/finetune/<concept_id>."),
        base: Optional[Path] = _opt(
            "base", "--base", help="Base GAN folder the LoRA sits on. Default: the base the init was made for "
            "(the generator's own base/ for generated, mean and nearest inits, when it has one), else the shipped one."),
        generator: Optional[Path] = _opt(
            "generator", "--generator",
            help="Weight generator folder for --init generated / generated-ddim (default: the shipped one)."),
        reference: Optional[Path] = _opt(
            "reference", "--reference",
            help="Zoo reference folder for --init mean / nearest / nearest-noise (default: the shipped one)."),
        zoo: Optional[Path] = _opt(
            "zoo", "--zoo", help="A zoo folder to use instead of --reference (its training concepts' LoRAs)."),
        pairs: Optional[Path] = _opt(
            "pairs", "--pairs",
            help="An existing pairs folder (from `weightgen pairs`) holding the concept; default: build "
                 "OUT/pairs with --editor (resumable)."),
        editor: str = _opt("editor", "--editor", help=f"Editor that makes the target images: {', '.join(EDITORS)}."),
        style_image: Optional[Path] = _opt(
            "style_image", "--style-image",
            help="A painting whose style is the concept (bank editor; the concept text only names it)."),
        n_train: int = _opt("n_train", "--n-train", help="Train canvases to build (edited once; each batch crops them afresh)."),
        n_test: int = _opt("n_test", "--n-test", help="Test pairs to build (they pick the best adapter)."),
        photos: Optional[Path] = _opt(
            "photos", "--photos", help="Folder of source photos for the pairs (default: the bundled photos)."),
        eval_every: int = _opt(
            "eval_every", "--eval-every", help="Evaluate on the test pairs every N steps; the best adapter is kept at each."),
        max_steps: int = _opt("max_steps", "--max-steps", help="Step cap; normally --seconds ends the run first."),
        lr: float = _opt("lr", "--lr", help="LoRA learning rate."),
        batch_size: int = _opt("batch_size", "--batch-size", help="Pairs per training step."),
        ddim_steps: int = _opt("ddim_steps", "--ddim-steps", help="Denoising steps for --init generated-ddim."),
        seed: int = _opt("seed", "--seed", help="Seed of the pairs, the init noise and the batches."),
        threads: int = _opt("threads", "--threads", help="torch CPU threads; on a busy CPU, fewer can be much faster."),
        overwrite: bool = _opt(
            "overwrite", "--overwrite", help="Train again in an OUT that holds a fine-tuned adapter (its pairs are reused)."),
    ) -> None:
        """Fine-tune a pix2pix-style LoRA for a new concept within a time budget.

        Steps: build the concept's (source, target) pairs, start the LoRA from --init, train it (cGAN + L1).

        The adapter with the best test L1 so far is kept in OUT/adapter, so Ctrl-C leaves a loadable one.

        Load it with PeftModel.from_pretrained(base_generator, OUT/adapter).
        """
        from weightgen.finetune.job import finetune

        if style_image is not None:  # PIL only: a bad painting fails now, not after the base and init load
            from weightgen.pairs.editors.style_image import load_style_image

            load_style_image(style_image)
        config = FinetuneConfig(
            concept=concept, seconds=seconds, init=init, out=_str(out), base=_str(base),
            generator=_str(generator), reference=_str(reference), zoo=_str(zoo), pairs=_str(pairs), editor=editor,
            n_train=n_train, n_test=n_test, photos=_str(photos), max_steps=max_steps, eval_every=eval_every, lr=lr,
            batch_size=batch_size, seed=seed, threads=threads, ddim_steps=ddim_steps, overwrite=overwrite,
            style_image=_str(style_image))
        shown = warnings.showwarning  # one "warning: ..." line each (a converted style image, skipped photos)
        warnings.showwarning = lambda message, category, *a, **k: print(f"warning: {message}", file=sys.stderr)
        try:
            finetune(config, progress=True)
        finally:
            warnings.showwarning = shown


def _str(path: Path | None) -> str | None:
    return None if path is None else str(path)
