"""The bench's concepts: the zoo's held-out ones (target: their zoo LoRA), or those of a concepts file.

A concepts-file concept has no zoo oracle; its target is a reference fine-tune the bench makes
(weightgen.bench.reference). One the zoo knows is noted: a training concept of the zoo is one the
generator was trained on, so its figures say nothing about new concepts.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from gan.data import read_manifest as read_pairs_manifest
from gan.data import resolve_concept
from prompts.identity import concept_id, normalize_concept
from weightgen.bench.config import BenchConfig
from weightgen.errors import WeightgenError
from weightgen.pairs.build import read_concepts_file
from weightgen.zoo.store import read_manifest


@dataclass(frozen=True)
class HeldOutConcept:
    id: str
    text: str
    oracle_path: str  # its last zoo checkpoint, relative to the zoo
    oracle_step: int  # the zoo training step that checkpoint was saved at
    checkpoints: tuple[tuple[str, int], ...] = ()  # every zoo checkpoint (path, step): the oracle's candidates


@dataclass(frozen=True)
class BenchConcept:
    """One concept of the bench: a held-out zoo concept, or one of a concepts file (target: a reference fine-tune)."""

    id: str
    text: str
    source: Literal["zoo", "file"]
    checkpoints: tuple[tuple[str, int], ...] = ()  # zoo concepts: (path relative to the zoo, step)
    note: str = ""  # e.g. that a concepts-file concept is one the generator was trained on


def heldout_concepts(zoo: str | Path) -> tuple[list[HeldOutConcept], dict]:
    """The zoo's held-out concepts that have an oracle (a checkpoint), in manifest order, and the manifest."""
    manifest = read_manifest(Path(zoo))
    out = []
    for cid, info in (manifest.get("concepts") or {}).items():
        if info.get("split") == "heldout" and info.get("checkpoints"):
            last = info["checkpoints"][-1]
            out.append(HeldOutConcept(cid, info.get("text", cid), last["path"], int(last.get("step", -1)),
                                      tuple((c["path"], int(c.get("step", -1))) for c in info["checkpoints"])))
    if not out:
        raise WeightgenError(f"zoo {zoo} has no held-out concepts with checkpoints; the bench compares methods "
                             "on held-out concepts against their own zoo LoRA (build the zoo with a held-out split)")
    return out, manifest


def file_concepts(path: str | Path, manifest: dict) -> list[BenchConcept]:
    """The concepts of a concepts file, deduplicated by id, each noted when the zoo knows it."""
    texts = read_concepts_file(path)
    if not texts:
        raise WeightgenError(f"concepts file has no concepts: {path}")
    out: dict[str, BenchConcept] = {}
    zoo_concepts = manifest.get("concepts") or {}
    for text in texts:
        text = normalize_concept(text)
        cid = concept_id(text)
        split = (zoo_concepts.get(cid) or {}).get("split")
        note = ("a training concept of the zoo: the generator was trained on it" if split == "train" else
                "a held-out concept of the zoo; its target here is the bench's reference fine-tune"
                if split == "heldout" else "")
        out.setdefault(cid, BenchConcept(cid, text, "file", note=note))
    return list(out.values())


def bench_concepts(config: BenchConfig) -> tuple[list[BenchConcept], dict]:
    """The concepts file's concepts when one is given, else the zoo's held-out ones; and the zoo manifest."""
    if config.concepts_file is not None:
        manifest = read_manifest(Path(config.zoo))
        return file_concepts(config.concepts_file, manifest), manifest
    heldout, manifest = heldout_concepts(config.zoo)
    return [BenchConcept(c.id, c.text, "zoo", c.checkpoints) for c in heldout], manifest


def check_pairs_hold(config: BenchConfig, concepts: list[BenchConcept]) -> None:
    """A given --concepts-pairs folder must hold every concepts-file concept (checked before anything is written)."""
    if config.concepts_pairs is None:
        return
    manifest = read_pairs_manifest(config.concepts_pairs)
    for concept in concepts:
        resolve_concept(manifest, concept.id, config.concepts_pairs)


def select_concepts(config: BenchConfig, concepts: list) -> list:
    """config.concepts (ids or texts), then the first `limit`, then this process's shard."""
    chosen = concepts
    if config.concepts is not None:
        by_name = {c.id: c for c in concepts} | {c.text: c for c in concepts}
        unknown = [name for name in config.concepts if name not in by_name]
        if unknown:
            where = "in the concepts file" if config.concepts_file else "held-out concepts of the zoo"
            raise WeightgenError(f"not {where}: {unknown}; there: {[c.text for c in concepts]}")
        chosen = list({by_name[name].id: by_name[name] for name in config.concepts}.values())
    if config.limit is not None:
        chosen = chosen[: config.limit]
    i, n = config.shard_index
    return chosen[i::n]
