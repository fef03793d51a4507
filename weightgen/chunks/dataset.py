"""The chunk dataset: every block of every training checkpoint of the zoo, normalized.

<out>/chunks.safetensors holds blocks (M, b) float32 normalized, block_index, concept_index and
checkpoint_index (M,) long, with JSON metadata (concept texts and ids, checkpoint paths, layout
fingerprint); <out>/layout.json is the ChunkLayout with the statistics fitted on these
checkpoints. Only the zoo's train split goes in: held-out concepts are the benchmark's oracle.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
)
from safetensors import SafetensorError, safe_open

from gan.io import atomic_dir, load_tensors, read_json, save_tensors
from weightgen.chunks.adapters import SIDECAR_FILE, check_adapter_config, read_adapter
from weightgen.chunks.config import DEFAULT_BLOCK_SIZE
from weightgen.chunks.layout import ChunkLayout
from weightgen.errors import WeightgenError

ZOO_FORMAT = "weightgen-zoo"
CHUNKS_FORMAT = "weightgen-chunks"
CHUNKS_FILE = "chunks.safetensors"
_TENSOR_KEYS = ("blocks", "block_index", "concept_index", "checkpoint_index")
_BASE_KEYS = ("base_fingerprint", "base_weights_hash")  # sidecar fields naming the base GAN (gan.lora)


@dataclass
class ZooCheckpoint:
    concept_id: str
    text: str
    path: str  # relative to the zoo folder
    concept_index: int


@dataclass
class ZooBlocks:
    """Raw blocks of a zoo split, one row of `blocks` per checkpoint."""

    layout: ChunkLayout  # statistics fitted on `blocks`
    blocks: torch.Tensor  # (K, N, b) float32 raw values
    checkpoints: list[ZooCheckpoint]
    concept_ids: list[str]
    concepts: list[str]  # texts, indexed like concept_ids


@dataclass
class ChunkData:
    """The generator's training set (see the module docstring)."""

    blocks: torch.Tensor  # (M, b) float32, normalized by layout
    block_index: torch.Tensor  # (M,) long, position of the block inside its adapter
    concept_index: torch.Tensor  # (M,) long, index into `concepts`
    checkpoint_index: torch.Tensor  # (M,) long, index into `checkpoints` (unique per zoo checkpoint)
    concepts: list[str]  # concept texts
    layout: ChunkLayout
    concept_ids: list[str] = field(default_factory=list)  # zoo concept ids, like `concepts`
    checkpoints: list[str] = field(default_factory=list)  # checkpoint paths relative to the zoo

    def __len__(self) -> int:
        return self.blocks.shape[0]


def zoo_checkpoints(zoo_dir: str | Path, split: str = "train") -> tuple[list[ZooCheckpoint], dict]:
    """Checkpoints of one split of a zoo manifest, in manifest order, and the manifest."""
    zoo_dir = Path(zoo_dir)
    if not zoo_dir.is_dir():
        raise WeightgenError(f"zoo folder not found: {zoo_dir}")
    manifest = read_json(zoo_dir / "manifest.json")
    if not isinstance(manifest, dict) or manifest.get("format") != ZOO_FORMAT:
        got = manifest.get("format") if isinstance(manifest, dict) else type(manifest).__name__
        raise WeightgenError(f"{zoo_dir / 'manifest.json'} is not a weightgen zoo manifest (format {got!r})")
    concepts = manifest.get("concepts")
    if not isinstance(concepts, dict):
        raise WeightgenError(f"{zoo_dir / 'manifest.json'} has no 'concepts' mapping")
    out, n_concepts = [], 0
    for cid, info in concepts.items():
        if info.get("split") != split or not info.get("checkpoints"):
            continue
        for ckpt in info["checkpoints"]:
            if "path" not in ckpt:
                raise WeightgenError(f"zoo manifest: a checkpoint of concept {cid!r} has no 'path'")
            out.append(ZooCheckpoint(cid, info.get("text", cid), ckpt["path"], n_concepts))
        n_concepts += 1
    if not out:
        raise WeightgenError(f"zoo {zoo_dir} has no {split!r} checkpoints in its manifest")
    return out, manifest


def _base_meta(adapter_dir: Path) -> dict:
    """The base-identity part of an adapter's weightgen.json sidecar ({} without a sidecar)."""
    path = adapter_dir / SIDECAR_FILE
    meta = read_json(path) if path.is_file() else {}
    if not isinstance(meta, dict):
        raise WeightgenError(f"{path} is not a JSON object")
    return {k: meta[k] for k in ("format", "version", *_BASE_KEYS) if k in meta}


def _progress(enabled: bool):
    return Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TextColumn("{task.fields[current]}"), TimeRemainingColumn(), disable=not enabled,
    )


