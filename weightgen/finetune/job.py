"""`weightgen finetune`: a pix2pix-style LoRA for a new concept in under a minute (the product's main job).

The flow: the concept's pairs (built with the editor into <out>/pairs, resumable, or taken from an
existing pairs folder) -> the frozen base GAN -> the LoRA's starting weights (an init kind of
weightgen.finetune.starts, `generated` by default, or an adapter folder) -> the cGAN + L1 fine-tune within a
wall-clock budget. The best adapter so far (lowest test L1) is always on disk, so Ctrl-C or a kill
leaves something usable.

    <out>/pairs/         the concept's pair dataset (reused by a rerun)
    <out>/adapter/       the best adapter: peft folder + weightgen.json (concept, init, step, seconds, metrics)
    <out>/history.json   every evaluation: step, training seconds, losses, test L1 / PSNR / SSIM
    <out>/summary.json   init, step-0 and best quality, steps, seconds, init and load time
    <out>/curve.png      test L1 and PSNR against training seconds (steps on the top axis)
    <out>/grid.png       source | target | base | init | fine-tuned on the test pairs

    summary = finetune(FinetuneConfig(concept="van gogh style", seconds=60))
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import (
    Figure,  # no pyplot: no global figure state, Agg canvas
)
from peft import set_peft_model_state_dict
from rich.console import Console
from rich.table import Table

from gan.base import load_base
from gan.config import GanTrainConfig, LoraSettings
from gan.data import ConceptPairs, PairedData, load_concept
from gan.io import atomic_path, read_json, write_json
from gan.lora import adapter_sidecar, check_adapter_dir, count_lora_params, lora_config
from gan.lora_training import train_lora
from gan.metrics import generate
from gan.viz import write_grid
from prompts.identity import concept_id, normalize_concept
from weightgen import __version__
from weightgen.chunks import ChunkLayout, write_adapter
from weightgen.errors import USER_ERRORS, WeightgenError
from weightgen.finetune.starts import (
    INIT_KINDS,
    InitSources,
    ZooReference,
    describe_nearest,
    init_weights,
)
from weightgen.generator.pipeline import WeightGenPipeline, resolve_generator_dir
from weightgen.pairs.build import PairsConfig, build_pairs
from weightgen.pairs.editors import REGISTRY
from weightgen.shipped import DEFAULT_BASE_DIR

SUMMARY_FORMAT = "weightgen-finetune"
ADAPTER_INIT = "adapter"  # summary["init_kind"] when the LoRA starts from an adapter folder
GENERATED_KINDS = ("generated", "generated-ddim")
REFERENCE_KINDS = ("mean", "nearest", "nearest-noise")
OUTPUT_FILES = ("adapter", "history.json", "summary.json", "curve.png", "grid.png")
EvalCallback = Callable[[int, dict], None]  # (step, history record) after each evaluation


@dataclass
class FinetuneConfig:
    """One concept's fine-tune; every path defaults to the shipped artifacts."""

    concept: str  # the new concept, e.g. "van gogh style"
    seconds: float = 60.0  # training budget in seconds (evaluation excluded): the product's promise
    init: str = "generated"  # a weightgen.finetune.starts.INIT_KINDS key, or a peft adapter folder to continue from
    out: str | None = None  # working folder; None = runs/finetune/<concept_id>
    base: str = str(DEFAULT_BASE_DIR)  # base GAN folder (gan.base layout) the LoRA sits on
    generator: str | None = None  # weight generator folder for the generated kinds; None = the shipped one
    reference: str | None = None  # zoo reference folder for mean / nearest*; None = the shipped one
    zoo: str | None = None  # or a zoo folder, reduced to a reference on the fly (instead of `reference`)
    pairs: str | None = None  # an existing pairs folder holding the concept; None = build <out>/pairs
    editor: str = "procedural"  # weightgen.pairs.editors.REGISTRY key that turns photos into targets
    n_train: int = 64  # train pairs to build (the LoRA's whole training set)
    n_test: int = 16  # test pairs to build (the metric the best adapter is chosen by)
    photos: str | None = None  # folder of source photos for the pairs; None = the bundled photos
    max_steps: int = 100_000  # step cap; the time budget normally ends the run first
    eval_every: int = 10  # evaluate on the test pairs every N steps (the best adapter is kept at each)
    lr: float = 1e-3  # LoRA learning rate: a fine-tune from a good init likes a high rate
    lr_d: float = 2e-4  # discriminator learning rate (pix2pix's)
    batch_size: int = 8
    seed: int = 0  # pairs, init noise (generated, nearest-noise) and batches
    threads: int = 2  # torch CPU threads while training; more only spin on a small shared CPU
    ddim_steps: int = 10  # generated-ddim: denoising steps
    noise_scale: float = 0.5  # nearest-noise: noise std relative to the zoo's between-concept spread
    overwrite: bool = False  # replace a finished fine-tune in `out` (its pairs are reused)
    editor_options: dict = field(default_factory=dict)  # passed to the editor's constructor

    def __post_init__(self) -> None:
        if not isinstance(self.concept, str) or not self.concept.strip():
            raise WeightgenError(f"concept must not be empty, got {self.concept!r}")
        self.concept = normalize_concept(self.concept)
        if not isinstance(self.seconds, (int, float)) or not self.seconds > 0:
            raise WeightgenError(f"the time budget must be > 0 seconds, got {self.seconds!r}")
        if self.init not in INIT_KINDS:
            path = Path(self.init)
            if not path.is_dir():
                what = "adapter folder not found" if os.sep in self.init or path.exists() else "unknown init"
                raise WeightgenError(f"{what}: {self.init!r}; choose one of {', '.join(INIT_KINDS)} "
                                     "or a peft adapter folder")
        if self.reference is not None and self.zoo is not None:
            raise WeightgenError(f"give a zoo reference or a zoo, not both: {self.reference!r} and {self.zoo!r}")
        if self.editor not in REGISTRY:
            raise WeightgenError(f"unknown editor {self.editor!r}; choose one of {', '.join(REGISTRY)}")
        for name in ("n_train", "n_test", "max_steps", "batch_size", "threads"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise WeightgenError(f"{name} must be a positive integer, got {value!r}")
        if not isinstance(self.eval_every, int) or self.eval_every < 1:
            raise WeightgenError(f"eval_every must be >= 1 (the best adapter is kept at evaluations), "
                                 f"got {self.eval_every!r}")
        if not isinstance(self.ddim_steps, int) or self.ddim_steps < 2:
            raise WeightgenError(f"ddim_steps must be >= 2 (1 step is `generated`), got {self.ddim_steps!r}")
        if not self.noise_scale >= 0:
            raise WeightgenError(f"noise_scale must be >= 0, got {self.noise_scale!r}")
        for name in ("lr", "lr_d"):
            if not getattr(self, name) > 0:
                raise WeightgenError(f"{name} must be > 0, got {getattr(self, name)!r}")
        if self.out is None:
            self.out = str(Path("runs") / "finetune" / concept_id(self.concept))

    @property
    def init_kind(self) -> str:
        """The INIT_KINDS key, or "adapter" for an adapter folder."""
        return self.init if self.init in INIT_KINDS else ADAPTER_INIT


# -- the starting weights ------------------------------------------------------------------------------------------

@dataclass
class InitPlan:
    """Where the LoRA starts: an adapter folder, or (adapter_config, state dict | None) in memory."""

    kind: str
    adapter_config: dict  # the peft adapter_config.json the saved adapters get
    state_dict: dict | None = None  # None with no folder: peft's fresh init (zero B)
    folder: Path | None = None
    info: dict = field(default_factory=dict)  # e.g. the nearest concept and its similarity
    load_seconds: float = 0.0  # loading the generator / reference / text encoder
    init_seconds: float = 0.0  # computing the weights (generation, nearest search)

    def train_kwargs(self) -> dict:
        if self.folder is not None:
            return {"init_adapter": self.folder}
        return {"init_weights": (self.adapter_config, self.state_dict)}


def _generator_layout(config: FinetuneConfig) -> ChunkLayout | None:
    """The generator's chunk layout (layout.json only, no network), or None when no generator is found."""
    try:
        return ChunkLayout.load(resolve_generator_dir(config.generator))
    except USER_ERRORS:
        return None


def _load_reference(config: FinetuneConfig, base_meta: dict):
    if config.zoo is not None:
        ref = ZooReference.from_zoo(config.zoo, layout=_generator_layout(config))
        what = f"zoo {config.zoo}"
    else:
        ref = ZooReference.load(config.reference)
        what = f"zoo reference {config.reference or 'shipped with weightgen'}"
    ref.layout.check_base(base_meta, what)
    return ref


def _zero_adapter_config(config: FinetuneConfig, base_meta: dict) -> tuple[dict, str]:
    """The LoRA shape a zero init gets: the zoo's / generator's (so it compares like for like), else the defaults."""
    candidates: list[tuple[str, Callable[[], ChunkLayout | None]]] = [
        ("generator", lambda: _generator_layout(config)),
        ("zoo reference", lambda: ChunkLayout.load(config.reference) if config.reference else None),
    ]
    if config.zoo is not None:
        candidates.insert(0, ("zoo", lambda: _load_reference(config, base_meta).layout))
    for origin, load in candidates:
        try:
            layout = load()
            if layout is not None and layout.adapter_config:
                layout.check_base(base_meta, origin)
                return dict(layout.adapter_config), origin
        except USER_ERRORS:
            continue
    # As adapter_config.json holds it: sets as sorted lists, enums as their values.
    return json.loads(json.dumps(lora_config(LoraSettings()).to_dict(), default=sorted)), "LoraSettings defaults"


def resolve_init(config: FinetuneConfig, base_generator, base_meta: dict) -> InitPlan:
    """Load only what the init needs (generator for generated*, reference for mean / nearest*) and compute it."""
    kind = config.init_kind
    if kind == ADAPTER_INIT:
        folder = Path(config.init)
        check_adapter_dir(folder, base_generator)  # another base: one clear line, before anything is built
        return InitPlan(kind, read_json(folder / "adapter_config.json"), folder=folder)
    if kind == "zero":
        adapter_config, origin = _zero_adapter_config(config, base_meta)
        return InitPlan(kind, adapter_config, info={"lora_shape_from": origin})
    t0 = time.perf_counter()
    sources = InitSources(seed=config.seed, ddim_steps=config.ddim_steps, noise_scale=config.noise_scale)
    if kind in GENERATED_KINDS:
        sources.pipeline = WeightGenPipeline.from_pretrained(config.generator)
        sources.pipeline.check_compatible(base=base_meta)
        layout = sources.pipeline.layout
    else:
        sources.reference = _load_reference(config, base_meta)
        sources.reference.embeddings(sources.text_encoder())  # load the encoder now: it is load time, not init
        layout = sources.reference.layout
    t1 = time.perf_counter()
    state_dict = init_weights(kind, config.concept, sources)
    init_seconds = time.perf_counter() - t1
    info = describe_nearest(config.concept, sources) if kind in ("nearest", "nearest-noise") else {}
    return InitPlan(kind, dict(layout.adapter_config), state_dict, info=info, load_seconds=t1 - t0,
                    init_seconds=init_seconds)


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


# -- reports -------------------------------------------------------------------------------------------------------

def write_curve(path: Path, history: list[dict], concept: str, init: str) -> Path:
    """Test L1 and PSNR against training seconds, training steps on each panel's top axis."""

    seconds = np.array([r["seconds"] for r in history], dtype=float)
    steps = np.array([r["step"] for r in history], dtype=float)
    best = min(range(len(history)), key=lambda i: history[i]["metrics"]["l1"])
    fig = Figure(figsize=(10, 4.2), layout="constrained")
    for i, (key, label) in enumerate((("l1", "test L1 (lower is better)"), ("psnr", "test PSNR, dB"))):
        ax = fig.add_subplot(1, 2, i + 1)
        values = [r["metrics"][key] for r in history]
        ax.plot(seconds, values, marker="o", markersize=3, color=f"C{i}")
        ax.plot(seconds[best], values[best], marker="*", markersize=12, color="black", linestyle="none",
                label=f"best test L1 (step {int(steps[best])})")
        ax.set_xlabel("training seconds (evaluation excluded)")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        if len(history) > 1 and seconds[-1] > seconds[0]:  # steps grow with seconds: map one onto the other
            top = ax.secondary_xaxis("top", functions=(lambda s: np.interp(s, seconds, steps),
                                                       lambda k: np.interp(k, steps, seconds)))
            top.set_xlabel("training step")
    fig.suptitle(f"Fine-tuning {concept!r} from {init}")
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100, bbox_inches="tight")
    return path


