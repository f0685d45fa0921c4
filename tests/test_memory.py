"""core/memory.py: a block's peak resident memory and its own increase."""
from __future__ import annotations

import numpy as np

from core.memory import PeakMemory


def test_the_increase_is_the_blocks_own_allocation():
    held = np.ones(64 * 2**20 // 8)  # 64 MiB allocated and touched before the block: not the block's
    with PeakMemory(interval_seconds=0.01) as memory:
        block = np.ones(256 * 2**20 // 8)  # 256 MiB, every page touched
        block.sum()
        del block
    assert memory.rss_mb >= memory.start_rss_mb + 250 and memory.increase_mb >= 250
    assert memory.start_rss_mb >= held.nbytes / 2**20  # the starting size includes what was there before
    assert memory.increase_mb < 256 + 64  # ... and the increase does not
