"""Measuring cost: wall time (median of repeats) and peak memory of a call.

Used by the book to *measure* the cost of each derivation and cache choice instead of estimating it.
"""

from __future__ import annotations

import gc
import statistics
import time
import tracemalloc


def time_call(fn, *args, repeat: int = 7, min_time: float = 0.02, **kwargs) -> float:
    """Median seconds per call of ``fn(*args, **kwargs)``.

    Each of ``repeat`` samples runs the call enough times to take at least ``min_time`` seconds, so
    short calls are not dominated by the timer's resolution. One untimed warm-up call comes first.

    Examples
    --------
    >>> time_call(sum, range(10)) > 0
    True
    """
    fn(*args, **kwargs)
    number = 1
    while True:
        t0 = time.perf_counter()
        for _ in range(number):
            fn(*args, **kwargs)
        if time.perf_counter() - t0 >= min_time or number >= 1 << 20:
            break
        number *= 2
    samples = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        for _ in range(number):
            fn(*args, **kwargs)
        samples.append((time.perf_counter() - t0) / number)
    return statistics.median(samples)


def peak_memory(fn, *args, **kwargs) -> int:
    """Peak bytes allocated (Python and NumPy) during one call, above what was allocated before it.

    NumPy reports its array buffers to ``tracemalloc``, so this counts every temporary array.

    Examples
    --------
    >>> import numpy as np
    >>> peak_memory(np.ones, 1_000_000) >= 8_000_000
    True
    """
    gc.collect()
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        fn(*args, **kwargs)
        return tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
