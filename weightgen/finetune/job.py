"""`weightgen finetune`: a pix2pix-style LoRA for a new concept in under a minute (the product's main job).

The flow: the concept's pairs (built with the editor into <out>/pairs, resumable, or taken from an
existing pairs folder) -> the frozen base GAN -> the LoRA's starting weights (an init kind of
weightgen.finetune.starts, `generated` by default, or an adapter folder) -> the cGAN + L1 fine-tune within a
wall-clock budget. The best adapter so far (lowest test L1) is always on disk, so Ctrl-C or a kill
leaves something usable.

    <out>/pairs/         the concept's pair dataset (reused by a rerun)
    <out>/adapter/       the best adapter: peft folder + weightgen.json (concept, init, step, seconds, metrics)
    <out>/history.json   every evaluation: step, training seconds, losses, test L1 / PSNR / SSIM / style distance
    <out>/summary.json   init, step-0 and best quality, steps, seconds, init, load and style-scoring time
    <out>/curve.png      test L1, PSNR and style distance against training seconds (steps on the top axis)
    <out>/grid.png       source | target | base | init | fine-tuned on the test pairs

    summary = finetune(FinetuneConfig(concept="van gogh style", seconds=60))
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import torch
from rich.console import Console

from gan.base import load_base
from gan.config import GanTrainConfig, LoraSettings
from gan.data import PairedData, load_concept
from gan.io import write_json
from gan.lora import adapter_sidecar, count_lora_params
from gan.lora_training import train_lora
from gan.metrics import StyleScorer
from gan.perceptual import StyleEmbedder
from weightgen import __version__
from weightgen.chunks.adapters import write_adapter
from weightgen.errors import USER_ERRORS, WeightgenError
from weightgen.finetune.config import (
    GENERATED_KINDS,
    OUTPUT_FILES,
    REFERENCE_KINDS,
    SUMMARY_FORMAT,
    FinetuneConfig,
)
from weightgen.finetune.report import print_summary, write_before_after, write_curve
from weightgen.finetune.starts import resolve_init
from weightgen.generator.pipeline import generator_base_dir
from weightgen.pairs.build import build_concept_pairs
from weightgen.pairs.config import PairsConfig
from weightgen.shipped import DEFAULT_BASE_DIR

EvalCallback = Callable[[int, dict], None]  # (step, history record) after each evaluation


# -- the best adapter, always on disk ------------------------------------------------------------------------------

def lora_state(generator: torch.nn.Module, adapter_name: str = "default") -> dict[str, torch.Tensor]:
    """The LoRA tensors of a generator peft injected into, under the names peft saves them with.

    The trainer only hands its callback a record, but the LoRA layers live inside the generator
    module itself, so reading them there gives what `get_peft_model_state_dict` would.
    """
    tag = f".{adapter_name}."
    return {"base_model.model." + k.replace(tag, "."): v.detach().to("cpu", copy=True)
            for k, v in generator.state_dict().items() if "lora_" in k and tag in k}


class BestAdapter:
    """Evaluation callback: keeps every record and, on a new lowest test L1, rewrites <out>/adapter.

    The swap renames the old folder aside before the new one moves in, so a kill at any moment
    leaves <out>/adapter (or, within a rename, <out>/.adapter-prev) as a complete adapter.
    """

    def __init__(self, generator, out: Path, adapter_config: dict, meta: dict, then: EvalCallback | None = None):
        self.generator, self.path, self.meta, self.then = generator, out / "adapter", meta, then
        self.adapter_config = {**adapter_config, "inference_mode": True}
        self.records: list[dict] = []
        self.best: dict | None = None
        self.best_state: dict[str, torch.Tensor] | None = None
        self.init_state: dict[str, torch.Tensor] | None = None

    def __call__(self, step: int, record: dict) -> None:
        self.records.append(record)
        if step == 0 and self.init_state is None:
            self.init_state = lora_state(self.generator)
        if self.best is None or record["metrics"]["l1"] < self.best["metrics"]["l1"]:
            self.best, self.best_state = record, lora_state(self.generator)
            self._write()
        if self.then is not None:
            self.then(step, record)

    def _write(self) -> None:
        meta = {**self.meta, "step": self.best["step"], "seconds": self.best["seconds"],
                "metrics": self.best["metrics"], "init_metrics": self.records[0]["metrics"]}
        nxt, prev = self.path.with_name(".adapter-next"), self.path.with_name(".adapter-prev")
        write_adapter(self.best_state, self.adapter_config, nxt, meta, overwrite=True)
        shutil.rmtree(prev, ignore_errors=True)
        if self.path.exists():
            os.replace(self.path, prev)
        os.replace(nxt, self.path)
        shutil.rmtree(prev, ignore_errors=True)


class StyleScore(StyleScorer):
    """Evaluation callback: adds "style" to each record (before the best adapter's sidecar is written), then hands it on."""

    def __init__(self, generator, pairs, embedder: StyleEmbedder, then: EvalCallback):
        super().__init__(generator, pairs, embedder)
        self.then = then

    def __call__(self, step: int, record: dict) -> None:
        self.score(record)
        self.then(step, record)


# -- the job -------------------------------------------------------------------------------------------------------

def check_out(config: FinetuneConfig) -> Path:
    """Refuse a folder that holds a fine-tuned adapter unless overwriting (checked before any work)."""
    out = Path(config.out)
    if out.exists() and not out.is_dir():
        raise WeightgenError(f"output path exists and is not a folder: {out}")
    if (out / "adapter").exists() and not config.overwrite:
        raise WeightgenError(f"{out} already holds a fine-tuned adapter (pass --overwrite to train again; "
                             "its pairs are reused)")
    return out


def clear_results(out: Path) -> None:
    """Remove a previous fine-tune's results (not its pairs), once everything is checked and training is next."""
    for name in (*OUTPUT_FILES, ".adapter-next", ".adapter-prev"):
        target = out / name
        shutil.rmtree(target) if target.is_dir() else target.unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)


