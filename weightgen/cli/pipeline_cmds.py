"""CLI verb `weightgen pipeline CONFIG`: every stage from prompts to the trained generator (weightgen.pipeline)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from weightgen.errors import WeightgenError
from weightgen.pipeline.config import PipelineConfig, to_toml


def register(app: typer.Typer) -> None:
    """Add this stage's verbs to the app."""

    @app.command("pipeline")
    def pipeline(
        config: Optional[Path] = typer.Argument(
            None, help="Pipeline config (TOML, or .json); relative paths in it resolve against its folder. "
                       "Start from configs/default.toml or --print-config."),
        stages: Optional[str] = typer.Option(
            None, "--stages",
            help="Comma-separated stages to run, e.g. base,zoo (default: all; ship only when the config sets "
                 "ship.target). Stages: prompts, base, zoo, chunks, generator, ship."),
        dry_run: bool = typer.Option(
            False, "--dry-run", help="Print the plan (stage, status done/partial/todo/changed/off, output path) and "
                                     "run nothing."),
        print_config: bool = typer.Option(
            False, "--print-config", help="Print the default config as TOML (a starting point) and exit."),
        overwrite_changed: bool = typer.Option(
            False, "--overwrite-changed",
            help="Rebuild a stage whose config or inputs changed since it was built (and so every stage after it), "
                 "instead of refusing."),
        adopt: bool = typer.Option(
            False, "--adopt",
            help="Take outputs this pipeline did not record (e.g. runs/base and runs/zoo from scripts/build_zoo.sh) "
                 "as built with this config."),
        progress: bool = typer.Option(True, "--progress/--no-progress", help="Progress bars inside the stages."),
    ) -> None:
        """Build your own generator from one config: prompts, pairs, base GAN, LoRA zoo, chunks, generator, ship.

        Every output goes to the config's `work` folder (work/pairs, work/base, work/zoo, work/chunks, work/generator-run; the generator is work/generator-run/generator). Rerun the same command after a crash or Ctrl-C: finished stages are skipped, unfinished ones resume. A stage whose config changed since it was built is refused, naming the key, unless --overwrite-changed. Stage timings go to work/pipeline_log.jsonl.

        One process runs every stage. To shard the zoo (the long stage) over N GPUs or CPU processes: `weightgen pipeline CONFIG --stages prompts,base`, then `accelerate launch --multi_gpu --num_processes N -m weightgen pipeline CONFIG --stages zoo` (set zoo.train.cpu = true in the config for CPU ranks), then `weightgen pipeline CONFIG` for the rest.

        The shipped defaults are rebuilt with `weightgen pipeline configs/default.toml`.
        """  # noqa: E501 (one line per paragraph: the help renderer keeps line breaks)
        # The runner imports torch and every stage's code: only when the verb runs.
        from weightgen.pipeline.runner import Pipeline, format_plan

        if print_config:
            print(to_toml(PipelineConfig()), end="")
            return
        if config is None:
            raise WeightgenError("give a pipeline config file (see configs/default.toml or --print-config)")
        pipe = Pipeline.from_file(config)
        if dry_run:
            pipe.stages(stages)  # an unknown stage name is an error here too
            print(f"pipeline {config}: work folder {pipe.show(pipe.work)}")
            print(format_plan(pipe, pipe.inspect(adopt)))
            return
        pipe.run(stages, overwrite_changed=overwrite_changed, adopt=adopt, progress=progress)
