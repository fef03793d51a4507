"""CLI verbs that train the base GAN and the zoo: `weightgen zoo base | build | status`, and `weightgen train-base`.

`zoo base` and `train-base` are one job, so both build their config with `base_config` and train with
`run_base` (weightgen.zoo.build_base), under one set of defaults: BaseConfig's. `zoo build` shards
over `accelerate launch --multi_gpu --num_processes N` or torchrun ranks.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Literal, Optional

import typer
from rich.console import Console
from rich.table import Table

from prompts import load_prompt_set
from gan.config import ConvergenceConfig
from weightgen.cli.gan_cmds import Precision, lora_settings, print_metrics
from weightgen.cli.options import default, option
from weightgen.errors import USER_ERRORS
from weightgen.pairs.config import PairsConfig
from weightgen.pairs.editors import REGISTRY
from weightgen.zoo.config import BaseConfig, ZooConfig

EditorName = Literal[tuple(REGISTRY)]  # type: ignore[valid-type]  # CLI choices from the registry
SplitChoice = Literal["train", "heldout", "all"]


def _base(field: str, *param_decls: str, **kwargs):
    return option(BaseConfig, field, *param_decls, **kwargs)


def _zoo(field: str, *param_decls: str, **kwargs):
    return option(ZooConfig, field, *param_decls, **kwargs)


def _converge(field: str, *param_decls: str, **kwargs):
    return option(ConvergenceConfig, field, *param_decls, **kwargs)


def _pairs(field: str, *param_decls: str, **kwargs):
    return option(PairsConfig, field, *param_decls, **kwargs)


# The base recipe, shared by `zoo base` and `train-base`.
BASE_STEPS_OPT = _base("model.train.max_steps", help="Training steps (one D + one G update each).")
BASE_SECONDS_OPT = _base("model.train.max_seconds", help="Wall-clock training budget in seconds (0 or unset: none).")
BASE_BATCH_SIZE_OPT = _base("model.train.batch_size", help="Pairs per step.")
BASE_LR_OPT = _base("model.train.lr", help="Adam learning rate for G and D.")
BASE_CHANNELS_OPT = _base("model.generator.base_channels",
                          help="Generator width after the stem (doubles per downsampling).")
BASE_N_DOWNSAMPLE_OPT = _base("model.generator.n_downsample",
                              help="Strided downsampling convs; image sides must divide by 2**n.")
BASE_EVAL_EVERY_OPT = _base("model.train.eval_every", help="Evaluate L1/PSNR/SSIM on the test pairs every N steps.")
BASE_SEED_OPT = _base("model.train.seed", help="Seed for the initial weights and the batch order.")
BASE_PRECISION_OPT = _base("model.train.mixed_precision",
                           help="Autocast precision (fp16/bf16 need a GPU or a recent CPU).")
BASE_CPU_OPT = _base("model.train.cpu", help="Train on the CPU even when a GPU is present.")
BASE_THREADS_OPT = _base("threads", help="torch CPU threads (0 or unset: torch's default).")
BASE_OVERWRITE_OPT = _base("overwrite", help="Replace --out if it exists.")

# Options shared by `zoo base` and `zoo build` for pairs built on the fly.
EDITOR_OPT = _pairs("editor", help="Editor for missing pairs (see `weightgen pairs --help`).")
IMAGE_SIZE_OPT = _pairs("image_size", help="Side of the pair images for missing pairs (must match the base).")
N_PAIRS_TRAIN_OPT = _pairs("n_train", help="Train pairs per concept for missing pairs.")
N_PAIRS_TEST_OPT = _pairs("n_test", help="Test pairs per concept for missing pairs.")
PAIRS_SEED_OPT = _pairs("seed", help="Seed of the pairs (photo split, crops, editor) for missing pairs.")
BUILD_PAIRS_HELP = "Build missing pairs into --pairs; --no-build-pairs: require every concept's pairs to exist there."
PROMPTS_OPT = typer.Option(None, help="Prompt set file (default: the shipped prompts/data/concepts-v1.json).")
ENCODER_OPT = typer.Option("minilm", help="Text encoder whose embeddings k-means clusters to pick concepts.")


def _pairs_settings(editor: str, image_size: int, n_pairs_train: int, n_pairs_test: int, pairs_seed: int) -> dict:
    return {"editor": editor, "image_size": image_size, "n_train": n_pairs_train, "n_test": n_pairs_test,
            "seed": pairs_seed}


def base_config(out: Path, pairs: Path, n_concepts: int, image_size: int, *, steps: int, seconds: Optional[float],
                batch_size: int, lr: float, base_channels: int, n_downsample: int, eval_every: int, seed: int,
                mixed_precision: str, cpu: bool, threads: Optional[int], overwrite: bool,
                pairs_settings: dict, build_pairs: bool) -> BaseConfig:
    """BaseConfig's recipe with the flags on top; built (and validated) before any slow step."""
    model = default(BaseConfig, "model")
    model = replace(
        model,
        generator=replace(model.generator, base_channels=base_channels, n_downsample=n_downsample,
                          image_size=image_size),
        train=replace(model.train, max_steps=steps, max_seconds=seconds, batch_size=batch_size, lr=lr,
                      eval_every=eval_every, seed=seed, mixed_precision=mixed_precision, cpu=cpu))
    return BaseConfig(out=str(out), pairs=str(pairs), n_concepts=n_concepts, model=model,
                      pairs_settings=pairs_settings, build_pairs=build_pairs, threads=threads or None,
                      overwrite=overwrite)


