"""Build a prompt set: seeds -> generation -> validation -> dedupe -> parents -> augmentation
-> compositions -> split. One function, `build_prompt_set`, with one typed config.

Order matters for dedupe (first wins): hand-written seeds, then the generator LLM's proposals,
then template variants that fill each category up to its target.
"""

from __future__ import annotations

import random
import shlex
from dataclasses import dataclass, field, replace
from typing import Callable

import numpy as np

from prompts.concepts import CATEGORIES, Concept, PromptSet, concept_id
from prompts.dedupe import dedupe_embeddings, dedupe_exact, embed
from prompts.errors import PromptError
from prompts.llm import LLMBackend, TemplateBackend
from prompts.seeds import Seeds, load_seeds
from prompts.split import assign_splits
from prompts.text import ValidationRules, normalize_text, rejection_reason

# progress(stage, done, total): called as work advances, so a CLI can draw bars.
ProgressFn = Callable[[str, int, int], None]


@dataclass
class BuildConfig:
    """What to build. Defaults produce the shipped prompts/data/concepts-v1.json (with the
    generator and augmenter named in its build command)."""

    seed: int = 0
    llm_rounds: int = 2  # generator-LLM requests per category (each asks for `llm_batch` concepts)
    llm_batch: int = 8
    variants_per_category: int = 60  # template variants added per category after the LLM's proposals
    n_paraphrases: int = 3  # paraphrases kept per concept (at least `min_paraphrases`)
    min_paraphrases: int = 2  # a concept with fewer valid paraphrases is dropped
    llm_paraphrase_limit: int = 12  # concepts whose paraphrases the augmenter LLM writes first (rules fill the rest)
    n_compositions: int = 200  # cross-category combinations "a, b" of root concepts
    dup_threshold: float = 0.9  # cosine >= this to a kept text = near duplicate (MiniLM)
    parent_threshold: float = 0.5  # a generated concept needs this similarity to a seed, its parent (else off-topic, dropped)
    paraphrase_threshold: float = 0.6  # a paraphrase needs this similarity to its concept (and to be nearest to it)
    # An LLM's output is held to stricter limits than the rules': a small model drifts ("at night" ->
    # "during the day" is 0.6-similar to it in MiniLM space, and long outputs are descriptions).
    llm_max_words: int = 5
    llm_parent_threshold: float = 0.6
    llm_paraphrase_threshold: float = 0.8
    heldout_fraction: float = 0.15  # ... per category, over single concepts; compositions follow their parts
    force_heldout: tuple[str, ...] = ("van gogh style",)  # the product demo's concept must not be trained on
    rules: ValidationRules = field(default_factory=ValidationRules)

    def __post_init__(self) -> None:
        for name in ("llm_rounds", "variants_per_category", "n_compositions", "llm_paraphrase_limit"):
            if getattr(self, name) < 0:
                raise PromptError(f"{name} should be >= 0, got {getattr(self, name)}")
        if self.llm_batch < 1:
            raise PromptError(f"llm_batch should be positive, got {self.llm_batch}")
        if not 1 <= self.min_paraphrases <= self.n_paraphrases:
            raise PromptError(f"need 1 <= min_paraphrases <= n_paraphrases, got {self.min_paraphrases} and {self.n_paraphrases}")
        for name in ("dup_threshold", "parent_threshold", "paraphrase_threshold", "llm_parent_threshold", "llm_paraphrase_threshold"):
            if not 0.0 < getattr(self, name) <= 1.0:
                raise PromptError(f"{name} should be in (0, 1], got {getattr(self, name)}")
        if not 0.0 < self.heldout_fraction < 1.0:
            raise PromptError(f"heldout_fraction should be in (0, 1), got {self.heldout_fraction}")

    def cli_args(self) -> list[str]:
        """The `weightgen prompts build` options for this config, defaults written out so a recorded
        command stays exact if CLI defaults change (fields without an option are library defaults)."""
        return [
            "--seed", str(self.seed), "--llm-rounds", str(self.llm_rounds), "--llm-batch", str(self.llm_batch),
            "--variants", str(self.variants_per_category), "--paraphrases", str(self.n_paraphrases),
            "--llm-paraphrase-limit", str(self.llm_paraphrase_limit), "--compositions", str(self.n_compositions),
            "--dup-threshold", f"{self.dup_threshold:g}", "--heldout-fraction", f"{self.heldout_fraction:g}",
        ]


