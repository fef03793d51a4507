"""The zoo folder on disk: per-concept entries, the plan, the manifest, and their checks.

    <zoo>/plan.json                  settings + the planned concepts + this run's to-do list (main process)
    <zoo>/<concept_id>/ckpt-<k>/     peft adapter folders (+ weightgen.json sidecar: concept, seed, step, metrics)
    <zoo>/<concept_id>/entry.json    the concept's done record: checkpoints with sha256, metrics, history
    <zoo>/manifest.json              {"format": "weightgen-zoo", ...}: rebuilt from the entries (main process)

Crash safety comes from one rule: a concept folder is assembled in a temporary sibling, its
entry.json is written last, and the folder is renamed into place (gan.io.atomic_dir). So a
concept folder either is complete or does not exist, whatever kills the run (kill -9, a full
disk); stale temporaries are removed on resume. Only the main process writes plan.json and
manifest.json, and it derives the manifest from the entries, so no two processes ever write one
file. The sha256 in entry.json catches adapter files damaged afterwards (truncated, overwritten).
"""

from __future__ import annotations

import errno
import json
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gan.io import read_json, write_json
from weightgen.digests import sha256_file
from weightgen.errors import USER_ERRORS, WeightgenError
from weightgen.zoo.plan import ZooConcept

ZOO_FORMAT = "weightgen-zoo"
PLAN_FORMAT = "weightgen-zoo-plan"
ENTRY_FORMAT = "weightgen-zoo-entry"
MANIFEST = "manifest.json"
PLAN = "plan.json"
ENTRY = "entry.json"
ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
ADAPTER_SIDECAR = "weightgen.json"


def checkpoint_record(zoo_root: Path, concept_dir: Path, cid: str, index: int) -> dict:
    """The entry's record of `<concept_dir>/ckpt-<index>`, with the weights' hash and the sidecar's step/metrics."""
    folder = concept_dir / f"ckpt-{index}"
    sidecar = read_json(folder / ADAPTER_SIDECAR)
    weights = folder / ADAPTER_WEIGHTS
    return {"path": f"{cid}/ckpt-{index}", "step": sidecar["step"], "metrics": sidecar["metrics"],
            "sha256": sha256_file(weights), "bytes": weights.stat().st_size}


def adapter_meta(concept: ZooConcept, seed: int, lora_init_seed: int) -> dict:
    """What every checkpoint's sidecar says about its concept (gan.lora_training.adapter_checkpoints adds the rest)."""
    return {"concept": concept.id, "concept_text": concept.text, "split": concept.split, "seed": seed,
            "lora_init_seed": lora_init_seed}


def concept_entry(zoo_root: Path, concept_dir: Path, concept: ZooConcept, k: int, rank: int, seconds: float,
                  lora_params: int, history: list[dict], extra: dict | None = None) -> dict:
    """A concept's entry.json: its checkpoints (read back from `concept_dir`), metrics, history, + `extra`."""
    return {"format": ENTRY_FORMAT, "version": 1, "id": concept.id, "text": concept.text, "split": concept.split,
            "rank": rank, "seconds": round(seconds, 2), "train_seconds": history[-1]["seconds"],
            "lora_params": lora_params, "base_metrics": history[0]["metrics"], "final_metrics": history[-1]["metrics"],
            "checkpoints": [checkpoint_record(zoo_root, concept_dir, concept.id, i) for i in range(k)],
            "history": history, **(extra or {})}


def raise_if_disk_full(error: OSError, what: str, cleanup: str) -> None:
    """A full disk as the one-line user error that says what was kept; other OS errors pass through."""
    if error.errno == errno.ENOSPC:
        raise WeightgenError(f"disk full while writing {what} ({error.strerror}); {cleanup} and nothing partial is "
                             "listed: free space and rerun to resume") from None


@dataclass
class EntryCheck:
    entry: dict | None  # the parsed entry.json when the concept is complete and intact
    problem: str | None  # why it is not (None: intact, or simply not built yet)

    @property
    def ok(self) -> bool:
        return self.entry is not None


