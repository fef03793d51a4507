"""CLI verbs for the zoo stage: `weightgen zoo base`, `weightgen zoo build`, `weightgen zoo status`.

Heavy imports (torch, peft, diffusers, the text encoder) happen inside the verbs so `weightgen --help`
stays fast. `zoo build` shards over `accelerate launch --multi_gpu --num_processes N` or torchrun ranks.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Optional

import typer

from weightgen.errors import USER_ERRORS
from weightgen.pairs.editors import (
    REGISTRY,  # the editor registry imports no torch: --help stays fast
)
from weightgen.zoo.config import DEFAULT_BASE_STEPS, DEFAULT_ZOO_STEPS

EditorName = Literal[tuple(REGISTRY)]  # type: ignore[valid-type]  # CLI choices from the registry
SplitChoice = Literal["train", "heldout", "all"]


def _pairs_settings(editor: str, image_size: int, n_pairs_train: int, n_pairs_test: int, pairs_seed: int) -> dict:
    return {"editor": editor, "image_size": image_size, "n_train": n_pairs_train, "n_test": n_pairs_test,
            "seed": pairs_seed}


# Options shared by `zoo base` and `zoo build` for pairs built on the fly.
EDITOR_OPT = typer.Option("procedural", help="Editor for missing pairs (see `weightgen pairs --help`).")
IMAGE_SIZE_OPT = typer.Option(64, help="Side of the pair images for missing pairs (must match the base).")
N_PAIRS_TRAIN_OPT = typer.Option(64, help="Train pairs per concept for missing pairs.")
N_PAIRS_TEST_OPT = typer.Option(16, help="Test pairs per concept for missing pairs.")
PAIRS_SEED_OPT = typer.Option(0, help="Seed of the pairs (photo split, crops, editor) for missing pairs.")
NO_BUILD_PAIRS_OPT = typer.Option(False, "--no-build-pairs",
                                  help="Require every concept's pairs to exist in --pairs instead of building them.")
PROMPTS_OPT = typer.Option(None, help="Prompt set file (default: the shipped prompts/data/concepts-v1.json).")
ENCODER_OPT = typer.Option("minilm", help="Text encoder whose embeddings k-means clusters to pick concepts.")


def register(app: typer.Typer) -> None:
    """Add the `zoo` sub-command group to the app."""
    zoo_app = typer.Typer(name="zoo", no_args_is_help=True,
                          help="The LoRA zoo: a base GAN on representative concepts, then one LoRA per concept "
                               "with K checkpoints (resumable, shardable with accelerate launch).")

    @zoo_app.command("base")
    def base_cmd(
        out: Path = typer.Option(..., "--out", "-o", help="Base folder to write (generator/, discriminator/, weightgen.json)."),
        pairs: Path = typer.Option(..., help="Pair-dataset folder; the chosen concepts' pairs are built into it when missing."),
        n_concepts: int = typer.Option(8, help="Representative training concepts to train on: one per k-means cluster of their text embeddings."),
        concept: Optional[list[str]] = typer.Option(None, "--concept", "-c", help="Train on these concepts instead (repeat); skips the k-means pick."),
        prompts: Optional[Path] = PROMPTS_OPT,
        encoder: str = ENCODER_OPT,
        select_seed: int = typer.Option(0, help="k-means seed."),
        steps: int = typer.Option(DEFAULT_BASE_STEPS, help="Training steps (one D + one G update each)."),
        batch_size: int = typer.Option(8, help="Pairs per step."),
        lr: float = typer.Option(2e-4, help="Adam learning rate for G and D (pix2pix: 2e-4)."),
        base_channels: int = typer.Option(32, help="Generator width after the stem (doubles per downsampling)."),
        eval_every: int = typer.Option(250, help="Evaluate L1/PSNR/SSIM on the test pairs every N steps."),
        seed: int = typer.Option(0, help="Seed for the initial weights and the batch order."),
        threads: int = typer.Option(0, help="torch CPU threads (0: torch's default)."),
        cpu: bool = typer.Option(False, help="Train on the CPU even when a GPU is present."),
        editor: EditorName = EDITOR_OPT,
        image_size: int = IMAGE_SIZE_OPT,
        n_pairs_train: int = N_PAIRS_TRAIN_OPT,
        n_pairs_test: int = N_PAIRS_TEST_OPT,
        pairs_seed: int = PAIRS_SEED_OPT,
        no_build_pairs: bool = NO_BUILD_PAIRS_OPT,
        overwrite: bool = typer.Option(False, help="Replace --out if it exists."),
    ) -> None:
        """Train the zoo's base GAN from scratch on representative training concepts (E2GAN's recipe)."""
        from gan.config import (
            BaseTrainConfig,
            DiscriminatorConfig,
            GanTrainConfig,
            GeneratorConfig,
        )
        from weightgen.zoo.base import build_base
        from weightgen.zoo.config import BaseConfig
        from weightgen.zoo.plan import base_concepts

        model = BaseTrainConfig(GeneratorConfig(base_channels=base_channels, image_size=image_size), DiscriminatorConfig(),
                                GanTrainConfig(batch_size=batch_size, lr=lr, max_steps=steps, eval_every=eval_every,
                                            seed=seed, cpu=cpu))
        config = BaseConfig(out=str(out), pairs=str(pairs), n_concepts=n_concepts, model=model,
                            pairs_settings=_pairs_settings(editor, image_size, n_pairs_train, n_pairs_test, pairs_seed),
                            build_pairs=not no_build_pairs, threads=threads or None, overwrite=overwrite)
        if concept:
            texts = list(concept)
        else:
            from prompts import load_prompt_set

            texts = base_concepts(load_prompt_set(prompts), n_concepts, encoder, select_seed)
        print(f"base concepts ({len(texts)}): " + "; ".join(texts))
        history = build_base(config, texts)
        first, last = history[0]["metrics"], history[-1]["metrics"]
        print(f"test L1 {first['l1']:.4f} -> {last['l1']:.4f}, PSNR {first['psnr']:.2f} -> {last['psnr']:.2f} dB "
              f"after {history[-1]['step']} steps ({history[-1]['seconds']:.0f} s); wrote base to {out}")

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
        steps: int = typer.Option(DEFAULT_ZOO_STEPS, help="LoRA training steps per concept."),
        k: int = typer.Option(5, help="Checkpoints kept per concept."),
        checkpoint_window: float = typer.Option(0.25, help="The K checkpoints are evenly spread over this last fraction of the steps."),
        rank: int = typer.Option(4, help="LoRA rank (the ResNet blocks' convs get rank // 2)."),
        lora_seed: int = typer.Option(0, help="LoRA init seed, shared by every concept (one aligned weight space)."),
        lr: float = typer.Option(1e-3, help="Adam learning rate of the LoRA."),
        lr_d: float = typer.Option(2e-4, help="Adam learning rate of the discriminator."),
        batch_size: int = typer.Option(8, help="Pairs per step."),
        eval_every: int = typer.Option(50, help="Evaluate on the concept's test pairs every N steps (and at each checkpoint)."),
        seed: int = typer.Option(0, help="Seed of the batch order."),
        threads: int = typer.Option(1, help="torch CPU threads per rank (0: torch's default); 1 is fastest when ranks share cores."),
        cpu: bool = typer.Option(False, help="Train on the CPU even when a GPU is present."),
        editor: EditorName = EDITOR_OPT,
        image_size: int = IMAGE_SIZE_OPT,
        n_pairs_train: int = N_PAIRS_TRAIN_OPT,
        n_pairs_test: int = N_PAIRS_TEST_OPT,
        pairs_seed: int = PAIRS_SEED_OPT,
        no_build_pairs: bool = NO_BUILD_PAIRS_OPT,
        progress: bool = typer.Option(True, help="Show a progress bar (main process)."),
        overwrite: bool = typer.Option(False, help="Rebuild a zoo folder built with other settings (removes its concepts)."),
    ) -> None:
        """Fine-tune a LoRA per concept on the base and keep K late checkpoints as peft adapters.

        Resumable: rerun the same command after a crash or kill -9; complete concepts are skipped, damaged ones are reported and rebuilt.

        Sharded: `accelerate launch --multi_gpu --num_processes N -m weightgen zoo build ...` (or torchrun) splits the concepts over N processes (GPUs, or CPU processes with --cpu).
        """
        from gan.config import GanTrainConfig, LoraSettings, default_rank_pattern
        from weightgen.zoo.build import build_zoo
        from weightgen.zoo.config import ZooConfig
        from weightgen.zoo.plan import ZooConcept, plan_from_prompt_set

        splits = ("train", "heldout") if split == "all" else (split,)
        config = ZooConfig(
            out=str(out), base=str(base), pairs=str(pairs),
            lora=LoraSettings(rank=rank, alpha=float(rank), rank_pattern=default_rank_pattern(rank), init_seed=lora_seed),
            train=GanTrainConfig(batch_size=batch_size, lr=lr, lr_d=lr_d, max_steps=steps, eval_every=eval_every, seed=seed,
                              cpu=cpu),
            k=k, checkpoint_window=checkpoint_window, splits=splits, build_pairs=not no_build_pairs,
            pairs_settings=_pairs_settings(editor, image_size, n_pairs_train, n_pairs_test, pairs_seed),
            threads=threads or None, overwrite=overwrite)

        def plan() -> list:
            if concept or heldout_concept:
                return ([ZooConcept(t, "train") for t in concept or []]
                        + [ZooConcept(t, "heldout") for t in heldout_concept or []])
            from prompts import load_prompt_set

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
        from rich.console import Console
        from rich.table import Table

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
