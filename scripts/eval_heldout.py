"""Held-out concepts, no fine-tuning: does the generated LoRA beat the baselines? And is it memorized?

    python scripts/eval_heldout.py --zoo runs/zoo --generator runs/generator/generator \
        [--ddim-steps 10] [--out docs/heldout_init.md] [--json docs/heldout_init.json]

For every held-out concept of the zoo (never seen by the generator), the test-pair quality of the
base GAN with: a zero-init LoRA (= the base), the zoo mean, the nearest training concept's LoRA
(by text embedding), that LoRA plus noise, the generated LoRA (1 step and DDIM), and the held-out
oracle (the concept's own zoo LoRA). Then the memorization check of Zeng et al. (2025): the L2
distance from each generated adapter to its nearest training checkpoint, against the distance from
each training checkpoint to the nearest checkpoint of another concept. A generator that copies
its training set lands much closer to a training checkpoint than concepts are to each other.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch

from weightgen.chunks.adapters import read_adapter
from weightgen.chunks.dataset import read_zoo_blocks, zoo_checkpoints
from weightgen.chunks.evaluate import AdapterEvaluator
from weightgen.chunks.stats import memorization_distances
from weightgen.finetune.starts import (
    InitSources,
    ZooReference,
    describe_nearest,
    init_weights,
)
from weightgen.generator.pipeline import WeightGenPipeline

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

KINDS = ("zero", "mean", "nearest", "nearest-noise", "generated", "generated-ddim")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--zoo", type=Path, required=True)
    parser.add_argument("--generator", type=Path, required=True)
    parser.add_argument("--ddim-steps", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, help="write the markdown report here")
    parser.add_argument("--json", type=Path, help="write per-concept figures here")
    args = parser.parse_args()


    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    pipe = WeightGenPipeline.from_pretrained(args.generator)
    train = read_zoo_blocks(args.zoo, pipe.layout.block_size, "train")
    ref = ZooReference.from_blocks(train, layout=pipe.layout, source=f"zoo {args.zoo}")
    sources = InitSources(reference=ref, pipeline=pipe, seed=args.seed, ddim_steps=args.ddim_steps)
    evaluator = AdapterEvaluator.from_zoo(args.zoo)
    held, _ = zoo_checkpoints(args.zoo, "heldout")
    oracle_path = {}
    for ck in held:
        oracle_path[ck.text] = ck.path  # manifest order: the last checkpoint wins
    layout = pipe.layout
    rows = []
    generated_blocks = []
    for i, (text, path) in enumerate(oracle_path.items()):
        oracle_sd, _ = read_adapter(args.zoo / path)
        row = {"concept": text, **describe_nearest(text, sources), "l1": {}, "psnr": {}, "l2_to_oracle": {}}
        oracle_blocks = layout.to_blocks(oracle_sd)
        for kind in (*KINDS, "conditional", "oracle"):
            if kind == "oracle":
                sd = oracle_sd
            elif kind == "conditional":  # guidance 1: the text alone, whatever the generator's default
                sd = layout.from_blocks(pipe.generate_blocks([text], seed=args.seed, guidance_scale=1.0)[0])
            else:
                sd = init_weights(kind, text, sources)
            m = evaluator.evaluate(text, sd)
            row["l1"][kind], row["psnr"][kind] = m["l1"], m["psnr"]
            blocks = torch.zeros_like(oracle_blocks) if sd is None else layout.to_blocks(sd)
            row["l2_to_oracle"][kind] = float((blocks - oracle_blocks).norm())
            if kind == "generated":
                generated_blocks.append(blocks)
        rows.append(row)
        print(f"[{i + 1}/{len(oracle_path)}] {text}: " + "  ".join(f"{k} {v:.4f}" for k, v in row["l1"].items()),
              file=sys.stderr, flush=True)

    # memorization check, raw weights over all LoRA values
    d = memorization_distances(torch.stack(generated_blocks).flatten(1), train.blocks.flatten(1),
                               torch.tensor([ck.concept_index for ck in train.checkpoints]))
    memo = {
        "generated_to_nearest_train_ckpt_median": float(d["generated_to_train"].median()),
        "train_ckpt_to_nearest_other_concept_median": float(d["train_to_other_concept"].median()),
        "train_ckpt_within_concept_median": float(d["within_concept"].median()),
        "ratio": float(d["generated_to_train"].median() / d["train_to_other_concept"].median()),
    }
    args.guidance = pipe.guidance_scale
    text = report(rows, memo, time.perf_counter() - t0, args)
    print(text)
    if args.out:
        args.out.write_text(text)
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "memorization": memo}, indent=1))


def report(rows: list[dict], memo: dict, seconds: float, args) -> str:
    kinds = (*KINDS, "conditional", "oracle")
    names = {"zero": "zero-init LoRA (= base)", "mean": "zoo mean", "nearest": "nearest concept's LoRA",
             "nearest-noise": "nearest + noise", "generated": f"generated, 1 step (guidance {args.guidance:g})",
             "conditional": "generated, 1 step, guidance 1 (text only)",
             "generated-ddim": f"generated, DDIM {args.ddim_steps}", "oracle": "held-out oracle LoRA"}
    lines = [f"## Held-out concepts without fine-tuning ({len(rows)} concepts, {seconds:.0f} s)", "",
             "| init | mean test L1 | median test L1 | mean PSNR dB | generated better on | L2 to oracle (median) |",
             "|---|---|---|---|---|---|"]
    for k in kinds:
        l1 = [r["l1"][k] for r in rows]
        wins = "" if k in ("generated",) else f"{sum(r['l1']['generated'] < r['l1'][k] for r in rows)}/{len(rows)}"
        lines.append(f"| {names[k]} | {statistics.mean(l1):.4f} | {statistics.median(l1):.4f} | "
                     f"{statistics.mean(r['psnr'][k] for r in rows):.2f} | {wins} | "
                     f"{statistics.median(r['l2_to_oracle'][k] for r in rows):.3f} |")
    lines += ["", "| concept | nearest training concept (cos) | zero | mean | nearest | generated | DDIM | oracle |",
              "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['concept']} | {r['nearest_concept']} ({r['cosine']:.2f}) | " + " | ".join(
            f"{r['l1'][k]:.4f}" for k in ("zero", "mean", "nearest", "generated", "generated-ddim", "oracle")) + " |")
    lines += ["", "Memorization check (L2 over all LoRA values, medians): generated adapter to its nearest training "
              f"checkpoint **{memo['generated_to_nearest_train_ckpt_median']:.3f}**; a training checkpoint to the "
              f"nearest checkpoint of another concept {memo['train_ckpt_to_nearest_other_concept_median']:.3f}; "
              f"two checkpoints of one concept {memo['train_ckpt_within_concept_median']:.3f}. "
              f"Ratio {memo['ratio']:.2f} (well below 1 would mean copying).", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
