"""The bench report: whatever runs exist under <out>/runs, merged into statistics, tables and plots.

    <out>/bench.json          everything below as data: per method, per target, per concept
    <out>/bench.md            the tables (weightgen.bench.markdown; the README takes its tables from here)
    <out>/curves_steps.png    median over concepts of eval-set L1 and style / the oracle's, with a 95% band
    <out>/curves_seconds.png  the same against seconds (the init's own time included)
    <out>/step0.png           test L1 at step 0 per method, the oracle beside them
    <out>/tracking.png        the small eval batch's scores against the full test set's, every scored record

What is summarized (weightgen.bench.stats for the arithmetic):

- per method and target: median steps and seconds to the target, censored where runs did not
  get there (">N": more than half did not within N steps);
- per baseline and target: the per-concept paired ratio steps(baseline) / steps(generated), its
  median and a bootstrap 95% interval over concepts, and the win counts;
- the paper's table: final quality, time to the oracle's L1, speed-ups vs pix2pix and E2GAN,
  beside the paper's figures (weightgen.bench.paper);
- the zero-shot table: gap recovered at step 0 per init, on L1 and the style distance;
- the small eval batch's rank correlation with the full test set, and the bench's CPU time.

A concept whose oracle is no better than the base on a target's metric leaves that target's
statistics (there is no gain to time) and is counted as excluded.
"""

from __future__ import annotations

import statistics
from pathlib import Path

import numpy as np

from gan.io import read_json, write_bytes, write_json
from gan.perceptual import frechet_distance
from weightgen.bench.config import (
    CONFIG_FILE,
    METHODS,
    PRIMARY_TARGET,
    PRODUCT,
    REPORT_FILES,
    RUN_FORMAT,
    RUN_VERSION,
    RUNS_DIR,
    TARGET_METRICS,
    TARGETS,
)
from weightgen.bench.markdown import render_markdown
from weightgen.bench.paper import CITATION, PAPER_ROWS, paper_speedup
from weightgen.bench.plots import write_plots
from weightgen.bench.stats import (
    INF,
    Hit,
    compare_steps,
    format_interval,
    gap_recovered,
    median_interval,
    ratio_interval,
    summarize_intervals,
)
from weightgen.errors import WeightgenError

REPORT_FORMAT = "weightgen-bench"
# The goals issue 13 sets, on the primary target: (baseline, kind, goal). "ratio": median steps(baseline) /
# steps(generated) >= goal; "fewer": generated needs fewer steps than the baseline on >= goal of the concepts.
CLAIMS = (("scratch", "ratio", 15.0), ("zero", "ratio", 4.6), ("nearest", "fewer", 0.75), ("mean", "fewer", 0.75))
OUTCOMES = ("fewer", "tie", "more", "both-censored", "unknown")
JSON_FILE, MD_FILE = REPORT_FILES[:2]


def load_results(out: str | Path) -> dict[str, dict[str, dict]]:
    """{concept_id: {method: run result}} from <out>/runs, methods in registry order."""
    runs = Path(out) / RUNS_DIR
    results: dict[str, dict[str, dict]] = {}
    for path in sorted(runs.glob("*/*.json")) if runs.is_dir() else []:
        result = read_json(path)
        if not isinstance(result, dict) or result.get("format") != RUN_FORMAT:
            raise WeightgenError(f"{path} is not a bench run result")
        if result.get("version") != RUN_VERSION:
            raise WeightgenError(f"{path} was written by the old bench (version {result.get('version')}); rerun "
                                 "the bench with --overwrite")
        results.setdefault(result["concept_id"], {})[result["method"]] = result
    return {cid: {m: by_method[m] for m in METHODS if m in by_method} for cid, by_method in results.items()}


def _median(values) -> float:
    return float(statistics.median(values))


def _hit(result: dict, target: str) -> Hit:
    return Hit.from_dict(result["hits"][target])


def _oracle(by_method: dict) -> dict:
    return next(iter(by_method.values()))["oracle"]


def has_room(by_method: dict, target: str) -> bool:
    return bool(_oracle(by_method)["targets"][target]["room"])


