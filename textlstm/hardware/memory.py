"""Keep resident memory bounded while a large corpus is read: pages of memory-mapped Arrow data go
back to the kernel once they have been read.

`datasets` memory-maps its Arrow files. Reading a 1 GB corpus once (fingerprint, tokenizer,
encoding) leaves every page of it resident in this process, counted in its RSS although the kernel
could drop it. madvise(MADV_PAGEOUT) (Linux 5.4+) asks the kernel to reclaim those pages now. It is
only advice: data is never lost (file pages are read back on the next access; anonymous memory,
without swap, simply stays), so it is safe on any buffer. Elsewhere it does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import mmap
import sys

import pyarrow as pa

MADV_PAGEOUT = 21

_madvise = None
if sys.platform.startswith("linux"):
    try:
        _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        _madvise = _libc.madvise
        _madvise.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
    except (OSError, AttributeError):
        _madvise = None


def page_out(buffers) -> None:
    """Advise the kernel to reclaim the pages under these pyarrow buffers (None entries are skipped).

    The range is rounded out to whole pages: Arrow record batches of `datasets` are small (1,000
    rows), so most buffers share their first and last page with a neighbour, and advice on a
    neighbour's page costs nothing but a re-read if it is used again.
    """
    if _madvise is None:
        return
    for buffer in buffers:
        if not isinstance(buffer, pa.Buffer) or buffer.size == 0:
            continue
        start = buffer.address // mmap.PAGESIZE * mmap.PAGESIZE
        end = -(-(buffer.address + buffer.size) // mmap.PAGESIZE) * mmap.PAGESIZE
        _madvise(start, end - start, MADV_PAGEOUT)


def page_out_array(array: pa.Array) -> None:
    page_out(array.buffers())