def concept_pairs(config: FinetuneConfig, out: Path, image_size: int, console=None) -> Path:
    """The pairs folder holding the concept at the base's image size: given, or built into <out>/pairs."""
    if config.pairs is not None:
        root = Path(config.pairs)
    else:
        root = out / "pairs"
        if console is not None:
            console.print(f"pairs for {config.concept!r} ({config.editor} editor, {image_size}x{image_size}) "
                          f"in {root}", markup=False)
        pairs_config = PairsConfig(out=str(root), editor=config.editor, image_size=image_size, n_train=config.n_train,
                                   n_test=config.n_test, seed=config.seed, sources=config.photos,
                                   overwrite=config.overwrite, editor_options=dict(config.editor_options))
        build_concept_pairs(config.concept, pairs_config)
    pairs = load_concept(root, config.concept)
    size = tuple(pairs.test_source.shape[2:])
    if size != (image_size, image_size):
        raise WeightgenError(f"pairs in {root} are {size[0]}x{size[1]}, the base GAN works at {image_size}x{image_size}")
    return root


def resolve_base(config: FinetuneConfig) -> Path:
    """--base, else the base the init's LoRAs were made for, else the shipped base.

    A generator folder may carry the base it was trained for in base/ (the shipped one does while
    the shipped base is newer than it): the generated kinds and the mean / nearest kinds of its zoo
    reference then sit on that base, so an init is never applied to a base it was not made for.
    """
    if config.base is not None:
        return Path(config.base)
    if config.init_kind in GENERATED_KINDS or (config.init_kind in REFERENCE_KINDS and config.zoo is None):
        try:
            own = generator_base_dir(config.generator)
        except USER_ERRORS:
            own = None  # no generator: the init itself will say so
        if own is not None:
            return own
    if not DEFAULT_BASE_DIR.is_dir():
        raise WeightgenError(f"no --base given and the shipped base GAN is not installed at {DEFAULT_BASE_DIR}; "
                             "pass --base DIR (a folder written by `weightgen train-base` or the zoo stage)")
    return DEFAULT_BASE_DIR


