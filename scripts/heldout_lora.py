"""Can a LoRA on this base learn a held-out concept? The substrate check: zero-init LoRA vs the base vs scratch.

    python scripts/heldout_lora.py --base DIR --pairs DIR --concepts-file FILE --work DIR \
        [--parts scratch,lora] [--threads 2] [--out docs/heldout_lora.md]

For each concept of the file (held-out concepts of the shipped prompt set: the generator never
trains on them), three models are scored on the concept's test pairs (photos never trained on):
the base alone; a LoRA from zero with the zoo's exact recipe (weightgen.zoo.build: ZooConfig's
defaults, the held-out split of a zoo in WORK/zoo, so the LoRAs are also the held-out oracles
the benchmark needs); and pix2pix from scratch with the base's architecture and the same steps and
batch (gan.base.train_base on that concept alone). Each is scored by L1 / PSNR / SSIM and the
perceptual style distance (gan.perceptual; lower is better).

Resumable and in parts: `--parts scratch` needs no base (run it beside the base's training);
the zoo resumes per concept; each scored concept is cached in WORK/scores/<id>.json. The
goal (#11): the LoRA beats the base on every concept, by a median of at least +5 dB PSNR, and at
least halves the style distance.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

import weightgen  # noqa: E402,F401  (sets OMP_WAIT_POLICY before torch works)
from gan.base import load_base, load_model, read_base_meta, train_base  # noqa: E402
from gan.config import BaseTrainConfig, DiscriminatorConfig, GanTrainConfig, GeneratorConfig  # noqa: E402
from gan.data import load_concept  # noqa: E402
from gan.generator import Generator  # noqa: E402
from gan.io import read_json, write_json  # noqa: E402
from gan.lora import load_adapter  # noqa: E402
from gan.metrics import evaluate_pairs  # noqa: E402
from gan.perceptual import StyleEmbedder  # noqa: E402
from prompts.identity import concept_id  # noqa: E402
from weightgen.pairs.build import read_concepts_file  # noqa: E402
from weightgen.zoo.build import build_zoo  # noqa: E402
from weightgen.zoo.config import ZooConfig, default_base_train  # noqa: E402
from weightgen.zoo.plan import ZooConcept  # noqa: E402

PARTS = ("scratch", "lora")
MODELS = ("source", "base", "lora", "scratch")  # source: the photo itself, the identity edit, for scale
GOAL_DB, GOAL_STYLE_RATIO = 5.0, 0.5


def zoo_config(args: argparse.Namespace) -> ZooConfig:
    config = ZooConfig(out=str(Path(args.work) / "zoo"), base=args.base, pairs=args.pairs, splits=("heldout",),
                       build_pairs=False, threads=args.threads)
    if args.steps:  # a smoke run; the figures in docs/ use the zoo's own steps
        config = replace(config, train=replace(config.train, max_steps=args.steps, checkpoint_steps=()))
    return config


def scratch_config(args: argparse.Namespace, recipe: ZooConfig) -> BaseTrainConfig:
    """The base's architecture, trained from scratch for the zoo LoRA's steps and batch."""
    if (Path(args.base) / "weightgen.json").is_file():
        arch = read_base_meta(args.base)["config"]
        base = BaseTrainConfig(generator=GeneratorConfig.from_dict(arch["generator"]),
                               discriminator=DiscriminatorConfig.from_dict(arch["discriminator"]),
                               train=GanTrainConfig.from_dict(arch["train"]))
    else:  # not trained yet (scratch runs beside it): the recipe it is being trained with
        base = default_base_train()
    b = base.train
    train = replace(recipe.train, lr=b.lr, lr_d=b.lr_d, gan_mode=b.gan_mode, label_smoothing=b.label_smoothing,
                    checkpoint_steps=(), eval_every=0)
    return replace(base, train=train)


def run_scratch(args: argparse.Namespace, texts: list[str], recipe: ZooConfig) -> None:
    config = scratch_config(args, recipe)
    for i, text in enumerate(texts):
        out = Path(args.work) / "scratch" / concept_id(text)
        if (out / "weightgen.json").is_file():
            continue
        t0 = time.perf_counter()
        train_base(args.pairs, [text], config, out, overwrite=True, progress=False)
        print(f"[{i + 1}/{len(texts)}] scratch {text}: {time.perf_counter() - t0:.0f} s", flush=True)


def score(args: argparse.Namespace, text: str, embedder: StyleEmbedder) -> dict:
    """Base, zoo LoRA (its last checkpoint) and scratch on the concept's test pairs; cached."""
    cid = concept_id(text)
    cache = Path(args.work) / "scores" / f"{cid}.json"
    if cache.is_file():
        return read_json(cache)
    pairs = load_concept(args.pairs, cid)
    entry = read_json(Path(args.work) / "zoo" / cid / "entry.json")
    last = Path(args.work) / "zoo" / entry["checkpoints"][-1]["path"]
    generator, _ = load_base(args.base)

    def metrics(model: torch.nn.Module) -> dict:
        return evaluate_pairs(model.eval(), pairs.test_source, pairs.test_target, embedder=embedder, device="cpu")

    row = {"id": cid, "text": text, "source": metrics(torch.nn.Identity()), "base": metrics(generator)}
    row["lora"] = metrics(load_adapter(generator, last))
    row["lora_steps"] = entry["checkpoints"][-1]["step"]
    row["scratch"] = metrics(load_model(Generator, Path(args.work) / "scratch" / cid / "generator"))
    write_json(cache, row)
    return row


