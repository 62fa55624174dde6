"""Keep large freed buffers for the next request instead of returning them to the system.

glibc serves every allocation above its mmap threshold (128 KiB at first) with fresh pages from
the kernel and unmaps them on free, and trims the heap when its free top passes the trim
threshold. A decoded photo (2.4 MB for 768x1024), its copies and model tensors are all that large,
so every request page-faults them in again: measured on this 2-core VM, decoding a 768x1024 JPEG
took 10-12 ms that way and 4 ms with the buffers reused. Raising both thresholds once at start-up
keeps them; the cost is that up to ``trim_bytes`` of freed memory per allocator arena stays with
the process.
"""

from __future__ import annotations

import ctypes
import logging

logger = logging.getLogger(__name__)

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_BYTES = 32 * 1024 * 1024  # glibc's largest allowed value on 64-bit
TRIM_THRESHOLD_BYTES = 64 * 1024 * 1024


def reuse_freed_memory(
    mmap_bytes: int = MMAP_THRESHOLD_BYTES, trim_bytes: int = TRIM_THRESHOLD_BYTES
) -> bool:
    """Raise glibc's mmap and trim thresholds; False (and nothing changed) on another C library."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    applied = bool(mallopt(M_MMAP_THRESHOLD, mmap_bytes)) and bool(mallopt(M_TRIM_THRESHOLD, trim_bytes))
    if not applied:
        logger.warning("mallopt refused the memory thresholds; large buffers are not reused")
    return applied
