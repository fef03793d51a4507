"""From concept text to LoRA adapters: the generator pipeline behind `weightgen init`.

A generator folder (what `weightgen train` writes, loadable here):
  config.json + diffusion_pytorch_model.safetensors   WeightUNet1D.save_pretrained (EMA weights)
  layout.json                                         the ChunkLayout the blocks belong to
  generator.json                                      {"format": "weightgen-generator", "version": 1,
      "weightgen_version", "text_encoder": {name, dim, source, version, ...}, "layout_fingerprint",
      "base_fingerprint", "diffusion": {...}, "training": {...}, "step", "concepts": [...]}

`WeightGenPipeline` holds model + text encoder + layout (load once, generate many). For each
concept all N blocks are denoised in one batch, many concepts per batch. Each concept's starting
noise comes from its own generator seeded by (seed, concept text), so a concept gets the same
adapter whether it is generated alone or among others.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

from gan.io import atomic_dir, read_json, write_json
from prompts.identity import concept_id, concept_seed, normalize_concept
from weightgen import __version__
from weightgen.chunks.adapters import write_adapter
from weightgen.chunks.layout import ChunkLayout
from weightgen.errors import WeightgenError
from weightgen.generator.config import DiffusionConfig
from weightgen.generator.diffusion import WeightDiffusion
from weightgen.generator.network import WeightUNet1D
from weightgen.shipped import DEFAULT_GENERATOR_DIR
from weightgen.text_encoders import (
    TextEncoder,
    load_text_encoder_from_fingerprint,
    pad_tokens,
)

GENERATOR_FORMAT = "weightgen-generator"
GENERATOR_VERSION = 1
GENERATOR_FILE = "generator.json"


def _param_device(model: torch.nn.Module) -> torch.device:
    """The device of the model's weights. Not ModelMixin.device / .to(): both import diffusers.hooks
    (and with it peft), 0.11 s of a cold `weightgen init`, to look for group offloading we never use."""
    return next(model.parameters()).device


def resolve_generator_dir(path: str | Path | None) -> Path:
    """A generator folder, or a `weightgen train --out` folder holding one in generator/."""
    if path is None:
        path = DEFAULT_GENERATOR_DIR
        if not (path / GENERATOR_FILE).is_file():
            raise WeightgenError(
                f"no generator given and the default generator is not installed at {path}; "
                "pass --generator DIR (a folder written by `weightgen train`)"
            )
    path = Path(path)
    if (path / GENERATOR_FILE).is_file():
        return path
    if (path / "generator" / GENERATOR_FILE).is_file():
        return path / "generator"
    if not path.is_dir():
        raise WeightgenError(f"generator folder not found: {path}")
    raise WeightgenError(f"not a generator folder: {path} has no {GENERATOR_FILE}")


def generator_base_dir(path: str | Path | None = None) -> Path | None:
    """The base GAN a generator folder carries in base/, if any: the base its LoRAs were made for,
    shipped beside the generator while the package's own base is a newer one."""
    own = resolve_generator_dir(path) / "base"
    return own if own.is_dir() else None


