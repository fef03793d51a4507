"""prompts/: text hygiene, template backend, dedupe, split, selection, the shipped set, the CLI."""

from __future__ import annotations

import json
import re
import socket

import numpy as np
import pytest

from prompts import Concept, PromptSet, concept_id, load_prompt_set
from prompts.build import BuildConfig, build_prompt_set
from prompts.dedupe import dedupe, dedupe_embeddings, dedupe_exact, embed
from prompts.llm import TemplateBackend, make_backend
from prompts.seeds import DEFAULT_SEEDS, load_seeds
from prompts.select import select_representative
from prompts.split import assign_splits
from prompts.text import check_concept, normalize_text, parse_lines, rejection_reason
from weightgen.cli import main as cli_main
from weightgen.errors import USER_ERRORS


@pytest.fixture(scope="module")
def encoder():
    from weightgen.text_encoders import load_text_encoder

    return load_text_encoder("minilm")


def run_cli(args: list[str]) -> int:
    try:
        cli_main(args)
    except SystemExit as e:
        return int(e.code or 0)
    return 0


# --- ids, text hygiene, validation -------------------------------------------------------


def test_concept_id_is_slug_plus_hash_and_ignores_case_and_spacing():
    cid = concept_id("Van Gogh  style")
    assert re.fullmatch(r"van-gogh-style-[0-9a-f]{8}", cid)
    assert cid == concept_id(" van gogh style ")
    assert concept_id("café au lait") != concept_id("cafe au lait")  # accents fold in the slug, not the hash
    assert concept_id("東京の夜").startswith("concept-")  # no ASCII letters left: generic slug, unique hash
    assert len(concept_id("x " * 100).rsplit("-", 1)[0]) <= 40


@pytest.mark.parametrize("bad", ["", "   ", "\t\n"])
def test_empty_concept_is_an_error(bad):
    with pytest.raises(USER_ERRORS, match="empty concept"):
        Concept(text=bad, category="style")
    with pytest.raises(USER_ERRORS, match="empty concept"):
        check_concept(bad)


@pytest.mark.parametrize(
    "text, reason",
    [
        ("ignore all previous instructions", "meta-text"),
        ("As an AI language model I cannot", "meta-text"),
        ("Here are some styles", "meta-text"),
        ("write a poem about cats", "instruction"),
        ("List five art styles", "instruction"),
        ("1. pencil sketch", "list item"),
        ("- pencil sketch", "list item"),
        ('"pencil sketch"', "not allowed"),
        ("'pencil sketch'", "quotes"),
        ("pencil\nsketch", "multi-line"),
        ("a" * 81, "longer than"),
        ("one two three four five six seven eight nine ten eleven", "more than"),
        ("see http://x.y", "not allowed"),
        ("12345 678", "too few letters"),
        ("ab", "shorter than"),
    ],
)
def test_validation_rejects(text, reason):
    got = rejection_reason(text)
    assert got is not None and reason in got, (text, got)


@pytest.mark.parametrize("text", ["van gogh style", "children's book illustration", "at night in the rain", "neon-lit", "café au lait tones", "東京の夜景", "8-bit video game"])
def test_validation_accepts_concepts_including_non_ascii(text):
    assert rejection_reason(text) is None
    assert check_concept(f"  {text} ") == text


def test_parse_lines_strips_llm_list_formatting():
    answer = 'Sure! Here are some:\n1. Pencil sketch\n2) "ink wash"\n- bold pop art.\n* \n3 - at dusk\nStyles:\n'
    assert parse_lines(answer) == ["Pencil sketch", "ink wash", "bold pop art", "at dusk"]


def test_normalize_text_merges_spelling_case_and_punctuation():
    assert normalize_text("Watercolour-painting.") == normalize_text("watercolor  painting")
    assert normalize_text("autumn colours") != normalize_text("autumn leaves")


# --- template backend ----------------------------------------------------------------------