def finetune(config: FinetuneConfig, progress: bool = True, callback: EvalCallback | None = None) -> dict:
    """Fine-tune a LoRA for `config.concept`; returns the summary (also <out>/summary.json).

    `progress` shows the bar, status lines and the final table. `callback(step, record)` runs after
    each evaluation, once the best adapter is saved. On KeyboardInterrupt the best adapter so far
    stays in <out>/adapter, the history is written, and the interrupt is re-raised.
    """

    console = Console(highlight=False, quiet=not progress)
    t_start = time.perf_counter()
    out = check_out(config)
    threads = torch.get_num_threads()
    torch.set_num_threads(config.threads)
    try:
        # 1. the base, then the init: everything that can refuse does so before pairs cost time.
        base_dir = resolve_base(config)
        generator, discriminator = load_base(base_dir)
        # What adapters compare against when loaded (gan.lora.check_adapter_dir), computed, not trusted.
        sidecar = adapter_sidecar(generator)
        base_meta = {"fingerprint": sidecar["base_fingerprint"], "weights_hash": sidecar["base_weights_hash"]}
        # The test-pair style metric, counted in load_seconds. One thread: the network runs one 256x256 image
        # per call, and a second thread made it no faster (docs/benchmarks.md, "Perceptual distance").
        embedder = StyleEmbedder(threads=1)
        plan = resolve_init(config, generator, base_meta)
        load_seconds = time.perf_counter() - t_start - plan.init_seconds
        console.print(f"init {config.init}: {plan.init_seconds:.2f} s (loading {plan.load_seconds:.1f} s)"
                      + (f", nearest concept {plan.info['nearest_concept']!r}" if "nearest_concept" in plan.info
                         else ""), markup=False)
        # 2. the concept's pairs at the base's resolution.
        clear_results(out)
        t_pairs = time.perf_counter()
        pairs_dir = concept_pairs(config, out, int(generator.config.image_size), console)
        pairs_seconds = time.perf_counter() - t_pairs
        data = PairedData.load(pairs_dir, [config.concept])
        pairs = data.concepts[0]
        # 3. the fine-tune, the best adapter kept on disk at every evaluation.
        meta = {**sidecar, "concept": pairs.text, "concept_id": pairs.id, "init": config.init}
        best = BestAdapter(generator, out, plan.adapter_config, meta, then=callback)
        style = StyleScore(generator, pairs, embedder, then=best)
        train = GanTrainConfig(batch_size=config.batch_size, lr=config.lr, lr_d=config.lr_d, max_steps=config.max_steps,
                            max_seconds=float(config.seconds), eval_every=config.eval_every, seed=config.seed)
        try:
            model, history = train_lora(generator, discriminator, data, LoraSettings(), train, callback=style,
                                        progress=progress, **plan.train_kwargs())
        except KeyboardInterrupt:
            _interrupted(config, out, best)
            raise
    finally:
        torch.set_num_threads(threads)
    # 4. reports.
    write_json(out / "history.json", history)
    best_rec = best.best
    files = {"adapter": str(out / "adapter"), "history": str(out / "history.json"),
             "summary": str(out / "summary.json"), "curve": str(out / "curve.png"), "grid": str(out / "grid.png")}
    write_curve(out / "curve.png", history, pairs.text, config.init)
    write_before_after(out / "grid.png", model, pairs, best.init_state, best.best_state)
    last = history[-1]
    summary = {
        "format": SUMMARY_FORMAT, "version": 1, "weightgen_version": __version__,
        "concept": pairs.text, "concept_id": pairs.id, "init": config.init, "init_kind": plan.kind,
        "init_info": plan.info, "base": str(base_dir), "base_fingerprint": base_meta["fingerprint"],
        "pairs": str(pairs_dir), "lora_params": count_lora_params(model),
        "step0": history[0]["metrics"],
        "best": {"step": best_rec["step"], "seconds": best_rec["seconds"], "metrics": best_rec["metrics"]},
        "final": {"step": last["step"], "seconds": last["seconds"], "metrics": last["metrics"]},
        "steps": last["step"], "train_seconds": last["seconds"], "budget_seconds": config.seconds,
        "init_seconds": round(plan.init_seconds, 3), "load_seconds": round(load_seconds, 3),
        "pairs_seconds": round(pairs_seconds, 3), "style_seconds": round(style.seconds, 3),
        "wall_seconds": round(time.perf_counter() - t_start, 3), "interrupted": False,
        "files": files, "config": asdict(config),
    }
    write_json(out / "summary.json", summary)
    if progress:
        print_summary(summary, console)
    return summary


def _interrupted(config: FinetuneConfig, out: Path, best: BestAdapter) -> None:
    """Ctrl-C: keep the history so far and say where the best adapter is (the caller re-raises)."""
    write_json(out / "history.json", best.records)
    if best.best is None:
        print("interrupted before the first evaluation: no adapter written", file=sys.stderr)
        return
    write_json(out / "summary.json", {
        "format": SUMMARY_FORMAT, "version": 1, "weightgen_version": __version__, "concept": config.concept,
        "init": config.init, "interrupted": True, "step0": best.records[0]["metrics"],
        "best": {"step": best.best["step"], "seconds": best.best["seconds"], "metrics": best.best["metrics"]},
        "files": {"adapter": str(out / "adapter"), "history": str(out / "history.json")}, "config": asdict(config)})
    print(f"interrupted: the best adapter so far (step {best.best['step']}, test L1 "
          f"{best.best['metrics']['l1']:.4f}) is in {out / 'adapter'}", file=sys.stderr)
