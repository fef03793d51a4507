"""A tiny synthetic pair dataset in the agreed pairs-folder format, for tests, benchmarks and smoke runs.

Sources are smooth random colour fields with a few hard-edged shapes; each concept's target is a
fixed colour transform of its source (a 3x3 colour matrix + bias drawn from the concept's seed), so
a generator can learn it in a few hundred steps and a LoRA can tell concepts apart. The real
dataset builder is weightgen.pairs; this writes the same folder layout without needing it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F

from gan.io import save_tensors, write_json
from prompts.identity import concept_id


def synthetic_sources(n: int, size: int, seed: int) -> torch.Tensor:
    """(n, 3, size, size) uint8 images: smooth colour fields plus random rectangles."""
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(n, 3, 4, 4, generator=g)
    images = F.interpolate(low, size=(size, size), mode="bicubic", align_corners=False)  # (n, 3, S, S)
    images = images + 0.08 * torch.randn(n, 3, size, size, generator=g)
    for i in range(n):
        for _ in range(3):
            x0, y0 = torch.randint(0, size - size // 4, (2,), generator=g).tolist()
            w, h = torch.randint(size // 8, size // 3, (2,), generator=g).tolist()
            images[i, :, y0:y0 + h, x0:x0 + w] = torch.rand(3, 1, 1, generator=g)
    return images.clamp(0, 1).mul(255).round().to(torch.uint8)


def colour_transform(images: torch.Tensor, seed: int) -> torch.Tensor:
    """A concept's edit: out = clamp(M @ rgb + b), M and b drawn from `seed` (uint8 in, uint8 out)."""
    g = torch.Generator().manual_seed(seed)
    matrix = torch.eye(3) * 0.4 + 0.6 * torch.rand(3, 3, generator=g)  # mixes channels, keeps some identity
    matrix = matrix / matrix.sum(dim=1, keepdim=True)
    bias = 0.3 * (torch.rand(3, generator=g) - 0.5)
    x = images.float() / 255.0  # (N, 3, H, W)
    y = torch.einsum("ij,njhw->nihw", matrix, x) + bias.view(1, 3, 1, 1)
    return y.clamp(0, 1).mul(255).round().to(torch.uint8)


def write_synthetic_pairs(root: str | Path, concepts: Sequence[str] = ("warm sepia", "cold blue"), n_train: int = 32,
                          n_test: int = 8, image_size: int = 64, seed: int = 0) -> Path:
    """Write a pairs folder (manifest.json + <concept_id>/pairs.safetensors) and return its path.

    Sources are shared by all concepts (as with real photos); concept k's edit uses seed + 1000 * (k + 1).
    """
    root = Path(root)
    train = synthetic_sources(n_train, image_size, seed)
    test = synthetic_sources(n_test, image_size, seed + 1)
    manifest = {"format": "weightgen-pairs", "version": 1, "image_size": image_size, "editor": "synthetic",
                "seed": seed, "concepts": {}}
    for k, text in enumerate(concepts):
        cid = concept_id(text)
        edit_seed = seed + 1000 * (k + 1)
        save_tensors(root / cid / "pairs.safetensors",
                     {"train_source": train, "train_target": colour_transform(train, edit_seed),
                      "test_source": test, "test_target": colour_transform(test, edit_seed)},
                     metadata={"concept": text})
        manifest["concepts"][cid] = {"text": text, "n_train": n_train, "n_test": n_test,
                                     "sources_train": [f"synthetic-{seed}-{i}" for i in range(n_train)],
                                     "sources_test": [f"synthetic-{seed + 1}-{i}" for i in range(n_test)]}
    write_json(root / "manifest.json", manifest)
    return root
