import os

# Hub look-ups hang ~47 s before failing on this offline machine.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import pytest
import torch


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    """Tiny models gain nothing from threads, and on a shared CPU extra threads only spin (10x slower)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny_world(tmp_path_factory):
    """pairs -> base -> zoo -> chunks -> generator, tiny, built once (see tests/tiny_world.py)."""
    from tiny_world import build_tiny_world

    return build_tiny_world(tmp_path_factory.mktemp("world"))
