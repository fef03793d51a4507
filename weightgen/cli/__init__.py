"""The `weightgen` command line: one verb per pipeline job.

Each stage's verbs live in their own module with a `register(app)` function, and every option's
default is read from its stage's config dataclass (weightgen.cli.options), never restated.
Modules that load torch, diffusers or peft are imported inside the verbs, the only function-local
imports here, because they take seconds and `weightgen --help` must start in well under one.
"""

from __future__ import annotations

import gc
import os
import sys

import typer

from weightgen import __version__
from weightgen.cli import (
    bench_cmds,
    chunks_cmds,
    finetune_cmds,
    gan_cmds,
    generator_cmds,
    pairs_cmds,
    pipeline_cmds,
    prompts_cmds,
    zoo_cmds,
)
from weightgen.errors import USER_ERRORS

COMMAND_MODULES = (prompts_cmds, pairs_cmds, zoo_cmds, gan_cmds, chunks_cmds, generator_cmds, finetune_cmds,
                   bench_cmds, pipeline_cmds)

app = typer.Typer(
    name="weightgen",
    help="Write LoRA weights for a pix2pix-style GAN from a text concept, then fine-tune them fast.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
for module in COMMAND_MODULES:
    module.register(app)


def main(argv: list[str] | None = None) -> None:
    """Entry point: user errors become one `error:` line and exit code 1 (WEIGHTGEN_DEBUG=1 re-raises).

    Click's standalone mode already handles usage errors (exit 2) and Ctrl-C (exit 1).
    """
    process = argv is None  # this process's own command line, not a call from a test or a script
    if process:
        # Importing torch, diffusers and transformers makes millions of long-lived objects that the
        # collector keeps walking: 0.45 s of a cold `weightgen init` (scripts/bench_startup.py).
        gc.set_threshold(100_000, 50, 100)
    command = typer.main.get_command(app)
    try:
        command.main(args=argv, prog_name="weightgen", standalone_mode=True)
    except (*USER_ERRORS, FileNotFoundError, ValueError) as e:
        if os.environ.get("WEIGHTGEN_DEBUG"):
            raise
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
    finally:
        if process:  # and shutdown then skips collecting them all once more: another 0.6 s
            gc.freeze()


@app.callback()
def _root() -> None:
    """Write LoRA weights for a pix2pix-style GAN from a text concept, then fine-tune them fast."""


@app.command()
def version() -> None:
    """Print the installed weightgen version."""
    print(__version__)
