"""The editor smoothness check: paraphrases must edit alike, unrelated concepts must not.

The weight generator learns text -> weights, so an editor whose outputs jump between paraphrases
gives it an unlearnable target. The check: mean absolute pixel distance (0..1 scale) between the
edits of a concept and of its paraphrases, divided by the distance between edits of unrelated
concepts, on the same sources. Used by scripts/bench_editor.py and by the tests.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

import torch

# Used when the shipped prompt set is missing: (concept, paraphrases) over the three categories.
BUILTIN_PARAPHRASES: list[tuple[str, list[str]]] = [
    ("van gogh style", ["in the style of vincent van gogh", "painted like van gogh"]),
    ("watercolor painting", ["a soft watercolour painting", "painted in watercolors"]),
    ("pencil sketch", ["a graphite pencil drawing", "sketched in pencil"]),
    ("pixel art", ["8-bit pixel art", "retro pixelated game graphics"]),
    ("stained glass window", ["as a stained glass window", "made of stained glass"]),
    ("comic book style", ["like a comic book panel", "comic book art"]),
    ("film noir", ["black and white film noir", "in the style of a noir movie"]),
    ("neon lights", ["glowing neon lights", "lit by neon signs"]),
    ("at night", ["during the night", "at nighttime"]),
    ("in winter snow", ["covered in snow", "a snowy winter scene"]),
    ("foggy morning", ["in thick fog", "on a misty morning"]),
    ("golden hour", ["in warm sunset light", "at golden hour"]),
    ("sepia photograph", ["an old sepia photo", "sepia toned vintage photograph"]),
    ("made of gold", ["a golden statue", "cast in solid gold"]),
    ("marble statue", ["carved from white marble", "a marble sculpture"]),
    ("on fire", ["engulfed in flames", "burning in fire"]),
    ("underwater", ["under the sea", "submerged underwater"]),
    ("thermal camera", ["seen through a thermal camera", "infrared heat vision"]),
    ("mosaic tiles", ["as a tile mosaic", "made of mosaic tiles"]),
    ("blueprint drawing", ["as a technical blueprint", "a blueprint schematic"]),
    ("pastel colors", ["in soft pastel colours", "pastel toned"]),
    ("autumn leaves", ["in autumn", "fall foliage colors"]),
    ("zombie", ["as a zombie", "undead zombie look"]),
    ("cyberpunk", ["cyberpunk style", "in a cyberpunk city"]),
]


@dataclass
class SimilarityReport:
    paraphrase_distance: float  # mean |edit(c) - edit(paraphrase of c)|, pixels in [0, 1]
    unrelated_distance: float  # mean |edit(c) - edit(another concept)|
    n_paraphrase_pairs: int
    n_unrelated_pairs: int

    @property
    def ratio(self) -> float:
        return self.paraphrase_distance / max(self.unrelated_distance, 1e-12)


def similarity_check(
    editor: Any,
    sources: Any,
    groups: list[tuple[str, list[str]]],
    unrelated_per_concept: int = 3,
    seed: int = 0,
    related: set[tuple[int, int]] | None = None,
) -> SimilarityReport:
    """Distances over `groups` (concept, paraphrases); unrelated pairs are drawn between groups.

    related: (i, j) index pairs of groups that must not count as unrelated (a concept and its
    parent, or two compositions sharing a component).
    """
    if len(groups) < 2:
        raise ValueError(f"need at least 2 concept groups for the unrelated distance, got {len(groups)}")
    cache: dict[str, torch.Tensor] = {}

    def edited(text: str) -> torch.Tensor:
        if text not in cache:
            out = editor.edit(sources, text, seed=seed)
            cache[text] = out.float() / 255 if out.dtype == torch.uint8 else out.float()
        return cache[text]

    def dist(a: str, b: str) -> float:
        return (edited(a) - edited(b)).abs().mean().item()

    para = [dist(c, p) for c, ps in groups for p in ps]
    if not para:
        raise ValueError("no paraphrases in the concept groups")
    rng = random.Random(seed)
    unrelated = []
    for i, (c, _) in enumerate(groups):
        others = [j for j in range(len(groups)) if j != i and (i, j) not in (related or ())]
        for j in rng.sample(others, min(unrelated_per_concept, len(others))):
            unrelated.append(dist(c, groups[j][0]))
    return SimilarityReport(
        paraphrase_distance=sum(para) / len(para),
        unrelated_distance=sum(unrelated) / len(unrelated),
        n_paraphrase_pairs=len(para),
        n_unrelated_pairs=len(unrelated),
    )
