"""keep_freed_memory: a freed block is reused without page faults (glibc), in a fresh process each time."""
import platform
import subprocess
import sys

import pytest

# Allocate, write and free 8 MiB three times; print the page faults of the second and third writes.
PROGRAM = """
import ctypes, ctypes.util, resource, sys
from bn_gluon.memory import keep_freed_memory
if sys.argv[1] == 'keep':
    assert keep_freed_memory()
libc = ctypes.CDLL(ctypes.util.find_library('c'))
libc.malloc.restype, libc.malloc.argtypes, libc.free.argtypes = ctypes.c_void_p, [ctypes.c_size_t], [ctypes.c_void_p]
faults = []
for _ in range(3):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    block = libc.malloc(8 << 20)
    ctypes.memset(block, 1, 8 << 20)
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
    libc.free(block)
print(faults[1], faults[2])
"""
PAGES = (8 << 20) // 4096


def faults(mode):
    out = subprocess.run([sys.executable, '-c', PROGRAM, mode], capture_output=True, text=True, check=True)
    return [int(v) for v in out.stdout.split()]


@pytest.mark.slow
@pytest.mark.skipif(platform.libc_ver()[0] != 'glibc', reason='needs glibc')
def test_a_freed_block_is_written_again_without_page_faults():
    kept, default = faults('keep'), faults('default')
    assert max(kept) < PAGES // 10, (kept, default)
    assert max(default) > max(kept), (kept, default)   # glibc's default gives some of it back
