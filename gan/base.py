"""The base GAN: trained on several representative concepts, then frozen under every concept's LoRA.

Base folder layout (written atomically: a crash leaves the previous folder or none):
  <out>/generator/      config.json + diffusion_pytorch_model.safetensors (Generator.save_pretrained)
  <out>/discriminator/  the same for the PatchGAN (LoRA training starts its D from here)
  <out>/weightgen.json  {"format": "weightgen-gan-base", "version": 1, "fingerprint", "weights_hash",
                         "concepts": [{"id", "text"}], "config": {...}, "history": [...]}
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Sequence, TypeVar

import torch
from diffusers import ModelMixin

from gan import __version__
from gan.config import BaseTrainConfig, GeneratorConfig
from gan.data import PairedData
from gan.discriminator import Discriminator
from gan.errors import GanError
from gan.generator import Generator
from gan.io import atomic_dir, read_json, write_json
from gan.lora import fingerprint, weights_hash
from gan.trainer import EvalCallback, Pix2PixTrainer

BASE_FORMAT = "weightgen-gan-base"
M = TypeVar("M", bound=ModelMixin)


def load_model(cls: type[M], folder: str | Path) -> M:
    """`cls.from_pretrained(folder)` with one clear line for a missing, incomplete or corrupt folder."""
    folder = Path(folder)
    if not folder.is_dir():  # checked here: diffusers would treat the path as a hub id and try the network
        raise GanError(f"{cls.__name__} folder not found: {folder}")
    try:
        return cls.from_pretrained(str(folder))
    except (OSError, ValueError, RuntimeError, KeyError, TypeError) as e:
        lines = [ln for ln in str(e).splitlines() if ln.strip()] or [type(e).__name__]
        raise GanError(f"cannot load {cls.__name__} from {folder}: {lines[0]}") from None


def load_base(base_dir: str | Path) -> tuple[Generator, Discriminator]:
    base_dir = Path(base_dir)
    if not base_dir.is_dir():
        raise GanError(f"base folder not found: {base_dir}")
    return load_model(Generator, base_dir / "generator"), load_model(Discriminator, base_dir / "discriminator")


def read_base_meta(base_dir: str | Path) -> dict:
    return read_json(Path(base_dir) / "weightgen.json")


def check_data_fits(config: GeneratorConfig, data: PairedData) -> None:
    """Fail before training when the images cannot go through this generator."""
    c, h, w = data.image_shape
    factor = 2**config.n_downsample
    if c != config.in_channels or c != config.out_channels:
        raise GanError(f"pairs have {c} channels, the generator maps {config.in_channels} -> {config.out_channels}")
    if h % factor or w % factor:
        raise GanError(f"pair images are {h}x{w}, not divisible by {factor} (2**n_downsample)")


def save_base(out_dir: str | Path, generator: Generator, discriminator: Discriminator, meta: dict,
              overwrite: bool = False) -> Path:
    out_dir = Path(out_dir)
    with atomic_dir(out_dir, overwrite=overwrite) as tmp:
        generator.save_pretrained(str(tmp / "generator"))
        discriminator.save_pretrained(str(tmp / "discriminator"))
        write_json(tmp / "weightgen.json", {"format": BASE_FORMAT, "version": 1, "weightgen_version": __version__,
                                            "fingerprint": fingerprint(generator),
                                            "weights_hash": weights_hash(generator), **meta})
    return out_dir


def build_models(config: BaseTrainConfig) -> tuple[Generator, Discriminator]:
    """Fresh G and D, initialized from `config.train.seed` without touching the caller's RNG."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.train.seed)
        return Generator.from_gan_config(config.generator), Discriminator.from_gan_config(config.discriminator)


def state_dir_for(out_dir: str | Path) -> Path:
    """Where a resumable base training keeps its state: beside the base folder it will write."""
    out_dir = Path(out_dir)
    return out_dir.with_name(out_dir.name + ".state")


def train_base(pairs_dir: str | Path, concepts: Sequence[str] | None, config: BaseTrainConfig, out_dir: str | Path,
               overwrite: bool = False, progress: bool = True, callback: EvalCallback | None = None,
               resumable: bool = False, state_every: float = 300.0) -> list[dict]:
    """Train G and D from scratch on the pairs of `concepts` (ids or texts; None = all), save the base folder.

    Returns the training history. Also the recipe for "pix2pix from scratch" on a single concept.
    resumable: keep the training state in `<out>.state/` (saved every `state_every` training seconds),
    continue from it when a run with the same settings left one, and delete it once the base is
    written; a longer `max_steps` / `max_seconds` extends a finished state's run.
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and not overwrite:  # fail now, not after training
        raise GanError(f"output folder already exists: {out_dir} (pass --overwrite to replace it)")
    data = PairedData.load(pairs_dir, concepts)
    check_data_fits(config.generator, data)
    generator, discriminator = build_models(config)
    state_dir = state_dir_for(out_dir) if resumable else None
    trainer = Pix2PixTrainer(generator, discriminator, data, config.train, callback=callback, progress=progress,
                             state_dir=None if state_dir is None else str(state_dir), state_every=state_every)
    if trainer.resumed is not None and progress:
        print(f"resuming from {state_dir} at step {trainer.step} ({trainer.seconds:.0f} s trained)")
    history = trainer.run_loop()
    if trainer.accelerator.is_main_process:
        meta = {"concepts": [{"id": c.id, "text": c.text} for c in data.concepts],
                "config": {"generator": config.generator.to_dict(), "discriminator": config.discriminator.to_dict(),
                           "train": config.train.to_dict()},
                "history": history}
        save_base(out_dir, trainer.unwrapped_generator, trainer.accelerator.unwrap_model(trainer.discriminator),
                  meta, overwrite=overwrite)
        if state_dir is not None:
            shutil.rmtree(state_dir, ignore_errors=True)
    trainer.accelerator.wait_for_everyone()
    return history
