"""The bench report: whatever runs exist under <out>/runs, merged into a table, the claims and plots.

    <out>/bench.json          per method, per concept, the comparisons with generated and the claims
    <out>/bench.md            the same as markdown (the README takes its tables from here)
    <out>/curves_steps.png    median over concepts of test L1 / oracle L1 against training steps
    <out>/curves_seconds.png  the same against seconds (the init's own time included)
    <out>/step0.png           test L1 at step 0 per method, the oracle beside them

Medians over concepts of steps-to-target carry censoring (see weightgen.bench.stats): ">200"
means more than half the concepts did not get there within 200 steps.

Style columns (gan.perceptual; L1 rewards blur, the style distance does not): the median over
concepts of each run's mean style distance to its targets, and one Fréchet style distance per
method between all concepts' outputs and all concepts' targets (n = concepts x test pairs; only
comparable at equal n, which every method of one bench has). Runs written before the style
metric existed have none: their columns read "n/a".
"""

from __future__ import annotations

import statistics
from pathlib import Path

import numpy as np
from matplotlib.figure import (
    Figure,  # no pyplot: no global figure state, Agg canvas
)

from gan.io import atomic_path, read_json, write_bytes, write_json
from gan.perceptual import frechet_distance
from weightgen.bench.config import (
    CONFIG_FILE,
    METHODS,
    REPORT_FILES,
    RUN_FORMAT,
    RUNS_DIR,
)
from weightgen.bench.stats import (
    INF,
    Hit,
    compare_steps,
    format_interval,
    median_interval,
    ratio_interval,
)
from weightgen.errors import WeightgenError

REPORT_FORMAT = "weightgen-bench"
PRODUCT = "generated"
# The goals issue 6 sets: (baseline, kind, goal). "ratio": median steps(baseline)/steps(generated) >= goal;
# "fewer": generated needs fewer steps than the baseline on >= goal of the held-out concepts.
CLAIMS = (("scratch", "ratio", 15.0), ("zero", "ratio", 5.0), ("nearest", "fewer", 0.75), ("mean", "fewer", 0.75))
OUTCOMES = ("fewer", "tie", "more", "both-censored", "unknown")
JSON_FILE, MD_FILE, STEPS_PNG, SECONDS_PNG, STEP0_PNG = REPORT_FILES


def load_results(out: str | Path) -> dict[str, dict[str, dict]]:
    """{concept_id: {method: run result}} from <out>/runs, methods in registry order."""
    runs = Path(out) / RUNS_DIR
    results: dict[str, dict[str, dict]] = {}
    for path in sorted(runs.glob("*/*.json")) if runs.is_dir() else []:
        result = read_json(path)
        if not isinstance(result, dict) or result.get("format") != RUN_FORMAT:
            raise WeightgenError(f"{path} is not a bench run result")
        results.setdefault(result["concept_id"], {})[result["method"]] = result
    return {cid: {m: by_method[m] for m in METHODS if m in by_method} for cid, by_method in results.items()}


def _median(values) -> float:
    return float(statistics.median(values))


def _hit(result: dict) -> Hit:
    return Hit.from_dict(result["hit"])


def _frechet(outputs: list[list], targets: list[list]) -> float | None:
    """Fréchet style distance of the pooled output embeddings against the pooled targets' (None: too few)."""
    outputs = [row for block in outputs for row in block]
    targets = [row for block in targets for row in block]
    return frechet_distance(np.array(outputs), np.array(targets)) if min(len(outputs), len(targets)) >= 2 else None


def style_summary(rows: list[dict]) -> dict:
    """Medians of the per-run style distance, and Fréchet style distances over every concept's outputs.

    Empty when any run lacks the style metric (made before it existed): a median over a subset
    of the concepts would not be comparable with the other methods'.
    """
    if not all("style" in r["step0"] and "style" in r["final"] and "style_embeddings" in r for r in rows):
        return {}
    emb = [r["style_embeddings"] for r in rows]
    return {"step0_style": _median(r["step0"]["style"] for r in rows),
            "final_style": _median(r["final"]["style"] for r in rows),
            "step0_style_fd": _frechet([e["step0"] for e in emb], [e["targets"] for e in emb]),
            "final_style_fd": _frechet([e["outputs"] for e in emb], [e["targets"] for e in emb]),
            "style_fd_n": sum(len(e["outputs"]) for e in emb),
            "style_seconds": _median(r.get("style_seconds", 0.0) for r in rows)}