def write_before_after(path: Path, model, pairs: ConceptPairs, init_state: dict | None, best_state: dict) -> Path:
    """source | target | base | init | fine-tuned (the best adapter) on the test pairs; leaves `model` at best."""

    with model.disable_adapter():
        base = generate(model, pairs.test_source)
    columns = {"source": pairs.test_source, "target": pairs.test_target, "base": base}
    if init_state is not None:
        set_peft_model_state_dict(model, init_state)
        columns["init"] = generate(model, pairs.test_source)
    set_peft_model_state_dict(model, best_state)
    columns["fine-tuned"] = generate(model, pairs.test_source)
    return write_grid(path, columns)


def print_summary(summary: dict, console=None) -> None:
    """Step 0 against the best evaluation, then where everything is."""
    console = console or Console(highlight=False)
    s0, best = summary["step0"], summary["best"]
    table = Table(title=f"{summary['concept']!r} from {summary['init']}", title_justify="left")
    table.add_column("")
    table.add_column("step 0 (init)", justify="right")
    table.add_column(f"best (step {best['step']}, {best['seconds']:.1f} s)", justify="right")
    for key, label, fmt in (("l1", "test L1", ".4f"), ("psnr", "PSNR dB", ".2f"), ("ssim", "SSIM", ".3f")):
        table.add_row(label, format(s0[key], fmt), format(best["metrics"][key], fmt))
    console.print(table)
    console.print(f"{summary['steps']} steps in {summary['train_seconds']:.1f} s of training "
                  f"(budget {summary['budget_seconds']:g} s); init {summary['init_seconds']:.2f} s, "
                  f"loading {summary['load_seconds']:.1f} s, total {summary['wall_seconds']:.1f} s", markup=False)
    for name in ("adapter", "curve", "grid", "summary"):
        console.print(f"{name:>8}: {summary['files'][name]}", markup=False)


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
        try:
            build_pairs([config.concept], pairs_config)
        except (*USER_ERRORS, KeyboardInterrupt):
            raise
        except Exception as e:  # noqa: BLE001  an editor failing on this concept: one line, not its traceback
            first = next((ln.strip() for ln in str(e).splitlines() if ln.strip()), type(e).__name__)
            raise WeightgenError(f"editor {config.editor!r} could not make pairs for {config.concept!r}: "
                                 f"{type(e).__name__}: {first}") from None
    pairs = load_concept(root, config.concept)
    size = tuple(pairs.train_source.shape[2:])
    if size != (image_size, image_size):
        raise WeightgenError(f"pairs in {root} are {size[0]}x{size[1]}, the base GAN works at {image_size}x{image_size}")
    return root


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
        if not Path(config.base).is_dir() and Path(config.base) == DEFAULT_BASE_DIR:
            raise WeightgenError(f"no --base given and the shipped base GAN is not installed at {DEFAULT_BASE_DIR}; "
                                 "pass --base DIR (a folder written by `weightgen train-base` or the zoo stage)")
        generator, discriminator = load_base(config.base)
        # What adapters compare against when loaded (gan.lora.check_adapter_dir), computed, not trusted.
        sidecar = adapter_sidecar(generator)
        base_meta = {"fingerprint": sidecar["base_fingerprint"], "weights_hash": sidecar["base_weights_hash"]}
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
        train = GanTrainConfig(batch_size=config.batch_size, lr=config.lr, lr_d=config.lr_d, max_steps=config.max_steps,
                            max_seconds=float(config.seconds), eval_every=config.eval_every, seed=config.seed)
        try:
            model, history = train_lora(generator, discriminator, data, LoraSettings(), train, callback=best,
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
        "init_info": plan.info, "base": str(config.base), "base_fingerprint": base_meta["fingerprint"],
        "pairs": str(pairs_dir), "lora_params": count_lora_params(model),
        "step0": history[0]["metrics"],
        "best": {"step": best_rec["step"], "seconds": best_rec["seconds"], "metrics": best_rec["metrics"]},
        "final": {"step": last["step"], "seconds": last["seconds"], "metrics": last["metrics"]},
        "steps": last["step"], "train_seconds": last["seconds"], "budget_seconds": config.seconds,
        "init_seconds": round(plan.init_seconds, 3), "load_seconds": round(load_seconds, 3),
        "pairs_seconds": round(pairs_seconds, 3),
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
