"""CLI verbs for the chunks stage."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from weightgen.chunks.config import DEFAULT_BLOCK_SIZE
from weightgen.errors import WeightgenError


def _print_stats(stats: dict) -> None:
    console = Console()
    console.print(
        f"{stats['n_concepts']} concepts, {stats['n_checkpoints']} checkpoints; "
        f"{stats['total_params']} values per adapter ({stats['total_lora_params']} LoRA params) in "
        f"{stats['n_blocks']} blocks of {stats['block_size']} ({stats['padding_fraction']:.1%} padding)"
    )
    table = Table("group", "params", "blocks", "rms", "tensor scales (role: mean ± std)")
    for g in stats["groups"]:
        scales = ", ".join(f"{t['role']}: {t['mean']:+.2e} ± {t['std']:.2e}" for t in g["tensors"])
        table.add_row(g["name"], str(g["n_params"]), str(g["n_blocks"]), f"{g['rms']:.3e}", scales)
    console.print(table)
    for space in ("raw", "normalized"):
        d = stats[f"distances_{space}"]
        fmt = lambda v: "n/a" if v is None else f"{v:.4g}"  # noqa: E731
        console.print(
            f"mean L2 distance ({space}): same concept {fmt(d['within_concept_l2'])}, "
            f"different concepts {fmt(d['between_concept_l2'])} "
            f"(ratio {fmt(d['between_over_within'])}; mean distance to the zoo mean {fmt(d['mean_norm'])})"
        )


def register(app: typer.Typer) -> None:
    """Add this stage's verbs to the app."""

    @app.command("chunks")
    def chunks(
        zoo: Path = typer.Option(..., "--zoo", help="Zoo folder (manifest.json + peft adapter checkpoints)."),
        out: Optional[Path] = typer.Option(
            None, "--out", help="Where to write the chunk dataset (chunks.safetensors + layout.json)."
        ),
        block_size: int = typer.Option(
            DEFAULT_BLOCK_SIZE, "--block-size", help="Values per block b (>= 8; the default is the paper's best)."
        ),
        stats: bool = typer.Option(
            False, "--stats", help="Print weight statistics: params, blocks, per-tensor scales, and "
            "distances between checkpoints of the same vs different concepts."
        ),
        as_json: bool = typer.Option(False, "--json", help="With --stats: print the statistics as JSON."),
        overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing --out folder."),
    ) -> None:
        """Cut the zoo's training LoRA checkpoints into equal blocks for the weight generator.

        Each adapted layer (LoRA down + up, plus saved norm parameters) is flattened, zero padded and cut into blocks of --block-size values; per-tensor normalization statistics are fitted on the zoo's train split. Held-out concepts are left out.
        """  # noqa: E501 (one line per paragraph: the help renderer keeps line breaks)
        from weightgen.chunks.dataset import build_chunk_dataset, load_chunk_dataset
        from weightgen.chunks.stats import chunk_stats

        if out is None and not stats:
            raise WeightgenError("nothing to do: pass --out DIR to write the dataset and/or --stats")
        if out is not None:
            t0 = time.perf_counter()
            path = build_chunk_dataset(zoo, out, block_size=block_size, overwrite=overwrite)
            data = load_chunk_dataset(path)
            layout = data.layout
            print(
                f"wrote {path}: {len(data.checkpoints)} checkpoints x {layout.n_blocks} blocks of "
                f"{layout.block_size} = {len(data)} blocks from {len(data.concepts)} concepts "
                f"(layout {layout.fingerprint}) in {time.perf_counter() - t0:.1f} s"
            )
        if stats:
            result = chunk_stats(zoo, block_size=block_size)
            if as_json:
                print(json.dumps(result, indent=2))
            else:
                _print_stats(result)
