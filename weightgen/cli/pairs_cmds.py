"""CLI verb for the pairs stage: `weightgen pairs` builds a (source, target) dataset per concept."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Literal, Optional

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)

from weightgen.cli.options import option
from weightgen.errors import WeightgenError
from weightgen.pairs.config import PairsConfig
from weightgen.pairs.editors import REGISTRY
from weightgen.pairs.editors.config import InstructPix2PixConfig

EditorName = Literal[tuple(REGISTRY)]  # type: ignore[valid-type]  # CLI choices from the registry
PromptSplit = Literal["train", "heldout", "all"]


def _opt(field: str, *param_decls: str, **kwargs):
    return option(PairsConfig, field, *param_decls, **kwargs)


def register(app: typer.Typer) -> None:
    """Add this stage's verbs to the app."""

    @app.command("pairs")
    def pairs_cmd(
        out: Path = typer.Option(..., "--out", "-o", help="Dataset folder to write (manifest.json + <concept_id>/pairs.safetensors)."),
        concept: Optional[list[str]] = typer.Option(None, "--concept", "-c", help="A concept text, e.g. 'van gogh style'; repeat for several."),
        concepts_file: Optional[Path] = typer.Option(
            None, help="Concepts from a file: one per line ('#' comments), or JSON (list of texts, or a prompt set)."
        ),
        prompt_set: Optional[PromptSplit] = typer.Option(None, help="Concepts from the shipped prompt set: its train, heldout or all concepts."),
        prompt_file: Optional[Path] = typer.Option(None, help="Prompt set file for --prompt-set (default: the shipped one)."),
        limit: int = typer.Option(0, help="Build only the first N concepts (0 = all); handy for smoke runs."),
        editor: EditorName = _opt(
            "editor", help="bank: neural painting styles + image operations, chosen by the text embedding (offline); "
            "procedural: the image operations alone; instruct-pix2pix: diffusion editor."
        ),
        style_image: Optional[Path] = typer.Option(
            None, "--style-image", help="bank: a painting whose style is the concept (the concept text only names it); "
            "its sha256 is recorded, so the folder resumes only with the same image."
        ),
        image_size: int = _opt("image_size", help="Side of the images the GAN sees, in pixels."),
        canvas_size: Optional[int] = _opt(
            "canvas_size", help="Side of the edited train canvases; training draws fresh image-size crops of them "
            "every batch. Default: twice --image-size."),
        n_train: int = _opt("n_train", help="Train canvases per concept (crops of the train photos, edited once)."),
        n_test: int = _opt("n_test", help="Test pairs per concept (crops of the held-out photos)."),
        seed: int = _opt("seed", help="Seed for the photo split, the crops and the editor."),
        sources: Optional[Path] = _opt(
            "sources", help="Folder of photos to crop (png/jpg/...; searched recursively). Default: photos bundled with scikit-image/scikit-learn."
        ),
        test_fraction: float = _opt("test_fraction", help="Share of source photos (not crops) held out for the test pairs."),
        model: Optional[str] = typer.Option(None, help="instruct-pix2pix: local pipeline folder or hub id (offline: from the local cache)."),
        steps: int = option(InstructPix2PixConfig, "steps", help="instruct-pix2pix: denoising steps."),
        guidance_scale: float = option(InstructPix2PixConfig, "guidance_scale", help="instruct-pix2pix: text guidance scale."),
        image_guidance_scale: float = option(InstructPix2PixConfig, "image_guidance_scale", help="instruct-pix2pix: image guidance scale (higher keeps more of the photo)."),
        work_size: int = option(InstructPix2PixConfig, "work_size", help="instruct-pix2pix: resolution the pipeline runs at; outputs are resized to --image-size."),
        batch_size: int = option(InstructPix2PixConfig, "batch_size", help="instruct-pix2pix: images per pipeline call."),
        device: str = option(InstructPix2PixConfig, "device", help="instruct-pix2pix: cuda, cpu or auto."),
        overwrite: bool = _opt("overwrite", help="Rebuild a folder that was built with other settings (editor, seed, sizes, sources)."),
    ) -> None:
        """Edit source photos into (source, target) pairs for each concept.

        Resumes where it stopped: concepts already in the folder's manifest are skipped. Each concept's pairs file and the manifest are written atomically.
        """
        from weightgen.pairs.build import (
            build_pairs,
            prompt_set_concepts,
            read_concepts_file,
        )

        texts: list[str] = list(concept or [])
        if concepts_file is not None:
            texts += read_concepts_file(concepts_file)
        if prompt_set is not None:
            texts += prompt_set_concepts(prompt_set, str(prompt_file) if prompt_file else None)
        elif prompt_file is not None:
            raise WeightgenError("--prompt-file needs --prompt-set train|heldout|all")
        if not texts:
            raise WeightgenError("no concepts: pass --concept, --concepts-file or --prompt-set")
        if limit < 0:
            raise WeightgenError(f"--limit must be >= 0, got {limit}")
        if limit:
            texts = texts[:limit]
        if sources is not None and not sources.is_dir():
            raise WeightgenError(f"sources folder not found: {sources}")

        options: dict = {}
        if style_image is not None:
            if editor != "bank":
                raise WeightgenError(f"--style-image needs --editor bank, not {editor!r}")
            # PIL only (no torch): a bad file fails now, in a second, before any photo or model loads
            from weightgen.pairs.editors.style_image import load_style_image

            load_style_image(style_image)
            options["style_image"] = str(style_image)
        if editor == "instruct-pix2pix":
            options = {
                "steps": steps,
                "guidance_scale": guidance_scale,
                "image_guidance_scale": image_guidance_scale,
                "work_size": work_size,
                "batch_size": batch_size,
                "device": device,
            }
            if model:
                options["model"] = model
        elif model:
            raise WeightgenError(f"--model is an instruct-pix2pix option; editor {editor!r} takes none")

        config = PairsConfig(
            out=str(out),
            editor=editor,
            image_size=image_size,
            canvas_size=canvas_size,
            n_train=n_train,
            n_test=n_test,
            seed=seed,
            sources=str(sources) if sources else None,
            test_fraction=test_fraction,
            overwrite=overwrite,
            editor_options=options,
        )
        console = Console(stderr=True)
        shown = warnings.showwarning
        # one readable line per warning (skipped images, truncated concepts), printed above the bar
        warnings.showwarning = lambda message, category, *a, **k: console.print(f"warning: {message}", markup=False)
        try:
            with Progress(
                TextColumn("[bold]pairs"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                TextColumn("{task.description}"), console=console,
            ) as bar:
                task = bar.add_task("", total=None)

                def progress(done: int, total: int, text: str) -> None:
                    bar.update(task, completed=done, total=total, description=text[:40])

                # each concept's ops and weights, above the bar: a text no op explains shows what it got
                report = build_pairs(texts, config, progress=progress, log=lambda line: console.print(line, markup=False))
        finally:
            warnings.showwarning = shown
        console.print(
            f"{len(report.built)} concept(s) built, {len(report.resumed)} already present"
            + (f", {report.skipped_images} source image(s) skipped" if report.skipped_images else "")
            + f" -> {report.root}",
            markup=False,
        )
