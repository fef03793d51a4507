"""Where a LoRA fine-tune starts: the generator's weights, or one of the baselines it must beat.

Every claim of this product is "generated init beats X on held-out concepts", so the Xs live next
to it, behind one registry: `init_weights(kind, concept, sources)` gives a LoRA state dict (None
for `zero`: peft's fresh LoRA, i.e. the base's own output). The zoo baselines need only a
`ZooReference`: each training concept's last checkpoint and the zoo mean, as blocks over the
generator's chunk layout. A reference folder is small (a few MB), so one ships with the package
and `--init mean` / `--init nearest` work without the zoo.

    ref = ZooReference.from_zoo("runs/zoo")                  # or ZooReference.load(folder)
    sources = InitSources(reference=ref, pipeline=WeightGenPipeline.from_pretrained(gen))
    sd = init_weights("nearest", "van gogh style", sources)
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import safe_open

from gan.config import LoraSettings
from gan.io import (
    atomic_dir,
    load_tensors,
    read_json,
    save_tensors,
)
from gan.lora import check_adapter_dir, lora_config
from prompts.identity import normalize_concept, stable_seed
from weightgen.chunks.config import DEFAULT_BLOCK_SIZE
from weightgen.chunks.dataset import ZooBlocks, read_zoo_blocks
from weightgen.chunks.layout import ChunkLayout
from weightgen.errors import USER_ERRORS, WeightgenError
from weightgen.finetune.config import (
    ADAPTER_INIT,
    GENERATED_KINDS,
    INIT_KINDS,
    FinetuneConfig,
)
from weightgen.generator.pipeline import WeightGenPipeline, resolve_generator_dir
from weightgen.shipped import DEFAULT_REFERENCE_DIR
from weightgen.text_encoders import TextEncoder, load_text_encoder

REFERENCE_FILE = "reference.safetensors"
REFERENCE_FORMAT = "weightgen-zoo-reference"
# Where a released reference ships (next to the generator it was built with).



@dataclass
class ZooReference:
    """The training zoo, reduced to what the baselines need; blocks are raw (un-normalized)."""

    layout: ChunkLayout
    texts: list[str]  # training concept texts
    final: torch.Tensor  # (C, N, b) each concept's last checkpoint
    mean: torch.Tensor  # (N, b) mean over every training checkpoint
    _embeddings: torch.Tensor | None = field(default=None, repr=False)

    @classmethod
    def from_zoo(cls, zoo_dir: str | Path, block_size: int = DEFAULT_BLOCK_SIZE, layout: ChunkLayout | None = None) -> ZooReference:
        """From a zoo's train split; pass the generator's `layout` so the blocks line up with its chunks."""
        zoo = read_zoo_blocks(zoo_dir, layout.block_size if layout is not None else block_size, "train")
        return cls.from_blocks(zoo, layout, source=f"zoo {zoo_dir}")

    @classmethod
    def from_blocks(cls, zoo: ZooBlocks, layout: ChunkLayout | None = None, source: str = "the zoo") -> ZooReference:
        """From an already read train split (weightgen.chunks.read_zoo_blocks)."""
        if layout is not None and zoo.layout.fingerprint != layout.fingerprint:
            raise WeightgenError(f"{source} has chunk layout {zoo.layout.fingerprint}, "
                                 f"the generator's is {layout.fingerprint}")
        last = {}
        for row, ck in enumerate(zoo.checkpoints):
            last[ck.concept_index] = row  # manifest order: a concept's last checkpoint comes last
        final = torch.stack([zoo.blocks[last[i]] for i in range(len(zoo.concepts))])
        return cls(layout or zoo.layout, list(zoo.concepts), final, zoo.blocks.mean(0))

    def save(self, out_dir: str | Path, overwrite: bool = True) -> Path:
        with atomic_dir(Path(out_dir), overwrite=overwrite) as tmp:
            save_tensors(tmp / REFERENCE_FILE, {"final": self.final.contiguous(), "mean": self.mean.contiguous()},
                         metadata={"format": REFERENCE_FORMAT, "texts": json.dumps(self.texts),
                                   "layout_fingerprint": self.layout.fingerprint})
            self.layout.save(tmp)
        return Path(out_dir)

    @classmethod
    def load(cls, path: str | Path | None = None) -> ZooReference:
        path = Path(path or DEFAULT_REFERENCE_DIR)
        if not (path / REFERENCE_FILE).is_file():
            raise WeightgenError(f"no zoo reference at {path} (write one with ZooReference.from_zoo(zoo).save(dir))")
        layout = ChunkLayout.load(path)
        tensors = load_tensors(path / REFERENCE_FILE)
        with safe_open(str(path / REFERENCE_FILE), "pt") as f:
            meta = f.metadata() or {}
        if meta.get("format") != REFERENCE_FORMAT or meta.get("layout_fingerprint") != layout.fingerprint:
            raise WeightgenError(f"{path / REFERENCE_FILE} is not a zoo reference for the layout in {path}")
        return cls(layout, json.loads(meta["texts"]), tensors["final"], tensors["mean"])

    def embeddings(self, encoder: TextEncoder) -> torch.Tensor:
        """(C, D) L2-normalized text embeddings of the training concepts, computed once."""
        if self._embeddings is None:
            self._embeddings = encoder.embed(self.texts).float()
        return self._embeddings

    def nearest(self, text: str, encoder: TextEncoder) -> tuple[int, float]:
        """(index, cosine similarity) of the training concept nearest to `text`."""
        sims = self.embeddings(encoder) @ encoder.embed([text]).float()[0]  # (C,)
        i = int(sims.argmax())
        return i, float(sims[i])


@dataclass
class InitSources:
    """What the init kinds draw on; each part is needed only by the kinds that use it."""

    reference: ZooReference | None = None
    pipeline: WeightGenPipeline | None = None
    encoder: TextEncoder | None = None  # for nearest; defaults to the pipeline's, else MiniLM
    seed: int = 0
    ddim_steps: int = 10
    noise_scale: float = 0.5  # nearest-noise: std = noise_scale x per-value std across training concepts

    def __post_init__(self) -> None:
        if self.ddim_steps < 2:
            raise ValueError(f"ddim_steps must be >= 2 (1 is the single-step 'generated'), got {self.ddim_steps}")
        if not self.noise_scale >= 0:
            raise ValueError(f"noise_scale must be >= 0, got {self.noise_scale!r}")
        if self.reference is not None and self.pipeline is not None:
            a, b = self.reference.layout.fingerprint, self.pipeline.layout.fingerprint
            if a != b:
                raise WeightgenError(f"zoo reference layout {a} does not match the generator's layout {b}")

    def need_reference(self, kind: str) -> ZooReference:
        if self.reference is None:
            raise WeightgenError(f"--init {kind} needs the training zoo (a zoo folder or a zoo reference)")
        return self.reference

    def need_pipeline(self, kind: str) -> WeightGenPipeline:
        if self.pipeline is None:
            raise WeightgenError(f"--init {kind} needs a weight generator")
        return self.pipeline

    def text_encoder(self) -> TextEncoder:
        if self.encoder is None:
            if self.pipeline is not None:
                self.encoder = self.pipeline.text_encoder
            else:
                self.encoder = load_text_encoder("minilm")
        return self.encoder


def _layout(sources: InitSources) -> ChunkLayout:
    return (sources.pipeline or sources.need_reference("this")).layout


def _generated(concept: str, sources: InitSources, steps: int = 1) -> torch.Tensor:
    pipe = sources.need_pipeline("generated")
    return pipe.generate_blocks([concept], steps=steps, seed=sources.seed)[0]


def _nearest(concept: str, sources: InitSources) -> torch.Tensor:
    ref = sources.need_reference("nearest")
    return ref.final[ref.nearest(concept, sources.text_encoder())[0]]


def _nearest_noise(concept: str, sources: InitSources) -> torch.Tensor:
    ref = sources.need_reference("nearest-noise")
    g = torch.Generator().manual_seed(stable_seed(sources.seed, "nearest-noise", concept))
    spread = ref.final.std(0) if ref.final.shape[0] > 1 else ref.final[0].abs()  # (N, b)
    return _nearest(concept, sources) + sources.noise_scale * spread * torch.randn(spread.shape, generator=g)


_BLOCKS: dict[str, Callable[[str, InitSources], "torch.Tensor | None"]] = {
    "generated": _generated,
    "generated-ddim": lambda c, s: _generated(c, s, steps=s.ddim_steps),
    "zero": lambda c, s: None,
    "mean": lambda c, s: s.need_reference("mean").mean,
    "nearest": _nearest,
    "nearest-noise": _nearest_noise,
}


def init_weights(kind: str, concept: str, sources: InitSources) -> dict[str, torch.Tensor] | None:
    """The LoRA state dict `kind` starts `concept` from (None for zero: peft's fresh init)."""
    if kind not in _BLOCKS:
        raise WeightgenError(f"unknown init {kind!r}; choose one of {', '.join(INIT_KINDS)} or an adapter folder")
    blocks = _BLOCKS[kind](normalize_concept(concept), sources)
    if blocks is None:
        return None
    return _layout(sources).from_blocks(blocks)


def describe_nearest(concept: str, sources: InitSources) -> dict:
    """Which training concept `nearest` picks, and how similar it is (for logs and reports)."""
    ref = sources.need_reference("nearest")
    i, sim = ref.nearest(concept, sources.text_encoder())
    return {"nearest_concept": ref.texts[i], "cosine": round(sim, 4)}


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
