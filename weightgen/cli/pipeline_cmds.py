"""CLI verb `weightgen pipeline` (being written)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add this stage's verbs to the app."""
