"""Where the shipped artifacts live inside the package, so the main verbs work right after install.

    weightgen/assets/base/            the base GAN (gan.base folder: generator/, discriminator/, weightgen.json)
    weightgen/assets/generator/       the weight generator (`weightgen train` output, EMA weights)
    weightgen/assets/zoo_reference/   the training zoo reduced for the mean / nearest baselines

`weightgen pipeline configs/default.toml` writes them (its ship stage; docs/rebuild.md).
"""

from __future__ import annotations

from pathlib import Path

ASSETS_DIR = Path(__file__).resolve().parent / "assets"
DEFAULT_BASE_DIR = ASSETS_DIR / "base"
DEFAULT_GENERATOR_DIR = ASSETS_DIR / "generator"
DEFAULT_REFERENCE_DIR = ASSETS_DIR / "zoo_reference"
