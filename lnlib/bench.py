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
    was_tracing = tracemalloc.is_tracing()  # a caller's own trace is left running
    if not was_tracing:
        tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        fn(*args, **kwargs)
        return tracemalloc.get_traced_memory()[1] - base
    finally:
        if not was_tracing:
            tracemalloc.stop()


def _contraction_points(spec, operands):
    """Points of an einsum iteration space: the product of every index size, batch (``...``) included."""
    inputs = spec.replace(" ", "").split("->")[0].split(",")
    sizes = {}
    for sub, op in zip(inputs, operands):
        sub = sub.replace("...", "")
        batch = np.shape(op)[: np.ndim(op) - len(sub)]
        sizes["batch"] = max(sizes.get("batch", 1), int(np.prod(batch, dtype=np.int64)))
        sizes.update({c: n for c, n in zip(sub, np.shape(op)[np.ndim(op) - len(sub):])})
    return int(np.prod(list(sizes.values()), dtype=np.int64))


def _inner_length(a) -> int:
    """The length of the axis a matrix or dot product sums over (1 for a scalar operand)."""
    return int(np.shape(a)[-1]) if np.ndim(a) else 1


class _Counted(np.ndarray):
    """An array view that tallies the arithmetic done on it (see :func:`count_ops`)."""

    counter = [0]

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        raw = [np.asarray(a) if isinstance(a, _Counted) else a for a in inputs]
        if "out" in kwargs:
            kwargs["out"] = tuple(np.asarray(o) if isinstance(o, _Counted) else o for o in kwargs["out"])
        result = getattr(ufunc, method)(*raw, **kwargs)
        first = result[0] if isinstance(result, tuple) else result
        if ufunc is np.matmul and method == "__call__":
            # a multiply and an add per term of each output's sum
            _Counted.counter[0] += 2 * int(np.size(first)) * _inner_length(raw[0])
        elif method in ("__call__", "outer"):
            _Counted.counter[0] += int(np.size(first))
        elif method in ("reduce", "accumulate", "reduceat"):
            _Counted.counter[0] += int(np.size(raw[0]))
        elif method == "at":
            _Counted.counter[0] += int(np.size(raw[1]))
        return _wrap(result)

    def __array_function__(self, func, types, args, kwargs):
        if func is np.einsum:
            raw_args, raw_kwargs = _unwrap(args), _unwrap(kwargs)
            # the iteration space of the contraction: one multiply-add per point
            _Counted.counter[0] += 2 * _contraction_points(raw_args[0], raw_args[1:])
            return _wrap(func(*raw_args, **raw_kwargs))
        if func in (np.dot, np.inner, np.vdot, np.tensordot, np.outer):
            raw_args, raw_kwargs = _unwrap(args), _unwrap(kwargs)
            result = func(*raw_args, **raw_kwargs)
            a, b = raw_args[0], raw_args[1]
            if func is np.outer or np.ndim(a) == 0 or np.ndim(b) == 0:
                _Counted.counter[0] += int(np.size(result))  # one multiply per output
            else:
                # terms summed per output: size(a) * size(b) = size(result) * k**2
                k = round((np.size(a) * np.size(b) / np.size(result)) ** 0.5)
                _Counted.counter[0] += 2 * int(np.size(result)) * k
            return _wrap(result)
        # Any other NumPy function (np.mean, np.var, np.std, ...) runs its own implementation on the
        # counted arrays, so the ufuncs it calls inside are counted like the caller's own.
        return super().__array_function__(func, types, args, kwargs)


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
    input element, and a contraction (``np.einsum``, ``@``, ``np.dot``, ``np.inner``) two (a multiply
    and an add) per term it sums; ``np.outer`` one per output. NumPy functions such as ``np.mean``
    count the arithmetic they do inside, exactly as the method forms (``x.mean()``) do. Creating
    constants (``np.eye``, ``np.ones``, ``np.full_like``) and moving data (indexing, reshaping) is
    not counted, and neither is ``np.linalg``. A measurement of what the code does, not an estimate
    from a formula.

    Examples
    --------
    >>> import numpy as np
    >>> a = np.ones((4, 8))
    >>> count_ops(lambda x: (x * x).sum(axis=-1), a)   # 32 multiplies + 32 adds
    64
    >>> count_ops(lambda x: np.sum(x * x, axis=-1), a)  # the function form counts the same
    64
    >>> count_ops(lambda x: x @ x.T, a)                # 16 outputs, each 8 multiplies + 8 adds
    256
    """
    _Counted.counter[0] = 0
    fn(*[a.view(_Counted) if isinstance(a, np.ndarray) else a for a in arrays], **kwargs)
    return _Counted.counter[0]


class _Traffic(np.ndarray):
    """An array view that tallies the bytes NumPy operations on it read and write (see :func:`memory_traffic`)."""

    tally = [0, 0]  # bytes read, bytes written
    smallest = [1]  # arrays with fewer elements than this are not counted (they stay in cache)

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        raw = [np.asarray(a) if isinstance(a, _Traffic) else a for a in inputs]
        if "out" in kwargs:
            kwargs["out"] = tuple(np.asarray(o) if isinstance(o, _Traffic) else o for o in kwargs["out"])
        result = getattr(ufunc, method)(*raw, **kwargs)
        seen = set()
        for a in raw:  # an array passed twice (x * x) is read once: the same memory, not the same object
            if not (isinstance(a, np.ndarray) and a.size >= _Traffic.smallest[0]):
                continue
            where = (a.__array_interface__["data"][0], a.shape, a.strides, a.dtype.str)
            if where not in seen:
                seen.add(where)
                _Traffic.tally[0] += a.nbytes
        for r in result if isinstance(result, tuple) else (result,):
            if isinstance(r, np.ndarray) and r.size >= _Traffic.smallest[0]:
                _Traffic.tally[1] += r.nbytes
        return _wrap_traffic(result)


def _wrap_traffic(obj):
    if isinstance(obj, np.ndarray) and not isinstance(obj, _Traffic):
        return obj.view(_Traffic)
    if isinstance(obj, tuple):
        return tuple(_wrap_traffic(o) for o in obj)
    return obj


def memory_traffic(fn, x, *others, **kwargs) -> tuple[int, int]:
    """Bytes that ``fn(x, *others)`` reads and writes in arrays as large as ``x``, counted as it runs.

    Every ufunc call (and every ufunc a NumPy function such as ``np.mean`` calls inside) counts the
    bytes of each distinct array it reads and of each array it writes, if that array has at least as
    many elements as ``x``: arrays that large do not stay in cache, so each such operation is a
    pass over main memory. Smaller arrays (one number per row, the parameters) are not counted, nor
    is moving data without arithmetic (copies, ``astype``). Returns ``(read, written)``.

    Examples
    --------
    >>> import numpy as np
    >>> x = np.ones((4, 8), dtype=np.float32)
    >>> memory_traffic(lambda a: a - a.mean(axis=-1, keepdims=True), x)  # mean reads x; x - mean reads x, writes
    (256, 128)
    >>> memory_traffic(lambda a: a * a, x)  # the same array twice is read once
    (128, 128)
    """
    _Traffic.tally[:] = [0, 0]
    _Traffic.smallest[0] = np.size(x)
    fn(*_wrap_deep((x, *others)), **kwargs)
    return _Traffic.tally[0], _Traffic.tally[1]


def _wrap_deep(obj):
    """Arrays, and the arrays inside tuples, lists and dicts (a cache), as :class:`_Traffic` views."""
    if isinstance(obj, np.ndarray):
        return obj.view(_Traffic)
    if isinstance(obj, (tuple, list)):
        return type(obj)(_wrap_deep(o) for o in obj)
    if isinstance(obj, dict):
        return {k: _wrap_deep(v) for k, v in obj.items()}
    return obj
