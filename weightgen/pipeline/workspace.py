"""A pipeline config bound to its folders, and what its stages share: text encoders, the pairs folder, the console.

Several stages need the same text encoder (the pairs' procedural editor, the k-means concept picks,
the generator, ship's compatibility check); loading it once per pipeline saves a model load per
stage. The pairs are not a stage: the base and zoo stages each build the concepts they need into
one work/pairs folder through `build_pairs`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)

from prompts.identity import concept_id
from weightgen.pairs.build import build_pairs
from weightgen.pairs.editors import load_editor
from weightgen.pairs.editors.config import BankConfig
from weightgen.pairs.editors.procedural import ProceduralConfig
from weightgen.pipeline.config import PipelineConfig
from weightgen.pipeline.records import StateFile
from weightgen.text_encoders import load_text_encoder
from weightgen.zoo.inputs import pairs_manifest

PAIRS_DIR = "pairs"
# Editors that choose their ops by the concept's text embedding, and their settings' classes.
_TEXT_CHOSEN = {"procedural": ProceduralConfig, "bank": BankConfig}


class Workspace:
    """A PipelineConfig bound to the folder its relative paths resolve against."""

    def __init__(self, config: PipelineConfig, root: str | Path = ".", source: str = "", encoders: dict | None = None):
        self.config, self.root, self.source = config, Path(root).resolve(), source
        self.work = (self.root / config.work).resolve()
        # Loaded text encoders by (name, path); pass a dict to share them across pipelines, as the tests do.
        self.encoders = encoders if encoders is not None else {}
        self.console = Console(highlight=False, soft_wrap=True)
        self.state = StateFile(self.work)

    @property
    def pairs_dir(self) -> Path:
        return self.work / PAIRS_DIR

    def show(self, path: Path | None) -> str:
        """`path` as the user wrote it where possible: relative to the current folder."""
        if path is None:
            return "-"
        try:
            return str(path.relative_to(Path.cwd()))
        except ValueError:
            return str(path)

    def encoder(self, name: str | None = None, path: str | None = None):
        """A loaded text encoder (the prompts' by default), loaded once per pipeline."""
        key = (name or self.config.prompts.encoder, path)
        if key not in self.encoders:
            self.encoders[key] = load_text_encoder(key[0], path)
        return self.encoders[key]

    def pairs_settings(self, overwrite: bool) -> dict:
        return {**self.config.pairs.settings(self.root), "overwrite": overwrite}

    def build_pairs(self, texts: Sequence[str], overwrite: bool = False, progress: bool = True) -> None:
        """The pairs of `texts` missing from work/pairs, with one shared text encoder for the editors that embed text."""
        manifest = pairs_manifest(self.pairs_dir) if self.pairs_dir.is_dir() else None
        have = set(manifest["concepts"]) if manifest else set()
        missing = [t for t in texts if concept_id(t) not in have]
        if not missing:
            return
        cfg = self.config.pairs
        editor = None
        if cfg.editor in _TEXT_CHOSEN:
            options = dict(cfg.editor_options)
            text_encoder = _TEXT_CHOSEN[cfg.editor](**options).text_encoder
            editor = load_editor(cfg.editor, encoder=self.encoder(text_encoder), **options)
        bar = _Bar(f"pairs ({len(missing)} concepts)", progress)
        with bar:
            build_pairs(missing, cfg.pairs_config(self.pairs_dir, self.root, overwrite), editor=editor,
                        progress=bar.update)


class _Bar:
    """A rich progress bar over concepts for build_pairs' progress(done, total, text) callback."""

    def __init__(self, label: str, enabled: bool):
        self.label, self.enabled, self.task = label, enabled, None

    def __enter__(self) -> _Bar:
        if self.enabled:
            self.progress = Progress(TextColumn(self.label), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
            self.progress.start()
        return self

    def update(self, done: int, total: int, text: str) -> None:
        if self.enabled:
            if self.task is None:
                self.task = self.progress.add_task("", total=total)
            self.progress.update(self.task, completed=done, total=total)

    def __exit__(self, *exc) -> None:
        if self.enabled:
            self.progress.stop()
