"""A pytest plugin that records how close every floating-point assertion came to its bound.

Loaded only on request (``pytest -p tests.margins``, as ``tests/variation_matrix.py`` does), with
``LNLIB_MARGINS`` naming a JSON-lines file to append to and ``LNLIB_VARIATION`` a label for the
run. For each test and each assertion it keeps the worst *use* of the bound seen, a number in
[0, 1] while the test passes (1 means the bound was met exactly):

- ``assert a < b`` or ``a <= b`` between two numbers: ``a / b`` (for ``>``: ``b / a``), read from
  the values pytest's assertion rewriting shows (every comparison of positive numbers in the
  assertion, so ``ey < 2e-6 and edx < 1e-5`` gives two);
- ``np.testing.assert_allclose``, ``np.allclose`` and ``torch.allclose``:
  ``max |a - b| / (atol + rtol |b|)``.

Comparisons that are not tolerances (counts, shapes) are recorded too; the report that reads the
file lists the closest ones for a person to judge.
"""

from __future__ import annotations

import functools
import json
import os
import re

import numpy as np
import pytest

_NUMBER = r"(?:np\.float(?:16|32|64)\()?([0-9][0-9.]*(?:e[-+]?[0-9]+)?)\)?"
_COMPARISON = re.compile(r"(?<![\w.-])" + _NUMBER + r"\s*(<=|<|>=|>)\s*" + _NUMBER)
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# The test files that compare floating-point results with PyTorch, BLAS, long double or recorded
# numbers: the ones whose margins are recorded, and the ones .ci/run also runs on another "machine".
FLOATING_POINT = [
    "tests/test_accuracy.py", "tests/test_api.py", "tests/test_contract.py", "tests/test_derivations.py",
    "tests/test_fast_cpu.py", "tests/test_geometry_leaderboard.py", "tests/test_gradcheck.py",
    "tests/test_lnlib_torch.py", "tests/test_properties.py", "tests/test_reference.py",
    "tests/test_support.py", "tests/test_symbolic.py", "tests/test_torch.py", "tests/test_variance.py",
    "tests/test_gpu_results.py", "tests/test_cpu_records.py", "tests/test_magnitudes.py",
    "tests/test_magnitude_bands.py", "tests/test_dtypes.py", "tests/test_threads.py",
    "tests/test_gradcheck_step.py", "tests/test_variance_models.py", "tests/test_edges.py",
]
_worst: dict[tuple[str, str], float] = {}
_current: list[str] = [""]


def _record(where: str, use: float) -> None:
    if not np.isfinite(use):
        return
    key = (_current[0], where)
    _worst[key] = max(_worst.get(key, 0.0), float(use))


def _closeness(actual, desired, rtol, atol) -> float:
    a = np.asarray(actual, dtype=np.float64)
    d = np.asarray(desired, dtype=np.float64)
    a, d = np.broadcast_arrays(a, d)
    finite = np.isfinite(a) & np.isfinite(d)
    if not finite.any():
        return 0.0
    diff = np.abs(a[finite] - d[finite])
    allowed = atol + rtol * np.abs(d[finite])
    with np.errstate(divide="ignore", invalid="ignore"):
        use = np.where(diff == 0, 0.0, diff / allowed)
    return float(np.max(use))


def _caller() -> str:
    import sys

    frame = sys._getframe(2)
    while frame:  # the first frame in a test file (inspect.stack() would read every file's source)
        name = frame.f_code.co_filename
        if f"{os.sep}tests{os.sep}" in name and name != __file__:
            return f"{os.path.basename(name)}:{frame.f_lineno}"
        frame = frame.f_back
    return "?"


def _wrap_numpy():
    original_assert, original_allclose = np.testing.assert_allclose, np.allclose

    @functools.wraps(original_assert)
    def assert_allclose(actual, desired, rtol=1e-7, atol=0, *args, **kwargs):
        original_assert(actual, desired, rtol, atol, *args, **kwargs)
        _record(_caller() + " assert_allclose", _closeness(actual, desired, rtol, atol))

    @functools.wraps(original_allclose)
    def allclose(a, b, rtol=1e-5, atol=1e-8, equal_nan=False):
        ok = original_allclose(a, b, rtol, atol, equal_nan)
        if ok:
            _record(_caller() + " np.allclose", _closeness(a, b, rtol, atol))
        return ok

    np.testing.assert_allclose, np.allclose = assert_allclose, allclose


