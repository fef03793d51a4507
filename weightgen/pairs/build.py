"""Build a pair dataset folder: per concept, source crops and their edits, plus a manifest.

Layout (the contract with gan/data.py):
    <root>/manifest.json                  what was built, with which editor, seed and photos
    <root>/<concept_id>/pairs.safetensors train_source/train_target: uint8 (n_train, 3, C, C) edited
                                          canvases (C = canvas_size), cropped afresh per batch by gan.data;
                                          test_source/test_target: uint8 (n_test, 3, S, S) fixed crops of
                                          the edited test canvases; metadata {"concept": text}

Each canvas is edited once at the canvas size; the test crops are cut after the edit with
gan.data.paired_crops, the same crops for every concept (one seed), so the test split looks like
what the sampler feeds training and every concept is scored on the same source pixels.

Resume: a concept is listed in the manifest only after its pairs file is fully written (both
writes are atomic), so a rerun skips exactly the finished concepts and redoes the rest.
"""

from __future__ import annotations

import json
import shutil
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from gan.data import paired_crops, to_float, to_uint8
from gan.io import read_json, save_tensors, write_json
from prompts.concepts import load_prompt_set
from prompts.identity import concept_id, normalize_concept
from weightgen.errors import USER_ERRORS, WeightgenError
from weightgen.pairs.config import FORMAT, MANIFEST, PAIRS_FILE, VERSION, PairsConfig
from weightgen.pairs.editors import load_editor
from weightgen.pairs.sources import SourceConfig, build_sources


@dataclass
class BuildReport:
    root: Path
    built: list[str]  # concept ids written by this run
    resumed: list[str]  # concept ids already in the manifest, skipped
    skipped_images: int  # unreadable or too small files in the sources folder


def unique_concepts(texts: Iterable[str]) -> list[str]:
    """Normalized concept texts, duplicates (same concept id) dropped with a warning."""
    out, seen = [], {}
    for i, text in enumerate(texts):
        try:
            norm = normalize_concept(text)
        except USER_ERRORS:
            raise WeightgenError(f"concept #{i + 1} is empty: {text!r}") from None
        cid = concept_id(norm)
        if cid in seen:
            warnings.warn(f"duplicate concept {norm!r} (same as {seen[cid]!r}) listed once", stacklevel=2)
            continue
        seen[cid] = norm
        out.append(norm)
    if not out:
        raise WeightgenError("no concepts given")
    return out


def _open_manifest(config: PairsConfig) -> dict:
    """The manifest to continue, a fresh one, or an error naming the mismatched settings."""
    root = Path(config.out)
    path = root / MANIFEST
    fresh = {"format": FORMAT, "version": VERSION, **config.settings(), "concepts": {}}
    if not path.exists():
        return fresh
    old = read_json(path)
    if not isinstance(old, dict) or old.get("format") != FORMAT:
        raise WeightgenError(f"{path} is not a weightgen pair dataset manifest; choose another --out")
    mismatched = {k: (old.get(k), v) for k, v in config.settings().items() if old.get(k) != v}
    if not mismatched:
        old.setdefault("concepts", {})
        return old
    if not config.overwrite:
        what = ", ".join(f"{k}={a!r} (asked {b!r})" for k, (a, b) in mismatched.items())
        raise WeightgenError(f"{root} was built with other settings: {what}; pass --overwrite to rebuild it")
    for cid in old.get("concepts", {}):  # --overwrite: drop what the old settings produced
        shutil.rmtree(root / cid, ignore_errors=True)
    return fresh


def _remove_stale_temporaries(root: Path) -> None:
    """Temp files a killed run left behind (atomic writes clean up after themselves otherwise)."""
    for tmp in list(root.glob(f".{MANIFEST}.*.tmp")) + list(root.glob(f"*/.{PAIRS_FILE}.*.tmp")):
        tmp.unlink(missing_ok=True)


