"""bench.md from the report summary (weightgen.bench.report.summarize): the tables, in the order a reader asks.

1. where each method starts and ends, and how long it takes to the oracle's L1;
2. the paper's table beside the paper's figures;
3. per target, the paired ratios against the generated init with bootstrap intervals, and win counts;
4. the claims; 5. the zero-shot table; 6. the small batch's check; 7. per concept; 8. CPU time.
"""

from __future__ import annotations

from weightgen.bench.config import PRIMARY_TARGET, TARGET_METRICS, TARGETS
from weightgen.bench.stats import INF

TARGET_TEXT = {"oracle-l1": "the oracle's L1", "gain-l1": "{f:.0%} of the oracle's L1 gain",
               "oracle-style": "the oracle's style distance", "gain-style": "{f:.0%} of the oracle's style gain"}

NOTES = (
    "Reading the tables: a run is *censored* when it does not reach a target within its budget; \">200\" is a "
    "lower bound (more than half the concepts did not get there), \"a-b\" a median bounded both ways by censoring "
    "at different step counts. Ratios are per concept, steps(method) / steps(generated), then the median over "
    "concepts; \">=x\" is a lower bound from censored baselines, and its interval's top is open (inf). The 95% "
    "intervals are a bootstrap over concepts (seeded), taken on the censored bounds, so censoring widens them. "
    "Steps are exact where the schedule evaluates every step, and otherwise resolved to the schedule. Seconds are "
    "training time (evaluation excluded) plus the init's own time (generation, nearest look-up); they vary with "
    "the machine's load, steps do not. A generated run at the target from step 0 counts as one step (the ratio is "
    "then a lower bound). Ties and concepts where neither reached the target are not wins; \"undecided\" means "
    "censoring at different step counts leaves the order open."
)


def _num(value: float | None, fmt: str) -> str:
    return "n/a" if value is None else "inf" if value == INF else format(value, fmt)


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + ["| " + " | ".join(r) + " |" for r in rows]


def target_text(name: str, fraction: float) -> str:
    return TARGET_TEXT[name].format(f=fraction)


def _intro(summary: dict) -> list[str]:
    recipe, oracle = summary["config"]["recipe"], summary["oracle"]
    budget = f", at most {recipe['seconds']:g} s" if recipe.get("seconds") else ""
    evals = (f"the first {recipe['eval_pairs']} test pairs of each concept at every evaluation, the full test set "
             f"every {recipe['full_every']} steps, at step 0, at {recipe['steps']} and at the end"
             if recipe.get("eval_pairs") else "the full test set at every evaluation")
    n_zoo = sum(c["source"] == "zoo" for c in summary["concepts"].values())
    where = ("held-out concepts of the zoo" if n_zoo == summary["n_concepts"] else
             "concepts of a concepts file" if n_zoo == 0 else "concepts")
    return [f"## Fine-tune benchmark on {summary['n_concepts']} {where}", "",
            (f"Same recipe for every method: {recipe['steps']} steps common to all (final quality is measured there; "
            f"batch {recipe['batch_size']}, seed {recipe['seed']}{budget}); LoRA lr {recipe['lr']:g}, scratch lr "
            f"{recipe['scratch_lr']:g}, discriminator lr {recipe['lr_d']:g}; {recipe['threads']} torch thread(s). "
            f"Evaluations on schedule {recipe['eval_schedule']} (every:until, ..., every), scoring {evals}. "
            f"Past the common budget a baseline trains on until it reaches each target or passes "
            f"{recipe['scratch_multiple']:g}x (scratch) / {recipe['lora_multiple']:g}x (LoRA baselines) the generated "
            f"init's steps to it, at most {recipe['max_steps']} steps."), "",
            f"Targets: each concept's oracle (its own {'/'.join(oracle['sources'])} LoRA) at its best checkpoint on "
            f"{recipe['val_crops']} "
            "validation crops of its train canvases (never the test pairs; the checkpoint was the test-best on "
            + ", ".join(f"{oracle['validation_picked_test_best'][m]}/{oracle['n']} concepts for {m}"
                        for m in TARGET_METRICS)
            + f"), and {recipe['gain_fraction']:.0%} of its gain over the base, each on L1 and on the style distance "
            "(gan.perceptual: L1 rewards blur, this does not). Medians over concepts.", ""]


