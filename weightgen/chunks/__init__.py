"""LoRA adapters as equal 1D chunks: the layout, adapter folders, the chunk dataset, zoo statistics.

    layout = ChunkLayout.from_state_dict(state_dict, block_size=256, adapter_config=config)
    blocks = layout.to_blocks(state_dict)          # (N, b) float32, zero padded
    state_dict = layout.from_blocks(blocks)        # exact inverse
    z = layout.normalize(blocks); layout.denormalize(z)
    build_chunk_dataset(zoo_dir, out_dir); data = load_chunk_dataset(out_dir)
"""

from weightgen.chunks.adapters import check_adapter_config, read_adapter, write_adapter
from weightgen.chunks.dataset import (
    ChunkData,
    ZooBlocks,
    build_chunk_dataset,
    load_chunk_dataset,
    read_chunks_metadata,
    read_zoo_blocks,
    zoo_checkpoints,
)
from weightgen.chunks.layout import (
    ChunkLayout,
    GroupSpec,
    TensorSpec,
    validate_block_size,
)
from weightgen.chunks.stats import chunk_stats, memorization_distances

__all__ = [
    "ChunkData",
    "ChunkLayout",
    "GroupSpec",
    "TensorSpec",
    "ZooBlocks",
    "build_chunk_dataset",
    "check_adapter_config",
    "chunk_stats",
    "load_chunk_dataset",
    "memorization_distances",
    "read_adapter",
    "read_chunks_metadata",
    "read_zoo_blocks",
    "validate_block_size",
    "write_adapter",
    "zoo_checkpoints",
]
