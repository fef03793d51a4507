"""Benchmarks of the weight generator and `weightgen init`.

    python scripts/bench_init.py speed   [--model-size small] [--threads 0] [--repeats 5] [--json F]
    python scripts/bench_init.py quality [--steps 1500] [--rank 16] [--threads 1] [--json F]

speed: warm in-process generation of all chunks of one concept, of 64 concepts in one call, and a
cold `python -m weightgen init` process (imports, model loads, generation, writing). The network
has random weights (speed does not depend on training) over the chunk layout of the real GAN's
default LoRA (gan.generator.Generator + gan.config.LoraSettings: ~49k values, ~194 blocks of 256),
with the MiniLM text encoder. On a CPU shared with other busy processes also run it with
OMP_WAIT_POLICY=PASSIVE (what the `init` verb sets for itself): spinning OpenMP threads otherwise
make small calls 10-30x slower.

quality: a weight-space check on a synthetic zoo over the same layout. Each concept's true LoRA is
a fixed mean plus a variation that is linear in its MiniLM embedding and spans `--rank`
directions; 2 noisy checkpoints per concept; 56 concepts train, 8 are held out. Reports the L2
distance to the held-out concepts' true weights of: zero-init, the zoo mean, the nearest training
concept by text embedding, the generator (1 step and DDIM-10), and the held-out oracle checkpoint;
and the memorization check (generated -> nearest training checkpoint vs training checkpoint ->
nearest checkpoint of another concept). It says nothing about GAN quality: that needs the real zoo.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from peft import LoraConfig, get_peft_model
from peft.utils import get_peft_model_state_dict

from gan.config import LoraSettings
from gan.generator import Generator
from weightgen.chunks.dataset import ChunkData
from weightgen.chunks.layout import ChunkLayout
from weightgen.chunks.stats import memorization_distances
from weightgen.generator.config import (
    MODEL_SIZES,
    DiffusionConfig,
    GeneratorTrainConfig,
)
from weightgen.generator.diffusion import WeightDiffusion
from weightgen.generator.network import WeightUNet1D
from weightgen.generator.pipeline import WeightGenPipeline
from weightgen.generator.training import GeneratorTrainer
from weightgen.text_encoders import load_text_encoder

CONCEPT = "van gogh style"
ROOT = Path(__file__).resolve().parent.parent


def real_lora_layout(block_size: int):
    """The chunk layout of the default LoRA on the default GAN generator."""

    settings = LoraSettings()
    model = get_peft_model(Generator(), LoraConfig(r=settings.rank, lora_alpha=settings.alpha,
                                                   target_modules=list(settings.target_modules)))
    sd = {k if k.startswith("base_model") else f"base_model.model.{k}": v
          for k, v in get_peft_model_state_dict(model).items()}
    config = json.loads(json.dumps(model.peft_config["default"].to_dict(), default=list))
    return ChunkLayout.from_state_dict(sd, block_size, config, base_fingerprint="bench")


def timed(fn, repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


def report(figures: dict, json_path: Path | None) -> None:
    for key, value in figures.items():
        print(f"{key:34s} {value:.4f}" if isinstance(value, float) else f"{key:34s} {value}")
    if json_path:
        json_path.write_text(json.dumps(figures, indent=2) + "\n")


# ---- speed ------------------------------------------------------------------------------------


def build_generator(out: Path, model_size: str, block_size: int):

    layout = real_lora_layout(block_size)
    encoder = load_text_encoder("minilm")
    torch.manual_seed(0)
    model = WeightUNet1D(**MODEL_SIZES[model_size], block_size=block_size, text_dim=encoder.dim,
                         max_chunk_index=layout.n_blocks).eval()
    torch.nn.init.normal_(model.conv_out.weight, std=0.01)
    pipe = WeightGenPipeline(model, encoder, layout, WeightDiffusion(DiffusionConfig()), {"step": 0})
    pipe.save_pretrained(out)
    return pipe


def speed(args) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="bench-init-"))
    try:
        pipe = build_generator(tmp / "generator", args.model_size, args.block_size)
        concepts = [f"{CONCEPT} number {i}" for i in range(args.concepts)]
        pipe.generate_blocks([CONCEPT])  # warm up
        pipe.generate_blocks(concepts[: args.batch], concepts_per_batch=args.batch)
        sweep = {}
        for per_call in (4, 8, 16, 32):  # how many concepts should share a network call
            sweep[per_call] = round(timed(lambda: pipe.generate_blocks(concepts, concepts_per_batch=per_call), 1)[0], 3)
        one = timed(lambda: pipe.generate_blocks([CONCEPT]), args.repeats)
        one_sd = timed(lambda: pipe.generate([CONCEPT]), args.repeats)  # + reassembly into a state dict
        many = timed(lambda: pipe.generate_blocks(concepts, concepts_per_batch=args.batch), max(1, args.repeats // 2))

        env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)} if args.threads else dict(os.environ)
        cmd = [sys.executable, "-m", "weightgen", "init", "--generator", str(tmp / "generator"),
               "--concept", CONCEPT, "--out", str(tmp / "adapter"), "--overwrite"]
        cold = []
        for _ in range(max(1, args.repeats // 2)):
            t0 = time.perf_counter()
            proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
            cold.append(time.perf_counter() - t0)
            if proc.returncode:
                raise SystemExit(f"weightgen init failed: {proc.stderr.strip()[-2000:]}")
        return {
            "model_size": args.model_size,
            "generator_params": sum(p.numel() for p in pipe.model.parameters()),
            "layout_blocks": pipe.layout.n_blocks,
            "layout_values": pipe.layout.n_params,
            "block_size": args.block_size,
            "torch_threads": torch.get_num_threads(),
            "cpu_count": os.cpu_count(),
            "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "(default)"),
            "load_average_1min": os.getloadavg()[0],
            "warm_one_concept_s": statistics.median(one),
            "warm_one_concept_state_dict_s": statistics.median(one_sd),
            f"warm_{args.concepts}_concepts_s": statistics.median(many),
            "by_concepts_per_call_s": sweep,
            "cold_cli_init_s": statistics.median(cold),
            "cold_cli_init_min_s": min(cold),
        }
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# ---- quality on a synthetic zoo -------------------------------------------------------------


def synthetic_zoo(layout, encoder, texts: list[str], rank: int, checkpoints: int, seed: int = 0):
    """(true blocks (C, N, b), checkpoint blocks (C, K, N, b)): mean + linear-in-text variation."""
    g = torch.Generator().manual_seed(seed)
    n, b = layout.n_blocks, layout.block_size
    ones = {t.key: torch.ones(t.shape, dtype=getattr(torch, t.dtype)) for t in layout.tensors}
    real = layout.to_blocks(ones) > 0  # (N, b): padding stays zero, as in real adapters
    emb = encoder.embed(texts)  # (C, 384)
    mean = 0.5 * torch.randn(n * b, generator=g)
    proj = (torch.randn(emb.shape[1], rank, generator=g) * 3 / rank**0.5) @ torch.randn(rank, n * b, generator=g)
    true = (mean + emb @ proj).view(-1, n, b) * real
    noise = 0.05 * torch.randn((len(texts), checkpoints, n, b), generator=g) * real
    return true, true[:, None] + noise


def quality(args) -> dict:
    seeds = json.loads((ROOT / "prompts" / "data" / "seeds.json").read_text())
    texts = [t for cat in seeds["categories"].values() for t in cat["seeds"]]
    random.Random(0).shuffle(texts)
    texts = texts[: args.train_concepts + args.heldout]
    train, held = texts[: args.train_concepts], texts[args.train_concepts :]
    encoder = load_text_encoder("minilm")
    layout = real_lora_layout(args.block_size)
    n, b, K = layout.n_blocks, layout.block_size, 2
    true, ckpts = synthetic_zoo(layout, encoder, texts, args.rank, K)
    raw = ckpts[: len(train)].reshape(-1, n, b)  # (train*K, N, b)
    layout = layout.fit_statistics(raw)
    data = ChunkData(
        blocks=layout.normalize(raw).reshape(-1, b),
        block_index=torch.arange(n).repeat(raw.shape[0]),
        concept_index=torch.arange(len(train)).repeat_interleave(K * n),
        checkpoint_index=torch.arange(raw.shape[0]).repeat_interleave(n),
        concepts=train,
        layout=layout,
    )
    overrides = {} if not args.paper_plain else dict(index_table=False, index_template=False, chunk_text_rank=0)
    MODEL_SIZES["bench"] = {**MODEL_SIZES[args.model_size], **overrides}
    config = GeneratorTrainConfig(steps=args.steps, batch_size=256, lr=1e-3, warmup_steps=100, model_size="bench",
                         cpu=True, checkpoint_every=10**9, log_every=100, ema_decay=0.995)
    tmp = Path(tempfile.mkdtemp(prefix="bench-quality-"))
    try:
        trainer = GeneratorTrainer(config, data, tmp, text_encoder=encoder)
        t0 = time.perf_counter()
        trainer.run_loop(progress=not args.no_progress)
        train_s = time.perf_counter() - t0
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    pipe = trainer.pipeline()

    held_true = true[len(train):]  # (H, N, b)

    def dist(x):
        return (x - held_true).flatten(1).norm(dim=1)  # (H,)

    emb = encoder.embed(texts)
    nearest = (emb[len(train):] @ emb[: len(train)].T).argmax(1)
    generated = pipe.generate_blocks(held, seed=0)
    rows = {
        "zero_init": dist(torch.zeros_like(held_true)),
        "zoo_mean": dist(raw.mean(0).expand_as(held_true)),
        "nearest_concept_by_text": dist(ckpts[nearest, 0]),
        "generated_1_step": dist(generated),
        "generated_ddim_10": dist(pipe.generate_blocks(held, seed=0, steps=10)),
        "heldout_oracle_checkpoint": dist(ckpts[len(train):, 0]),
    }
    memo = memorization_distances(generated.flatten(1), raw.flatten(1), torch.arange(len(train)).repeat_interleave(K))
    figures = {
        "train_concepts": len(train), "heldout_concepts": len(held), "rank": args.rank, "steps": args.steps,
        "model": args.model_size + (" (paper-plain: no chunk table/template/linear head)" if args.paper_plain else ""),
        "train_seconds": train_s, "final_loss": trainer.history[-1]["loss"],
        "threads": torch.get_num_threads(),
    }
    zero = rows["zero_init"]
    for name, d in rows.items():
        figures[f"heldout_L2_{name}"] = float(d.mean())
        figures[f"heldout_L2_rel_zero_{name}"] = float((d / zero).mean())
    figures["train_L2_generated_1_step"] = float(
        (pipe.generate_blocks(train[:8], seed=0) - true[:8]).flatten(1).norm(dim=1).mean())
    figures["memo_generated_to_nearest_train_ckpt"] = float(memo["generated_to_train"].mean())
    figures["memo_train_ckpt_to_nearest_other_concept"] = float(memo["train_to_other_concept"].mean())
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="mode", required=True)
    for mode in ("speed", "quality"):
        p = sub.add_parser(mode)
        p.add_argument("--model-size", default="small")
        p.add_argument("--block-size", type=int, default=256)
        p.add_argument("--threads", type=int, default=0 if mode == "speed" else 1, help="torch threads (0: default)")
        p.add_argument("--json", type=Path, help="also write the figures here")
        if mode == "speed":
            p.add_argument("--repeats", type=int, default=5)
            p.add_argument("--concepts", type=int, default=64)
            p.add_argument("--batch", type=int, default=8, help="concepts per network call")
        else:
            p.add_argument("--steps", type=int, default=1500)
            p.add_argument("--rank", type=int, default=16, help="directions of concept variation in the zoo")
            p.add_argument("--train-concepts", type=int, default=56)
            p.add_argument("--heldout", type=int, default=8)
            p.add_argument("--paper-plain", action="store_true", help="disable the per-chunk table/template/linear head")
            p.add_argument("--no-progress", action="store_true")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    if args.threads:
        torch.set_num_threads(args.threads)
    report(speed(args) if args.mode == "speed" else quality(args), args.json)


if __name__ == "__main__":
    main()