def _main_table(summary: dict) -> list[str]:
    methods, oracle = summary["methods"], summary["oracle"]
    t = PRIMARY_TARGET
    rows = [[m, f"{s['step0_l1']:.4f}", f"{s['step0_style']:.3f}", f"{s['final_l1']:.4f}", f"{s['final_psnr']:.2f}",
             f"{s['final_style']:.3f}", _num(s["final_style_fd"], ".2f"), s["targets"][t]["steps_text"],
             s["targets"][t]["seconds_text"], f"{s['targets'][t]['reached']}/{s['targets'][t]['n']}"]
            for m, s in methods.items()]
    rows.append(["oracle (target)", "", "", f"{oracle['l1']:.4f}", f"{oracle['psnr']:.2f}", f"{oracle['style']:.3f}",
                 _num(oracle["style_fd"], ".2f"), "", "", ""])
    rows.append(["base", f"{oracle['base_l1']:.4f}", f"{oracle['base_style']:.3f}", "", "", "", "", "", "", ""])
    n = next(iter(methods.values()))["style_fd_n"]
    return _table(["method", "L1 @ step 0", "style @ step 0", "final L1", "final PSNR", "final style", "final style FD",
                   "steps to oracle L1", "seconds to oracle L1", "reached"], rows) + [
        "", (f"Final: test quality at the common budget. Style FD: Fréchet distance between the style embeddings of all "
            f"concepts' outputs and their targets, n = {n} images per set (comparable only at equal n).")]


def _paper_table(summary: dict) -> list[str]:
    def speedup(v):
        if v is None:
            return "n/a"
        return f"{v['ratio_text']}x {v['ci95_text']}".strip() if v["ratio_text"] != "1" else "1x"

    rows = []
    for r in summary["paper"]["table"]:
        p = r["paper"]
        rows.append([r["method"] + (f" ({r['paper_label']})" if r["paper_label"] else ""),
                     f"{r['final_l1']:.4f} / {_num(r['final_style_fd'], '.2f')}",
                     f"{r['steps_text']} steps / {r['seconds_text']} s", speedup(r["vs_scratch"]), speedup(r["vs_zero"]),
                     f"{p['seconds']:g} s" if p else "", f"{p['fid']:.2f}" if p else "",
                     _num(p["vs_pix2pix"], ".1f") + "x" if p else "", _num(p["vs_e2gan"], ".1f") + "x" if p else ""])
    return ["### The paper's table, beside the paper's figures", "",
            (f"Time to target: median steps / seconds to the oracle's test L1. Speed-ups: the median over concepts of "
            f"the per-concept ratio of steps to that target (pix2pix = scratch, E2GAN = zero-init LoRA), with its "
            f"bootstrap 95% interval. Paper: {summary['paper']['citation']}; its FID is against the diffusion model's "
            "outputs on a GPU, ours a style FD on a CPU, so compare ratios, not absolute numbers."), "",
            *_table(["method", "final L1 / style FD", "time to target", "speed-up vs pix2pix", "speed-up vs E2GAN",
                     "paper: time", "paper: FID", "paper: vs pix2pix", "paper: vs E2GAN"], rows)]


def _targets_table(summary: dict) -> list[str]:
    fraction = summary["config"]["recipe"]["gain_fraction"]
    header = ["method", *(target_text(t, fraction) for t in TARGETS)]
    rows = [[m, *(f"{s['targets'][t]['steps_text']} ({s['targets'][t]['seconds_text']} s), "
                  f"{s['targets'][t]['reached']}/{s['targets'][t]['n']}" for t in TARGETS)]
            for m, s in summary["methods"].items()]
    excluded = [f"{target_text(t, fraction)}: {len(v['excluded'])}" for t, v in summary["targets"].items()]
    return ["### Steps (seconds) to each target, and how many runs reached it", "", *_table(header, rows), "",
            "Concepts left out of a target because their oracle is no better than the base on its metric: "
            + "; ".join(excluded) + "."]


def _versus_tables(summary: dict) -> list[str]:
    if not summary["versus_generated"]:
        return []
    fraction = summary["config"]["recipe"]["gain_fraction"]
    lines = ["### Generated (1 step) against each method: paired ratios per concept", ""]
    for t, by_method in summary["versus_generated"].items():
        rows = [[m, f"{v['ratio_text']} {v['ci95_text']}", f"{v['seconds']['text']} {v['seconds']['ci95_text']}",
                 f"{v['counts']['fewer']}/{v['n']}",
                 *(str(v["counts"][k]) for k in ("tie", "more", "both-censored", "unknown"))]
                for m, v in by_method.items() if v is not None]
        lines += [f"Target: {target_text(t, fraction)}.", "",
                  *_table(["method", "median steps ratio [95%]", "median seconds ratio [95%]", "generated fewer",
                           "tie", "more", "neither reached", "undecided"], rows), ""]
    return lines


