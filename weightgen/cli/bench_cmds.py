"""CLI verb `weightgen bench`: every init method against the held-out oracle, same recipe and budget."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from weightgen.bench.config import METHODS, BenchConfig
from weightgen.cli.options import default, option
from weightgen.errors import WeightgenError

HELP = (  # one line per paragraph: the help formatter re-wraps them
    "Benchmark fine-tuning from every init on the zoo's held-out concepts.\n\n"
    "Each (held-out concept, method) fine-tunes with the same recipe and budget; the target is the concept's own "
    "zoo LoRA (the oracle). Writes OUT/runs/<concept>/<method>.json per run (a rerun resumes: finished runs are "
    "kept), then OUT/bench.md + bench.json (per-method table, steps- and seconds-to-target, the issue's claims) and "
    "curves_steps.png, curves_seconds.png, step0.png.\n\n"
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
        steps: int = _opt("steps", help="Training steps per run: the budget (one D + one G update each)."),
        eval_every: int = _opt("eval_every", help="Evaluate on the test pairs every N steps (steps-to-target resolution)."),
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
                                 methods=methods, steps=steps,
                                 eval_every=eval_every, seconds=seconds, lr=lr, lr_d=lr_d, scratch_lr=scratch_lr,
                                 batch_size=batch_size, seed=seed, ddim_steps=ddim_steps, threads=threads,
                                 shard=shard, cpu=cpu, overwrite=overwrite)
            summary = run_bench(config, progress=not no_progress)
        print((out / "bench.md").read_text())
        print(f"wrote {out / 'bench.md'}, {out / 'bench.json'} and plots for {summary['n_concepts']} concept(s)")
