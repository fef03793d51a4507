"""Where a zoo LoRA step's time goes, and seconds per concept-step one at a time vs C concepts per pass.

    python scripts/bench_zoo_speed.py [--parts profile,steps,curves] [--slots 2,4,8] [--threads 1,2] \
        [--convs auto,grouped] [--precision no|bf16] [--steps 25] [--base DIR --exclude FILE --concepts 8] \
        [--out docs/zoo_speed.json]

The real recipe: a freshly built base (gan.base.build_models with the zoo's default_base_train(): residual
G, spectral-norm D, 64x64), the default LoRA (rank 4, rank 2 on the ResNet convs) and default_zoo_train()
(batch 8, LoRA lr 1e-3, D lr 2e-4), on real pairs (the first concepts of --pairs, 128x128 train canvases).

- profile: one sequential step (gan.trainer.Pix2PixTrainer.run_step's stages, timed one by one with
  simple timers) and one test evaluation, medians over --steps steps.
- steps: seconds per concept-step of one training step, sequential (gan.trainer.Pix2PixTrainer.run_step)
  and batched (gan.multi_trainer.MultiLoraTrainer.run_step over C slots, counted C concept-steps),
  process CPU time and wall time, the cases interleaved --reps times; evaluation excluded.
  --convs: the slots' convs as the device picks (auto: slot by slot on the CPU) or grouped.
  One --precision per process (accelerate fixes it for the process).
- curves: --concepts training concepts (the first of --pairs not listed in --exclude, the held-out
  concepts: never tune on them) trained 400 steps on a trained --base with the zoo recipe, their L1
  on 16 fixed crops of their train canvases every 25 steps and their test L1; then every rule of a
  small grid (patience x min_delta, gan.convergence) replayed on those curves: where it stops each
  concept, and how much of the 400-step run's gain in test L1 (base -> mean of its 5 checkpoints) the
  stopped run's 5 checkpoints keep. A stopped run is a prefix of the 400-step run, so replaying is exact.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import time
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

import weightgen  # noqa: E402,F401  (sets OMP_WAIT_POLICY before torch works)
from gan.base import build_models, load_base  # noqa: E402
from gan.config import ConvergenceConfig, LoraSettings  # noqa: E402
from gan.convergence import ConvergenceSchedule, FixedSchedule  # noqa: E402
from gan.data import PairedData, read_manifest  # noqa: E402
from gan.io import write_json  # noqa: E402
from gan.lora import add_lora  # noqa: E402
from gan.losses import GAN_LOSSES, discriminator_losses, generator_losses  # noqa: E402
from gan.metrics import evaluate_pairs  # noqa: E402
from gan.multi_trainer import MultiLoraTrainer, SlotJob  # noqa: E402
from gan.trainer import Pix2PixTrainer  # noqa: E402
from prompts.identity import concept_id  # noqa: E402
from weightgen.zoo.config import checkpoint_steps, default_base_train, default_zoo_train  # noqa: E402

WARMUP = 5
CONVS = {"auto": None, "grouped": True, "looped": False}  # --convs -> MultiLoraTrainer(grouped=...)


def profile(data: PairedData, steps: int) -> dict:
    """Median milliseconds of each stage of one sequential LoRA step, and of one test evaluation."""
    g, d = build_models(default_base_train())
    model, cfg = add_lora(g, LoraSettings()), default_zoo_train()
    opt_g = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=cfg.lr, betas=cfg.betas)
    opt_d = torch.optim.Adam(d.parameters(), lr=cfg.lr_d, betas=cfg.betas)
    loss, sampler = GAN_LOSSES[cfg.gan_mode], data.sampler(cfg.batch_size, 0, cfg.flip)
    names = ["sampler (crops of the canvases)", "G forward", "D: 2 forwards + backward", "D Adam",
             "G: D forward + losses", "G backward (through D)", "G Adam"]
    times: dict[str, list[float]] = {n: [] for n in names + ["step"]}
    model.train()
    d.train()
    for i in range(steps + WARMUP):
        t = [time.perf_counter()]
        source, real = next(sampler)
        t.append(time.perf_counter())
        fake = model(source)
        t.append(time.perf_counter())
        opt_d.zero_grad(set_to_none=True)
        discriminator_losses(d, source, real, fake, loss, cfg.label_smoothing)["loss_D"].backward()
        t.append(time.perf_counter())
        opt_d.step()
        t.append(time.perf_counter())
        opt_g.zero_grad(set_to_none=True)
        d.requires_grad_(False)
        g_loss = generator_losses(d, source, real, fake, loss, cfg.lambda_l1)["loss_G"]
        t.append(time.perf_counter())
        g_loss.backward()
        d.requires_grad_(True)
        t.append(time.perf_counter())
        opt_g.step()
        t.append(time.perf_counter())
        if i >= WARMUP:
            for name, a, b in zip(names, t, t[1:]):
                times[name].append(b - a)
            times["step"].append(t[-1] - t[0])
    evals = []
    for _ in range(5):
        t0 = time.perf_counter()
        evaluate_pairs(model, data.test_source, data.test_target, batch_size=max(cfg.batch_size, 16))
        evals.append(time.perf_counter() - t0)
    ms = {n: round(1000 * statistics.median(v), 1) for n, v in times.items()}
    return {"ms": ms, "eval_ms": round(1000 * statistics.median(evals), 1), "n_test": data.n_test}


class _Case:
    """One way to train: the sequential trainer (slots 0) or C slots of the batched one, ready to step."""

    def __init__(self, g, d, datas: list[PairedData], slots: int, precision: str, grouped: bool | None):
        cfg = replace(default_zoo_train(), max_steps=10**6, eval_every=0, mixed_precision=precision, cpu=True)
        self.concepts = max(slots, 1)
        if slots == 0:
            trainer = Pix2PixTrainer(add_lora(copy.deepcopy(g), LoraSettings()), copy.deepcopy(d), datas[0], cfg,
                                     progress=False)
            self.step = lambda: trainer.run_step(next(trainer.sampler))
        else:
            multi = MultiLoraTrainer(add_lora(copy.deepcopy(g), LoraSettings()), d, cfg, slots, grouped=grouped)
            batch = [multi.start_slot(SlotJob(str(i), datas[i % len(datas)]), FixedSchedule(10**6, ()))
                     for i in range(slots)]
            self.step = lambda: multi.run_step(batch)
        for _ in range(3):  # warm-up: allocator, oneDNN primitives
            self.step()

    def time(self, concept_steps: int) -> tuple[float, float]:
        """(process CPU seconds, wall seconds) per concept-step over about `concept_steps` concept-steps."""
        steps = max(1, concept_steps // self.concepts)
        c0, w0 = time.process_time(), time.perf_counter()
        for _ in range(steps):
            self.step()
        n = steps * self.concepts
        return (time.process_time() - c0) / n, (time.perf_counter() - w0) / n


def per_concept_step(cases: dict[str, _Case], concept_steps: int, reps: int) -> dict[str, dict[str, float]]:
    """Median CPU and wall seconds per concept-step of each case, the cases interleaved `reps` times
    (so a change in the machine's load falls on every case alike)."""
    times: dict[str, list[tuple[float, float]]] = {k: [] for k in cases}
    for _ in range(reps):
        for key, case in cases.items():
            times[key].append(case.time(concept_steps))
    return {k: {"cpu": round(statistics.median(c for c, _ in v), 4), "wall": round(statistics.median(w for _, w in v), 4)}
            for k, v in times.items()}


def curves(base_dir: str, datas: dict[str, PairedData], precision: str = "no", every: int = 25, steps: int = 400) -> dict:
    """Validation and test L1 curves of zoo LoRAs, all concepts in one pass (each trains as if alone)."""
    g, d = load_base(base_dir)
    cfg = replace(default_zoo_train(), max_steps=steps, eval_every=every, mixed_precision=precision,
                  checkpoint_steps=checkpoint_steps(steps, 5, 0.25))
    never = ConvergenceConfig(every=every, patience=10**6, min_steps=10**6)  # checks only: runs to the cap, then 400
    trainer = MultiLoraTrainer(add_lora(g, LoraSettings()), d, cfg, len(datas), val_crops=never.val_crops)
    out = {}
    for r in trainer.run([SlotJob(cid, data) for cid, data in datas.items()],
                         lambda: ConvergenceSchedule(never, steps, 5, 0.25)):
        out[r.job.name] = {"checks": r.checks, "test_l1": [[h["step"], h["metrics"]["l1"]] for h in r.history]}
    return out


def replay(curves: dict, patience: int, min_delta: float, min_steps: int = 100, max_steps: int = 400) -> dict:
    """One convergence rule on recorded curves: each concept's run length and the share of the gain it keeps
    (the test L1 at a checkpoint step is the nearest recorded one: they are 25 steps apart)."""
    ends, kept, ratio = [], [], []
    for v in curves.values():
        test = dict((int(s), x) for s, x in v["test_l1"])
        at = lambda step: test[min(test, key=lambda s: abs(s - step))]  # noqa: E731  (tests every 25 steps)
        schedule = ConvergenceSchedule(ConvergenceConfig(every=25, patience=patience, min_delta=min_delta,
                                                         min_steps=min_steps), max_steps, 5, 0.25)
        for step, value in v["checks"]:
            if schedule.end is None:
                schedule.observe(step, value)
        full = statistics.mean(at(s) for s in checkpoint_steps(max_steps, 5, 0.25))
        stopped = statistics.mean(at(s) for s in schedule.checkpoint_steps)
        ends.append(schedule.end)
        kept.append((test[0] - stopped) / (test[0] - full))
        ratio.append(stopped / full)
    return {"patience": patience, "min_delta": min_delta, "ends": ends, "mean_steps": round(statistics.mean(ends)),
            "gain_kept_median": round(statistics.median(kept), 3), "gain_kept_min": round(min(kept), 3),
            "test_l1_ratio_mean": round(statistics.mean(ratio), 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pairs", default="runs/base_v2/pairs")
    parser.add_argument("--parts", default="profile,steps")
    parser.add_argument("--slots", default="2,4,8")
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--precision", default="no", choices=("no", "bf16"))
    parser.add_argument("--convs", default="auto")
    parser.add_argument("--steps", type=int, default=16, help="steps: concept-steps per timing")
    parser.add_argument("--reps", type=int, default=3, help="steps: interleaved timings per case")
    parser.add_argument("--base", default="runs/balance/res+sn/base", help="curves: a trained base")
    parser.add_argument("--exclude", default="runs/base_v2/heldout_concepts.txt", help="curves: held-out concepts")
    parser.add_argument("--concepts", type=int, default=8, help="curves: training concepts")
    parser.add_argument("--skip", type=int, default=0, help="curves: skip the first N of them")
    parser.add_argument("--out", type=Path, default=Path("docs/zoo_speed.json"))
    args = parser.parse_args()
    parts = args.parts.split(",")
    ids = sorted(read_manifest(args.pairs)["concepts"])[:8]
    datas = [PairedData.load(args.pairs, [cid]) for cid in ids]
    result: dict = json.loads(args.out.read_text()) if args.out.exists() else {}
    result["load"] = os.getloadavg()
    if "profile" in parts:
        torch.set_num_threads(1)
        result["profile"] = profile(datas[0], args.steps)
        print(json.dumps(result["profile"], indent=1), flush=True)
    if "steps" in parts:
        rows = result.setdefault("per_concept_step", {})
        g, d = build_models(default_base_train())
        for threads in (int(t) for t in args.threads.split(",")):
            torch.set_num_threads(threads)
            cases = {f"threads={threads} precision={args.precision} sequential": _Case(g, d, datas, 0, args.precision, None)}
            for convs in args.convs.split(","):
                for slots in (int(c) for c in args.slots.split(",")):
                    key = f"threads={threads} precision={args.precision} slots={slots} convs={convs}"
                    cases[key] = _Case(g, d, datas, slots, args.precision, CONVS[convs])
            measured = per_concept_step(cases, args.steps, args.reps)
            for key, value in measured.items():
                rows[key] = {**value, "load": round(os.getloadavg()[0], 1)}
                print(f"{key}: {value['cpu']:.3f} CPU s, {value['wall']:.3f} wall s per concept-step", flush=True)
            del cases
            write_json(args.out, result)
    if "curves" in parts:
        torch.set_num_threads(1)
        held = {concept_id(t.strip()) for t in Path(args.exclude).read_text().splitlines() if t.strip()}
        train = [cid for cid in sorted(read_manifest(args.pairs)["concepts"]) if cid not in held]
        train = train[args.skip:args.skip + args.concepts]
        recorded = curves(args.base, {cid: PairedData.load(args.pairs, [cid]) for cid in train}, args.precision)
        result["convergence"] = {"base": args.base, "precision": args.precision, "curves": recorded,
                                 "rules": [replay(recorded, p, md) for md in (0.01, 0.02, 0.03, 0.05) for p in (1, 2, 3)]}
        for row in result["convergence"]["rules"]:
            print(row, flush=True)
    write_json(args.out, result)


if __name__ == "__main__":
    main()
