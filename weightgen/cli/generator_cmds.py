"""CLI verbs for the weight generator: `weightgen train` and `weightgen init`."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

import typer

from weightgen.cli.options import option
from weightgen.errors import WeightgenError
from weightgen.generator.config import (
    MIXED_PRECISION,
    MODEL_SIZES,
    PREDICTION_TYPES,
    DiffusionConfig,
    GeneratorTrainConfig,
)


def _opt(field: str, *param_decls: str, **kwargs):
    return option(GeneratorTrainConfig, field, *param_decls, **kwargs)


def _choice(value: str, choices, flag: str) -> str:
    if value not in choices:
        raise WeightgenError(f"{flag} must be one of {', '.join(choices)}; got {value!r}")
    return value


def read_concepts(concepts: list[str] | None, concepts_file: Path | None) -> list[str]:
    """Concepts from --concept (repeatable) and --concepts-file (one per line, '#' comments)."""
    texts = list(concepts or [])
    if concepts_file is not None:
        if not concepts_file.is_file():
            raise WeightgenError(f"concepts file not found: {concepts_file}")
        lines = [ln.strip() for ln in concepts_file.read_text(encoding="utf-8").splitlines()]
        from_file = [ln for ln in lines if ln and not ln.startswith("#")]
        if not from_file:
            raise WeightgenError(f"concepts file has no concepts: {concepts_file}")
        texts += from_file
    if not texts:
        raise WeightgenError("give a concept: --concept TEXT or --concepts-file FILE")
    for t in texts:
        if not t.strip():
            raise WeightgenError(f"empty concept text: {t!r}")
    return texts


def _parse_scales(text: str) -> list[float]:
    try:
        scales = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise WeightgenError(f"--guidance-sweep must be comma-separated numbers, got {text!r}") from None
    if not scales or any(not v >= 0 for v in scales):
        raise WeightgenError(f"--guidance-sweep needs scales >= 0, got {text!r}")
    return scales


def register(app: typer.Typer) -> None:
    """Add this stage's verbs to the app."""

    @app.command("train")
    def train(
        chunks: Path = typer.Option(..., "--chunks", help="Chunk dataset folder (from `weightgen chunks`)."),
        out: Path = typer.Option(..., "--out", help="Run folder: OUT/generator is the trained generator, OUT/training the resume state."),
        steps: int = _opt("steps", help="Optimizer steps in total; a resumed run continues up to this."),
        batch_size: int = _opt("batch_size", "--batch-size", help="Weight blocks per process per step."),
        lr: float = _opt("lr", help="Peak learning rate (linear warmup, cosine decay)."),
        model_size: str = _opt("model_size", "--model-size", help=f"Network size: {', '.join(MODEL_SIZES)}."),
        prediction_type: str = _opt(
            "diffusion.prediction_type", "--prediction-type",
            help=f"What the network predicts: {', '.join(PREDICTION_TYPES)} (the default suits single-step init)."),
        input_noise: float = _opt("diffusion.input_noise", "--input-noise",
                                  help="p-diff augmentation: noise std added to clean blocks (e.g. 1e-3)."),
        text_encoder: str = _opt("text_encoder", "--text-encoder", help="Frozen text encoder: minilm, open_clip or clip."),
        text_encoder_path: Optional[str] = _opt("text_encoder_path", "--text-encoder-path",
                                                help="Local weights for open_clip / clip."),
        mixed_precision: str = _opt("mixed_precision", "--mixed-precision", help=f"Autocast: {', '.join(MIXED_PRECISION)}."),
        ema_decay: float = _opt("ema_decay", "--ema-decay", help="EMA decay of the saved weights."),
        checkpoint_every: int = _opt("checkpoint_every", "--checkpoint-every", help="Steps between checkpoints."),
        seed: int = _opt("seed", help="Seed of batches, timesteps and noise (per step and process)."),
        cpu: bool = _opt("cpu", "--cpu", help="Train on the CPU even when a GPU is present."),
        resume: bool = typer.Option(False, "--resume", help="Continue the run in OUT from its last checkpoint."),
        progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
        validate: Optional[bool] = typer.Option(
            None, "--validate/--no-validate",
            help="Judge the generator by its GAN: generate held-out concepts' LoRAs and score them on their "
                 "test pairs (at the end, and every --validate-every steps). Default: when the zoo's held-out "
                 "concepts, base and pairs are found."),
        validate_every: int = _opt("validate_every", "--validate-every", help="Steps between validations (0: only at the end)."),
        validate_concepts: int = typer.Option(8, "--validate-concepts", help="How many held-out concepts to validate on."),
        zoo: Optional[Path] = typer.Option(None, "--zoo", help="Zoo folder for validation (default: the one the chunks came from)."),
        text_dropout: float = _opt(
            "text_dropout", "--text-dropout",
            help="Chance a concept's text is replaced by the empty prompt in training, so the generator also "
                 "learns 'no concept' and can be guided (classifier-free guidance). E.g. 0.1."),
        val_concepts: int = _opt(
            "val_concepts", "--val-concepts",
            help="Keep this many training concepts out of training; validation then runs on them (not on the "
                 "benchmark's held-out concepts) and --guidance-sweep picks the guidance scale on them."),
        guidance_sweep: Optional[str] = typer.Option(
            None, "--guidance-sweep",
            help="Comma-separated guidance scales (e.g. 0,0.25,0.5,1) tried on the --val-concepts after training; "
                 "the best test L1 becomes the generator's default. Needs --text-dropout > 0 and --val-concepts."),
    ) -> None:
        """Train the text-conditioned 1D diffusion UNet that writes LoRA weight chunks.

        Multi-process: `accelerate launch --multi_gpu --num_processes 2 -m weightgen train ...`
        (add --cpu to both for CPU ranks; torchrun works too). --batch-size is per process.
        """
        _choice(model_size, MODEL_SIZES, "--model-size")
        _choice(prediction_type, PREDICTION_TYPES, "--prediction-type")
        _choice(mixed_precision, MIXED_PRECISION, "--mixed-precision")
        from accelerate import PartialState

        from weightgen.generator.validation import train_validate_pick

        config = GeneratorTrainConfig(
            steps=steps, batch_size=batch_size, lr=lr, model_size=model_size, text_encoder=text_encoder,
            text_encoder_path=text_encoder_path, mixed_precision=mixed_precision, ema_decay=ema_decay,
            checkpoint_every=checkpoint_every, seed=seed, cpu=cpu, validate_every=validate_every,
            text_dropout=text_dropout, val_concepts=val_concepts,
            diffusion=DiffusionConfig(prediction_type=prediction_type, input_noise=input_noise),
        )
        t0 = time.perf_counter()
        generator_dir = train_validate_pick(
            chunks, out, config, zoo=zoo, validate=validate, validate_concepts=validate_concepts,
            guidance_sweep=_parse_scales(guidance_sweep) if guidance_sweep else (), resume=resume, progress=progress)
        if PartialState().is_main_process:
            print(f"generator written to {generator_dir} ({time.perf_counter() - t0:.1f} s)")

    @app.command("init")
    def init(
        concept: Optional[list[str]] = typer.Option(None, "--concept", help="Concept text; repeat for several."),
        concepts_file: Optional[Path] = typer.Option(None, "--concepts-file", help="File with one concept per line ('#' comments)."),
        out: Path = typer.Option(..., "--out", help="One --concept: OUT is the adapter folder. Several: OUT/<concept_id>/ each, plus OUT/index.json."),
        generator: Optional[Path] = typer.Option(None, "--generator", help="Generator folder (default: the one shipped in weightgen/assets/generator)."),
        steps: int = typer.Option(1, help="Denoising steps: 1 = single-step from --t-start (the default); N > 1 = DDIM."),
        t_start: Optional[int] = typer.Option(None, "--t-start", help="Timestep the noise starts at (default: the generator's, T-1)."),
        seed: int = typer.Option(0, help="Noise seed; a concept's noise depends only on (seed, its text)."),
        overwrite: bool = typer.Option(False, "--overwrite", help="Replace OUT if it exists."),
        base: Optional[Path] = typer.Option(None, "--base", help="Base GAN folder to check the generator against (its fingerprint)."),
        layout: Optional[Path] = typer.Option(None, "--layout", help="Chunk dataset or layout.json to check the generator against."),
        text_encoder_path: Optional[str] = typer.Option(None, "--text-encoder-path", help="Where the generator's text encoder weights are now, if moved."),
        batch: int = typer.Option(8, "--batch", help="Concepts per network call (all chunks of a concept always share one)."),
        device: str = typer.Option("cpu", help="torch device, e.g. cpu or cuda."),
        guidance_scale: Optional[float] = typer.Option(
            None, "--guidance-scale",
            help="Classifier-free guidance: 1 = plain conditional, < 1 pulls toward the generator's 'no concept' "
                 "weights. Default: the generator's own (chosen on validation concepts when it was trained)."),
    ) -> None:
        """Write LoRA adapters for text concepts with the trained generator, in about a second.

        Each adapter is a peft folder loadable with PeftModel.from_pretrained(base_generator, folder).
        """
        t0 = time.perf_counter()
        texts = read_concepts(concept, concepts_file)
        single = len(texts) == 1 and concepts_file is None
        if out.exists() and not overwrite:
            raise WeightgenError(f"output folder already exists: {out} (pass --overwrite to replace it)")
        from gan.io import read_json
        from weightgen.chunks.layout import ChunkLayout
        from weightgen.generator.pipeline import WeightGenPipeline, generator_base_dir, write_adapters

        pipe = WeightGenPipeline.from_pretrained(generator, text_encoder_path=text_encoder_path, device=device)
        pipe.check_compatible(
            layout=ChunkLayout.load(layout) if layout is not None else None,
            base=read_json(base / "weightgen.json") if base is not None else None,
        )
        load_s = time.perf_counter() - t0
        written, gen_s = write_adapters(pipe, texts, out, steps=steps, t_start=t_start, seed=seed,
                                        overwrite=overwrite, single=single, concepts_per_batch=batch,
                                        guidance_scale=guidance_scale)
        for text, path in written.items():
            print(f"{text!r} -> {path}")
        print(f"wrote {len(written)} adapter(s) to {out}: generation {gen_s:.3f} s "
              f"(load {load_s:.2f} s, total {time.perf_counter() - t0:.2f} s)")
        own_base = generator_base_dir(generator)
        if own_base is not None:  # not the shipped base: say which one the adapters belong on
            print(f"they are LoRAs of the base GAN in {own_base}")