def oracle_summary(results: dict[str, dict[str, dict]]) -> dict:
    """Medians of the oracles' quality over concepts, their Fréchet style distance when every run has it."""
    oracles = {cid: next(iter(by.values()))["oracle"] for cid, by in results.items()}
    out = {"l1": _median(o["metrics"]["l1"] for o in oracles.values()),
           "psnr": _median(o["metrics"]["psnr"] for o in oracles.values())}
    runs = [next(iter(by.values())) for by in results.values()]
    if all("style" in o["metrics"] and "style_embeddings" in o for o in oracles.values()) and \
            all("style_embeddings" in r for r in runs):
        out["style"] = _median(o["metrics"]["style"] for o in oracles.values())
        out["style_fd"] = _frechet([o["style_embeddings"] for o in oracles.values()],
                                   [r["style_embeddings"]["targets"] for r in runs])
    return out


def method_summary(rows: list[dict]) -> dict:
    """One method over the concepts it ran on: medians of quality at step 0 and at the end, and of the hit."""
    steps = median_interval([_hit(r).steps_interval() for r in rows])
    seconds = median_interval([_hit(r).seconds_interval() for r in rows])
    return {"n": len(rows), "reached": sum(_hit(r).reached for r in rows), **style_summary(rows),
            "step0_l1": _median(r["step0"]["l1"] for r in rows), "step0_psnr": _median(r["step0"]["psnr"] for r in rows),
            "final_l1": _median(r["final"]["l1"] for r in rows), "final_psnr": _median(r["final"]["psnr"] for r in rows),
            "step0_l1_over_oracle": _median(r["step0"]["l1"] / r["oracle"]["metrics"]["l1"] for r in rows),
            "steps_to_target": list(steps), "seconds_to_target": list(seconds),
            "steps_to_target_text": format_interval(steps), "seconds_to_target_text": format_interval(seconds, 1),
            "budget_steps": max(_hit(r).budget_steps for r in rows),
            "init_seconds": _median(r["init_seconds"] for r in rows),
            "trained_params": _median(r["trained_params"] for r in rows)}


def versus(results: dict[str, dict[str, dict]], product: str, baseline: str) -> dict | None:
    """Per concept and summarized: steps(baseline)/steps(product), and whether product needs fewer steps."""
    pairs = [(cid, by[product], by[baseline]) for cid, by in results.items() if product in by and baseline in by]
    if not pairs:
        return None
    ratios = {cid: ratio_interval(_hit(b), _hit(p)) for cid, p, b in pairs}
    outcomes = {cid: compare_steps(_hit(p), _hit(b)) for cid, p, b in pairs}
    ratio = median_interval(list(ratios.values()))
    counts = {o: sum(v == o for v in outcomes.values()) for o in OUTCOMES}
    return {"n": len(pairs), "ratio": list(ratio), "ratio_text": format_interval(ratio, 1, lower=">="),
            "counts": counts, "fewer_fraction": counts["fewer"] / len(pairs),
            "per_concept": {cid: {"ratio": list(ratios[cid]), "outcome": outcomes[cid]} for cid in ratios}}


def claim_status(kind: str, goal: float, comparison: dict) -> tuple[str, str]:
    """(measured text, "met" | "not met" | "undetermined"): met only when censoring cannot undo it."""
    if kind == "ratio":
        lo, hi = comparison["ratio"]
        status = "met" if lo >= goal else "not met" if hi < goal else "undetermined"
        if lo == 0 and hi == INF:
            return "unknown: too few runs reached the target", status
        return f"{comparison['ratio_text']}x", status
    counts, n = comparison["counts"], comparison["n"]
    best = (counts["fewer"] + counts["unknown"] + counts["both-censored"]) / n
    status = "met" if counts["fewer"] / n >= goal else "not met" if best < goal else "undetermined"
    return (f"{counts['fewer']}/{n} ({counts['tie']} ties, {counts['more']} more, {counts['both-censored']} "
            f"neither reached, {counts['unknown']} undecided)"), status


