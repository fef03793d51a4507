"""Which concepts the zoo and the base are built from: representative picks by k-means over text embeddings.

A prompt set holds hundreds of concepts; a CPU zoo holds ~80. Picking one concept per k-means
cluster of the text embeddings (prompts.select) spreads the zoo over the text space instead of
taking the first N of one category, and picks the base's concepts the way E2GAN does.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from prompts.identity import concept_id
from prompts.select import select_representative
from weightgen.errors import WeightgenError
from weightgen.text_encoders import load_text_encoder
from weightgen.zoo.config import SPLITS


@dataclass(frozen=True)
class ZooConcept:
    text: str
    split: str = "train"  # "train": the generator's data; "heldout": the benchmark's oracle, never training data

    def __post_init__(self) -> None:
        if self.split not in SPLITS:
            raise WeightgenError(f"concept {self.text!r}: split should be one of {SPLITS}, got {self.split!r}")
        concept_id(self.text)  # refuses empty text with a clear line

    @property
    def id(self) -> str:
        return concept_id(self.text)


def pick_representative(texts: Sequence[str], n: int | None, encoder: Any = None, seed: int = 0) -> list[str]:
    """`n` of `texts`, one per k-means cluster of their embeddings, in the given order (all when n is None or >= len).

    `encoder` is a weightgen text encoder or a name for `load_text_encoder` (default "minilm");
    it is loaded only when there is something to choose.
    """
    texts = list(texts)
    if n is not None and n < 1:
        raise WeightgenError(f"the number of concepts to pick should be positive, got {n}")
    if n is None or n >= len(texts):
        return texts
    if encoder is None or isinstance(encoder, str):
        encoder = load_text_encoder(encoder or "minilm")
    chosen = select_representative(texts, n, encoder, seed=seed)
    return [texts[i] for i in sorted(chosen)]


def plan_from_prompt_set(prompt_set: Any, n_train: int | None = 64, n_heldout: int | None = 16, encoder: Any = None,
                         seed: int = 0, splits: Sequence[str] = SPLITS) -> list[ZooConcept]:
    """The zoo's concepts: `n_train` representative training concepts and `n_heldout` held-out ones.

    `prompt_set` is a prompts.PromptSet (prompts.load_prompt_set()). Held-out concepts are picked
    among the held-out split only, so no held-out text ever enters the generator's data.
    """
    plan: list[ZooConcept] = []
    for split, n in (("train", n_train), ("heldout", n_heldout)):
        if split not in splits:
            continue
        texts = [c.text for c in (prompt_set.train if split == "train" else prompt_set.heldout)]
        if not texts:
            where = getattr(prompt_set, "source", "")
            raise WeightgenError(f"the prompt set has no {split!r} concepts {where}".strip())
        if n is not None and n > len(texts):
            raise WeightgenError(f"asked for {n} {split} concepts, the prompt set has only {len(texts)}")
        plan += [ZooConcept(t, split) for t in pick_representative(texts, n, encoder, seed)]
    return plan


def base_concepts(prompt_set: Any, n: int, encoder: Any = None, seed: int = 0) -> list[str]:
    """E2GAN's base concepts: `n` representative single (non-composed) training concepts."""
    singles = [c.text for c in prompt_set.train if not getattr(c, "components", None)]
    if not singles:
        raise WeightgenError("the prompt set has no single training concepts to train the base on")
    if n > len(singles):
        raise WeightgenError(f"asked for {n} base concepts, the prompt set has only {len(singles)} single "
                             "training concepts")
    return pick_representative(singles, n, encoder, seed)


def check_plan(concepts: Sequence[ZooConcept]) -> list[ZooConcept]:
    """Refuse an empty plan, a concept listed twice, or one concept in both splits (a leak into the generator)."""
    concepts = list(concepts)
    if not concepts:
        raise WeightgenError("no concepts to build a zoo from")
    seen: dict[str, ZooConcept] = {}
    for c in concepts:
        if not isinstance(c, ZooConcept):
            raise WeightgenError(f"zoo concepts should be ZooConcept(text, split), got {c!r}")
        if c.id in seen:
            other = seen[c.id]
            what = "in both splits" if other.split != c.split else "twice"
            raise WeightgenError(f"concept {c.text!r} is listed {what} (as {other.text!r}, id {c.id})")
        seen[c.id] = c
    return concepts
