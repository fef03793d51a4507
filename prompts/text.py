"""Text hygiene for concept phrases: normalization, parsing LLM answers, validation.

LLM output is untrusted: it comes numbered, quoted, chatty ("Sure! Here are ..."), or carries
instructions. Parsing strips the list formatting an LLM adds; validation then rejects anything
that is not a short phrase an image editor can take as a concept.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field

from prompts.errors import PromptError
from prompts.identity import normalize_concept

_SPELLING = {"grey": "gray", "woollen": "woolen", "cosy": "cozy"}


def normalize_text(text: str) -> str:
    """Key for exact-duplicate detection: NFKC, lowercase, punctuation as spaces, UK→US spelling.

    "Watercolour-painting." and "watercolor painting" share a key; meaning-level duplicates are
    left to the embedding pass.
    """
    t = unicodedata.normalize("NFKC", text).lower()
    t = re.sub(r"[^\w']+", " ", t).replace("'", "")
    return " ".join(_SPELLING.get(w, w).replace("colour", "color") for w in t.split())


_LIST_MARKER = re.compile(r"^\s*(?:[-*•·–]+\s*|\(?\d+\s*[.):]\s*|\d+\s*-\s+|\(?[a-zA-Z][.)]\s+)(?=\S)")
_CHATTY = re.compile(r"^(?:sure|certainly|of course|okay|ok|here (?:are|is)|i (?:can|will|hope)|note)\b", re.I)


def parse_lines(answer: str) -> list[str]:
    """Candidate phrases from an LLM answer: one per line or comma-free list item.

    Strips list markers ("1.", "-", "a)"), surrounding quotes and trailing punctuation; drops
    chatty preambles and lines ending with ':' (headers). Validation still runs afterwards.
    """
    out = []
    for line in answer.replace("\r", "\n").split("\n"):
        line = line.strip()
        if not line or line.endswith(":") or _CHATTY.match(line):
            continue
        line = _LIST_MARKER.sub("", line)
        line = line.strip().strip("\"'`“”‘’*").strip()
        line = line.rstrip(".;!")
        if line:
            out.append(" ".join(line.split()))
    return out


# Words that only appear in meta-text: an LLM talking about the task or about itself, or text
# trying to steer a downstream model. A concept phrase never needs them.
META_WORDS = (
    "ignore", "disregard", "instruction", "instructions", "prompt", "prompts", "assistant", "chatbot",
    "language model", "as an ai", "ai model", "i am", "i'm", "you are", "your", "please", "sorry",
    "certainly", "here are", "here is", "example", "examples", "respond", "response", "answer",
    "system", "user", "concept", "concepts", "phrase", "phrases", "paraphrase", "rewrite", "output",
    "http", "www", "password", "token",
)
# Imperative openings of meta-text ("Write ...", "List ...", "Generate ..."): instructions, not edits.
META_VERBS = (
    "write", "list", "generate", "create", "describe", "explain", "give", "provide", "forget",
    "respond", "reply", "print", "repeat", "say", "tell", "translate", "summarize", "return", "use",
    "do", "don't", "stop", "act", "pretend",
)
_META_RE = re.compile(r"\b(?:" + "|".join(re.escape(w) for w in META_WORDS) + r")\b", re.I)
_ALLOWED_PUNCT = set(" -',&/")


@dataclass
class ValidationRules:
    """Limits on a concept phrase. Defaults fit short edit concepts ("at night in the rain")."""

    min_chars: int = 3  # "fog" is the shortest useful concept
    max_chars: int = 80  # far below any text encoder's token limit; longer text is a description, not a concept
    max_words: int = 10
    min_letters_fraction: float = 0.6  # rejects "123 456", ASCII art and symbol soup
    extra_forbidden: tuple[str, ...] = field(default_factory=tuple)  # more banned words, case-insensitive

    def __post_init__(self) -> None:
        if not 1 <= self.min_chars <= self.max_chars:
            raise PromptError(f"min_chars should be in [1, max_chars={self.max_chars}], got {self.min_chars}")
        if self.max_words < 1:
            raise PromptError(f"max_words should be positive, got {self.max_words}")
        if not 0.0 <= self.min_letters_fraction <= 1.0:
            raise PromptError(f"min_letters_fraction should be in [0, 1], got {self.min_letters_fraction}")


def rejection_reason(text: str, rules: ValidationRules | None = None) -> str | None:
    """Why `text` is not a valid concept phrase, or None if it is.

    Letters in any script are allowed (non-ASCII concepts work); quotes, digits-only text,
    list markers, newlines, symbols and instruction-like meta-text are not.
    """
    rules = rules or ValidationRules()
    if not isinstance(text, str) or not text.strip():
        return "empty"
    if "\n" in text or "\t" in text:
        return "multi-line"
    t = text.strip()
    if len(t) < rules.min_chars:
        return f"shorter than {rules.min_chars} characters"
    if len(t) > rules.max_chars:
        return f"longer than {rules.max_chars} characters"
    words = t.split()
    if len(words) > rules.max_words:
        return f"more than {rules.max_words} words"
    if _LIST_MARKER.match(t):
        return "list item marker"
    for ch in t:
        if not (unicodedata.category(ch)[0] in "LNM" or ch in _ALLOWED_PUNCT):
            return f"character {ch!r} not allowed"
    if "'" in t and re.search(r"(^|\s)'|'(\s|$)", t):
        return "quotes"
    letters = sum(unicodedata.category(ch)[0] == "L" for ch in t)
    if letters < rules.min_letters_fraction * len(t.replace(" ", "")):
        return "too few letters"
    if _META_RE.search(t):
        return f"meta-text ({_META_RE.search(t).group(0)!r})"
    if words[0].lower() in META_VERBS:
        return f"instruction ({words[0]!r})"
    for w in rules.extra_forbidden:
        if re.search(r"\b" + re.escape(w) + r"\b", t, re.I):
            return f"forbidden word {w!r}"
    return None


def is_valid(text: str, rules: ValidationRules | None = None) -> bool:
    return rejection_reason(text, rules) is None


def check_concept(text: str, rules: ValidationRules | None = None) -> str:
    """Validate a user-given concept: the cleaned text, or a PromptError naming the problem."""
    text = normalize_concept(text)
    reason = rejection_reason(text, rules)
    if reason is not None:
        raise PromptError(f"invalid concept {text!r}: {reason}")
    return text