def summarize(rows: list[dict]) -> dict:
    gains = [r["lora"]["psnr"] - r["base"]["psnr"] for r in rows]
    ratios = [r["lora"]["style"] / r["base"]["style"] for r in rows]
    return {
        "n": len(rows),
        "median_psnr_gain_db": statistics.median(gains),
        "min_psnr_gain_db": min(gains),
        "lora_beats_base": sum(r["lora"]["l1"] < r["base"]["l1"] and r["lora"]["psnr"] > r["base"]["psnr"]
                               for r in rows),
        "median_style_ratio": statistics.median(ratios),
        "lora_beats_scratch": sum(r["lora"]["l1"] < r["scratch"]["l1"] for r in rows),
        "median": {m: {k: statistics.median(r[m][k] for r in rows) for k in ("l1", "psnr", "ssim", "style")}
                   for m in MODELS},
    }


def write_report(path: Path, rows: list[dict], summary: dict, args: argparse.Namespace, steps: int) -> None:
    s = summary
    lines = [
        "# Held-out concepts: a zero-init LoRA on the base vs the base vs pix2pix from scratch",
        "",
        f"`python scripts/heldout_lora.py --base {args.base} --pairs {args.pairs} --concepts-file "
        f"{args.concepts_file} --work {args.work}`",
        "",
        f"{s['n']} held-out concepts of the shipped prompt set; the LoRA uses the zoo's recipe ({steps} steps); "
        f"scratch trains the base's architecture from random weights for the same {steps} steps. Test pairs "
        "only (photos never trained on). style: the perceptual style distance (lower is better); "
        "source: the unedited photo scored against the target (the identity map), for scale.",
        "",
        "| | median L1 | median PSNR | median SSIM | median style |",
        "|---|---|---|---|---|",
    ]
    for m in MODELS:
        med = s["median"][m]
        lines.append(f"| {m} | {med['l1']:.4f} | {med['psnr']:.2f} | {med['ssim']:.4f} | {med['style']:.3f} |")
    met = lambda ok: "met" if ok else "**not met**"  # noqa: E731
    lines += [
        "",
        f"- LoRA beats the base (L1 and PSNR) on {s['lora_beats_base']}/{s['n']} concepts "
        f"(goal: all; {met(s['lora_beats_base'] == s['n'])}).",
        f"- Median PSNR gain over the base {s['median_psnr_gain_db']:+.2f} dB, smallest {s['min_psnr_gain_db']:+.2f} dB "
        f"(goal: median ≥ +{GOAL_DB:.0f} dB; {met(s['median_psnr_gain_db'] >= GOAL_DB)}).",
        f"- Median style distance ratio LoRA / base {s['median_style_ratio']:.3f} "
        f"(goal: ≤ {GOAL_STYLE_RATIO}; {met(s['median_style_ratio'] <= GOAL_STYLE_RATIO)}).",
        f"- LoRA beats scratch on L1 on {s['lora_beats_scratch']}/{s['n']} concepts.",
        "",
        "| concept | base PSNR | LoRA PSNR | gain dB | scratch PSNR | base style | LoRA style | ratio | scratch style |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        b, lo, sc = r["base"], r["lora"], r["scratch"]
        lines.append(f"| {r['text']} | {b['psnr']:.2f} | {lo['psnr']:.2f} | {lo['psnr'] - b['psnr']:+.2f} | "
                     f"{sc['psnr']:.2f} | {b['style']:.3f} | {lo['style']:.3f} | {lo['style'] / b['style']:.3f} | "
                     f"{sc['style']:.3f} |")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", required=True, help="base folder (gan.base layout)")
    parser.add_argument("--pairs", required=True, help="pairs folder holding every concept of the file")
    parser.add_argument("--concepts-file", required=True, help="held-out concepts, one per line")
    parser.add_argument("--work", required=True, help="working folder: zoo/, scratch/, scores/")
    parser.add_argument("--parts", default="scratch,lora", help=f"comma list of {PARTS}")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--steps", type=int, default=0, help="training steps (0: the zoo's recipe)")
    parser.add_argument("--limit", type=int, default=0, help="only the first N concepts (0: all)")
    parser.add_argument("--out", default="docs/heldout_lora.md", help="report (markdown; .json beside it)")
    args = parser.parse_args()
    parts = [p for p in args.parts.split(",") if p]
    if not parts or any(p not in PARTS for p in parts):
        parser.error(f"--parts should be a comma list of {PARTS}, got {args.parts!r}")
    torch.set_num_threads(args.threads)
    texts = read_concepts_file(args.concepts_file)[: args.limit or None]
    recipe = zoo_config(args)
    if "scratch" in parts:
        run_scratch(args, texts, recipe)
    if "lora" in parts:
        build_zoo(recipe, [ZooConcept(t, "heldout") for t in texts])
        embedder = StyleEmbedder(threads=args.threads)
        rows = [score(args, t, embedder) for t in texts]
        summary = summarize(rows)
        out = Path(args.out)
        write_report(out, rows, summary, args, recipe.train.max_steps)
        write_json(out.with_suffix(".json"), {"summary": summary, "concepts": rows})
        print(out.read_text(encoding="utf-8"))


if __name__ == "__main__":
    main()
