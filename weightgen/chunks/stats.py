"""Weight statistics of a zoo that matter for the generator.

How many values it must write (params, blocks, padding), on what scale each tensor lives, and
whether concepts are distinguishable at all: if two checkpoints of one concept are as far apart
as two different concepts, no text-conditioned generator can do better than the zoo mean.
"""

from __future__ import annotations

from pathlib import Path

import torch

from weightgen.chunks.config import DEFAULT_BLOCK_SIZE
from weightgen.chunks.dataset import ZooBlocks, read_zoo_blocks


def _pair_distances(x: torch.Tensor, concept: torch.Tensor) -> dict:
    """Mean L2 distance between checkpoints of the same concept vs of different concepts."""
    x = x - x.mean(0, keepdim=True)  # centering leaves distances unchanged, keeps the Gram exact
    sq = (x * x).sum(1)
    d = (sq[:, None] + sq[None, :] - 2 * x @ x.T).clamp_min(0).sqrt()  # (K, K)
    upper = torch.triu(torch.ones_like(d, dtype=torch.bool), diagonal=1)
    same = (concept[:, None] == concept[None, :]) & upper
    diff = (concept[:, None] != concept[None, :]) & upper
    within = float(d[same].mean()) if same.any() else None
    between = float(d[diff].mean()) if diff.any() else None
    return {
        "within_concept_l2": within,
        "between_concept_l2": between,
        "between_over_within": between / within if within and between is not None else None,
        "mean_norm": float(sq.sqrt().mean()),  # distance from the zoo mean, for scale
    }


def memorization_distances(generated: torch.Tensor, train: torch.Tensor, concept: torch.Tensor) -> dict:
    """The memorization check of Zeng et al. (2025) as per-item L2 distances over flattened weights.

    generated (G, D), train (K, D) checkpoints owned by concept (K,). A generator that copies its
    training set puts `generated_to_train` far below `train_to_other_concept` (how far a checkpoint
    is from the nearest checkpoint of another concept), near `within_concept`.
    """
    d = torch.cdist(train, train)  # (K, K)
    same = concept[:, None] == concept[None, :]
    upper = torch.triu(torch.ones_like(same), diagonal=1)
    return {
        "generated_to_train": torch.cdist(generated, train).min(1).values,  # (G,)
        "train_to_other_concept": d.masked_fill(same, float("inf")).min(1).values,  # (K,)
        "within_concept": d[same & upper],  # (pairs,)
    }


def stats_from_blocks(zoo: ZooBlocks) -> dict:
    layout, raw = zoo.layout, zoo.blocks
    k = raw.shape[0]
    concept = torch.tensor([ck.concept_index for ck in zoo.checkpoints])
    keep = layout._tensor_map >= 0  # real values only: padding would shrink every distance ratio
    flat_raw = raw.reshape(k, -1)[:, keep]
    flat_norm = layout.normalize(raw).reshape(k, -1)[:, keep]
    groups = []
    for g in layout.groups:
        start, stop = g.first_block, g.first_block + g.n_blocks
        groups.append({
            "name": g.name,
            "n_params": g.numel,
            "n_blocks": g.n_blocks,
            "padding": g.padding,
            "rms": float(raw[:, start:stop].pow(2).sum().div(k * g.numel).sqrt()),
            "tensors": [{"role": t.role, "shape": list(t.shape), "mean": t.mean, "std": t.std} for t in g.tensors],
        })
    lora_params = sum(t.numel for t in layout.tensors if t.role.startswith("lora_"))
    return {
        "n_concepts": len(zoo.concepts),
        "n_checkpoints": k,
        "total_params": layout.n_params,
        "total_lora_params": lora_params,
        "block_size": layout.block_size,
        "n_blocks": layout.n_blocks,
        "padding_fraction": 1 - layout.n_params / (layout.n_blocks * layout.block_size),
        "groups": groups,
        "distances_raw": _pair_distances(flat_raw, concept),
        "distances_normalized": _pair_distances(flat_norm, concept),
    }


def chunk_stats(zoo_dir: str | Path, block_size: int = DEFAULT_BLOCK_SIZE, split: str = "train", progress: bool = False) -> dict:
    """Statistics of a zoo split; see the module docstring (distances over all checkpoint pairs)."""
    return stats_from_blocks(read_zoo_blocks(zoo_dir, block_size, split, progress))