def _frechet(outputs: list[list], targets: list[list]) -> float | None:
    """Fréchet style distance of the pooled output embeddings against the pooled targets' (None: too few)."""
    outputs = [row for block in outputs for row in block]
    targets = [row for block in targets for row in block]
    return frechet_distance(np.array(outputs), np.array(targets)) if min(len(outputs), len(targets)) >= 2 else None


def hit_summary(rows: list[dict], target: str) -> dict:
    """Median steps and seconds to `target` over the runs whose oracle leaves room for it."""
    rows = [r for r in rows if r["oracle"]["targets"][target]["room"]]
    if not rows:
        return {"n": 0, "reached": 0, "steps": None, "seconds": None, "steps_text": "n/a", "seconds_text": "n/a"}
    steps = median_interval([_hit(r, target).steps_interval() for r in rows])
    seconds = median_interval([_hit(r, target).seconds_interval() for r in rows])
    return {"n": len(rows), "reached": sum(_hit(r, target).reached for r in rows), "steps": list(steps),
            "seconds": list(seconds), "steps_text": format_interval(steps), "seconds_text": format_interval(seconds, 1)}


def method_summary(rows: list[dict]) -> dict:
    """One method over the concepts it ran on: quality at step 0 and at the common budget, time to each target."""
    emb = [r["style_embeddings"] for r in rows]
    return {"n": len(rows),
            **{f"step0_{k}": _median(r["step0"][k] for r in rows) for k in ("l1", "psnr", "style")},
            **{f"final_{k}": _median(r["final"][k] for r in rows) for k in ("l1", "psnr", "ssim", "style")},
            "step0_style_fd": _frechet([e["step0"] for e in emb], [e["targets"] for e in emb]),
            "final_style_fd": _frechet([e["outputs"] for e in emb], [e["targets"] for e in emb]),
            "style_fd_n": sum(len(e["outputs"]) for e in emb),
            "step0_l1_over_oracle": _median(r["step0"]["l1"] / r["oracle"]["test"]["l1"] for r in rows),
            "targets": {t: hit_summary(rows, t) for t in TARGETS},
            "budget_steps": max(r["last_step"] for r in rows), "final_step": min(r["final_step"] for r in rows),
            "init_seconds": _median(r["init_seconds"] for r in rows),
            "trained_params": _median(r["trained_params"] for r in rows),
            "wall_seconds": round(sum(r["wall_seconds"] for r in rows), 1)}


def oracle_summary(results: dict[str, dict[str, dict]]) -> dict:
    """Medians of the oracles' and the base's test quality, the oracles' style FD, how validation chose."""
    oracles = [_oracle(by) for by in results.values()]
    runs = [next(iter(by.values())) for by in results.values()]
    return {"l1": _median(o["test"]["l1"] for o in oracles), "psnr": _median(o["test"]["psnr"] for o in oracles),
            "style": _median(o["test"]["style"] for o in oracles),
            "style_fd": _frechet([o["style_embeddings"] for o in oracles], [r["style_embeddings"]["targets"] for r in runs]),
            "base_l1": _median(o["base"]["test"]["l1"] for o in oracles),
            "base_style": _median(o["base"]["test"]["style"] for o in oracles),
            "validation_picked_test_best": {m: sum(o["chosen"][m]["test_best"] for o in oracles)
                                            for m in TARGET_METRICS},
            "n": len(oracles), "sources": sorted({o["source"] for o in oracles})}


