"""Giving memory that was freed back to the system."""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import sys


@functools.cache
def _malloc_trim():
    """glibc's `malloc_trim`, or None where the C library is another (macOS, musl) or unknown."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None


def return_freed_memory() -> None:
    """Asks the C allocator to give back what Python and NumPy have freed but it keeps for reuse.
    Blocks freed by the thousand in the middle of the heap (a fit's kept grey frames, about 86 KB
    each on Ped2) are not given back on their own: after a Ped2 fit let go of its normal videos'
    frames, this lowered the peak of the S3M's training that follows by about 200 MB. Costs
    milliseconds; does nothing where there is no glibc."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)
