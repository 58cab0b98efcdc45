"""Row blocks that fit in cache, spread over every core: how :mod:`lnlib.layernorm` runs fast in NumPy.

A NumPy expression such as ``(x - mean) * rstd`` makes one pass over memory per operation and one
temporary array per intermediate. Over a whole (4096, 4096) float32 input that is a trip to main
memory per operation. Cut the rows into blocks of about :data:`BLOCK_BYTES` of float64 and every
operation of a block runs on data already in cache: main memory is read once (x) and written once
(y), as in a fused kernel. NumPy releases the GIL inside its loops, so the blocks can be
handed to a pool of threads, one per core.

Results never depend on the number of threads: the rows are cut into :data:`CHUNKS` chunks whose
boundaries depend only on the shape, each chunk's blocks are processed in order, and anything summed
over rows (dgamma, dbeta) is summed per chunk and then over chunks in a fixed pairwise order.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

#: Bytes of one float64 block. Measured best among 8 KiB to 32 MiB (``benchmarks/cpu.py``, its
#: ablations): smaller blocks pay NumPy's per-call overhead (about a microsecond, with the GIL held,
#: so threads queue for it) too often; larger ones no longer stay in the processor's last-level cache
#: while a dozen operations pass over them. The backward keeps two such arrays, 4 MiB.
BLOCK_BYTES = 2 * 2**20
#: Row chunks, independent of the number of threads, so that sums over rows are the same on any
#: machine: a chunk sums its rows, then the chunks' sums are added pairwise.
CHUNKS = 16


def rows_per_block(D: int) -> int:
    """Rows in one block: as many float64 rows of length ``D`` as fit in :data:`BLOCK_BYTES` (at least 1)."""
    return max(1, BLOCK_BYTES // (8 * D))


def threads() -> int:
    """Threads to use: the cores this process may run on, or ``LNLIB_NUM_THREADS`` if set."""
    env = os.environ.get("LNLIB_NUM_THREADS")
    if env:
        n = int(env)
        if n < 1:
            raise ValueError(f"LNLIB_NUM_THREADS must be a positive integer, got {env!r}")
        return n
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


_pool: ThreadPoolExecutor | None = None
_pool_size = 0


def _executor(n: int) -> ThreadPoolExecutor:
    global _pool, _pool_size
    if _pool is None or _pool_size != n:
        if _pool is not None:
            _pool.shutdown(wait=False)
        _pool, _pool_size = ThreadPoolExecutor(max_workers=n, thread_name_prefix="lnlib"), n
    return _pool


def chunks(M: int, D: int) -> list[tuple[int, int]]:
    """The (first, last + 1) rows of each chunk: whole blocks, at most :data:`CHUNKS` of them, set by the shape alone."""
    B = rows_per_block(D)
    blocks = -(-M // B)
    per = -(-blocks // CHUNKS) if blocks else 0
    return [(c * per * B, min(M, (c + 1) * per * B)) for c in range(-(-blocks // per))] if blocks else []


#: NumPy's buffer for a broadcast operation, in elements, while a chunk runs. With the default (8192)
#: an operation between a block and one number per row (``d * rstd[:, None]``) on rows shorter than
#: the buffer is copied through it in pieces, which measured three times slower than a buffer shorter
#: than the row, where NumPy loops over the block in place (0.35 against 0.11 ns an element on rows
#: of 4096). Set only in the thread running the chunk, and restored.
BUFSIZE = 64


def _unbuffered(work):
    def run(span):
        old = np.setbufsize(BUFSIZE)
        try:
            return work(*span)
        finally:
            np.setbufsize(old)

    return run


def run_chunks(work, M: int, D: int) -> list:
    """Call ``work(r0, r1)`` for each chunk of :func:`chunks` and return the results in chunk order.

    ``work`` processes rows ``r0:r1`` (several blocks: it loops over them with
    :func:`rows_per_block`) and must write only to its own rows of any output. Chunks run on
    :func:`threads` threads; with one thread, or one chunk, they run here, in order.
    """
    spans = chunks(M, D)
    n = min(threads(), len(spans))
    if n <= 1:
        return [_unbuffered(work)(span) for span in spans]
    return list(_executor(n).map(_unbuffered(work), spans))


def pairwise_sum(parts: list):
    """Sum a list of equal-shaped arrays pairwise, in a fixed order (error grows as log2 of their count)."""
    while len(parts) > 1:
        parts = [parts[i] + parts[i + 1] if i + 1 < len(parts) else parts[i] for i in range(0, len(parts), 2)]
    return parts[0]
