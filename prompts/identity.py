"""A concept's identity: its normalized text, its folder id and its seed, the same in every stage.

Paraphrases are different concepts; case and spacing variants of one text are the same concept
(one id, one seed), so "Pencil Sketch" and "pencil  sketch" share a pairs folder, a zoo entry and
the noise the generator starts from.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata

from prompts.errors import PromptError

_SLUG_MAX = 40


def normalize_concept(text: str) -> str:
    """Whitespace-collapsed text (as the text encoder sees it); every stage refuses empty text."""
    if not isinstance(text, str) or not text.strip():
        raise PromptError(f"empty concept text: {text!r}")
    return " ".join(text.split())


def concept_key(text: str) -> str:
    """The case-insensitive key ids are hashed from: lowercase normalized text."""
    return normalize_concept(text).lower()


def concept_id(text: str) -> str:
    """`<slug>-<sha1[:8]>`: a readable, filesystem-safe, collision-resistant folder name.

    The slug is the lowercase text reduced to a-z, 0-9 and '-' (accents folded to ASCII, at most
    40 characters); the hash is over `concept_key`, so case and spacing variants of one concept
    share an id while different concepts with the same slug do not. Text with no ASCII letters at
    all (e.g. '東京の夜') gets the slug 'concept'.
    """
    key = concept_key(text)
    digest = hashlib.sha1(key.encode("utf-8")).hexdigest()[:8]
    ascii_text = unicodedata.normalize("NFKD", key).encode("ascii", "ignore").decode("ascii")
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_text).strip("-")[:_SLUG_MAX].rstrip("-")
    return f"{slug or 'concept'}-{digest}"


def stable_seed(*parts: object, sep: str = "\x00", algorithm: str = "sha256") -> int:
    """A 63-bit seed from any values (ints, strings): the same parts give the same seed on any machine.

    Python's hash() is salted per process, so every derived seed (a concept's noise, a training
    step's batch, an editor op's randomness) goes through this instead. `sep` and `algorithm` keep
    the editor's seeds (sha1) what they were when the shipped zoo was built.
    """
    digest = hashlib.new(algorithm, sep.join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def concept_seed(seed: int, text: str) -> int:
    """The seed of (seed, concept): the same concept gets the same noise in any batch."""
    return stable_seed(int(seed), normalize_concept(text))
