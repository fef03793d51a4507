"""The zoo stage's inputs: each concept's pairs (built on the fly or required) and the frozen base."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gan.base import load_base
from gan.data import read_manifest
from gan.lora import fingerprint, weights_hash
from prompts.identity import concept_id
from weightgen.errors import WeightgenError
from weightgen.pairs.build import build_pairs
from weightgen.pairs.config import PairsConfig

PAIRS_SETTINGS_KEYS = ("editor", "image_size", "canvas_size", "seed", "n_train", "n_test", "sources_origin", "test_fraction")


def pairs_manifest(pairs_dir: str | Path) -> dict | None:
    """The pairs folder's manifest, or None when the folder has none yet."""
    path = Path(pairs_dir)
    if not (path / "manifest.json").exists():
        return None
    return read_manifest(path)


def ensure_pairs(pairs_dir: str | Path, texts: Sequence[str], settings: dict, build: bool,
                 progress: Callable[[int, int, str], None] | None = None) -> dict:
    """Make sure every concept in `texts` has pairs in `pairs_dir`; returns the pairs manifest.

    Missing concepts are built with weightgen.pairs.build_pairs (resumable; `settings` are
    PairsConfig fields, which must match the folder's) when `build`, else they are an error that
    names them and says how to build them.
    """
    manifest = pairs_manifest(pairs_dir)
    have = set(manifest["concepts"]) if manifest else set()
    missing = [t for t in texts if concept_id(t) not in have]
    if missing and not build:
        shown = ", ".join(repr(t) for t in missing[:3]) + (" ..." if len(missing) > 3 else "")
        raise WeightgenError(f"{len(missing)} concept(s) have no pairs in {pairs_dir}: {shown}; build them with "
                             f"`weightgen pairs --out {pairs_dir} ...` or let the zoo build them "
                             "(drop --no-build-pairs)")
    if missing:
        try:
            config = PairsConfig(out=str(pairs_dir), **settings)
        except TypeError as e:
            raise WeightgenError(f"bad pairs settings {settings!r}: {e}") from None
        build_pairs(missing, config, progress=progress)
        manifest = pairs_manifest(pairs_dir)
    assert manifest is not None
    return manifest


def pairs_settings_of(manifest: dict) -> dict:
    """The part of a pairs manifest that decides what the pairs look like (recorded in the zoo's plan)."""
    return {k: manifest.get(k) for k in PAIRS_SETTINGS_KEYS}


@dataclass
class BaseModels:
    """The frozen base G and D every concept's LoRA starts from, and the base's identity."""

    path: Path
    generator: Any
    discriminator: Any
    fingerprint: str  # architecture sha (gan.lora.fingerprint)
    weights_hash: str  # weights sha: tells two trainings of one architecture apart

    @classmethod
    def load(cls, base_dir: str | Path) -> BaseModels:
        base_dir = Path(base_dir)
        if not base_dir.is_dir():
            raise WeightgenError(f"base folder not found: {base_dir} (build it with `weightgen zoo base`)")
        generator, discriminator = load_base(base_dir)
        return cls(base_dir.resolve(), generator, discriminator, fingerprint(generator), weights_hash(generator))

    @property
    def image_size(self) -> int:
        return int(self.generator.config.image_size)