def check_entry(zoo: Path, concept: ZooConcept, k: int | None = None) -> EntryCheck:
    """Is `<zoo>/<id>` a complete, undamaged concept? Cheap: reads small JSON files and hashes the weights."""
    folder = zoo / concept.id
    if not folder.exists():
        return EntryCheck(None, None)
    if not (folder / ENTRY).is_file():
        return EntryCheck(None, f"{folder} has no {ENTRY} (not written by a complete zoo run)")
    try:
        entry = read_json(folder / ENTRY)
    except USER_ERRORS as e:
        return EntryCheck(None, str(e))
    if not isinstance(entry, dict) or entry.get("format") != ENTRY_FORMAT or entry.get("id") != concept.id:
        return EntryCheck(None, f"{folder / ENTRY} is not the zoo entry of {concept.id}")
    checkpoints = entry.get("checkpoints") or []
    if k is not None and len(checkpoints) != k:
        return EntryCheck(None, f"{folder / ENTRY} lists {len(checkpoints)} checkpoints, the zoo keeps k={k}")
    for ck in checkpoints:
        ck_dir = zoo / ck["path"]
        weights = ck_dir / ADAPTER_WEIGHTS
        for name in (ADAPTER_CONFIG, ADAPTER_WEIGHTS, ADAPTER_SIDECAR):
            if not (ck_dir / name).is_file():
                return EntryCheck(None, f"checkpoint {ck['path']} lacks {name}")
        for name in (ADAPTER_CONFIG, ADAPTER_SIDECAR):
            try:
                read_json(ck_dir / name)
            except USER_ERRORS as e:
                return EntryCheck(None, f"checkpoint {ck['path']}: {e}")
        size = weights.stat().st_size
        if size != ck.get("bytes") or sha256_file(weights) != ck.get("sha256"):
            return EntryCheck(None, f"checkpoint {ck['path']}: {ADAPTER_WEIGHTS} is corrupt ({size} bytes, "
                                    f"sha256 differs from the {ck.get('bytes')} bytes written)")
    return EntryCheck(entry, None)


def remove_stale_temporaries(zoo: Path) -> list[Path]:
    """Temporary concept folders and files a killed run left (atomic writes clean up after themselves otherwise)."""
    stale = [p for p in zoo.glob(".*.tmp")]
    for p in stale:
        shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
    return stale


def remove_concept(zoo: Path, cid: str) -> None:
    shutil.rmtree(zoo / cid, ignore_errors=True)


# -- the plan: written by the main process, read by every rank -------------------------------------------------------

def write_plan(zoo: Path, settings: dict, concepts: Sequence[ZooConcept], todo: Sequence[str]) -> None:
    write_json(zoo / PLAN, {"format": PLAN_FORMAT, "version": 1, "settings": settings,
                            "concepts": [{"id": c.id, "text": c.text, "split": c.split} for c in concepts],
                            "todo": list(todo)})


def read_plan(zoo: Path) -> tuple[dict, list[ZooConcept], list[str]]:
    plan = read_json(zoo / PLAN)
    if not isinstance(plan, dict) or plan.get("format") != PLAN_FORMAT:
        raise WeightgenError(f"{zoo / PLAN} is not a zoo plan")
    return plan["settings"], [ZooConcept(c["text"], c["split"]) for c in plan["concepts"]], list(plan["todo"])


def settings_mismatch(old: dict, new: dict) -> list[str]:
    """Names of the settings that differ (nested one level), for an error that says what changed."""
    diffs = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            diffs += [f"{key}.{sub}={a.get(sub)!r} (now {b.get(sub)!r})" for sub in sorted(set(a) | set(b))
                      if json.dumps(a.get(sub), sort_keys=True) != json.dumps(b.get(sub), sort_keys=True)]
        elif json.dumps(a, sort_keys=True) != json.dumps(b, sort_keys=True):
            diffs.append(f"{key}={a!r} (now {b!r})")
    return diffs


# -- the manifest: the contract with weightgen.chunks --------------------------------------------------------------

def manifest_from_entries(base: str, base_fingerprint: str, base_weights_hash: str, lora: dict, extra: dict,
                          concepts: Sequence[ZooConcept], entries: dict[str, dict]) -> dict:
    """The zoo manifest (brief format 4) listing the complete concepts, in plan order."""
    listed = {}
    for c in concepts:
        e = entries.get(c.id)
        if e is None:
            continue
        listed[c.id] = {"text": c.text, "split": c.split,
                        "checkpoints": [{"path": ck["path"], "step": ck["step"], "metrics": ck["metrics"]}
                                        for ck in e["checkpoints"]],
                        "base_metrics": e.get("base_metrics")}
    return {"format": ZOO_FORMAT, "version": 1, "base": base, "base_fingerprint": base_fingerprint,
            "base_weights_hash": base_weights_hash, "lora": lora,
            "complete": len(listed) == len(concepts), "n_planned": len(concepts), **extra, "concepts": listed}


def write_manifest(zoo: Path, manifest: dict) -> None:
    write_json(zoo / MANIFEST, manifest)


def read_manifest(zoo: Path) -> dict[str, Any]:
    if not Path(zoo).is_dir():
        raise WeightgenError(f"zoo folder not found: {zoo}")
    manifest = read_json(Path(zoo) / MANIFEST)
    if not isinstance(manifest, dict) or manifest.get("format") != ZOO_FORMAT:
        raise WeightgenError(f"{Path(zoo) / MANIFEST} is not a weightgen zoo manifest")
    return manifest
