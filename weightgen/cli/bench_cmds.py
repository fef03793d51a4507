"""CLI verb `weightgen bench`: every init method against the held-out oracle, same recipe and budget."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from weightgen.bench.config import METHODS  # no torch: --help stays fast

HELP = (  # one line per paragraph: the help formatter re-wraps them
    "Benchmark fine-tuning from every init on the zoo's held-out concepts.\n\n"
    "Each (held-out concept, method) fine-tunes with the same recipe and budget; the target is the concept's own "
    "zoo LoRA (the oracle). Writes OUT/runs/<concept>/<method>.json per run (a rerun resumes: finished runs are "
    "kept), then OUT/bench.md + bench.json (per-method table, steps- and seconds-to-target, the issue's claims) and "
    "curves_steps.png, curves_seconds.png, step0.png.\n\n"
    "Split the work between processes with --shard 0/2 and --shard 1/2 on the same OUT.\n\n"
    "Methods:\n\n" + "\n\n".join(f"{name}: {m.description}" for name, m in METHODS.items())
)


def register(app: typer.Typer) -> None:
    """Add the `bench` verb to the app."""

    @app.command("bench", help=HELP)
    def bench_cmd(
        out: Path = typer.Option(..., "--out", "-o", help="Bench folder (runs, report, plots)."),
        zoo: Optional[Path] = typer.Option(None, help="Zoo folder with held-out concepts (not needed with --report-only)."),
        generator: Optional[Path] = typer.Option(None, help="Weight generator folder (default: the shipped one)."),
        methods: Optional[str] = typer.Option(None, help=f"Comma-separated methods (default: all): {', '.join(METHODS)}."),
        concept: Optional[list[str]] = typer.Option(None, "--concept", "-c",
                                                    help="Only these held-out concepts (id or text; repeat)."),
        limit: Optional[int] = typer.Option(None, help="Only the first N held-out concepts."),
        steps: int = typer.Option(200, help="Training steps per run: the budget (one D + one G update each)."),
        eval_every: int = typer.Option(10, help="Evaluate on the test pairs every N steps (steps-to-target resolution)."),
        seconds: Optional[float] = typer.Option(None, help="Also stop each run after this many training seconds."),
        lr: float = typer.Option(1e-3, help="LoRA learning rate."),
        lr_d: float = typer.Option(2e-4, help="Discriminator learning rate (every method)."),
        scratch_lr: float = typer.Option(2e-4, help="Generator learning rate from scratch (pix2pix's)."),
        batch_size: int = typer.Option(8, help="Pairs per step."),
        seed: int = typer.Option(0, help="Seed of batch order, scratch weights and generated/noisy inits."),
        ddim_steps: int = typer.Option(10, help="Denoising steps of generated-ddim."),
        shard: str = typer.Option("0/1", help="i/n: run concepts i, i+n, ... (start n processes on the same --out)."),
        threads: int = typer.Option(1, help="torch CPU threads per process (part of the recipe: seconds depend on it)."),
        cpu: bool = typer.Option(False, help="Train on the CPU even when a GPU is present."),
        report_only: bool = typer.Option(False, "--report-only", help="Only (re)write the report from the runs in --out."),
        overwrite: bool = typer.Option(False, "--overwrite", help="Discard the results already in --out and start over."),
        no_progress: bool = typer.Option(False, "--no-progress", help="No progress bar."),
    ) -> None:
        from weightgen.bench.config import BenchConfig
        from weightgen.bench.report import write_report
        from weightgen.bench.runner import run_bench
        from weightgen.errors import WeightgenError

        if report_only:
            summary = write_report(out)
        else:
            if zoo is None:
                raise WeightgenError("--zoo is required (or pass --report-only to rewrite the report)")
            config = BenchConfig(zoo=str(zoo), out=str(out), generator=str(generator) if generator else None,
                                 concepts=concept or None, limit=limit,
                                 methods=methods if methods is not None else tuple(METHODS), steps=steps,
                                 eval_every=eval_every, seconds=seconds, lr=lr, lr_d=lr_d, scratch_lr=scratch_lr,
                                 batch_size=batch_size, seed=seed, ddim_steps=ddim_steps, threads=threads,
                                 shard=shard, cpu=cpu, overwrite=overwrite)
            summary = run_bench(config, progress=not no_progress)
        print((out / "bench.md").read_text())
        print(f"wrote {out / 'bench.md'}, {out / 'bench.json'} and plots for {summary['n_concepts']} concept(s)")