def build_pairs(
    concepts: Iterable[str],
    config: PairsConfig,
    editor: Any = None,
    progress: Callable[[int, int, str], None] | None = None,
    log: Callable[[str], None] | None = None,
) -> BuildReport:
    """Write the pair dataset for `concepts` into `config.out`, resuming a previous run.

    editor: an already-built editor (else one is made from config.editor/editor_options, only if
    there is work left). progress(done, total, text) is called after each concept. log(line) gets,
    per concept, the ops and weights the editor chose for it (editors with `explain`), which the
    manifest also records: a concept whose text no op explains shows what it got instead.
    """

    texts = unique_concepts(concepts)
    root = Path(config.out)
    if root.exists() and not root.is_dir():
        raise WeightgenError(f"output path exists and is not a folder: {root}")
    manifest = _open_manifest(config)
    sources = build_sources(
        SourceConfig(
            image_size=config.image_size,
            n_train=config.n_train,
            n_test=config.n_test,
            seed=config.seed,
            folder=config.sources,
            test_fraction=config.test_fraction,
            canvas_size=config.canvas_size,
        )
    )
    manifest["sources"] = sources.describe()
    root.mkdir(parents=True, exist_ok=True)
    _remove_stale_temporaries(root)

    done = [t for t in texts if concept_id(t) in manifest["concepts"]]
    todo = [t for t in texts if concept_id(t) not in manifest["concepts"]]
    if todo and editor is None:
        editor = load_editor(config.editor, **config.editor_options)
    if editor is not None:
        manifest["editor_config"] = editor.describe()
    manifest["concepts"] = manifest.pop("concepts")  # keep the long part last in the file
    write_json(root / MANIFEST, manifest)

    if progress is not None:
        progress(len(done), len(texts), "")
    n_train = len(sources.train)
    both = torch.cat([sources.train, sources.test])  # one edit call: better batching
    built = []
    for i, text in enumerate(todo):
        cid = concept_id(text)
        ops = editor.explain(text) if hasattr(editor, "explain") else None
        if ops is not None and log is not None:
            log(f"{text}: " + ", ".join(f"{op} {w:.2f}" for op, w in ops.items()))
        targets = editor.edit(both, text, seed=config.seed)
        if targets.shape != both.shape or targets.dtype != torch.uint8:
            raise RuntimeError(f"editor {config.editor!r} returned {tuple(targets.shape)} {targets.dtype}")
        test_source, test_target = test_crops(sources.test, targets[n_train:], config)
        save_tensors(
            root / cid / PAIRS_FILE,
            {
                "train_source": sources.train,
                "train_target": targets[:n_train],
                "test_source": test_source,
                "test_target": test_target,
            },
            metadata={"concept": text},
        )
        manifest["concepts"][cid] = {
            "text": text,
            "n_train": n_train,
            "n_test": len(sources.test),
            "sources_train": sources.train_photos,
            "sources_test": sources.test_photos,
            **({"ops": ops} if ops is not None else {}),
        }
        write_json(root / MANIFEST, manifest)  # after the pairs file: listed means complete
        built.append(cid)
        if progress is not None:
            progress(len(done) + i + 1, len(texts), text)
    return BuildReport(
        root=root,
        built=built,
        resumed=[concept_id(t) for t in done],
        skipped_images=len(sources.skipped),
    )


def build_concept_pairs(text: str, config: PairsConfig) -> BuildReport:
    """build_pairs for one concept a user typed: an editor that fails on it is one line, not its traceback."""
    try:
        return build_pairs([text], config)
    except (*USER_ERRORS, KeyboardInterrupt):
        raise
    except Exception as e:  # noqa: BLE001  any editor error on this concept: say which editor and why
        first = next((ln.strip() for ln in str(e).splitlines() if ln.strip()), type(e).__name__)
        raise WeightgenError(f"editor {config.editor!r} could not make pairs for {text!r}: "
                             f"{type(e).__name__}: {first}") from None


def test_crops(source: torch.Tensor, target: torch.Tensor, config: PairsConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """Fixed image-size crops of the edited test canvases; the same windows for every concept (seeded)."""
    generator = torch.Generator().manual_seed(config.seed)
    src, tgt = paired_crops(to_float(source), to_float(target), (config.image_size, config.image_size), generator,
                            flip=False)
    return to_uint8(src), to_uint8(tgt)


def read_concepts_file(path: str | Path) -> list[str]:
    """Concept texts from a text file (one per line, '#' comments) or JSON.

    JSON may be a list of strings, a list of {"text": ...}, or a prompt set ({"concepts": [...]}).
    """
    path = Path(path)
    if not path.is_file():
        raise WeightgenError(f"concepts file not found: {path}")
    try:
        raw = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise WeightgenError(f"concepts file {path} is not UTF-8 text: {e}") from None
    if path.suffix.lower() == ".json" or raw.lstrip().startswith(("[", "{")):
        try:
            data = json.loads(raw)
        except json.JSONDecodeError as e:
            raise WeightgenError(f"corrupt JSON concepts file {path}: {e}") from None
        items = data.get("concepts") if isinstance(data, dict) else data
        if not isinstance(items, list):
            raise WeightgenError(f"{path}: expected a list of concepts or {{'concepts': [...]}}")
        texts = []
        for i, item in enumerate(items):
            text = item.get("text") if isinstance(item, dict) else item
            if not isinstance(text, str):
                raise WeightgenError(f"{path}: concept #{i + 1} is not a string or {{'text': ...}}: {item!r}")
            texts.append(text)
        return texts
    lines = [line.strip() for line in raw.splitlines()]
    return [line for line in lines if line and not line.startswith("#")]


def prompt_set_concepts(split: str, path: str | None = None) -> list[str]:
    """Concept texts of the shipped (or given) prompt set: split 'train', 'heldout' or 'all'."""
    if split not in ("train", "heldout", "all"):
        raise WeightgenError(f"prompt set split must be train, heldout or all, got {split!r}")
    prompt_set = load_prompt_set(path)
    chosen = prompt_set.concepts if split == "all" else [c for c in prompt_set.concepts if c.split == split]
    return [c.text for c in chosen]