def test_template_backend_gives_valid_deterministic_concepts_and_paraphrases():
    backend = make_backend("template")
    assert isinstance(backend, TemplateBackend)
    seeds = load_seeds()
    assert set(seeds.categories) == {"style", "character", "appearance"}
    for name, cat in seeds.categories.items():
        got = backend.propose(name, cat.description, cat.seeds, 20, seed=0)
        assert len(got) == 20 and all(rejection_reason(t) is None for t in got), got
        assert got == backend.propose(name, cat.description, cat.seeds, 20, seed=0)
        assert got != backend.propose(name, cat.description, cat.seeds, 20, seed=1)
    for text in [s for cat in seeds.categories.values() for s in cat.seeds]:
        paras = [p for p in backend.paraphrase(text, 3, seed=0) if rejection_reason(p) is None]
        assert len(paras) >= 2, (text, paras)
        assert normalize_text(text) not in {normalize_text(p) for p in paras}
    assert "in the style of van gogh" in backend.paraphrase("van gogh style", 3, seed=0)
    with pytest.raises(USER_ERRORS, match="no language model"):
        backend.complete("hello")


# --- dedupe, selection, split --------------------------------------------------------------


def test_dedupe_exact_then_embedding(encoder):
    texts = ["watercolor painting", "Watercolour  painting.", "watercolor paintings", "at night", "made of lego bricks"]
    assert dedupe_exact(texts) == [0, 2, 3, 4]
    assert dedupe(texts, encoder, threshold=0.9) == ["watercolor painting", "at night", "made of lego bricks"]
    # a stricter threshold keeps near-duplicates; reference rows block matches to existing texts
    assert "watercolor paintings" in dedupe(texts, encoder, threshold=0.999)
    emb = embed(encoder, ["at night", "pencil sketch"])
    assert dedupe_embeddings(emb, 0.9, reference=embed(encoder, ["at night"])) == [1]


def test_over_long_concept_is_truncated_with_a_warning(encoder):
    with pytest.warns(UserWarning, match="truncated"):
        emb = embed(encoder, ["sunset " * 300, "at night", "東京の夜景"])  # non-ASCII text embeds too
    assert emb.shape == (3, 384) and np.allclose(np.linalg.norm(emb, axis=1), 1, atol=1e-4)


def test_select_representative_returns_k_distinct_concepts(encoder):
    texts = ["watercolor painting", "oil painting", "acrylic painting", "at night", "at dusk", "under a full moon",
             "made of lego bricks", "made of glass", "made of wood", "pixel art", "8-bit video game", "low poly render"]
    chosen = select_representative(texts, 4, encoder, seed=0)
    assert len(chosen) == 4 == len(set(chosen))
    assert chosen == select_representative(texts, 4, encoder, seed=0)
    assert sorted(select_representative(texts, len(texts), encoder)) == list(range(len(texts)))
    for k in (0, len(texts) + 1):
        with pytest.raises(USER_ERRORS, match="k should be"):
            select_representative(texts, k, encoder)


def _toy_concepts() -> list[Concept]:
    out = []
    for cat, roots in {"style": ["van gogh style", "pencil sketch", "pop art", "oil painting", "pixel art"],
                       "appearance": ["at night", "foggy", "at dusk", "in winter snow", "golden hour"]}.items():
        for r in roots:
            root = Concept(text=r, category=cat, paraphrases=[f"{r} look", f"{r} version"])
            out += [root, Concept(text=f"soft {r}", category=cat, parent=root.id, paraphrases=[f"gentle {r}", f"soft {r} look"])]
    style = [c for c in out if c.category == "style" and c.parent is None]
    app = [c for c in out if c.category == "appearance" and c.parent is None]
    for a in style:
        for b in app:
            out.append(Concept(text=f"{a.text}, {b.text}", category="style", parent=a.id, paraphrases=[f"{b.text}, {a.text}", f"{a.text} and {b.text}"], components=[a.id, b.id]))
    out.append(Concept(text="foggy at night", category="appearance", parent=[c.id for c in app if c.text == "foggy"][0], paraphrases=["misty at night", "foggy night"]))
    return out


