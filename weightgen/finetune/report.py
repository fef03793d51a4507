"""What a fine-tune shows: the quality curve, the before/after grid and the summary table."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import (
    Figure,  # no pyplot: no global figure state, Agg canvas
)
from peft import set_peft_model_state_dict
from rich.console import Console
from rich.table import Table

from gan.data import ConceptPairs
from gan.io import atomic_path
from gan.metrics import generate
from gan.viz import write_grid

CURVE_PANELS = (("l1", "test L1 (lower is better)"), ("psnr", "test PSNR, dB"),
                ("style", "test style distance (lower is better)"))
SUMMARY_ROWS = (("l1", "test L1", ".4f"), ("psnr", "PSNR dB", ".2f"), ("ssim", "SSIM", ".3f"),
                ("style", "style distance", ".3f"))


def write_curve(path: Path, history: list[dict], concept: str, init: str) -> Path:
    """Test L1, PSNR and (when every record has it) style distance against training seconds, steps on top.

    The style panel is there because L1 and PSNR reward blur: a run whose L1 falls while its
    style distance rises is learning to hedge, not to edit.
    """

    seconds = np.array([r["seconds"] for r in history], dtype=float)
    steps = np.array([r["step"] for r in history], dtype=float)
    best = min(range(len(history)), key=lambda i: history[i]["metrics"]["l1"])
    panels = [(k, label) for k, label in CURVE_PANELS if all(k in r["metrics"] for r in history)]
    fig = Figure(figsize=(5 * len(panels), 4.2), layout="constrained")
    for i, (key, label) in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), i + 1)
        values = [r["metrics"][key] for r in history]
        ax.plot(seconds, values, marker="o", markersize=3, color=f"C{i}")
        ax.plot(seconds[best], values[best], marker="*", markersize=12, color="black", linestyle="none",
                label=f"best test L1 (step {int(steps[best])})")
        ax.set_xlabel("training seconds (evaluation excluded)")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        if len(history) > 1 and seconds[-1] > seconds[0]:  # steps grow with seconds: map one onto the other
            top = ax.secondary_xaxis("top", functions=(lambda s: np.interp(s, seconds, steps),
                                                       lambda k: np.interp(k, steps, seconds)))
            top.set_xlabel("training step")
    fig.suptitle(f"Fine-tuning {concept!r} from {init}")
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100, bbox_inches="tight")
    return path


def write_before_after(path: Path, model, pairs: ConceptPairs, init_state: dict | None, best_state: dict) -> Path:
    """source | target | base | init | fine-tuned (the best adapter) on the test pairs; leaves `model` at best."""

    with model.disable_adapter():
        base = generate(model, pairs.test_source)
    columns = {"source": pairs.test_source, "target": pairs.test_target, "base": base}
    if init_state is not None:
        set_peft_model_state_dict(model, init_state)
        columns["init"] = generate(model, pairs.test_source)
    set_peft_model_state_dict(model, best_state)
    columns["fine-tuned"] = generate(model, pairs.test_source)
    return write_grid(path, columns)


def print_summary(summary: dict, console=None) -> None:
    """Step 0 against the best evaluation, then where everything is."""
    console = console or Console(highlight=False)
    s0, best = summary["step0"], summary["best"]
    table = Table(title=f"{summary['concept']!r} from {summary['init']}", title_justify="left")
    table.add_column("")
    table.add_column("step 0 (init)", justify="right")
    table.add_column(f"best (step {best['step']}, {best['seconds']:.1f} s)", justify="right")
    for key, label, fmt in SUMMARY_ROWS:
        if key in s0 and key in best["metrics"]:  # style: absent from summaries written before it existed
            table.add_row(label, format(s0[key], fmt), format(best["metrics"][key], fmt))
    console.print(table)
    style = f", style scoring {summary['style_seconds']:.1f} s" if "style_seconds" in summary else ""
    console.print(f"{summary['steps']} steps in {summary['train_seconds']:.1f} s of training "
                  f"(budget {summary['budget_seconds']:g} s); init {summary['init_seconds']:.2f} s, "
                  f"loading {summary['load_seconds']:.1f} s{style}, total {summary['wall_seconds']:.1f} s",
                  markup=False)
    for name in ("adapter", "curve", "grid", "summary"):
        console.print(f"{name:>8}: {summary['files'][name]}", markup=False)
