"""Deduplication: normalized-text exact matches first, then text-embedding near-duplicates.

Greedy in the given order, so callers list the texts they trust most first (hand-written seeds
before LLM proposals before template variants): a later near-copy is dropped, never an earlier one.
"""

from __future__ import annotations

import numpy as np

from prompts.errors import PromptError
from prompts.text import normalize_text


def embed(encoder, texts: list[str], batch_size: int = 256) -> np.ndarray:
    """(N, D) float32 L2-normalized embeddings from a weightgen text encoder, batched."""
    if not texts:
        return np.zeros((0, getattr(encoder, "dim", 0) or 0), dtype=np.float32)
    chunks = [encoder.embed(texts[i : i + batch_size]).float().cpu().numpy() for i in range(0, len(texts), batch_size)]
    return np.concatenate(chunks).astype(np.float32)


def dedupe_exact(texts: list[str]) -> list[int]:
    """Indices of the first text of each normalized form ("Watercolour painting." == "watercolor painting")."""
    seen: set[str] = set()
    keep = []
    for i, t in enumerate(texts):
        key = normalize_text(t)
        if key and key not in seen:
            seen.add(key)
            keep.append(i)
    return keep


def dedupe_embeddings(emb: np.ndarray, threshold: float, reference: np.ndarray | None = None) -> list[int]:
    """Indices of rows kept: a row is dropped when its cosine similarity to an earlier kept row
    (or to any `reference` row, e.g. texts already in the set) is >= threshold.

    emb: (N, D) L2-normalized; reference: (M, D) L2-normalized or None.
    """
    if not -1.0 <= threshold <= 1.0:
        raise PromptError(f"similarity threshold should be in [-1, 1], got {threshold}")
    n = len(emb)
    sims = emb @ emb.T  # (N, N)
    blocked = np.zeros(n, dtype=bool)
    if reference is not None and len(reference):
        blocked |= (emb @ reference.T).max(axis=1) >= threshold  # (N,)
    keep = []
    for i in range(n):
        if blocked[i]:
            continue
        keep.append(i)
        blocked[i + 1 :] |= sims[i, i + 1 :] >= threshold
    return keep


def dedupe(texts: list[str], encoder, threshold: float = 0.9) -> list[str]:
    """Texts without exact or near duplicates (first occurrence wins)."""
    exact = [texts[i] for i in dedupe_exact(texts)]
    if not exact:
        return []
    return [exact[i] for i in dedupe_embeddings(embed(encoder, exact), threshold)]