def _zero_shot_table(summary: dict) -> list[str]:
    zs = summary["zero_shot"]
    rows = []
    for m in summary["methods"]:
        cells = []
        for metric in TARGET_METRICS:
            s = zs[metric][m]
            cells.append(f"{s['text']} {s['ci95_text']} (n={s['n']})" if s["n"] else "n/a")
        rows.append([m, *cells])
    return ["### Zero-shot: gap recovered at step 0", "",
            ("(d(base) - d(init)) / (d(base) - d(oracle)) on the test pairs, per concept, then the median and its "
            "bootstrap 95% interval: 0 is the base's quality, 1 the oracle's; concepts whose oracle is no better than "
            "the base on a metric are left out of it."), "",
            *_table(["init", "gap recovered, L1", "gap recovered, style"], rows)]


def _tracking_table(summary: dict) -> list[str]:
    tr = summary["tracking"]
    head = ["### Does the small eval batch track the full test set?", ""]
    if tr is None:
        return head + ["The dense evaluations scored the full test set: nothing to check."]
    rows = [[m, str(v["runs"]), f"{v['records']:g}",
             *(f"{v[k]['median']:.2f} (min {v[k]['min']:.2f})" if v[k] else "n/a" for k in TARGET_METRICS)]
            for m, v in tr.items()]
    return head + [("Spearman rank correlation, per run, between the small batch's and the full test set's scores over "
                   "the records where both were taken (tracking.png plots them)."), "",
                   *_table(["method", "runs", "records per run", "L1: median (min)", "style: median (min)"], rows)]


def _concepts_table(summary: dict) -> list[str]:
    methods = list(summary["methods"])
    rows = []
    for c in summary["concepts"].values():
        o = c["oracle"]
        t = o["targets"][PRIMARY_TARGET]
        cells = []
        for m in methods:
            r = c["methods"].get(m)
            h = r["hits"][PRIMARY_TARGET] if r else None
            cells.append("" if h is None else str(h["steps"]) if h["reached"] else f">{h['budget_steps']}")
        rows.append([c["text"] + (f" ({c['note']})" if c["note"] else ""), f"{o['base']['test']['l1']:.4f}",
                     f"{o['test']['l1']:.4f} (step {o['chosen']['l1']['step']})" + ("" if t["room"] else ", no room"),
                     *cells])
    return ["### Steps to the oracle's L1 per concept", "",
            *_table(["concept", "base L1", "oracle L1 (checkpoint)", *methods], rows)]


def _cpu(summary: dict) -> list[str]:
    c = summary["cpu"]
    return ["### CPU time", "",
            (f"{c['runs']} runs: {c['run_seconds']:.0f} s of run time ({c['train_seconds']:.0f} s training, "
            f"{c['eval_seconds']:.0f} s evaluation), {c['oracle_seconds']:.0f} s measuring oracles, "
            f"{c['reference_seconds']:.0f} s of reference fine-tunes; x {c['threads']} thread(s) = "
            f"{c['cpu_seconds'] / 3600:.2f} CPU-hours ({c['per_concept_cpu_seconds']:.0f} CPU-s per concept). "
            "n processes with --shard i/n on one --out split the concepts, so a bench takes about 1/n of that on n "
            "free cores (one torch thread each).")]


def render_markdown(summary: dict) -> str:
    lines = [*_intro(summary), *_main_table(summary), "", *_paper_table(summary), "", *_targets_table(summary), "",
             "### The claims (issue 13 goals, on the oracle's L1)", ""]
    lines += _table(["claim", "measured", "95% interval", "status"],
                    [[c["claim"], c["measured"], c.get("ci95_text", ""), c["status"]] for c in summary["claims"]])
    lines += ["", *_versus_tables(summary), *_zero_shot_table(summary), "", *_tracking_table(summary), "",
              *_concepts_table(summary), "", *_cpu(summary), "", NOTES, ""]
    return "\n".join(lines)