def run_base(config: BaseConfig, texts: list[str]) -> None:
    """Train the base on `texts` (the one code path of `zoo base` and `train-base`) and show test metrics."""
    from weightgen.zoo.base import build_base

    print(f"base concepts ({len(texts)}): " + "; ".join(texts))
    history = build_base(config, texts)
    first, last = history[0], history[-1]
    print_metrics({"step 0": first["metrics"], f"step {last['step']} ({last['seconds']:.0f} s)": last["metrics"]})
    print(f"wrote base to {config.out}")


def register(app: typer.Typer) -> None:
    """Add the `zoo` sub-command group and `train-base` to the app."""
    zoo_app = typer.Typer(name="zoo", no_args_is_help=True,
                          help="The LoRA zoo: a base GAN on representative concepts, then one LoRA per concept "
                               "with K checkpoints (resumable, shardable with accelerate launch).")

    @zoo_app.command("base")
    def base_cmd(
        out: Path = typer.Option(..., "--out", "-o", help="Base folder to write (generator/, discriminator/, weightgen.json)."),
        pairs: Path = typer.Option(..., help="Pair-dataset folder; the chosen concepts' pairs are built into it when missing."),
        n_concepts: int = _base("n_concepts", help="Representative training concepts to train on: one per k-means cluster of their text embeddings."),
        concept: Optional[list[str]] = typer.Option(None, "--concept", "-c", help="Train on these concepts instead (repeat); skips the k-means pick."),
        prompts: Optional[Path] = PROMPTS_OPT,
        encoder: str = ENCODER_OPT,
        select_seed: int = typer.Option(0, help="k-means seed."),
        steps: int = BASE_STEPS_OPT,
        seconds: Optional[float] = BASE_SECONDS_OPT,
        batch_size: int = BASE_BATCH_SIZE_OPT,
        lr: float = BASE_LR_OPT,
        base_channels: int = BASE_CHANNELS_OPT,
        n_downsample: int = BASE_N_DOWNSAMPLE_OPT,
        eval_every: int = BASE_EVAL_EVERY_OPT,
        seed: int = BASE_SEED_OPT,
        mixed_precision: Precision = BASE_PRECISION_OPT,
        threads: Optional[int] = BASE_THREADS_OPT,
        cpu: bool = BASE_CPU_OPT,
        editor: EditorName = EDITOR_OPT,
        image_size: int = IMAGE_SIZE_OPT,
        n_pairs_train: int = N_PAIRS_TRAIN_OPT,
        n_pairs_test: int = N_PAIRS_TEST_OPT,
        pairs_seed: int = PAIRS_SEED_OPT,
        build_pairs: bool = _base("build_pairs", "--build-pairs/--no-build-pairs", help=BUILD_PAIRS_HELP),
        overwrite: bool = BASE_OVERWRITE_OPT,
    ) -> None:
        """Train the zoo's base GAN from scratch on representative training concepts (E2GAN's recipe)."""
        config = base_config(
            out, pairs, n_concepts, image_size, steps=steps, seconds=seconds, batch_size=batch_size, lr=lr,
            base_channels=base_channels, n_downsample=n_downsample, eval_every=eval_every, seed=seed,
            mixed_precision=mixed_precision, cpu=cpu, threads=threads, overwrite=overwrite,
            pairs_settings=_pairs_settings(editor, image_size, n_pairs_train, n_pairs_test, pairs_seed),
            build_pairs=build_pairs)
        if concept:
            texts = list(concept)
        else:
            from weightgen.zoo.plan import base_concepts

            texts = base_concepts(load_prompt_set(prompts), n_concepts, encoder, select_seed)
        run_base(config, texts)

    @app.command("train-base")
    def train_base_cmd(
        pairs_dir: Path = typer.Argument(..., help="Pair-dataset folder (manifest.json + <concept_id>/pairs.safetensors)."),
        out: Path = typer.Option(..., "--out", "-o", help="Base folder to write (generator/, discriminator/, weightgen.json)."),
        concept: Optional[list[str]] = typer.Option(None, "--concept", "-c",
                                                    help="Concept id or text to train on; repeat for several. Default: all."),
        steps: int = BASE_STEPS_OPT,
        seconds: Optional[float] = BASE_SECONDS_OPT,
        batch_size: int = BASE_BATCH_SIZE_OPT,
        lr: float = BASE_LR_OPT,
        base_channels: int = BASE_CHANNELS_OPT,
        n_downsample: int = BASE_N_DOWNSAMPLE_OPT,
        eval_every: int = BASE_EVAL_EVERY_OPT,
        seed: int = BASE_SEED_OPT,
        mixed_precision: Precision = BASE_PRECISION_OPT,
        threads: Optional[int] = BASE_THREADS_OPT,
        cpu: bool = BASE_CPU_OPT,
        overwrite: bool = BASE_OVERWRITE_OPT,
    ) -> None:
        """Train the base GAN (generator + PatchGAN) from scratch on the pairs of several concepts.

        `weightgen zoo base` on a pairs folder you already have: same recipe and defaults, no k-means pick, no pairs built.
        """
        from gan.data import read_manifest, resolve_concept

        manifest = read_manifest(pairs_dir)
        ids = [resolve_concept(manifest, c, pairs_dir) for c in concept] if concept else list(manifest["concepts"])
        texts = [manifest["concepts"][i]["text"] for i in ids]
        config = base_config(
            out, pairs_dir, len(texts), int(manifest.get("image_size", default(PairsConfig, "image_size"))),
            steps=steps, seconds=seconds, batch_size=batch_size, lr=lr, base_channels=base_channels,
            n_downsample=n_downsample, eval_every=eval_every, seed=seed, mixed_precision=mixed_precision, cpu=cpu,
            threads=threads, overwrite=overwrite, pairs_settings={}, build_pairs=False)
        run_base(config, texts)

    @zoo_app.command("build")
    def build_cmd(
        out: Path = typer.Option(..., "--out", "-o", help="Zoo folder (manifest.json + <concept_id>/ckpt-<k>/ peft adapters)."),
        base: Path = typer.Option(..., help="Base folder written by `weightgen zoo base`."),
        pairs: Path = typer.Option(..., help="Pair-dataset folder; missing concepts are built into it (see --no-build-pairs)."),
        prompts: Optional[Path] = PROMPTS_OPT,
        n_train: int = typer.Option(64, help="Training concepts to pick from the prompt set (k-means representatives; 0 = all)."),
        n_heldout: int = typer.Option(16, help="Held-out concepts to pick (kept apart: the benchmark's oracle; 0 = all)."),
        concept: Optional[list[str]] = typer.Option(None, "--concept", "-c", help="A training concept (repeat); with --heldout-concept, replaces the prompt set."),
        heldout_concept: Optional[list[str]] = typer.Option(None, help="A held-out concept (repeat)."),
        split: SplitChoice = typer.Option("all", help="Which split(s) to build."),
        encoder: str = ENCODER_OPT,
        select_seed: int = typer.Option(0, help="k-means seed for the concept pick."),
        steps: int = _zoo("train.max_steps", help="LoRA training steps per concept."),
        k: int = _zoo("k", help="Checkpoints kept per concept."),
        checkpoint_window: float = _zoo("checkpoint_window", help="The K checkpoints are evenly spread over this last fraction of the steps."),
        rank: int = _zoo("lora.rank", help="LoRA rank (the ResNet blocks' convs get rank // 2)."),
        lora_seed: int = _zoo("lora.init_seed", help="LoRA init seed, shared by every concept (one aligned weight space)."),
        lr: float = _zoo("train.lr", help="Adam learning rate of the LoRA."),
        lr_d: float = _zoo("train.lr_d", help="Adam learning rate of the discriminator."),
        batch_size: int = _zoo("train.batch_size", help="Pairs per step."),
        eval_every: int = _zoo("train.eval_every", help="Evaluate on the concept's test pairs every N steps (and at each checkpoint)."),
        seed: int = _zoo("train.seed", help="Seed of the batch order."),
        threads: int = _zoo("threads", help="torch CPU threads per rank (0: torch's default); 1 is fastest when ranks share cores."),
        cpu: bool = _zoo("train.cpu", help="Train on the CPU even when a GPU is present."),
        concepts_per_pass: int = _zoo("concepts_per_pass", help="Concepts trained together in one batched pass per rank (one shared base forward, per-concept LoRAs and discriminators); 1: one at a time."),
        converge: bool = typer.Option(False, "--converge/--fixed-steps", help="Stop each concept once its L1 on fixed crops of its train canvases plateaus (at most --steps), then keep --k checkpoints over the last --checkpoint-window of its run."),
        check_every: int = _converge("every", "--check-every", help="--converge: steps between two checks."),
        patience: int = _converge("patience", help="--converge: checks in a row without an improvement that mean converged."),
        min_delta: float = _converge("min_delta", help="--converge: an improvement is a drop of at least this fraction of the best L1."),
        min_steps: int = _converge("min_steps", help="--converge: never converged before this step."),
        editor: EditorName = EDITOR_OPT,
        image_size: int = IMAGE_SIZE_OPT,
        n_pairs_train: int = N_PAIRS_TRAIN_OPT,
        n_pairs_test: int = N_PAIRS_TEST_OPT,
        pairs_seed: int = PAIRS_SEED_OPT,
        build_pairs: bool = _zoo("build_pairs", "--build-pairs/--no-build-pairs", help=BUILD_PAIRS_HELP),
        progress: bool = typer.Option(True, help="Show a progress bar (main process)."),
        overwrite: bool = _zoo("overwrite", help="Rebuild a zoo folder built with other settings (removes its concepts)."),
    ) -> None:
        """Fine-tune a LoRA per concept on the base and keep K late checkpoints as peft adapters.

        Resumable: rerun the same command after a crash or kill -9; complete concepts are skipped, damaged ones are reported and rebuilt.

        Sharded: `accelerate launch --multi_gpu --num_processes N -m weightgen zoo build ...` (or torchrun) splits the concepts over N processes (GPUs, or CPU processes with --cpu).
        """
        from weightgen.zoo.build import build_zoo
        from weightgen.zoo.plan import ZooConcept, plan_from_prompt_set

        splits = ("train", "heldout") if split == "all" else (split,)
        config = ZooConfig(
            out=str(out), base=str(base), pairs=str(pairs), lora=lora_settings(rank, lora_seed),
            train=replace(default(ZooConfig, "train"), batch_size=batch_size, lr=lr, lr_d=lr_d, max_steps=steps,
                          eval_every=eval_every, seed=seed, cpu=cpu),
            k=k, checkpoint_window=checkpoint_window, splits=splits, build_pairs=build_pairs,
            pairs_settings=_pairs_settings(editor, image_size, n_pairs_train, n_pairs_test, pairs_seed),
            threads=threads or None, overwrite=overwrite, concepts_per_pass=concepts_per_pass,
            convergence=ConvergenceConfig(every=check_every, patience=patience, min_delta=min_delta,
                                          min_steps=min_steps) if converge else None)

        def plan() -> list:
            if concept or heldout_concept:
                return ([ZooConcept(t, "train") for t in concept or []]
                        + [ZooConcept(t, "heldout") for t in heldout_concept or []])
            return plan_from_prompt_set(load_prompt_set(prompts), n_train or None, n_heldout or None, encoder,
                                        select_seed, splits)

        report = build_zoo(config, plan, progress=progress)
        if report.manifest is not None:
            m = report.manifest
            print(f"zoo {out}: {len(m['concepts'])}/{m['n_planned']} concepts complete "
                  f"({len(report.built)} built here, {len(report.skipped)} already done, "
                  f"{len(report.rebuilt)} rebuilt) in {report.seconds:.0f} s")

    @zoo_app.command("status")
    def status_cmd(
        zoo: Path = typer.Argument(..., help="Zoo folder."),
        verify: bool = typer.Option(True, help="Check every checkpoint's weights against the sha256 in its entry."),
    ) -> None:
        """Show what a zoo holds: complete / planned concepts per split, damaged entries, test L1 vs the base."""
        from weightgen.zoo.plan import ZooConcept
        from weightgen.zoo.store import check_entry, read_manifest, read_plan

        manifest = read_manifest(zoo)
        try:
            _, plan, _ = read_plan(zoo)
        except USER_ERRORS:
            plan = [ZooConcept(v["text"], v["split"]) for v in manifest["concepts"].values()]
        table = Table("split", "planned", "complete", "damaged", "mean test L1 (base -> LoRA)")
        damaged = []
        for split in ("train", "heldout"):
            concepts = [c for c in plan if c.split == split]
            done = [manifest["concepts"][c.id] for c in concepts if c.id in manifest["concepts"]]
            bad = [c for c in concepts if verify and check_entry(zoo, c, manifest.get("k")).problem]
            damaged += bad
            pairs = [(d["base_metrics"]["l1"], d["checkpoints"][-1]["metrics"]["l1"]) for d in done if d.get("base_metrics")]
            l1 = (f"{sum(b for b, _ in pairs) / len(pairs):.4f} -> {sum(x for _, x in pairs) / len(pairs):.4f}"
                  if pairs else "-")
            table.add_row(split, str(len(concepts)), str(len(done)), str(len(bad)), l1)
        Console().print(table)
        for c in damaged:
            print(f"damaged: {c.id}: {check_entry(zoo, c, manifest.get('k')).problem} (rerun `zoo build` to rebuild it)")

    app.add_typer(zoo_app, name="zoo")