def build_command(config: BuildConfig, generator: str, augmenter: str, out: str, extra: list[str] = ()) -> str:
    args = ["weightgen", "prompts", "build", "--generator", generator, "--augmenter", augmenter, *extra, *config.cli_args(), "--out", out]
    return shlex.join(args)


@dataclass
class _Candidate:
    text: str
    category: str
    origin: str  # "seed" | "llm" | "template": for stats and dedupe priority


def _valid(texts: list[str], rules: ValidationRules) -> list[str]:
    return [t for t in texts if rejection_reason(t, rules) is None]


def _generate(cfg: BuildConfig, seeds: Seeds, generator: LLMBackend, fill: TemplateBackend, progress: ProgressFn) -> list[_Candidate]:
    """Seeds, then generator proposals, then template variants (all validated, not yet deduped)."""
    cands = [_Candidate(s, cat, "seed") for cat, cs in seeds.categories.items() for s in cs.seeds]
    llm_rules = replace(cfg.rules, max_words=min(cfg.rules.max_words, cfg.llm_max_words))
    llm_steps = 0 if isinstance(generator, TemplateBackend) else cfg.llm_rounds * len(seeds.categories)
    done = 0
    for cat, cs in seeds.categories.items():
        for r in range(cfg.llm_rounds if llm_steps else 0):
            proposals = generator.propose(cat, cs.description, cs.seeds, cfg.llm_batch, seed=cfg.seed * 1000 + r)
            cands += [_Candidate(t, cat, "llm") for t in _valid(proposals, llm_rules)]
            done += 1
            progress("generate", done, llm_steps)
    for cat, cs in seeds.categories.items():
        # ask for spares: some variants will be near-duplicates or too long
        proposals = fill.propose(cat, cs.description, cs.seeds, 3 * cfg.variants_per_category, seed=cfg.seed)
        cands += [_Candidate(t, cat, "template") for t in _valid(proposals, cfg.rules)]
    return cands


def _attach_parents(cands: list[_Candidate], emb: np.ndarray, cfg: BuildConfig) -> tuple[list[Concept], np.ndarray]:
    """Seeds become roots; every other candidate joins its nearest seed if close enough (else dropped)."""
    is_seed = np.array([c.origin == "seed" for c in cands])
    seed_idx = np.flatnonzero(is_seed)
    sims = emb @ emb[seed_idx].T  # (N, S)
    concepts: list[Concept] = []
    rows: list[int] = []
    n_variants = {cat: 0 for cat in CATEGORIES}
    for i, c in enumerate(cands):
        if c.origin == "seed":
            concepts.append(Concept(text=c.text, category=c.category))
            rows.append(i)
            continue
        j = int(sims[i].argmax())
        parent = cands[seed_idx[j]]
        if sims[i, j] < (cfg.llm_parent_threshold if c.origin == "llm" else cfg.parent_threshold):
            continue
        if c.origin == "template" and n_variants[parent.category] >= cfg.variants_per_category:
            continue
        n_variants[parent.category] += c.origin == "template"
        concepts.append(Concept(text=c.text, category=parent.category, parent=concept_id(parent.text)))
        rows.append(i)
    return concepts, emb[rows]


def _augment(concepts: list[Concept], emb: np.ndarray, augmenter: LLMBackend, fill: TemplateBackend, encoder,
             cfg: BuildConfig, progress: ProgressFn) -> tuple[list[Concept], set[str]]:
    """Paraphrases for a seeded pick of concepts (augmenter LLM) and for all (seed rules).

    A paraphrase must be valid, close to its concept (cosine >= its threshold) and closer to it
    than to any other concept, so it never names a different concept. Concepts left with too few
    paraphrases are dropped, and a dropped seed takes its children along. Returns the kept
    concepts and the normalized texts now taken.
    """
    llm_pick: set[int] = set()
    if not isinstance(augmenter, TemplateBackend):
        llm_pick = set(random.Random(f"augment:{cfg.seed}").sample(range(len(concepts)), min(cfg.llm_paraphrase_limit, len(concepts))))
    flat: list[str] = []
    owner: list[int] = []
    threshold: list[float] = []
    for i, c in enumerate(concepts):
        llm = []
        if i in llm_pick:
            llm = _valid(augmenter.paraphrase(c.text, cfg.n_paraphrases, seed=cfg.seed), cfg.rules)
            progress("augment", sum(j <= i for j in llm_pick), len(llm_pick))
        rules = _valid(fill.paraphrase(c.text, cfg.n_paraphrases + 3, seed=cfg.seed), cfg.rules)
        flat += llm + rules
        owner += [i] * (len(llm) + len(rules))
        threshold += [cfg.llm_paraphrase_threshold] * len(llm) + [cfg.paraphrase_threshold] * len(rules)
    para_sims = embed(encoder, flat) @ emb.T if flat else np.zeros((0, len(concepts)))  # (P, C)
    taken = {normalize_text(c.text) for c in concepts}
    for k, t in enumerate(flat):
        i = owner[k]
        c = concepts[i]
        key = normalize_text(t)
        if len(c.paraphrases) >= cfg.n_paraphrases or key in taken:
            continue
        if para_sims[k, i] < threshold[k] or para_sims[k].argmax() != i:
            continue
        taken.add(key)
        c.paraphrases.append(t)
    kept = [c for c in concepts if len(c.paraphrases) >= cfg.min_paraphrases]
    ids = {c.id for c in kept}
    return [c for c in kept if c.parent is None or c.parent in ids], taken


