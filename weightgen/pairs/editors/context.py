"""What an editor op may need besides its input image: the source photo, a seed, a cache, the style network."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from prompts.identity import stable_seed

Tensor = torch.Tensor


@dataclass
class OpContext:
    """What an op may need besides its input: the unedited source, a seed, the editor's cache."""

    source: Tensor  # (N, 3, H, W) float in [0, 1], the photo before any op ran
    seed: int
    cache: dict = field(default_factory=dict)
    # the bank editor's neural_ops.StyleNetwork, for the neural style ops (None in the procedural editor)
    styles: Any = None

    def pattern(self, key: str, height: int, width: int) -> Tensor:
        """(1, 1, H, W) uniform noise, a pure function of (seed, key, size)."""
        g = torch.Generator().manual_seed(stable_seed(self.seed, key, f"{height}x{width}", sep=":", algorithm="sha1"))
        return torch.rand(1, 1, height, width, generator=g)
