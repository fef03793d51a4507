"""Measure the GAN's sizes and training-step speed on this machine; prints a markdown table.

    python scripts/bench_gan.py [--steps 20] [--threads 1 2] [--image-size 64] [--batch-size 8]

Sizes: parameters of the default generator, discriminator and LoRA (default LoraSettings).
Speed: seconds per training step (one D update + one G update, batch 8) for a LoRA step (base
frozen) and a full-generator step, on synthetic pairs, after 3 warm-up steps; median over --steps.
Threads are set here only (torch.set_num_threads), per row.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

import weightgen  # noqa: E402,F401  (sets OMP_WAIT_POLICY before torch loads)
from gan.config import (  # noqa: E402
    DiscriminatorConfig,
    GanTrainConfig,
    GeneratorConfig,
    LoraSettings,
)
from gan.data import PairedData  # noqa: E402
from gan.discriminator import Discriminator  # noqa: E402
from gan.generator import Generator  # noqa: E402
from gan.lora import add_lora, count_lora_params  # noqa: E402
from gan.trainer import Pix2PixTrainer  # noqa: E402
from weightgen.pairs.synthetic import write_synthetic_pairs  # noqa: E402


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def step_seconds(data: PairedData, lora: bool, steps: int, batch_size: int, image_size: int) -> list[float]:
    torch.manual_seed(0)
    g = Generator.from_gan_config(GeneratorConfig(image_size=image_size))
    d = Discriminator.from_gan_config(DiscriminatorConfig())
    if lora:
        g = add_lora(g, LoraSettings())
    trainer = Pix2PixTrainer(g, d, data, GanTrainConfig(batch_size=batch_size, max_steps=steps, eval_every=0),
                             progress=False)
    times = []
    for i in range(steps + 3):
        t0 = time.perf_counter()
        trainer.run_step(next(trainer.sampler))
        if i >= 3:  # warm-up: allocator and oneDNN kernel selection
            times.append(time.perf_counter() - t0)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=8)
    args = parser.parse_args()

    g = Generator.from_gan_config(GeneratorConfig(image_size=args.image_size))
    n_g, n_d = n_params(g), n_params(Discriminator())
    n_lora = count_lora_params(add_lora(g, LoraSettings()))
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.1f} (1 min), torch {torch.__version__}\n")
    print("| network | parameters |\n|---|---|")
    print(f"| generator | {n_g:,} |\n| discriminator (PatchGAN) | {n_d:,} |")
    print(f"| LoRA (default: rank 4, ResNet convs rank 2) | {n_lora:,} ({100 * n_lora / n_g:.2f}% of G) |\n")

    with tempfile.TemporaryDirectory() as tmp:
        data = PairedData.load(write_synthetic_pairs(tmp, ["bench"], n_train=32, n_test=8, image_size=args.image_size))
        print(f"| step (D + G, batch {args.batch_size}, {args.image_size}x{args.image_size}) | threads | "
              "median s/step | mean s/step | steps/min |\n|---|---|---|---|---|")
        for threads in args.threads:
            torch.set_num_threads(threads)
            for lora in (True, False):
                t = step_seconds(data, lora, args.steps, args.batch_size, args.image_size)
                med = statistics.median(t)
                print(f"| {'LoRA (base frozen)' if lora else 'full generator'} | {threads} | {med:.3f} | "
                      f"{statistics.mean(t):.3f} | {60 / med:.0f} |", flush=True)


if __name__ == "__main__":
    main()