def _wrap_torch():
    try:
        import torch
    except ImportError:
        return
    original = torch.allclose

    def allclose(input, other, rtol=1e-5, atol=1e-8, equal_nan=False):
        ok = original(input, other, rtol, atol, equal_nan)
        if ok:
            a, b = (t.detach().cpu().double().numpy() for t in (input, other))
            _record(_caller() + " torch.allclose", _closeness(a, b, rtol, atol))
        return ok

    torch.allclose = allclose


def _cheap_bytes_repr():
    """Keep passing ``assert a.tobytes() == b.tobytes()`` fast once pytest explains passing assertions.

    With the pass hook on, pytest formats the operands and builds its element-by-element diff of
    every passing comparison; for long byte strings that takes longer than the test. A margin needs
    neither, so bytes are shown by their length.
    """
    from _pytest._io.saferepr import SafeRepr
    from _pytest.assertion import util

    SafeRepr.repr_bytes = lambda self, x, level: f"<{len(x)} bytes>"
    original = util.assertrepr_compare

    def assertrepr_compare(op, left, right, *args, **kwargs):
        if isinstance(left, (bytes, bytearray)) and isinstance(right, (bytes, bytearray)):
            return [f"<{len(left)} bytes> {op} <{len(right)} bytes>"]
        return original(op, left, right, *args, **kwargs)

    util.assertrepr_compare = assertrepr_compare


def pytest_configure(config):
    if not config.getini("enable_assertion_pass_hook"):
        raise pytest.UsageError("tests.margins needs enable_assertion_pass_hook = true (pyproject.toml)")
    _cheap_bytes_repr()
    _wrap_numpy()
    _wrap_torch()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item):
    from _pytest.assertion import util

    _current[0] = item.nodeid
    # explaining every passing assertion is slow in tests with thousands of them (the chooser's):
    # only the files that compare floating-point results are read
    saved = util._assertion_pass
    if os.path.relpath(str(item.path), ROOT).replace(os.sep, "/") not in FLOATING_POINT:
        util._assertion_pass = None
    try:
        yield
    finally:
        util._assertion_pass = saved


def _asserted_in_a_test_file() -> bool:
    """Whether the assertion that passed is in tests/ (pytest also rewrites its plugins, hypothesis)."""
    import sys

    frame = sys._getframe(2)
    while frame and ("/_pytest/" in frame.f_code.co_filename or "/pluggy/" in frame.f_code.co_filename
                     or frame.f_code.co_filename == __file__):
        frame = frame.f_back
    return bool(frame) and f"{os.sep}tests{os.sep}" in frame.f_code.co_filename


def pytest_assertion_pass(item, lineno, orig, expl):
    # "a < tol or fallback" says nothing about a's margin when the fallback is what passed
    if " or " in orig or not _asserted_in_a_test_file():
        return
    head = expl.split("\n+")[0]  # the comparison itself, before pytest's "where ..." lines
    for i, m in enumerate(_COMPARISON.finditer(head)):
        lhs, op, rhs = m.groups()
        before, after = head[:m.start()].rstrip(), head[m.end():].lstrip()
        if before.endswith(("+", "-", "*", "/")) or after.startswith(("+", "-", "*", "/", "(")):
            continue  # part of an arithmetic expression, not the compared value
        if not any(c in lhs + rhs for c in ".e"):
            continue  # two integers: a count, not a tolerance
        a, b = float(lhs), float(rhs)
        use = a / b if op in ("<", "<=") and b > 0 else (b / a if op in (">", ">=") and a > 0 else np.nan)
        _record(f"{os.path.basename(str(item.path))}:{lineno}#{i} {orig.strip()[:100]}", use)


def pytest_sessionfinish(session):
    path = os.environ.get("LNLIB_MARGINS")
    if not path:
        return
    variation = os.environ.get("LNLIB_VARIATION", "default")
    with open(path, "a") as f:
        for (test, where), use in sorted(_worst.items()):
            f.write(json.dumps({"variation": variation, "test": test, "assertion": where, "use": use}) + "\n")
