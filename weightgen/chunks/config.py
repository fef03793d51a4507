"""The chunking rule without torch: the block size b every layout, dataset and generator shares."""

from __future__ import annotations

from weightgen.errors import WeightgenError

DEFAULT_BLOCK_SIZE = 256  # values per block b: the paper's choice (256 beat 128 and 512)
MIN_BLOCK_SIZE = 8


def validate_block_size(block_size, largest_group: int | None = None) -> int:
    """An int >= 8 and, given the largest group, not so large that blocks are mostly padding."""
    if isinstance(block_size, bool) or not isinstance(block_size, int):
        raise WeightgenError(f"block size must be an integer, got {block_size!r}")
    if block_size < MIN_BLOCK_SIZE:
        raise WeightgenError(f"block size must be at least {MIN_BLOCK_SIZE}, got {block_size}")
    if largest_group is not None and block_size > 2 * largest_group:
        raise WeightgenError(
            f"block size {block_size} is over twice the largest group ({largest_group} values): "
            f"every block would be mostly zero padding; use a block size <= {largest_group}"
        )
    return block_size