def summarize(out: str | Path) -> dict:
    out = Path(out)
    if not (out / CONFIG_FILE).is_file():
        raise WeightgenError(f"no bench in {out}: {CONFIG_FILE} is missing (run `weightgen bench` first)")
    config = read_json(out / CONFIG_FILE)
    results = load_results(out)
    if not results:
        raise WeightgenError(f"no finished bench runs in {out / RUNS_DIR}")
    methods = [m for m in METHODS if any(m in by for by in results.values())]
    # The oracle without its style embeddings: the per-concept table has no use for 16 x 100 numbers.
    oracles = {cid: {k: v for k, v in next(iter(by.values()))["oracle"].items() if k != "style_embeddings"}
               for cid, by in results.items()}
    summary = {"format": REPORT_FORMAT, "version": 1, "config": config, "n_concepts": len(results),
               "oracle": oracle_summary(results),
               "methods": {m: {"description": METHODS[m].description,
                               **method_summary([by[m] for by in results.values() if m in by])} for m in methods},
               "versus_generated": {}, "claims": [], "concepts": {}}
    if PRODUCT in methods:
        for m in methods:
            if m != PRODUCT:
                summary["versus_generated"][m] = versus(results, PRODUCT, m)
    for baseline, kind, goal in CLAIMS:
        comparison = summary["versus_generated"].get(baseline)
        text = (f"median steps({baseline}) / steps(generated) >= {goal:g}" if kind == "ratio"
                else f"generated needs fewer steps than {baseline} on >= {goal:.0%} of concepts")
        measured, status = claim_status(kind, goal, comparison) if comparison else ("not run", "not run")
        summary["claims"].append({"claim": text, "baseline": baseline, "goal": goal, "measured": measured,
                                  "status": status})
    for cid, by in results.items():
        summary["concepts"][cid] = {
            "text": next(iter(by.values()))["concept"], "oracle": oracles[cid],
            "methods": {m: {"step0_l1": r["step0"]["l1"], "final_l1": r["final"]["l1"], "hit": r["hit"],
                            **({"final_style": r["final"]["style"]} if "style" in r["final"] else {}),
                            **({"init_info": r["init_info"]} if r.get("init_info") else {})} for m, r in by.items()}}
    return summary


NOTES = (
    "Reading the table: a run is *censored* when it does not reach the oracle's test L1 within the budget; "
    "\">200\" is a lower bound (more than half the concepts did not get there), \"a-b\" a median bounded both "
    "ways by censoring at different step counts. Steps to target are resolved to the evaluation interval. Seconds "
    "are training time (evaluation excluded) plus the init's own time (generation, nearest look-up); they vary "
    "with the machine's load, steps do not. Ratios against a generated run that is at the target from step 0 "
    "count that run as one step (a lower bound). Ties (same evaluation step) and concepts where neither method "
    "reached the target are not counted as wins; \"undecided\" means censoring at different step counts leaves "
    "the order open."
)


def _num(value: float | None, fmt: str) -> str:
    return "n/a" if value is None else format(value, fmt)


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + ["| " + " | ".join(r) + " |" for r in rows]


def render_markdown(summary: dict) -> str:
    recipe, methods, oracle = summary["config"]["recipe"], summary["methods"], summary["oracle"]
    budget = f", at most {recipe['seconds']:g} s" if recipe.get("seconds") else ""
    intro = (f"Same recipe for every method: {recipe['steps']} steps (batch {recipe['batch_size']}, seed "
             f"{recipe['seed']}{budget}), test evaluation every {recipe['eval_every']} steps; LoRA lr {recipe['lr']:g}, "
             f"scratch lr {recipe['scratch_lr']:g}, discriminator lr {recipe['lr_d']:g}; {recipe['threads']} torch "
             "thread(s). Target: each concept's own zoo LoRA (the oracle), re-measured on its test pairs. "
             "Medians over concepts.")
    lines = [f"## Fine-tune benchmark on {summary['n_concepts']} held-out concepts", "", intro, ""]
    style = any("final_style" in s for s in methods.values())  # a bench from before the style metric: no columns
    rows = [[m, f"{s['step0_l1']:.4f}", f"{s['step0_psnr']:.2f}", f"{s['final_l1']:.4f}", f"{s['final_psnr']:.2f}",
             *([_num(s.get("step0_style"), ".3f"), _num(s.get("final_style"), ".3f"),
                _num(s.get("final_style_fd"), ".2f")] if style else []),
             s["steps_to_target_text"], s["seconds_to_target_text"], f"{s['reached']}/{s['n']}"]
            for m, s in methods.items()]
    rows.append(["oracle (target)", f"{oracle['l1']:.4f}", f"{oracle['psnr']:.2f}", "", "",
                 *(["", _num(oracle.get("style"), ".3f"), _num(oracle.get("style_fd"), ".2f")] if style else []),
                 "", "", ""])
    lines += _table(["method", "L1 @ step 0", "PSNR @ step 0", "final L1", "final PSNR",
                     *(["style @ step 0", "final style", "final style FD"] if style else []), "steps to target",
                     "seconds to target", "reached"], rows)
    if style:
        n = next((s["style_fd_n"] for s in methods.values() if "style_fd_n" in s), 0)
        lines += ["", f"Style: median over concepts of the mean style distance to the targets (lower is better; "
                      f"L1 rewards blur, this does not); style FD: Fréchet distance between the style embeddings of "
                      f"all concepts' final outputs and their targets, n = {n} images per set."]
    lines += ["", "### The claims (issue 6 goals)", ""]
    lines += _table(["claim", "measured", "status"], [[c["claim"], c["measured"], c["status"]]
                                                      for c in summary["claims"]])
    if summary["versus_generated"]:
        lines += ["", "### Generated (1 step) against each method", ""]
        rows = [[m, v["ratio_text"], f"{v['counts']['fewer']}/{v['n']}",
                 *(str(v["counts"][k]) for k in ("tie", "more", "both-censored", "unknown"))]
                for m, v in summary["versus_generated"].items()]
        lines += _table(["method", "median steps(method) / steps(generated)", "generated fewer", "tie", "more",
                         "neither reached", "undecided"], rows)
    lines += ["", "### Steps to target per concept", ""]
    rows = []
    for c in summary["concepts"].values():
        hits = [c["methods"].get(m, {}).get("hit") for m in methods]
        rows.append([c["text"], f"{c['oracle']['metrics']['l1']:.4f}",
                     *("" if h is None else str(h["steps"]) if h["reached"] else f">{h['budget_steps']}" for h in hits)])
    lines += _table(["concept", "oracle L1", *methods], rows)
    return "\n".join([*lines, "", NOTES, ""])