def _compose(concepts: list[Concept], taken: set[str], cfg: BuildConfig) -> list[Concept]:
    """Seeded cross-category compositions of root concepts; `taken` grows with their texts."""
    roots = {cat: [c for c in concepts if c.parent is None and c.category == cat] for cat in CATEGORIES}
    pairs = [(a, b) for a, b in (("style", "appearance"), ("character", "appearance"), ("style", "character")) if roots[a] and roots[b]]
    rng = random.Random(f"compose:{cfg.seed}")
    made: list[Concept] = []
    tries = 0
    while len(made) < cfg.n_compositions and pairs and tries < 20 * cfg.n_compositions:
        tries += 1
        ca, cb = pairs[tries % len(pairs)]
        a, b = rng.choice(roots[ca]), rng.choice(roots[cb])
        text = f"{a.text}, {b.text}"
        if rejection_reason(text, cfg.rules) is not None or normalize_text(text) in taken:
            continue
        paras = [f"{b.text}, {a.text}"] + [f"{pa}, {pb}" for pa, pb in zip(a.paraphrases, b.paraphrases)]
        paras = [p for p in paras if rejection_reason(p, cfg.rules) is None and normalize_text(p) not in taken]
        paras = paras[: cfg.n_paraphrases]
        if len(paras) < cfg.min_paraphrases:
            continue
        taken.update(normalize_text(t) for t in [text, *paras])
        made.append(Concept(text=text, category=ca, parent=a.id, paraphrases=paras, components=[a.id, b.id]))
    return made


def build_prompt_set(
    config: BuildConfig,
    generator: LLMBackend,
    augmenter: LLMBackend,
    encoder,
    seeds: Seeds | None = None,
    command: str = "",
    progress: ProgressFn | None = None,
) -> PromptSet:
    """Build a prompt set with the given LLM backends and text encoder (MiniLM for the shipped set)."""
    cfg = config
    progress = progress or (lambda stage, done, total: None)
    seeds = seeds or load_seeds()
    # the seed rules fill what the LLMs leave (a template generator/augmenter adds nothing else)
    fill = TemplateBackend(seeds=seeds)

    # 1. generation (+ validation)
    cands = _generate(cfg, seeds, generator, fill, progress)

    # 2. dedupe: exact, then embedding; seeds first so they always survive
    cands = [cands[i] for i in dedupe_exact([c.text for c in cands])]
    emb = embed(encoder, [c.text for c in cands])  # (N, D)
    keep = dedupe_embeddings(emb, cfg.dup_threshold)
    cands, emb = [cands[i] for i in keep], emb[keep]

    # 3. parents: a generated concept hangs under its nearest seed (and takes its category);
    #    off-topic proposals (far from every seed) are dropped; variants are capped per category
    concepts, emb = _attach_parents(cands, emb, cfg)

    # 4. augmentation: paraphrases from the augmenter LLM and the seed rules
    concepts, taken = _augment(concepts, emb, augmenter, fill, encoder, cfg, progress)

    # 5. compositions across categories: "style, appearance", "character, appearance", "style, character"
    concepts += _compose(concepts, taken, cfg)

    # 6. split by family
    concepts = assign_splits(concepts, cfg.heldout_fraction, cfg.seed, cfg.force_heldout)
    return PromptSet(concepts=concepts, build_command=command)