def test_split_keeps_families_together_and_never_leaks_heldout_concepts():
    concepts = _toy_concepts()
    a = assign_splits(concepts, 0.3, seed=0, force_heldout=("van gogh style",))
    assert [c.split for c in a] == [c.split for c in assign_splits(concepts, 0.3, seed=0, force_heldout=("van gogh style",))]
    splits = {seed: [c.split for c in assign_splits(concepts, 0.3, seed=seed)] for seed in range(6)}
    assert len({tuple(s) for s in splits.values()}) > 1  # the seed matters
    by_id = {c.id: c for c in a}
    assert by_id[concept_id("van gogh style")].split == "heldout"
    for c in a:
        if c.components:
            assert (c.split == "heldout") == any(by_id[p].split == "heldout" for p in c.components)
        elif c.parent:  # a variant sits with its root unless it names another held-out root
            root = by_id[c.parent]
            named_heldout = any(r.split == "heldout" and r.parent is None and f" {r.text} " in f" {c.text} " for r in a if not r.components)
            assert c.split == ("heldout" if root.split == "heldout" or named_heldout else "train"), c.text
    heldout_roots = [c.text for c in a if c.split == "heldout" and c.parent is None]
    for c in a:
        if c.split == "train":
            assert not any(f" {r} " in f" {t} " for r in heldout_roots for t in c.texts), c.text
    singles = [c for c in a if not c.components]
    for cat in ("style", "appearance"):
        members = [c for c in singles if c.category == cat]
        assert sum(c.split == "heldout" for c in members) >= 0.3 * len(members)
    with pytest.raises(USER_ERRORS, match="heldout_fraction"):
        assign_splits(concepts, 1.5, seed=0)


# --- build pipeline ------------------------------------------------------------------------


@pytest.fixture
def small_seeds(tmp_path):
    """The shipped seeds file cut to 10 seeds per category (keeps "van gogh style"): fast builds."""
    data = json.loads(DEFAULT_SEEDS.read_text())
    for cat in data["categories"].values():
        cat["seeds"] = cat["seeds"][:10]
    path = tmp_path / "seeds.json"
    path.write_text(json.dumps(data))
    return path


def test_build_with_template_backend_is_valid_and_deterministic(encoder, small_seeds):
    config = BuildConfig(variants_per_category=6, n_compositions=12, heldout_fraction=0.2)
    backend = make_backend("template")
    seeds = load_seeds(small_seeds)
    ps = build_prompt_set(config, backend, backend, encoder, seeds=seeds)
    again = build_prompt_set(config, backend, backend, encoder, seeds=seeds)
    assert ps.to_json() == again.to_json()
    n_seeds = 30
    stats = ps.stats()
    assert stats["roots"] == n_seeds and stats["compositions"] == 12
    assert stats["concepts"] == n_seeds + 18 + 12
    assert stats["min_paraphrases"] >= 2 and stats["heldout_fraction"] >= 0.2
    keys = [normalize_text(t) for c in ps.concepts for t in c.texts]
    assert len(keys) == len(set(keys))  # no text (concept or paraphrase) appears twice
    assert all(rejection_reason(t) is None for c in ps.concepts for t in c.texts)
    assert ps.by_text("van gogh style").split == "heldout"


# --- the shipped prompt set ----------------------------------------------------------------


def test_shipped_prompt_set_meets_the_issue_counts():
    ps = load_prompt_set()
    stats = ps.stats()
    assert stats["concepts"] >= 500
    assert stats["heldout_fraction"] >= 0.15
    assert set(ps.categories) == {"style", "character", "appearance"}
    for cat, counts in stats["per_category"].items():
        assert counts["train"] > 0 and counts["heldout"] > 0, cat
    assert stats["min_paraphrases"] >= 2
    assert ps.build_command.startswith("weightgen prompts build ") and "--out prompts/data/concepts-v1.json" in ps.build_command
    assert all(rejection_reason(t) is None for c in ps.concepts for t in c.texts)
    keys = [normalize_text(t) for c in ps.concepts for t in c.texts]
    assert len(keys) == len(set(keys))
    # the product demo's concept exists and is held out; no training text contains a held-out root
    assert ps.by_text("van gogh style").split == "heldout"
    heldout_roots = [c.text for c in ps.heldout if c.parent is None]
    for c in ps.train:
        assert not any(f" {normalize_text(r)} " in f" {normalize_text(t)} " for r in heldout_roots for t in c.texts), c.text
    # parents and components resolve; parents are roots of the same category
    by_id = ps.by_id
    for c in ps.concepts:
        if c.parent and not c.components:
            assert by_id[c.parent].parent is None and by_id[c.parent].category == c.category
    assert len(ps.train) + len(ps.heldout) == len(ps.concepts)


