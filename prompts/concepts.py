"""The prompt-set data model: Concept, PromptSet, their JSON file format and concept ids.

Every later stage (pairs, zoo, generator, evaluation) reads concepts through `load_prompt_set`,
so the file is validated here once, with errors that name the file and the bad entry.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

from prompts.errors import PromptError
from prompts.identity import concept_id, concept_key, normalize_concept
from prompts.io import read_json, write_json

FORMAT = "weightgen-prompts"
VERSION = "1"
CATEGORIES = ("style", "character", "appearance")
SPLITS = ("train", "heldout")
DATA_DIR = Path(__file__).parent / "data"
DEFAULT_PROMPT_SET = DATA_DIR / "concepts-v1.json"

Split = Literal["train", "heldout"]


@dataclass
class Concept:
    """One edit concept. `parent` is the concept it was derived from (None for a root);
    a composition's `components` are the ids it combines (its parent is the first)."""

    text: str
    category: str
    parent: str | None = None
    paraphrases: list[str] = field(default_factory=list)
    split: Split = "train"
    components: list[str] = field(default_factory=list)
    id: str = ""

    def __post_init__(self) -> None:
        self.text = normalize_concept(self.text)
        if not self.id:
            self.id = concept_id(self.text)
        if self.category not in CATEGORIES:
            raise PromptError(f"concept {self.text!r}: unknown category {self.category!r}; use one of {CATEGORIES}")
        if self.split not in SPLITS:
            raise PromptError(f"concept {self.text!r}: unknown split {self.split!r}; use one of {SPLITS}")
        self.paraphrases = [normalize_concept(p) for p in self.paraphrases]

    @property
    def texts(self) -> list[str]:
        """The concept text followed by its paraphrases (all name the same edit)."""
        return [self.text, *self.paraphrases]

    def to_json(self) -> dict:
        d = asdict(self)
        out = {k: d[k] for k in ("id", "text", "category", "parent", "paraphrases", "split")}
        if self.components:
            out["components"] = list(self.components)
        return out


@dataclass
class PromptSet:
    concepts: list[Concept]
    build_command: str = ""
    categories: tuple[str, ...] = CATEGORIES
    source: str = ""  # the file it was read from, for error messages

    def __post_init__(self) -> None:
        seen: dict[str, str] = {}
        for c in self.concepts:
            if c.id in seen:
                raise PromptError(f"duplicate concept id {c.id!r} ({c.text!r} and {seen[c.id]!r}) {self.source}".rstrip())
            seen[c.id] = c.text
        for c in self.concepts:
            for ref in ([c.parent] if c.parent else []) + c.components:
                if ref not in seen:
                    raise PromptError(f"concept {c.text!r} refers to unknown concept id {ref!r} {self.source}".rstrip())

    @property
    def train(self) -> list[Concept]:
        return [c for c in self.concepts if c.split == "train"]

    @property
    def heldout(self) -> list[Concept]:
        return [c for c in self.concepts if c.split == "heldout"]

    @property
    def by_id(self) -> dict[str, Concept]:
        return {c.id: c for c in self.concepts}

    def by_text(self, text: str) -> Concept | None:
        """The concept whose text or paraphrase matches `text` (case and spacing ignored)."""
        key = concept_key(text)
        for c in self.concepts:
            if any(t.lower() == key for t in c.texts):
                return c
        return None

    def category(self, name: str) -> list[Concept]:
        return [c for c in self.concepts if c.category == name]

    def stats(self) -> dict:
        """Counts a reader checks first: totals, per category and split, paraphrases."""
        n = len(self.concepts)
        per = {cat: {s: sum(1 for c in self.concepts if c.category == cat and c.split == s) for s in SPLITS} for cat in self.categories}
        return {
            "concepts": n,
            "train": len(self.train),
            "heldout": len(self.heldout),
            "heldout_fraction": round(len(self.heldout) / n, 4) if n else 0.0,
            "per_category": per,
            "compositions": sum(1 for c in self.concepts if c.components),
            "roots": sum(1 for c in self.concepts if c.parent is None),
            "paraphrases": sum(len(c.paraphrases) for c in self.concepts),
            "min_paraphrases": min((len(c.paraphrases) for c in self.concepts), default=0),
        }

    def to_json(self) -> dict:
        return {
            "format": FORMAT,
            "version": VERSION,
            "build_command": self.build_command,
            "categories": list(self.categories),
            "concepts": [c.to_json() for c in self.concepts],
        }

    def save(self, path: str | Path) -> Path:
        """Atomic write: an interrupted save never leaves a partial prompt file."""
        write_json(path, self.to_json())
        return Path(path)


def load_prompt_set(path: str | Path | None = None) -> PromptSet:
    """Read a prompt set file (the shipped prompts/data/concepts-v1.json when `path` is None)."""
    path = Path(path) if path is not None else DEFAULT_PROMPT_SET
    data = read_json(path)
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise PromptError(f"{path} is not a weightgen prompt set (format {data.get('format') if isinstance(data, dict) else None!r}, expected {FORMAT!r})")
    if str(data.get("version")) != VERSION:
        raise PromptError(f"{path}: unsupported prompt set version {data.get('version')!r} (this weightgen reads {VERSION!r})")
    categories = tuple(data.get("categories") or CATEGORIES)
    concepts = []
    for i, entry in enumerate(data.get("concepts") or []):
        try:
            concepts.append(
                Concept(
                    text=entry["text"],
                    category=entry["category"],
                    parent=entry.get("parent"),
                    paraphrases=list(entry.get("paraphrases") or []),
                    split=entry.get("split", "train"),
                    components=list(entry.get("components") or []),
                    id=entry.get("id") or "",
                )
            )
        except (KeyError, TypeError) as e:
            raise PromptError(f"{path}: concept #{i} is malformed (missing {e}): {entry!r}") from None
        except PromptError as e:
            raise PromptError(f"{path}: concept #{i}: {e}") from None
    if not concepts:
        raise PromptError(f"{path}: the prompt set has no concepts")
    return PromptSet(concepts=concepts, build_command=data.get("build_command", ""), categories=categories, source=f"in {path}")
