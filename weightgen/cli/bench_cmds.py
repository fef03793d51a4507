"""CLI verb `weightgen bench`: every init method against the held-out oracle, same recipe and budget."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from weightgen.bench.config import METHODS, BenchConfig
from weightgen.cli.options import default, option
from weightgen.errors import WeightgenError

HELP = (  # one line per paragraph: the help formatter re-wraps them
    "Benchmark fine-tuning from every init on the zoo's held-out concepts (or a concepts file's).\n\n"
    "Each (concept, method) fine-tunes with the same recipe; every run trains the common --steps (final quality is "
    "measured there), and a baseline trains on until it reaches each target or passes --scratch-multiple / "
    "--lora-multiple x the generated init's steps to it (at most --max-steps), censored there. Targets: the concept's "
    "oracle (its zoo LoRA at the checkpoint best on validation crops of its train canvases) and --gain-fraction of "
    "the oracle's gain over the base, on test L1 and on the style distance. Evaluations follow --eval-schedule "
    "(every:until, ..., every) on the first --eval-pairs test pairs, the full test set every --full-every steps.\n\n"
    "With --concepts-file the bench runs those concepts instead: their pairs are built in OUT/pairs (or read from "
    "--concepts-pairs) and their target is a reference fine-tune (a zero-init LoRA, the zoo's recipe, "
    "--reference-steps) cached in OUT/references.\n\n"
    "Writes OUT/runs/<concept>/<method>.json per run (a rerun resumes: finished runs are kept), then OUT/bench.md + "
    "bench.json (per-method table, the paper's table, paired ratios with bootstrap intervals, the claims, the "
    "zero-shot table, CPU time) and curves_steps.png, curves_seconds.png, step0.png, tracking.png.\n\n"
    "Split the work between processes with --shard 0/2 and --shard 1/2 on the same OUT.\n\n"
    "Methods:\n\n" + "\n\n".join(f"{name}: {m.description}" for name, m in METHODS.items())
)


def _opt(field: str, *param_decls: str, **kwargs):
    return option(BenchConfig, field, *param_decls, **kwargs)


def register(app: typer.Typer) -> None:
    """Add the `bench` verb to the app."""

    @app.command("bench", help=HELP)
    def bench_cmd(
        out: Path = typer.Option(..., "--out", "-o", help="Bench folder (runs, report, plots)."),
        zoo: Optional[Path] = typer.Option(None, help="Zoo folder with held-out concepts (not needed with --report-only)."),
        generator: Optional[Path] = _opt("generator", help="Weight generator folder (default: the shipped one)."),
        methods: str = typer.Option(",".join(default(BenchConfig, "methods")),
                                    help="Comma-separated methods (see Methods above)."),
        concept: Optional[list[str]] = typer.Option(None, "--concept", "-c",
                                                    help="Only these held-out concepts (id or text; repeat)."),
        limit: Optional[int] = _opt("limit", help="Only the first N held-out concepts."),
        concepts_file: Optional[Path] = _opt("concepts_file", "--concepts-file",
                                             help="Bench these concepts (one per line, or JSON) instead of the zoo's "
                                                  "held-out ones; their target is a reference fine-tune made here."),
        concepts_pairs: Optional[Path] = _opt("concepts_pairs", help="A pairs folder holding the --concepts-file "
                                                                     "concepts (default: build them in OUT/pairs)."),
        editor: str = _opt("editor", help="Editor that builds the --concepts-file concepts' pairs."),
        reference_steps: Optional[int] = _opt("reference_steps", help="Steps of a reference fine-tune "
                                                                      "(default: the zoo's own)."),
        steps: int = _opt("steps", help="Common budget: steps every run trains, where final quality is measured."),
        eval_schedule: str = _opt("eval_schedule", help="Evaluation steps: every:until parts, then every "
                                                        "(1:50,2:100,10 = every step to 50, every 2nd to 100, then every 10th)."),
        eval_pairs: Optional[int] = _opt("eval_pairs", help="Test pairs each evaluation scores (the first N; 0 = all)."),
        full_every: int = _opt("full_every", help="With --eval-pairs: also score the full test set every N steps."),
        scratch_multiple: float = _opt("scratch_multiple",
                                       help="Scratch trains on to this multiple of the generated init's steps to a target."),
        lora_multiple: float = _opt("lora_multiple",
                                    help="The LoRA baselines train on to this multiple of the generated init's steps."),
        max_steps: int = _opt("max_steps", help="No run trains past this many steps."),
        gain_fraction: float = _opt("gain_fraction", help="Second target: this fraction of the oracle's gain over the base."),
        val_crops: int = _opt("val_crops", help="Validation crops of the train canvases that choose the oracle's checkpoint."),
        seconds: Optional[float] = _opt("seconds", help="Also stop each run after this many training seconds."),
        lr: float = _opt("lr", help="LoRA learning rate."),
        lr_d: float = _opt("lr_d", help="Discriminator learning rate (every method)."),
        scratch_lr: float = _opt("scratch_lr", help="Generator learning rate from scratch (pix2pix's)."),
        batch_size: int = _opt("batch_size", help="Pairs per step."),
        seed: int = _opt("seed", help="Seed of batch order, scratch weights and generated/noisy inits."),
        ddim_steps: int = _opt("ddim_steps", help="Denoising steps of generated-ddim."),
        shard: str = _opt("shard", help="i/n: run concepts i, i+n, ... (start n processes on the same --out)."),
        threads: int = _opt("threads", help="torch CPU threads per process (part of the recipe: seconds depend on it)."),
        cpu: bool = _opt("cpu", help="Train on the CPU even when a GPU is present."),
        report_only: bool = typer.Option(False, "--report-only", help="Only (re)write the report from the runs in --out."),
        overwrite: bool = _opt("overwrite", "--overwrite", help="Discard the results already in --out and start over."),
        no_progress: bool = typer.Option(False, "--no-progress", help="No progress bar."),
    ) -> None:
        from weightgen.bench.report import write_report
        from weightgen.bench.runner import run_bench

        if report_only:
            summary = write_report(out)
        else:
            if zoo is None:
                raise WeightgenError("--zoo is required (or pass --report-only to rewrite the report)")
            config = BenchConfig(zoo=str(zoo), out=str(out), generator=str(generator) if generator else None,
                                 concepts=concept or None, limit=limit,
                                 methods=methods, steps=steps, eval_schedule=eval_schedule,
                                 eval_pairs=eval_pairs or None, full_every=full_every,
                                 scratch_multiple=scratch_multiple, lora_multiple=lora_multiple, max_steps=max_steps,
                                 gain_fraction=gain_fraction, val_crops=val_crops,
                                 concepts_file=str(concepts_file) if concepts_file else None,
                                 concepts_pairs=str(concepts_pairs) if concepts_pairs else None, editor=editor,
                                 reference_steps=reference_steps, seconds=seconds, lr=lr, lr_d=lr_d,
                                 scratch_lr=scratch_lr,
                                 batch_size=batch_size, seed=seed, ddim_steps=ddim_steps, threads=threads,
                                 shard=shard, cpu=cpu, overwrite=overwrite)
            summary = run_bench(config, progress=not no_progress)
        print((out / "bench.md").read_text())
        print(f"wrote {out / 'bench.md'}, {out / 'bench.json'} and plots for {summary['n_concepts']} concept(s)")