def read_zoo_blocks(zoo_dir: str | Path, block_size: int = DEFAULT_BLOCK_SIZE, split: str = "train",
                    progress: bool = False) -> ZooBlocks:
    """Read every checkpoint of a split into raw blocks, refusing mixed architectures/ranks."""
    zoo_dir = Path(zoo_dir)
    checkpoints, manifest = zoo_checkpoints(zoo_dir, split)
    layout, rows = None, []
    with _progress(progress) as bar:
        task = bar.add_task("reading zoo", total=len(checkpoints), current="")
        for ck in checkpoints:
            bar.update(task, current=ck.path)
            source = f"checkpoint {ck.path}"
            state_dict, config = read_adapter(zoo_dir / ck.path)
            meta = _base_meta(zoo_dir / ck.path)
            if layout is None:
                layout = ChunkLayout.from_state_dict(
                    state_dict, block_size, config, str(manifest.get("base_fingerprint", ""))
                )
                layout.adapter_meta = meta
            check_adapter_config(config, layout.adapter_config, source)
            for key in _BASE_KEYS:  # compared where both sidecars say (plain peft folders have none)
                if key in meta and key in layout.adapter_meta and meta[key] != layout.adapter_meta[key]:
                    raise WeightgenError(
                        f"{source}: trained for {key} {meta.get(key)!r}, the zoo's first checkpoint for "
                        f"{layout.adapter_meta.get(key)!r} (adapters of different base models)"
                    )
            layout.check_state_dict(state_dict, source)
            for key, t in state_dict.items():
                if not torch.isfinite(t).all():
                    raise WeightgenError(f"{source}: tensor {key!r} has NaN or Inf values")
            rows.append(layout.to_blocks(state_dict))
            bar.advance(task)
    blocks = torch.stack(rows)  # (K, N, b)
    concept_ids = list(dict.fromkeys(ck.concept_id for ck in checkpoints))
    texts = {ck.concept_id: ck.text for ck in checkpoints}
    return ZooBlocks(layout.fit_statistics(blocks), blocks, checkpoints, concept_ids,
                     [texts[c] for c in concept_ids])


def build_chunk_dataset(zoo_dir: str | Path, out_dir: str | Path, block_size: int = DEFAULT_BLOCK_SIZE,
                        overwrite: bool = False, progress: bool = True) -> Path:
    """Write <out>/chunks.safetensors + layout.json from the zoo's train split (atomically)."""
    zoo = read_zoo_blocks(zoo_dir, block_size, "train", progress)
    layout = zoo.layout
    k, n = zoo.blocks.shape[:2]
    tensors = {
        "blocks": layout.normalize(zoo.blocks).reshape(k * n, layout.block_size),
        "block_index": torch.arange(n).repeat(k),
        "concept_index": torch.tensor([ck.concept_index for ck in zoo.checkpoints]).repeat_interleave(n),
        "checkpoint_index": torch.arange(k).repeat_interleave(n),
    }
    metadata = {
        "format": CHUNKS_FORMAT,
        "version": "1",
        "layout_fingerprint": layout.fingerprint,
        "concepts": json.dumps(zoo.concepts),
        "concept_ids": json.dumps(zoo.concept_ids),
        "checkpoints": json.dumps([ck.path for ck in zoo.checkpoints]),
        "zoo": str(Path(zoo_dir).resolve()),
    }
    out_dir = Path(out_dir)
    with atomic_dir(out_dir, overwrite=overwrite) as tmp:
        save_tensors(tmp / CHUNKS_FILE, tensors, metadata=metadata)
        layout.save(tmp)
    return out_dir


def _read_metadata(path: Path) -> dict:
    try:
        with safe_open(str(path), "pt") as f:
            return f.metadata() or {}
    except (SafetensorError, OSError) as e:
        raise WeightgenError(f"corrupt weights file {path}: {e}") from None


def read_chunks_metadata(chunks_dir: str | Path) -> dict:
    """The chunk dataset's metadata (concept texts, zoo path, layout fingerprint) without reading its blocks."""
    path = Path(chunks_dir) / CHUNKS_FILE
    if not path.is_file():
        raise WeightgenError(f"chunk dataset not found: {path}")
    return _read_metadata(path)


def load_chunk_dataset(chunks_dir: str | Path) -> ChunkData:
    """Read a chunk dataset folder, refusing a chunks file that does not match its layout."""
    chunks_dir = Path(chunks_dir)
    if not chunks_dir.is_dir():
        raise WeightgenError(f"chunk dataset folder not found: {chunks_dir}")
    layout = ChunkLayout.load(chunks_dir)
    path = chunks_dir / CHUNKS_FILE
    tensors = load_tensors(path)
    meta = _read_metadata(path)
    if meta.get("format") != CHUNKS_FORMAT:
        raise WeightgenError(f"{path} is not a weightgen chunk dataset (format {meta.get('format')!r})")
    missing = [key for key in _TENSOR_KEYS if key not in tensors]
    if missing:
        raise WeightgenError(f"{path} lacks tensor(s) {missing}")
    blocks = tensors["blocks"]
    if blocks.dim() != 2 or blocks.shape[1] != layout.block_size:
        raise WeightgenError(
            f"{path} holds blocks of shape {tuple(blocks.shape)}, but layout.json has block size {layout.block_size}"
        )
    if meta.get("layout_fingerprint") != layout.fingerprint:
        raise WeightgenError(
            f"{path} was built with layout {meta.get('layout_fingerprint')!r}, but layout.json is {layout.fingerprint!r}"
        )
    try:
        concepts = json.loads(meta["concepts"])
        concept_ids = json.loads(meta.get("concept_ids", "[]"))
        checkpoints = json.loads(meta.get("checkpoints", "[]"))
    except (KeyError, json.JSONDecodeError) as e:
        raise WeightgenError(f"{path} has malformed metadata: {e!r}") from None
    m = blocks.shape[0]
    for key in _TENSOR_KEYS[1:]:
        if tensors[key].shape != (m,):
            raise WeightgenError(f"{path}: {key} has shape {tuple(tensors[key].shape)}, expected ({m},)")
    if m and (tensors["block_index"].max() >= layout.n_blocks or tensors["concept_index"].max() >= len(concepts)):
        raise WeightgenError(f"{path}: block or concept indices out of range of its layout / concept list")
    return ChunkData(
        blocks=blocks.float(),
        block_index=tensors["block_index"].long(),
        concept_index=tensors["concept_index"].long(),
        checkpoint_index=tensors["checkpoint_index"].long(),
        concepts=concepts,
        layout=layout,
        concept_ids=concept_ids,
        checkpoints=checkpoints,
    )
