"""Train / held-out split by concept family, so nothing held out leaks into training.

Rules (held-out concepts measure generalization to concepts the weight generator never saw):
1. Paraphrases live inside their concept, so they always share its side.
2. A family is a root concept plus everything derived from it through `parent` ("soft watercolor
   painting" belongs to "watercolor painting"); whole families go to one side, chosen per
   category with a seeded shuffle until the category's held-out share reaches the target.
3. A concept is held out if ANY root concept it contains is held out: a composition's
   components ("van gogh style, at night"), or a root named inside its text or paraphrases
   ("in a blizzard at sunset" contains "at sunset"). So a held-out concept never appears in
   training inside a combination. A combination of training concepts stays in training.
4. `force_heldout` texts (the product demo's "van gogh style") put their family on the held-out side.
"""

from __future__ import annotations

import random
from dataclasses import replace

from prompts.concepts import Concept
from prompts.errors import PromptError
from prompts.text import normalize_text


def family_of(concept: Concept, by_id: dict[str, Concept]) -> str:
    """The root id reached through `parent` links (compositions: through their first component)."""
    seen = set()
    c = concept
    while c.parent is not None:
        if c.id in seen:
            raise PromptError(f"parent cycle through concept {c.text!r}")
        seen.add(c.id)
        c = by_id[c.parent]
    return c.id


def assign_splits(concepts: list[Concept], heldout_fraction: float, seed: int, force_heldout: tuple[str, ...] = ()) -> list[Concept]:
    """New concepts with `split` set (the input is not modified); deterministic for a seed."""
    if not 0.0 < heldout_fraction < 1.0:
        raise PromptError(f"heldout_fraction should be in (0, 1), got {heldout_fraction}")
    by_id = {c.id: c for c in concepts}
    singles = [c for c in concepts if not c.components]
    families: dict[str, list[Concept]] = {}
    for c in singles:
        families.setdefault(family_of(c, by_id), []).append(c)

    forced = {normalize_text(t) for t in force_heldout}
    heldout_families = {
        fam for fam, members in families.items() if any(normalize_text(t) in forced for m in members for t in m.texts)
    }
    for category in sorted({by_id[f].category for f in families}):
        fams = sorted(f for f in families if by_id[f].category == category)
        total = sum(len(families[f]) for f in fams)
        held = sum(len(families[f]) for f in fams if f in heldout_families)
        random.Random(f"split:{category}:{seed}").shuffle(fams)
        for fam in fams:
            if held >= heldout_fraction * total:
                break
            if fam not in heldout_families:
                heldout_families.add(fam)
                held += len(families[fam])

    # roots named inside a concept's texts, matched on whole words of the normalized text
    root_keys = {c.id: f" {normalize_text(c.text)} " for c in singles if c.parent is None}

    def contains_heldout(c: Concept) -> bool:
        texts = [f" {normalize_text(t)} " for t in c.texts]
        named = {rid for rid, key in root_keys.items() if any(key in t for t in texts)}
        return any(family_of(by_id[r], by_id) in heldout_families for r in set(c.components) | named)

    out = []
    for c in concepts:
        held = (not c.components and family_of(c, by_id) in heldout_families) or contains_heldout(c)
        out.append(replace(c, split="heldout" if held else "train"))
    return out