# -- plots ---------------------------------------------------------------------------------------------------------

def _held(x, y, grid):
    """The value of the last evaluation at or before each grid point (NaN before the first)."""
    idx = np.searchsorted(np.asarray(x, dtype=float), grid, side="right") - 1
    vals = np.asarray(y, dtype=float)[np.clip(idx, 0, None)]
    return np.where(idx >= 0, vals, np.nan)


def _curves(results: dict, axis: str) -> dict[str, tuple]:
    """Per method: (grid, median over concepts of test L1 / oracle L1), only where every concept has a value."""
    series = {}
    for m in METHODS:
        runs = [by[m] for by in results.values() if m in by]
        if not runs:
            continue
        xs, ys = [], []
        for r in runs:
            target = r["oracle"]["metrics"]["l1"]
            if axis == "steps":
                xs.append([h["step"] for h in r["history"]])
            else:
                xs.append([r["init_seconds"] + h["seconds"] for h in r["history"]])
            ys.append([h["metrics"]["l1"] / target for h in r["history"]])
        if axis == "steps":
            grid = np.array(sorted({x for run in xs for x in run}), dtype=float)
        else:
            grid = np.linspace(0.0, max(x[-1] for x in xs), 200)
        values = np.stack([_held(x, y, grid) for x, y in zip(xs, ys)])  # (concepts, grid)
        ok = ~np.isnan(values).any(0)
        series[m] = (grid[ok], np.median(values[:, ok], axis=0))
    return series


def _save(fig, path: Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")


def _style(method: str) -> dict:
    """One colour per method; the product drawn thick, variants of a method dashed."""
    return {"color": f"C{list(METHODS).index(method)}", "linewidth": 2.5 if method == PRODUCT else 1.4,
            "zorder": 3 if method == PRODUCT else 2, "linestyle": "--" if method.endswith(("-ddim", "-noise")) else "-"}


def write_plots(out: Path, results: dict, summary: dict) -> list[Path]:
    paths = []
    for axis, name, label in (("steps", STEPS_PNG, "training steps"),
                              ("seconds", SECONDS_PNG, "seconds (init + training, evaluation excluded)")):
        fig = Figure(figsize=(7, 4.5))
        ax = fig.add_subplot()
        for m, (x, y) in _curves(results, axis).items():
            ax.plot(x, y, label=m, **_style(m))
        ax.axhline(1.0, color="black", linestyle="--", linewidth=1, label="oracle (target)")
        ax.set_xlabel(label)
        ax.set_ylabel("test L1 / oracle test L1 (median over concepts)")
        ax.set_title(f"Fine-tuning {summary['n_concepts']} held-out concepts")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        _save(fig, out / name)
        paths.append(out / name)
    fig = Figure(figsize=(7, 4.5))
    ax = fig.add_subplot()
    methods = list(summary["methods"])
    data = [[by[m]["step0"]["l1"] for by in results.values() if m in by] for m in methods]
    data.append([c["oracle"]["metrics"]["l1"] for c in summary["concepts"].values()])
    ax.boxplot(data, tick_labels=[*methods, "oracle"])
    ax.set_ylabel("test L1 at step 0 (before any training)")
    ax.set_title("Where each method starts")
    ax.tick_params(axis="x", labelrotation=30)
    ax.grid(alpha=0.3, axis="y")
    _save(fig, out / STEP0_PNG)
    return [*paths, out / STEP0_PNG]


def write_report(out: str | Path) -> dict:
    """Merge every finished run in `out` into bench.json, bench.md and the plots; returns the summary."""
    out = Path(out)
    summary = summarize(out)
    write_json(out / JSON_FILE, summary)
    write_bytes(out / MD_FILE, render_markdown(summary).encode())
    write_plots(out, load_results(out), summary)
    return summary
