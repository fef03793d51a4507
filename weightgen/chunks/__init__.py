"""LoRA adapters as equal 1D chunks: the layout, adapter folders, the chunk dataset, zoo statistics.

    layout = ChunkLayout.from_state_dict(state_dict, block_size=256, adapter_config=config)
    blocks = layout.to_blocks(state_dict)          # (N, b) float32, zero padded
    state_dict = layout.from_blocks(blocks)        # exact inverse
    z = layout.normalize(blocks); layout.denormalize(z)
    build_chunk_dataset(zoo_dir, out_dir); data = load_chunk_dataset(out_dir)
"""
