"""Paired images per concept: source photos, editors that turn them into targets, the dataset writer.

`concept_id` is the one name every stage uses for a concept's folder; it lives here (and imports
nothing heavy) because the pairs stage is the first to write per-concept folders.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata

from weightgen.errors import WeightgenError

__all__ = ["concept_id", "normalize_concept"]

_SLUG_MAX = 40


def normalize_concept(text: str) -> str:
    """Whitespace-collapsed text; raises on empty text (every stage refuses an empty concept)."""
    if not isinstance(text, str) or not text.strip():
        raise WeightgenError(f"empty concept text: {text!r}")
    return " ".join(text.split())


def concept_id(text: str) -> str:
    """`<slug>-<sha1[:8]>`: a readable, filesystem-safe, collision-resistant folder name.

    The slug is the lowercase text reduced to a-z, 0-9 and '-' (accents folded to ASCII, at most
    40 characters); the hash is over the whitespace-normalized lowercase text, so case and spacing
    variants of one concept share an id while different concepts with the same slug do not.
    Text with no ASCII letters at all (e.g. '東京の夜') gets the slug 'concept'.
    """
    norm = normalize_concept(text).lower()
    digest = hashlib.sha1(norm.encode("utf-8")).hexdigest()[:8]
    ascii_text = unicodedata.normalize("NFKD", norm).encode("ascii", "ignore").decode("ascii")
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_text).strip("-")[:_SLUG_MAX].rstrip("-")
    return f"{slug or 'concept'}-{digest}"
