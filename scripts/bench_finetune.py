"""Does `weightgen finetune --seconds 60` reach the held-out oracle's quality within the minute?

    python scripts/bench_finetune.py --zoo runs/zoo [--generator DIR] [--limit 8] [--seconds 60] \
        [--inits generated,zero] [--threads 2] [--out runs/bench-finetune] [--json docs/finetune60.json]

For the first --limit held-out concepts of the zoo, runs the real `weightgen.finetune.job.finetune`
(the CLI's code path) on the zoo's own pairs of the concept, so its test pairs are exactly those
the oracle (the concept's zoo LoRA) was measured on, with the default shipped base, generator and
zoo reference unless given. Reports per concept and init: step-0 and best test L1 within the
budget, the final L1 (does the curve turn back up before the budget ends?), the oracle's L1, and
the training seconds at which the oracle's L1 was first reached.
Resumable: a finished (concept, init) keeps its summary.json and is not rerun.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
from pathlib import Path

from weightgen.bench.runner import heldout_concepts
from weightgen.chunks.adapters import read_adapter
from weightgen.chunks.evaluate import AdapterEvaluator
from weightgen.finetune.job import FinetuneConfig, finetune

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--zoo", type=Path, required=True)
    parser.add_argument("--generator", type=Path)
    parser.add_argument("--base", type=Path, help="default: the zoo's base")
    parser.add_argument("--limit", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--inits", default="generated,zero")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--eval-every", type=int, default=10)
    parser.add_argument("--out", type=Path, default=Path("runs/bench-finetune"))
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    concepts, manifest = heldout_concepts(args.zoo)
    concepts = concepts[: args.limit]
    evaluator = AdapterEvaluator.from_zoo(args.zoo)
    rows = []
    for c in concepts:
        oracle_l1 = evaluator.evaluate(c.id, read_adapter(args.zoo / c.oracle_path)[0])["l1"]
        for init in args.inits.split(","):
            out = args.out / c.id / init
            if not (out / "summary.json").is_file():
                finetune(FinetuneConfig(concept=c.text, seconds=args.seconds, init=init, out=str(out),
                                        base=str(args.base or manifest["base"]), pairs=str(manifest["pairs"]),
                                        generator=str(args.generator) if args.generator else None,
                                        zoo=str(args.zoo), eval_every=args.eval_every, threads=args.threads,
                                        overwrite=True), progress=False)
            summary = json.loads((out / "summary.json").read_text())
            history = json.loads((out / "history.json").read_text())
            hit = next((r for r in history if r["metrics"]["l1"] <= oracle_l1), None)
            rows.append({"concept": c.text, "init": init, "oracle_l1": oracle_l1,
                         "step0_l1": summary["step0"]["l1"], "best_l1": summary["best"]["metrics"]["l1"],
                         "final_l1": summary["final"]["metrics"]["l1"],
                         "steps": summary["steps"], "train_seconds": summary["train_seconds"],
                         "wall_seconds": summary["wall_seconds"],
                         "oracle_reached_at_s": hit["seconds"] if hit else None,
                         "oracle_reached_at_step": hit["step"] if hit else None})
            r = rows[-1]
            print(f"{c.text} / {init}: L1 {r['step0_l1']:.4f} -> {r['best_l1']:.4f} in {r['steps']} steps "
                  f"(oracle {oracle_l1:.4f}, " + (f"reached at {r['oracle_reached_at_s']:.1f} s)"
                                                   if hit else "not reached)"), flush=True)
    print()
    print(f"| init | concepts | oracle reached within {args.seconds:g} s | median seconds to oracle | "
          "median best L1 / oracle L1 | final L1 within 2% of best | median steps in budget |")
    print("|---|---|---|---|---|---|---|")
    for init in args.inits.split(","):
        sel = [r for r in rows if r["init"] == init]
        reached = [r["oracle_reached_at_s"] for r in sel if r["oracle_reached_at_s"] is not None]
        times = sorted(r["oracle_reached_at_s"] if r["oracle_reached_at_s"] is not None else float("inf") for r in sel)
        med = statistics.median(times)
        print(f"| {init} | {len(sel)} | {len(reached)}/{len(sel)} | "
              f"{'>' + format(args.seconds, 'g') if med == float('inf') else format(med, '.1f')} | "
              f"{statistics.median(r['best_l1'] / r['oracle_l1'] for r in sel):.3f} | "
              f"{sum(r['final_l1'] <= 1.02 * r['best_l1'] for r in sel)}/{len(sel)} | "
              f"{statistics.median(r['steps'] for r in sel):.0f} |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