def versus(results: dict[str, dict[str, dict]], product: str, baseline: str, target: str = PRIMARY_TARGET,
           seed: int = 0) -> dict | None:
    """Per concept and summarized: steps(baseline) / steps(product) on `target`, and whether product needs fewer.

    Only concepts where both ran and the oracle leaves room on the target's metric.
    """
    pairs = [(cid, by[product], by[baseline]) for cid, by in results.items()
             if product in by and baseline in by and has_room(by, target)]
    if not pairs:
        return None
    ratios = {cid: ratio_interval(_hit(b, target), _hit(p, target)) for cid, p, b in pairs}
    seconds = [ratio_interval(_hit(b, target), _hit(p, target), "seconds") for _, p, b in pairs]
    outcomes = {cid: compare_steps(_hit(p, target), _hit(b, target)) for cid, p, b in pairs}
    summary = summarize_intervals(list(ratios.values()), seed=seed)
    counts = {o: sum(v == o for v in outcomes.values()) for o in OUTCOMES}
    return {"n": len(pairs), "ratio": summary["median"], "ratio_text": summary["text"], "ci95": summary["ci95"],
            "ci95_text": summary["ci95_text"], "seconds": summarize_intervals(seconds, seed=seed),
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


def claims(versus_primary: dict) -> list[dict]:
    out = []
    for baseline, kind, goal in CLAIMS:
        comparison = versus_primary.get(baseline)
        text = (f"median steps({baseline}) / steps(generated) >= {goal:g}" if kind == "ratio"
                else f"generated needs fewer steps than {baseline} on >= {goal:.0%} of concepts")
        measured, status = claim_status(kind, goal, comparison) if comparison else ("not run", "not run")
        out.append({"claim": text, "baseline": baseline, "goal": goal, "measured": measured, "status": status,
                    **({"ci95_text": comparison["ci95_text"]} if comparison and kind == "ratio" else {})})
    return out


def zero_shot(results: dict[str, dict[str, dict]], methods: list[str], seed: int = 0) -> dict:
    """Gap recovered at step 0 per method and metric: (d(base) - d(init)) / (d(base) - d(oracle)) on the test set."""
    out: dict = {}
    for metric in TARGET_METRICS:
        out[metric] = {}
        for m in methods:
            gaps = [gap_recovered(by[m]["oracle"]["base"]["test"][metric], by[m]["step0"][metric],
                                  by[m]["oracle"]["test"][metric]) for by in results.values() if m in by]
            values = [g for g in gaps if g is not None]
            out[metric][m] = ({**summarize_intervals([(g, g) for g in values], seed=seed, digits=2, lower=""),
                               "excluded": len(gaps) - len(values)} if values else {"n": 0, "excluded": len(gaps)})
    return out


def tracking_summary(results: dict[str, dict[str, dict]], methods: list[str]) -> dict | None:
    """Per method: the median and lowest Spearman correlation between eval-set and full test-set scores."""
    runs = [r for by in results.values() for r in by.values()]
    if all(r["tracking"] is None for r in runs):
        return None  # the dense evaluations scored the full test set
    out = {}
    for m in methods:
        tracks = [by[m]["tracking"] for by in results.values() if m in by and by[m]["tracking"]]
        row = {"runs": len(tracks), "records": _median(t["n"] for t in tracks) if tracks else 0}
        for metric in TARGET_METRICS:
            values = [t[metric] for t in tracks if t[metric] is not None]
            row[metric] = {"median": _median(values), "min": min(values)} if values else None
        out[m] = row
    return out


def cpu_summary(results: dict[str, dict[str, dict]], config: dict) -> dict:
    """CPU seconds the runs and oracles on disk took (x the torch threads each process used)."""
    runs = [r for by in results.values() for r in by.values()]
    oracles = [_oracle(by) for by in results.values()]
    threads = config["recipe"]["threads"]
    run_s = sum(r["wall_seconds"] for r in runs)
    oracle_s = sum(o["seconds"] for o in oracles)
    reference_s = sum(o.get("reference", {}).get("seconds", 0.0) for o in oracles)
    return {"threads": threads, "runs": len(runs), "run_seconds": round(run_s, 1),
            "oracle_seconds": round(oracle_s, 1), "reference_seconds": round(reference_s, 1),
            "train_seconds": round(sum(r["history"][-1]["seconds"] for r in runs), 1),
            "eval_seconds": round(sum(r["eval_seconds"] for r in runs), 1),
            "cpu_seconds": round((run_s + oracle_s + reference_s) * threads, 1),
            "per_concept_cpu_seconds": round((run_s + oracle_s + reference_s) * threads / max(len(results), 1), 1)}


def paper_table(results: dict[str, dict[str, dict]], methods: dict[str, dict], seed: int = 0) -> list[dict]:
    """Per method: final quality, time to the oracle's L1, and speed-ups vs pix2pix and E2GAN, beside the paper's."""
    rows = []
    for m, s in methods.items():
        speedups = {}
        for over in ("scratch", "zero"):
            if m == over:
                speedups[over] = {"ratio_text": "1", "ci95_text": ""}
            else:
                v = versus(results, m, over, PRIMARY_TARGET, seed)
                speedups[over] = ({"ratio": v["ratio"], "ratio_text": v["ratio_text"], "ci95_text": v["ci95_text"],
                                   "seconds_text": v["seconds"]["text"]} if v else None)
        paper = PAPER_ROWS.get(m)
        rows.append({"method": m, "paper_label": paper.label if paper else None,
                     "final_l1": s["final_l1"], "final_style": s["final_style"], "final_style_fd": s["final_style_fd"],
                     "steps_text": s["targets"][PRIMARY_TARGET]["steps_text"],
                     "seconds_text": s["targets"][PRIMARY_TARGET]["seconds_text"],
                     "vs_scratch": speedups["scratch"], "vs_zero": speedups["zero"],
                     "paper": ({"seconds": paper.seconds, "fid": paper.fid, "vs_pix2pix": paper_speedup(m, "scratch"),
                                "vs_e2gan": paper_speedup(m, "zero")} if paper else None)})
    return rows


def concept_rows(results: dict[str, dict[str, dict]]) -> dict:
    out = {}
    for cid, by in results.items():
        first, oracle = next(iter(by.values())), _oracle(by)
        out[cid] = {"text": first["concept"], "source": first["concept_source"], "note": first.get("note", ""),
                    "oracle": {k: oracle[k] for k in ("source", "chosen", "test", "eval", "base", "targets")},
                    "methods": {m: {"step0_l1": r["step0"]["l1"], "final_l1": r["final"]["l1"],
                                    "final_style": r["final"]["style"], "hits": r["hits"], "caps": r["caps"],
                                    "last_step": r["last_step"],
                                    **({"init_info": r["init_info"]} if r.get("init_info") else {})}
                                for m, r in by.items()}}
    return out


def summarize(out: str | Path) -> dict:
    out = Path(out)
    if not (out / CONFIG_FILE).is_file():
        raise WeightgenError(f"no bench in {out}: {CONFIG_FILE} is missing (run `weightgen bench` first)")
    config = read_json(out / CONFIG_FILE)
    results = load_results(out)
    if not results:
        raise WeightgenError(f"no finished bench runs in {out / RUNS_DIR}")
    seed = config["recipe"]["seed"]
    methods = [m for m in METHODS if any(m in by for by in results.values())]
    per_method = {m: {"description": METHODS[m].description,
                      **method_summary([by[m] for by in results.values() if m in by])} for m in methods}
    versus_generated = {t: {m: versus(results, PRODUCT, m, t, seed) for m in methods if m != PRODUCT}
                        for t in TARGETS} if PRODUCT in methods else {}
    targets = {t: {"metric": TARGETS[t].metric, "kind": TARGETS[t].kind,
                   "excluded": [cid for cid, by in results.items() if not has_room(by, t)]} for t in TARGETS}
    return {"format": REPORT_FORMAT, "version": RUN_VERSION, "config": config, "n_concepts": len(results),
            "primary_target": PRIMARY_TARGET, "targets": targets, "oracle": oracle_summary(results),
            "methods": per_method, "versus_generated": versus_generated,
            "claims": claims(versus_generated.get(PRIMARY_TARGET, {})),
            "paper": {"citation": CITATION, "table": paper_table(results, per_method, seed)},
            "zero_shot": zero_shot(results, methods, seed), "tracking": tracking_summary(results, methods),
            "cpu": cpu_summary(results, config), "concepts": concept_rows(results)}


def write_report(out: str | Path) -> dict:
    """Merge every finished run in `out` into bench.json, bench.md and the plots; returns the summary."""
    out = Path(out)
    summary = summarize(out)
    write_json(out / JSON_FILE, summary)
    write_bytes(out / MD_FILE, render_markdown(summary).encode())
    write_plots(out, load_results(out), summary)
    return summary
