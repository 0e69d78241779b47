"""Give freed tensor memory back to the operating system (Linux, glibc), so a notebook's peak is
its live tensors, not its history.

glibc's malloc serves a large request with its own mmap, returned to the system on free, but
after the first such free it raises that threshold to the freed size (up to 32 MiB), and from
then on buffers of that size come from the heap, where freed space stays in the process. A
notebook that builds a model and runs a few forward passes kept 300 MB it no longer used that
way: chapter 5 peaked at 1.24 GiB instead of 0.86 (Binder grants a whole session 1-2 GB).
Fixing the threshold at 1 MiB stops the drift: activations and weights are mmap'd and unmapped
when freed; the small buffers of a decode step stay on the heap, where reuse is cheap.
"""

import ctypes
import ctypes.util
import sys

M_MMAP_THRESHOLD = -3  # mallopt's parameter number, from glibc's malloc.h
THRESHOLD_BYTES = 2**20


def release_large_buffers() -> bool:
    """Fix glibc's mmap threshold at 1 MiB; True if it was set (False off glibc)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return bool(libc.mallopt(M_MMAP_THRESHOLD, THRESHOLD_BYTES))
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return False
