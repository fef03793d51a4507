"""What each stage's output was built from, so a rerun can tell "done" from "built with another config".

A stage's record is its config sections flattened to dotted keys (`zoo.train.lr`), minus the keys
that do not change its result, plus one `input.<stage>` stamp per upstream output (a sha256 or the
base's weights hash). Records live in work/pipeline_state.json, written before a stage starts and
stamped when it finishes; comparing a stored record with today's names exactly what changed.
Stage events (start, skip, finish, fail with timings) go to work/pipeline_log.jsonl.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import fields, is_dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from gan.io import read_json, write_json
from weightgen.digests import sha256_file
from weightgen.errors import WeightgenError
from weightgen.generator.config import RESUMABLE_CHANGES
from weightgen.pipeline.config import PipelineConfig

STATE_FILE = "pipeline_state.json"
LOG_FILE = "pipeline_log.jsonl"
STATE_FORMAT = "weightgen-pipeline-state"
# Keys that do not change a stage's result: left out of its record (resumable or runtime-only).
UNRECORDED = {"base.threads", "base.train.cpu", "zoo.threads", "zoo.train.cpu", "zoo.train.eval_every",
              "generator.validate_concepts", "ship.max_mb", "prompts.llm.device", "prompts.llm.threads",
              "prompts.llm.timeout_s", "prompts.llm.max_retries", "prompts.llm.api_key_env",
              *(f"generator.{k}" for k in RESUMABLE_CHANGES)}


def _flatten(value: Any, prefix: str) -> dict[str, Any]:
    if not is_dataclass(value):
        return {prefix: json.loads(json.dumps(value))}  # tuples -> lists, as they come back from JSON
    out: dict[str, Any] = {}
    for f in fields(value):
        out.update(_flatten(getattr(value, f.name), f"{prefix}.{f.name}"))
    return out


def config_record(config: PipelineConfig, sections: tuple[str, ...]) -> dict[str, Any]:
    """The recorded keys of `sections` (dotted paths into the config), flattened."""
    flat: dict[str, Any] = {}
    for section in sections:
        obj: Any = config
        for part in section.split("."):
            obj = getattr(obj, part)
        flat.update(_flatten(obj, section))
    return {k: v for k, v in flat.items() if k not in UNRECORDED}


def file_digest(path: Path) -> str | None:
    return sha256_file(path) if path.is_file() else None


def folder_digest(folder: Path) -> str | None:
    """sha256 over a folder's files (relative names and contents): equal digests = identical copies."""
    if not folder.is_dir():
        return None
    h = hashlib.sha256()
    for p in sorted(folder.rglob("*")):
        if p.is_file():
            h.update(f"{p.relative_to(folder).as_posix()}\0{sha256_file(p)}\n".encode())
    return h.hexdigest()


def diff(old: dict, new: dict) -> list[str]:
    """Each recorded key whose value changed, worded for the user (inputs by their short stamps)."""
    changes = []
    for key in list(new) + [k for k in old if k not in new]:
        a, b = old.get(key), new.get(key)
        if json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True):
            continue
        if key.startswith("input."):
            changes.append(f"its input {key[6:]} changed since it was built ({str(a)[:12]} -> {str(b)[:12]})")
        else:
            changes.append(f"{key} was {json.dumps(a)}, now {json.dumps(b)}")
    return changes


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class StateFile:
    """work/pipeline_state.json: per stage, the record it was built from and when it started and finished.

    Read afresh on every call, never cached: the run rewrites it around each stage.
    """

    def __init__(self, work: Path):
        self.path = work / STATE_FILE

    def read(self) -> dict:
        if not self.path.is_file():
            return {"format": STATE_FORMAT, "version": 1, "stages": {}}
        state = read_json(self.path)
        if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
            raise WeightgenError(f"{self.path} is not a weightgen pipeline state file")
        return state

    def records(self) -> dict[str, dict]:
        return self.read()["stages"]

    def start(self, stage: str, record: dict) -> None:
        state = self.read()
        state["stages"][stage] = {"config": record, "started": _now(), "finished": None, "seconds": None}
        write_json(self.path, state)

    def finish(self, stage: str, record: dict, seconds: float) -> None:
        state = self.read()
        entry = state["stages"].setdefault(stage, {"config": record})
        entry.update(finished=_now(), seconds=round(seconds, 2))
        write_json(self.path, state)


def log_event(work: Path, stage: str, event: str, **fields_: Any) -> None:
    """One line of work/pipeline_log.jsonl (the main rank's only)."""
    work.mkdir(parents=True, exist_ok=True)
    with open(work / LOG_FILE, "a", encoding="utf-8") as f:
        f.write(json.dumps({"time": _now(), "stage": stage, "event": event, **fields_}) + "\n")
