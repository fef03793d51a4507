"""The bench's figures: curves with a bootstrap band, where each method starts, and the small batch's check.

    curves_steps.png    per metric (L1, style): median over concepts of the eval-set score / the oracle's,
                        against training steps, with the bootstrap 95% interval of that median as a band
    curves_seconds.png  the same against seconds (init + training, evaluation excluded)
    step0.png           test L1 at step 0 per method (box per method), the oracle beside them
    tracking.png        every record scored on both: the small eval batch's score against the full test set's
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import (
    Figure,  # no pyplot: no global figure state, Agg canvas
)
from matplotlib.ticker import ScalarFormatter

from gan.io import atomic_path
from weightgen.bench.config import METHODS, PRODUCT, REPORT_FILES, TARGET_METRICS
from weightgen.bench.stats import median_band

STEPS_PNG, SECONDS_PNG, STEP0_PNG, TRACKING_PNG = REPORT_FILES[2:6]
DENSE_STEPS = 50  # the default schedule's every-step stretch: drawn linearly, the long tail of scratch compressed
METRIC_LABEL = {"l1": "L1", "style": "style distance"}


def _held(x, y, grid):
    """The value of the last evaluation at or before each grid point; NaN before the first and after the last."""
    x = np.asarray(x, dtype=float)
    idx = np.searchsorted(x, grid, side="right") - 1
    vals = np.asarray(y, dtype=float)[np.clip(idx, 0, None)]
    return np.where((idx >= 0) & (grid <= x[-1]), vals, np.nan)


def curves(results: dict, axis: str, metric: str, seed: int = 0) -> dict[str, tuple]:
    """Per method: (grid, median, band lo, band hi) of eval-set `metric` / the oracle's, where every concept has a value."""
    series = {}
    for m in METHODS:
        runs = [by[m] for by in results.values() if m in by]
        if not runs:
            continue
        xs, ys = [], []
        for r in runs:
            target = r["oracle"]["eval"][metric]
            xs.append([h["step"] if axis == "steps" else r["init_seconds"] + h["seconds"] for h in r["history"]])
            ys.append([h["metrics"][metric] / target for h in r["history"]])
        if axis == "steps":
            grid = np.array(sorted({x for run in xs for x in run}), dtype=float)
        else:
            grid = np.linspace(0.0, max(x[-1] for x in xs), 300)
        values = np.stack([_held(x, y, grid) for x, y in zip(xs, ys)])  # (concepts, grid)
        ok = ~np.isnan(values).any(0)
        if ok.any():
            series[m] = (grid[ok], *median_band(values[:, ok], seed=seed))
    return series


def _save(fig, path: Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")


def _style(method: str) -> dict:
    """One colour per method; the product drawn thick, variants of a method dashed."""
    return {"color": f"C{list(METHODS).index(method)}", "linewidth": 2.5 if method == PRODUCT else 1.4,
            "zorder": 3 if method == PRODUCT else 2, "linestyle": "--" if method.endswith(("-ddim", "-noise")) else "-"}


def _curve_figure(results: dict, summary: dict, axis: str, label: str, seed: int) -> Figure:
    fig = Figure(figsize=(12, 4.5))
    for i, metric in enumerate(TARGET_METRICS):
        ax = fig.add_subplot(1, len(TARGET_METRICS), i + 1)
        series = curves(results, axis, metric, seed)
        for m, (x, y, lo, hi) in series.items():
            style = _style(m)
            ax.plot(x, y, label=m, **style)
            ax.fill_between(x, lo, hi, color=style["color"], alpha=0.15, linewidth=0)
        ax.axhline(1.0, color="black", linestyle="--", linewidth=1, label="oracle (target)")
        if axis == "steps" and max((x[-1] for x, *_ in series.values()), default=0) > 4 * DENSE_STEPS:
            ax.set_xscale("symlog", linthresh=DENSE_STEPS)  # linear over the dense first steps, compressed after
            ax.xaxis.set_major_formatter(ScalarFormatter())
        ax.set_xlabel(label)
        ax.set_ylabel(f"eval-set {METRIC_LABEL[metric]} / oracle's (median, 95% band)")
        ax.grid(alpha=0.3)
        if i == 0:
            ax.legend(fontsize=8)
    fig.suptitle(f"Fine-tuning {summary['n_concepts']} concepts")
    return fig


def _tracking_figure(results: dict) -> Figure:
    fig = Figure(figsize=(10, 4.5))
    for i, metric in enumerate(TARGET_METRICS):
        ax = fig.add_subplot(1, len(TARGET_METRICS), i + 1)
        for m in METHODS:
            pts = [(h["metrics"][metric], h["full"][metric]) for by in results.values() if m in by
                   for h in by[m]["history"] if "full" in h]
            if pts:
                a = np.array(pts)
                ax.scatter(a[:, 1], a[:, 0], s=6, alpha=0.5, color=_style(m)["color"], label=m)
        lims = ax.get_xlim()
        ax.plot(lims, lims, color="black", linewidth=0.8, linestyle=":")
        ax.set_xlabel(f"full test set {METRIC_LABEL[metric]}")
        ax.set_ylabel(f"small eval batch {METRIC_LABEL[metric]}")
        ax.grid(alpha=0.3)
        if i == 0:
            ax.legend(fontsize=7, markerscale=2)
    fig.suptitle("The small eval batch against the full test set (every record scored on both)")
    return fig


def write_plots(out: Path, results: dict, summary: dict) -> list[Path]:
    seed = summary["config"]["recipe"]["seed"]
    figures = {STEPS_PNG: _curve_figure(results, summary, "steps", "training steps", seed),
               SECONDS_PNG: _curve_figure(results, summary, "seconds",
                                          "seconds (init + training, evaluation excluded)", seed),
               TRACKING_PNG: _tracking_figure(results)}
    fig = Figure(figsize=(7, 4.5))
    ax = fig.add_subplot()
    methods = list(summary["methods"])
    data = [[by[m]["step0"]["l1"] for by in results.values() if m in by] for m in methods]
    data.append([c["oracle"]["test"]["l1"] for c in summary["concepts"].values()])
    ax.boxplot(data, tick_labels=[*methods, "oracle"])
    ax.set_ylabel("test L1 at step 0 (before any training)")
    ax.set_title("Where each method starts")
    ax.tick_params(axis="x", labelrotation=30)
    ax.grid(alpha=0.3, axis="y")
    figures[STEP0_PNG] = fig
    for name, figure in figures.items():
        _save(figure, out / name)
    return [out / name for name in figures]