class WeightGenPipeline:
    """Model + frozen text encoder + chunk layout + noise process: concepts in, LoRA weights out."""

    def __init__(
        self,
        model: WeightUNet1D,
        text_encoder: TextEncoder,
        layout: ChunkLayout,
        diffusion: WeightDiffusion,
        info: dict | None = None,
    ):
        cfg = model.config
        if cfg.block_size != layout.block_size:
            raise WeightgenError(f"generator block size {cfg.block_size} does not match the layout's {layout.block_size}")
        if cfg.max_chunk_index < layout.n_blocks:
            raise WeightgenError(
                f"generator knows {cfg.max_chunk_index} chunk indices, the layout has {layout.n_blocks} blocks"
            )
        if cfg.text_dim != text_encoder.dim:
            raise WeightgenError(
                f"generator expects text features of width {cfg.text_dim}, encoder "
                f"{text_encoder.name!r} gives {text_encoder.dim}"
            )
        self.model = model
        self.text_encoder = text_encoder
        self.layout = layout
        self.diffusion = diffusion
        self.info = dict(info or {})
        self._null = None  # TextFeatures of the empty prompt, for guidance

    @property
    def device(self) -> torch.device:
        return _param_device(self.model)

    # ---- loading and saving ---------------------------------------------------------------

    @classmethod
    def from_pretrained(
        cls,
        path: str | Path | None = None,
        text_encoder: TextEncoder | None = None,
        text_encoder_path: str | None = None,
        device: str = "cpu",
    ) -> WeightGenPipeline:
        """Load a generator folder; refuses a layout, base or text encoder other than it was trained with."""
        path = resolve_generator_dir(path)
        info = read_json(path / GENERATOR_FILE)
        if not isinstance(info, dict) or info.get("format") != GENERATOR_FORMAT:
            raise WeightgenError(f"{path / GENERATOR_FILE} is not a weightgen generator file")
        if info.get("version") != GENERATOR_VERSION:
            raise WeightgenError(
                f"{path / GENERATOR_FILE} has generator version {info.get('version')!r}; this weightgen reads {GENERATOR_VERSION}"
            )
        layout = ChunkLayout.load(path)
        if layout.fingerprint != info.get("layout_fingerprint"):
            raise WeightgenError(
                f"generator {path} was trained on chunk layout {info.get('layout_fingerprint')!r}, "
                f"but its layout.json is {layout.fingerprint!r}"
            )
        if layout.base_fingerprint != info.get("base_fingerprint", ""):
            raise WeightgenError(
                f"generator {path} was trained for base GAN {info.get('base_fingerprint')!r}, "
                f"but its layout.json names base {layout.base_fingerprint!r}"
            )
        enc_fp = info.get("text_encoder") or {}
        if text_encoder is None:
            text_encoder = load_text_encoder_from_fingerprint(enc_fp, path=text_encoder_path, device=device)
        else:
            for key in ("name", "version", "dim"):
                if enc_fp.get(key) is not None and text_encoder.fingerprint.get(key) != enc_fp[key]:
                    raise WeightgenError(
                        f"text encoder mismatch: generator {path} needs {key} {enc_fp[key]!r}, "
                        f"got {text_encoder.fingerprint.get(key)!r}"
                    )
        if not (path / "config.json").is_file():
            raise WeightgenError(f"generator folder {path} has no config.json (model weights missing)")
        try:
            model = WeightUNet1D.from_pretrained(str(path))
        except (OSError, ValueError, RuntimeError) as e:
            raise WeightgenError(f"cannot load the generator network from {path}: {str(e).splitlines()[0]}") from None
        if _param_device(model) != torch.device(device):
            model = model.to(device)
        model = model.eval()
        diffusion = WeightDiffusion(DiffusionConfig.from_dict(info.get("diffusion", {})))
        return cls(model, text_encoder, layout, diffusion, info)

    def save_pretrained(self, path: str | Path, extra_info: dict | None = None, overwrite: bool = True) -> Path:
        """Write the generator folder atomically (weights, layout.json, generator.json)."""
        info = {
            "format": GENERATOR_FORMAT,
            "version": GENERATOR_VERSION,
            "weightgen_version": __version__,
            "text_encoder": self.text_encoder.fingerprint,
            "layout_fingerprint": self.layout.fingerprint,
            "base_fingerprint": self.layout.base_fingerprint,
            "diffusion": self.diffusion.config.to_dict(),
            **(extra_info or {}),
        }
        path = Path(path)
        with atomic_dir(path, overwrite=overwrite) as tmp:
            self.model.save_pretrained(str(tmp))
            self.layout.save(tmp)
            write_json(tmp / GENERATOR_FILE, info)
        self.info = info
        return path

    def check_compatible(self, layout: ChunkLayout | None = None, base: dict | None = None) -> None:
        """Refuse a chunk layout or base GAN other than the generator's, naming both fingerprints.

        `base` is a base folder's weightgen.json content ({"fingerprint", "weights_hash", ...}).
        """
        if layout is not None and layout.fingerprint != self.layout.fingerprint:
            raise WeightgenError(
                f"chunk layout mismatch: the generator writes layout {self.layout.fingerprint}, "
                f"the given layout is {layout.fingerprint}"
            )
        if base is not None:
            self.layout.check_base(base, "the generator's LoRAs")

    # ---- generation -----------------------------------------------------------------------

    def _noise(self, texts: list[str], seed: int) -> torch.Tensor:
        """(C*N, 1, b) starting noise; concept i's rows come from its own (seed, text) generator."""
        n, b = self.layout.n_blocks, self.layout.block_size
        rows = []
        for text in texts:
            g = torch.Generator().manual_seed(concept_seed(seed, text))
            rows.append(torch.randn((n, 1, b), generator=g))
        return torch.cat(rows).to(self.device)

    @property
    def guidance_scale(self) -> float:
        """The generator's default guidance: picked on validation concepts by `weightgen train`, else 1."""
        return float(self.info.get("guidance_scale", 1.0))

    def _guided(self, scale: float):
        """The network, or a classifier-free-guided call of it: uncond + scale * (cond - uncond).

        scale < 1 pulls a concept's weights toward what the generator writes for no concept, which
        helps when the text says little about the weights; scale = 1 is the plain conditional model.
        """
        if scale == 1.0:
            return self.model
        if self._null is None:  # the empty prompt's features, encoded once per pipeline
            self._null = self.text_encoder.encode_null()
        null, model = self._null, self.model

        def call(x, t, block_index, text_tokens, text_mask, text_index):
            T = max(text_tokens.shape[1], null.tokens.shape[1])
            tokens, mask = pad_tokens(text_tokens, text_mask, T)
            nt, nm = pad_tokens(null.tokens.to(tokens), null.mask.to(mask.device), T)
            out = model(torch.cat([x, x]), torch.cat([t, t]), block_index=torch.cat([block_index, block_index]),
                        text_tokens=torch.cat([tokens, nt]), text_mask=torch.cat([mask, nm]),
                        text_index=torch.cat([text_index, torch.full_like(text_index, tokens.shape[0])]))
            cond, uncond = out.chunk(2)  # (B, C, b) each
            return uncond + scale * (cond - uncond)

        return call

    def generate_blocks(
        self,
        concepts: list[str],
        steps: int = 1,
        t_start: int | None = None,
        seed: int = 0,
        concepts_per_batch: int = 8,
        guidance_scale: float | None = None,
    ) -> torch.Tensor:
        """(C, N, b) un-normalized blocks for each concept; refuses non-finite values.

        All N blocks of a concept always sit in one batch; `concepts_per_batch` concepts share a
        network call (memory grows with it; speed saturates at a few thousand blocks per call).
        `guidance_scale` None uses the generator's own default (see `guidance_scale`).
        """
        if isinstance(concepts, str):
            concepts = [concepts]
        texts = [normalize_concept(c) for c in concepts]
        if not texts:
            raise WeightgenError("no concepts given")
        if concepts_per_batch < 1:
            raise ValueError(f"concepts_per_batch must be >= 1, got {concepts_per_batch}")
        scale = self.guidance_scale if guidance_scale is None else float(guidance_scale)
        if not scale >= 0:
            raise WeightgenError(f"guidance scale must be >= 0, got {guidance_scale!r}")
        network = self._guided(scale)
        n, b = self.layout.n_blocks, self.layout.block_size
        dev = self.device
        block_index = torch.arange(n, device=dev)
        out = []
        with torch.inference_mode():  # no autograd bookkeeping: generation is pure inference
            for start in range(0, len(texts), concepts_per_batch):
                chunk = texts[start : start + concepts_per_batch]
                feats = self.text_encoder.encode(chunk)
                kwargs = {
                    "block_index": block_index.repeat(len(chunk)),  # (c*N,)
                    "text_tokens": feats.tokens.to(dev, self.model.dtype),  # (c, T, D)
                    "text_mask": feats.mask.to(dev),  # (c, T)
                    "text_index": torch.arange(len(chunk), device=dev).repeat_interleave(n),  # (c*N,)
                }
                x0 = self.diffusion.sample(network, self._noise(chunk, seed), kwargs, steps=steps, t_start=t_start)
                out.append(x0.view(len(chunk), n, b).float().cpu())  # (c, N, b) normalized
            blocks = self.layout.denormalize(torch.cat(out))  # (C, N, b), float64 math inside
        bad = [texts[i] for i in range(len(texts)) if not torch.isfinite(blocks[i]).all()]
        if bad:
            raise WeightgenError(
                f"generated weights for {len(bad)} concept(s) contain NaN/Inf, e.g. {bad[0]!r}; "
                "nothing was written (is the generator folder corrupt?)"
            )
        return blocks

    def generate(self, concepts: list[str], **kwargs) -> list[dict[str, torch.Tensor]]:
        """One adapter state dict per concept (keys and dtypes of the layout)."""
        blocks = self.generate_blocks(concepts, **kwargs)
        return [self.layout.from_blocks(blocks[i]) for i in range(blocks.shape[0])]

    __call__ = generate

    def adapter_meta(self, text: str, seed: int, steps: int, t_start: int | None,
                     guidance_scale: float | None = None) -> dict:
        """The weightgen.json sidecar of a generated adapter: its base (as the zoo's) and its origin."""
        return {
            **self.layout.adapter_meta,
            "concept": normalize_concept(text),
            "generated_by": {
                "weightgen_version": __version__,
                "layout_fingerprint": self.layout.fingerprint,
                "text_encoder": self.text_encoder.fingerprint,
                "seed": seed,
                "steps": steps,
                "t_start": self.diffusion.config.t_start if t_start is None else t_start,
                "generator_step": self.info.get("step"),
                "guidance_scale": self.guidance_scale if guidance_scale is None else guidance_scale,
            },
        }


