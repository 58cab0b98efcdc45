"""Measuring cost: wall time (median of repeats) and peak memory of a call.

Used by the book to *measure* the cost of each derivation and cache choice instead of estimating it.
"""

from __future__ import annotations

import gc
import statistics
import time
import tracemalloc

import numpy as np


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


class _Counted(np.ndarray):
    """An array view that tallies the arithmetic done on it (see :func:`count_ops`)."""

    counter = [0]

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        raw = [np.asarray(a) if isinstance(a, _Counted) else a for a in inputs]
        if "out" in kwargs:
            kwargs["out"] = tuple(np.asarray(o) if isinstance(o, _Counted) else o for o in kwargs["out"])
        result = getattr(ufunc, method)(*raw, **kwargs)
        if method == "__call__":
            _Counted.counter[0] += int(np.size(result[0] if isinstance(result, tuple) else result))
        elif method in ("reduce", "accumulate"):
            _Counted.counter[0] += int(np.size(raw[0]))
        return _wrap(result)

    def __array_function__(self, func, types, args, kwargs):
        raw_args = _unwrap(args)
        raw_kwargs = _unwrap(kwargs)
        if func is np.einsum:
            # the iteration space of the contraction: one multiply-add per point
            spec = raw_args[0].replace(" ", "").split("->")[0].split(",")
            operands = raw_args[1:]
            sizes = {}
            for sub, op in zip(spec, operands):
                sub = sub.replace("...", "")
                batch = np.shape(op)[: np.ndim(op) - len(sub)]
                sizes["batch"] = max(sizes.get("batch", 1), int(np.prod(batch, dtype=np.int64)))
                sizes.update({c: n for c, n in zip(sub, np.shape(op)[np.ndim(op) - len(sub):])})
            _Counted.counter[0] += 2 * int(np.prod(list(sizes.values()), dtype=np.int64))
        return _wrap(func(*raw_args, **raw_kwargs))


def _unwrap(obj):
    if isinstance(obj, _Counted):
        return np.asarray(obj)
    if isinstance(obj, (list, tuple)):
        return type(obj)(_unwrap(o) for o in obj)
    if isinstance(obj, dict):
        return {k: _unwrap(v) for k, v in obj.items()}
    return obj


def _wrap(obj):
    if isinstance(obj, np.ndarray) and not isinstance(obj, _Counted):
        return obj.view(_Counted)
    if isinstance(obj, tuple):
        return tuple(_wrap(o) for o in obj)
    return obj


def count_ops(fn, *arrays, **kwargs) -> int:
    """Arithmetic operations ``fn`` performs on the given arrays, counted as it runs.

    Every elementwise ufunc call counts one operation per output element, every reduction one per
    input element, and ``np.einsum`` two (a multiply and an add) per point of its iteration space.
    Creating constants (``np.eye``, ``np.ones``) is not counted. A measurement of what the code does,
    not an estimate from a formula.

    Examples
    --------
    >>> import numpy as np
    >>> a = np.ones((4, 8))
    >>> count_ops(lambda x: (x * x).sum(axis=-1), a)   # 32 multiplies + 32 adds
    64
    """
    _Counted.counter[0] = 0
    fn(*[a.view(_Counted) if isinstance(a, np.ndarray) else a for a in arrays], **kwargs)
    return _Counted.counter[0]
