"""Give freed memory back to the operating system (Linux, glibc), so a notebook's peak is its
live tensors, not its history.

glibc's malloc keeps freed blocks in the process for reuse: after a model is built and a few
forward passes have run, hundreds of MB that no tensor uses still count as the process's
resident memory, and the next large allocation lands on top of them. `release_free_memory`
(glibc's malloc_trim) hands those pages back. llmlab.measure calls it after every timing and
probe, outside the timed region: chapter 5 then peaks at about 0.93 GiB instead of 1.03 (Binder
grants a whole session 1-2 GB).

Fixing malloc's mmap threshold low instead (so every large buffer is unmapped when freed) saved
as much memory but made the serving engine 3.7 times slower: each step's buffers were mapped
and page-faulted afresh.
"""

import ctypes
import ctypes.util
import sys

_libc = None
if sys.platform.startswith("linux"):
    try:
        _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        _libc.malloc_trim  # noqa: B018 - glibc only (musl has none)
    except (OSError, AttributeError):
        _libc = None


def release_free_memory() -> bool:
    """Return freed heap pages to the system; True if anything was released (False off glibc)."""
    return bool(_libc.malloc_trim(0)) if _libc is not None else False
