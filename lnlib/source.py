"""Show the source of an ``lnlib`` function on a book page, so the page and the code cannot drift.

The book quotes code from the library instead of copying it: what a reader sees is what runs.
"""

from __future__ import annotations

import ast
import inspect
import re
import textwrap
from pathlib import Path

__all__ = ["source_text", "show_source", "cuda_section", "show_cuda_section"]


def source_text(obj, *, docstring: bool = False, signature: bool = True) -> str:
    """The source of a function or class, optionally without its docstring or its ``def`` line.

    Parameters
    ----------
    obj : function or class
        What to show; it must be defined in a file (not typed at a prompt).
    docstring : bool
        Keep the docstring. Off by default: the book explains the code in its own words.
    signature : bool
        Keep the ``def ...:`` line(s). With ``False`` only the body is returned, dedented.

    Returns
    -------
    str
        The source, ending in a newline.

    Raises
    ------
    TypeError
        If ``obj`` is not a function or class with source code.

    Examples
    --------
    >>> from lnlib import derivations
    >>> print(source_text(derivations.compact, signature=False).splitlines()[0])
    D = x.shape[-1]
    """
    if not (inspect.isfunction(obj) or inspect.isclass(obj)):
        raise TypeError(f"obj must be a function or a class, got {type(obj).__name__}")
    src = textwrap.dedent(inspect.getsource(obj))
    lines = src.splitlines()
    node = ast.parse(src).body[0]
    body = node.body
    first = body[0]
    has_doc = isinstance(first, ast.Expr) and isinstance(getattr(first, "value", None), ast.Constant) \
        and isinstance(first.value.value, str)
    keep = []
    header_end = body[0].lineno - 1  # lines before the first statement of the body
    if signature:
        keep += lines[:header_end]
    skip_to = first.end_lineno if (has_doc and not docstring) else header_end
    rest = lines[skip_to:]
    if not signature:
        rest = textwrap.dedent("\n".join(rest)).splitlines()
    keep += rest
    return "\n".join(keep).rstrip() + "\n"


def show_source(obj, *, docstring: bool = False, signature: bool = True, language: str = "python"):
    """An IPython ``Code`` object of :func:`source_text`, highlighted on the page.

    Examples
    --------
    >>> from lnlib import derivations
    >>> show_source(derivations.compact).language
    'python'
    """
    from IPython.display import Code

    return Code(source_text(obj, docstring=docstring, signature=signature), language=language)


def cuda_section(path, name: str) -> str:
    r"""The lines between ``// BEGIN name`` and ``// END name`` in a CUDA C++ file, as text.

    The book shows kernels this way, so that the page shows the code that is compiled and tested.

    Parameters
    ----------
    path : str or Path
        The source file.
    name : str
        The section's name, as written after ``BEGIN`` and ``END`` (no spaces).

    Returns
    -------
    str
        The lines strictly between the two markers, ending in a newline.

    Raises
    ------
    ValueError
        If the section is missing, not closed, marked more than once, or empty.

    Examples
    --------
    >>> import pathlib, tempfile
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "add.cu"
    >>> _ = p.write_text("// BEGIN add\n__device__ float add(float a, float b) { return a + b; }\n// END add\n")
    >>> print(cuda_section(p, "add"), end="")
    __device__ float add(float a, float b) { return a + b; }
    """
    lines = Path(path).read_text().splitlines()
    marks = {kind: [i for i, line in enumerate(lines) if re.fullmatch(rf"\s*// {kind} {re.escape(name)}\s*", line)]
             for kind in ("BEGIN", "END")}
    if not marks["BEGIN"]:
        raise ValueError(f"no section '// BEGIN {name}' in {path}")
    if len(marks["BEGIN"]) > 1 or len(marks["END"]) > 1:
        raise ValueError(f"section {name!r} is marked more than once in {path}")
    if not marks["END"] or marks["END"][0] < marks["BEGIN"][0]:
        raise ValueError(f"section {name!r} in {path} has no '// END {name}' after its BEGIN")
    body = lines[marks["BEGIN"][0] + 1:marks["END"][0]]
    if not any(line.strip() for line in body):
        raise ValueError(f"section {name!r} in {path} is empty")
    return "\n".join(body) + "\n"


def show_cuda_section(path, name: str):
    r"""An IPython ``Code`` object of :func:`cuda_section`, highlighted as CUDA on the page.

    Examples
    --------
    >>> import pathlib, tempfile
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "add.cu"
    >>> _ = p.write_text("// BEGIN add\n__device__ float add(float a, float b) { return a + b; }\n// END add\n")
    >>> show_cuda_section(p, "add").language
    'cuda'
    """
    from IPython.display import Code

    return Code(cuda_section(path, name), language="cuda")
