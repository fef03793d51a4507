"""Seed lists (prompts/data/seeds.json) and the rule-based generator built on them.

The rules are the offline fallback for both LLM passes: `variants` stands in for the generator
LLM (modifiers combined with seed concepts) and `rule_paraphrases` for the augmenting LLM
(phrase frames such as "X style" -> "in the style of X", then word synonyms). Both are
deterministic for a given seed.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field
from pathlib import Path

from prompts.concepts import CATEGORIES, DATA_DIR
from prompts.errors import PromptError
from prompts.io import read_json
from prompts.text import normalize_text

DEFAULT_SEEDS = DATA_DIR / "seeds.json"


@dataclass
class CategorySeeds:
    name: str
    description: str
    seeds: list[str]
    prefixes: list[str] = field(default_factory=list)
    suffixes: list[str] = field(default_factory=list)


@dataclass
class ParaphraseRules:
    synonyms: dict[str, list[str]]
    frames: list[tuple[re.Pattern, list[str]]]
    fallback_phrase: list[str]
    fallback_prepositional: list[str]
    prepositions: set[str]


@dataclass
class Seeds:
    categories: dict[str, CategorySeeds]
    paraphrase: ParaphraseRules
    source: str = ""


def load_seeds(path: str | Path | None = None) -> Seeds:
    path = Path(path) if path is not None else DEFAULT_SEEDS
    data = read_json(path)
    try:
        cats = {}
        for name, c in data["categories"].items():
            if name not in CATEGORIES:
                raise PromptError(f"{path}: unknown category {name!r}; use one of {CATEGORIES}")
            if not c["seeds"]:
                raise PromptError(f"{path}: category {name!r} has no seeds")
            mods = c.get("modifiers", {})
            cats[name] = CategorySeeds(name, c["description"], list(c["seeds"]), list(mods.get("prefix", [])), list(mods.get("suffix", [])))
        p = data["paraphrase"]
        rules = ParaphraseRules(
            synonyms={k.lower(): list(v) for k, v in p["synonyms"].items()},
            frames=[(re.compile(f["pattern"]), list(f["templates"])) for f in p["frames"]],
            fallback_phrase=list(p["fallbacks"]["phrase"]),
            fallback_prepositional=list(p["fallbacks"]["prepositional"]),
            prepositions={w.lower() for w in p["prepositions"]},
        )
    except (KeyError, TypeError, re.error) as e:
        raise PromptError(f"{path}: malformed seeds file ({type(e).__name__}: {e})") from None
    return Seeds(categories=cats, paraphrase=rules, source=str(path))


def variants(cat: CategorySeeds, bases: list[str], n: int, seed: int, prepositions: frozenset[str] = frozenset()) -> list[str]:
    """Up to `n` new concepts: a prefix or suffix modifier applied to a base concept.

    Seeded shuffle of the full product, so different seeds give different (deterministic) picks;
    a modifier the base already contains is skipped ("in winter" + "in winter snow"), and
    prefixes only go before noun phrases ("soft watercolor painting", not "soft made of glass").
    """
    candidates = []
    for base in bases:
        words = set(normalize_text(base).split())
        prefixable = base.split()[0].lower() not in prepositions
        for p in cat.prefixes if prefixable else []:
            if not set(normalize_text(p).split()) & words:
                candidates.append(f"{p} {base}")
        for s in cat.suffixes:
            if not set(normalize_text(s).split()) & words:
                candidates.append(f"{base} {s}")
    rng = random.Random(f"variants:{cat.name}:{seed}")
    rng.shuffle(candidates)
    return candidates[:n]


def _swap_synonyms(text: str, rules: ParaphraseRules, rng: random.Random, limit: int) -> list[str]:
    """Texts with one word replaced by a synonym (each substitutable word, each synonym)."""
    words = text.split()
    out = []
    for i, w in enumerate(words):
        for syn in rules.synonyms.get(w.lower(), []):
            out.append(" ".join(words[:i] + [syn] + words[i + 1 :]))
    rng.shuffle(out)
    return out[:limit]


def rule_paraphrases(text: str, rules: ParaphraseRules, n: int, seed: int) -> list[str]:
    """Up to `n` paraphrases of `text`: phrase frames first (they keep the meaning best), then
    synonym swaps, then a frame-plus-synonym mix, then generic fallbacks. A composition
    "a, b" is paraphrased part by part and in swapped order."""
    rng = random.Random(f"paraphrase:{normalize_text(text)}:{seed}")
    out: list[str] = []

    def add(candidate: str) -> None:
        candidate = " ".join(candidate.split())
        if normalize_text(candidate) != normalize_text(text) and all(normalize_text(candidate) != normalize_text(o) for o in out):
            out.append(candidate)

    if ", " in text:  # composition: swap order, paraphrase the parts
        parts = text.split(", ")
        add(", ".join(reversed(parts)))
        part_paras = [rule_paraphrases(p, rules, 2, seed) or [p] for p in parts]
        for k in range(2):
            add(", ".join(pp[k % len(pp)] for pp in part_paras))
        add(" and ".join(parts))
        return out[:n]

    framed = []
    for pattern, templates in rules.frames:
        m = pattern.match(text)
        if m:
            framed = [t.format(**m.groupdict()) for t in templates]
            break
    for f in framed:
        add(f)
    for s in _swap_synonyms(text, rules, rng, limit=n):
        add(s)
    for f in framed:
        for s in _swap_synonyms(f, rules, rng, limit=1):
            add(s)
    first = text.split()[0].lower()
    fallbacks = rules.fallback_prepositional if first in rules.prepositions else rules.fallback_phrase
    for f in fallbacks:
        add(f.format(x=text))
    return out[:n]