def generate_adapters(
    generator: str | Path | WeightGenPipeline | None,
    concepts: list[str],
    steps: int = 1,
    t_start: int | None = None,
    seed: int = 0,
    concepts_per_batch: int = 8,
) -> list[dict[str, torch.Tensor]]:
    """LoRA state dicts for `concepts` from a generator folder (or an already loaded pipeline)."""
    pipe = generator if isinstance(generator, WeightGenPipeline) else WeightGenPipeline.from_pretrained(generator)
    return pipe.generate(concepts, steps=steps, t_start=t_start, seed=seed, concepts_per_batch=concepts_per_batch)


def write_adapters(
    pipe: WeightGenPipeline,
    concepts: list[str],
    out_dir: str | Path,
    steps: int = 1,
    t_start: int | None = None,
    seed: int = 0,
    overwrite: bool = False,
    single: bool | None = None,
    concepts_per_batch: int = 8,
    guidance_scale: float | None = None,
) -> tuple[dict[str, Path], float]:
    """Generate and write one peft adapter per concept; returns ({text: folder}, generation seconds).

    single=True (the default for one concept) writes the adapter into out_dir itself; otherwise
    out_dir/<concept_id>/ per concept plus out_dir/index.json. Everything is generated and checked
    before anything is written, and the folder appears atomically.
    """
    texts = [normalize_concept(c) for c in concepts]
    texts = list(dict.fromkeys(texts))  # a duplicate would write the same folder twice
    single = len(texts) == 1 if single is None else single
    if single and len(texts) != 1:
        raise WeightgenError(f"single-adapter output needs exactly one concept, got {len(texts)}")
    out_dir = Path(out_dir)
    if out_dir.exists() and not overwrite:  # fail before spending time on generation
        raise WeightgenError(f"output folder already exists: {out_dir} (pass --overwrite to replace it)")
    t0 = time.perf_counter()
    blocks = pipe.generate_blocks(texts, steps=steps, t_start=t_start, seed=seed, concepts_per_batch=concepts_per_batch,
                                  guidance_scale=guidance_scale)
    seconds = time.perf_counter() - t0
    config = pipe.layout.adapter_config
    if single:
        sd = pipe.layout.from_blocks(blocks[0])
        meta = pipe.adapter_meta(texts[0], seed, steps, t_start, guidance_scale)
        write_adapter(sd, config, out_dir, meta, overwrite=overwrite)
        return {texts[0]: out_dir}, seconds
    written: dict[str, Path] = {}
    with atomic_dir(out_dir, overwrite=overwrite) as tmp:
        for i, text in enumerate(texts):
            cid = concept_id(text)
            meta = pipe.adapter_meta(text, seed, steps, t_start, guidance_scale)
            write_adapter(pipe.layout.from_blocks(blocks[i]), config, tmp / cid, meta)
            written[text] = out_dir / cid
        write_json(tmp / "index.json", {"format": "weightgen-init", "version": 1,
                                        "adapters": {t: p.name for t, p in written.items()}})
    return written, seconds
