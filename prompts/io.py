"""JSON files for prompt sets and seed rules, written atomically (a temp file renamed into place)."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from prompts.errors import PromptError


def read_json(path: str | os.PathLike) -> Any:
    path = Path(path)
    if not path.is_file():
        raise PromptError(f"missing file: {path}")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise PromptError(f"corrupt JSON file {path}: {e}") from None


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """An interrupt or a full disk never leaves a half-written prompt set under the final name."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, prefix=f".{path.name}.", suffix=".tmp",
                                     delete=False) as f:
        f.write(json.dumps(obj, indent=2) + "\n")
    try:
        os.chmod(f.name, 0o644)
        os.replace(f.name, path)
    finally:
        Path(f.name).unlink(missing_ok=True)