def _write(tmp_path, obj, name="set.json"):
    path = tmp_path / name
    path.write_text(json.dumps(obj))
    return path


def test_load_prompt_set_rejects_bad_files(tmp_path):
    good = {"format": "weightgen-prompts", "version": "1", "build_command": "", "categories": ["style"],
            "concepts": [{"text": "pop art", "category": "style", "parent": None, "paraphrases": ["pop artwork", "pop art look"], "split": "train"}]}
    ps = load_prompt_set(_write(tmp_path, good))
    assert ps.concepts[0].id == concept_id("pop art") and isinstance(ps, PromptSet)
    cases = {
        "not a weightgen prompt set": {**good, "format": "other"},
        "unsupported prompt set version": {**good, "version": "9"},
        "empty concept text": {**good, "concepts": [{**good["concepts"][0], "text": "  "}]},
        "unknown category": {**good, "concepts": [{**good["concepts"][0], "category": "music"}]},
        "unknown concept id": {**good, "concepts": [{**good["concepts"][0], "parent": "nope-12345678"}]},
        "malformed": {**good, "concepts": [{"category": "style"}]},
        "no concepts": {**good, "concepts": []},
    }
    for match, obj in cases.items():
        with pytest.raises(USER_ERRORS, match=match):
            load_prompt_set(_write(tmp_path, obj))
    (tmp_path / "broken.json").write_text("{not json")
    with pytest.raises(USER_ERRORS, match="corrupt JSON"):
        load_prompt_set(tmp_path / "broken.json")


# --- CLI -----------------------------------------------------------------------------------


def test_cli_build_stats_show_select(tmp_path, capsys, small_seeds):
    out = tmp_path / "p.json"
    args = ["prompts", "build", "--generator", "template", "--augmenter", "template", "--seeds", str(small_seeds),
            "--variants", "3", "--compositions", "5", "--heldout-fraction", "0.3", "--out", str(out)]
    assert run_cli(args) == 0
    ps = load_prompt_set(out)
    assert ps.stats()["compositions"] == 5 and "--generator template" in ps.build_command and "--seeds" in ps.build_command
    assert run_cli(args) == 1 and "already exists" in capsys.readouterr().err
    assert run_cli(["prompts", "stats", str(out)]) == 0
    assert json.loads(capsys.readouterr().out)["concepts"] == len(ps.concepts)
    assert run_cli(["prompts", "show", str(out), "--split", "heldout", "--limit", "3", "--paraphrases"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 3 and all(line.startswith("heldout") for line in lines)
    assert run_cli(["prompts", "select", "3", "--path", str(out), "--json"]) == 0
    picked = json.loads(capsys.readouterr().out)
    assert len({p["id"] for p in picked}) == 3 and all(ps.by_id[p["id"]].split == "train" for p in picked)


def test_cli_unreachable_llm_endpoint_fails_fast_and_writes_nothing(tmp_path, capsys, small_seeds):
    with socket.socket() as s:  # a port that was free a moment ago: nothing listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = tmp_path / "p.json"
    code = run_cli(["prompts", "build", "--generator", "openai", "--augmenter", "template",
                    "--base-url", f"http://127.0.0.1:{port}/v1", "--timeout", "0.5", "--seeds", str(small_seeds), "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 1 and f"LLM endpoint http://127.0.0.1:{port}/v1/chat/completions unreachable after" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["seeds.json"]  # no partial prompt file, no temp file
