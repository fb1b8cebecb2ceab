"""Keep freed memory in the process, so that MXNet's arrays do not page-fault on every training step.

MXNet 1.9 on the CPU allocates the arrays of a hybridized graph (without ``static_alloc``) afresh with
``malloc`` on every call and frees them after. glibc gives large freed blocks back to the operating
system, so the next step's arrays are fresh pages and the first write to each 4 KiB page is a page
fault. With freed memory kept, the training step is faster (measurements: docs/performance.md).
"""
import ctypes
import ctypes.util

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3     # mallopt parameters in glibc's malloc.h
TRIM_THRESHOLD = 1 << 30                        # keep up to 1 GiB of free heap
MMAP_THRESHOLD = 32 << 20                       # glibc's upper limit: blocks up to 32 MiB come from the heap


def keep_freed_memory():
    """Ask glibc to keep freed memory for reuse instead of returning it to the system.

    Affects the whole process from the call on; train.py and the benchmarks call it first. Returns True
    when glibc accepted both settings, False where there is no glibc (macOS, Windows, musl): then nothing
    changes.
    """
    name = ctypes.util.find_library('c')
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
        libc.gnu_get_libc_version  # glibc only: musl has mallopt but ignores these settings
    except (OSError, AttributeError, TypeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD)) & bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD))
