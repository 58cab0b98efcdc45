"""NVRTC through ctypes, and nvdisasm from its pip package: compiling and reading kernels, no GPU needed.

Compiling and inspecting the kernels on a machine without a GPU is how CI checks them: NVRTC turns
``layernorm.cu`` into PTX or a cubin (machine code for one GPU generation), its ptxas log
(``--ptxas-options=-v``) gives each kernel's registers and spills, and ``nvdisasm`` (pip
``nvidia-cuda-nvdisasm``) prints a cubin's SASS.

Two NVRTC versions are used: 13 (pip ``nvidia-cuda-nvrtc``, the one CuPy for CUDA 13 uses) for
compute capability 7.5 and newer, and 12 (pip ``nvidia-cuda-nvrtc-cu12``) for 7.0, which NVRTC 13 no
longer targets. A direct binding, rather than ``cupy_backends``' one, because that one returns the
cubin one byte short (it treats it as a NUL-terminated string), which nvdisasm rejects.

Why not NVIDIA's ``cuda-bindings`` (``cuda.bindings.nvrtc``): it loads one NVRTC per process, chosen
by its own major version. Measured with cuda-bindings 13.5.0 and both libraries on the library path,
``nvrtcVersion()`` reports 13.5; with only ``libnvrtc.so.12`` present it reports 12.9; there is no
way to ask for the other one. The test suite compiles for sm_70 (NVRTC 12) and for sm_75 to sm_90
(NVRTC 13) in one run, so it needs both at once, which the eight NVRTC calls bound here give.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import importlib.util
import re
import subprocess
from pathlib import Path

__all__ = ["Nvrtc", "find_library", "find_tool", "ptxas_usage", "sass", "opcode"]


def _namespace_dirs(package: str) -> list[Path]:
    try:
        spec = importlib.util.find_spec(package)
    except ModuleNotFoundError:
        return []
    return [Path(p) for p in (spec.submodule_search_locations or [])] if spec else []


def find_library(major: int = 13) -> Path | None:
    """``libnvrtc.so.<major>`` from its pip package (nvidia/cu13/lib or nvidia/cuda_nvrtc/lib), or None."""
    for package in ("nvidia.cu13", "nvidia.cuda_nvrtc"):
        for root in _namespace_dirs(package):
            lib = root / "lib" / f"libnvrtc.so.{major}"
            if lib.exists():
                return lib
    found = ctypes.util.find_library("nvrtc")  # a CUDA toolkit on the library path
    if found and found.endswith(f".so.{major}"):
        return Path(found)
    return None


def find_tool(name: str) -> Path | None:
    """A CUDA binary tool (``nvdisasm``) from its pip package (nvidia/cu13/bin), or None."""
    for root in _namespace_dirs("nvidia.cu13"):
        tool = root / "bin" / name
        if tool.exists():
            return tool
    return None


class Nvrtc:
    """One libnvrtc, loaded with ctypes.

    Raises RuntimeError, with NVRTC's log, when a call fails; FileNotFoundError when the library is
    not installed.
    """

    def __init__(self, path=None, major: int = 13):
        path = path or find_library(major)
        if path is None:
            raise FileNotFoundError(f"libnvrtc.so.{major} not found (pip install nvidia-cuda-nvrtc"
                                    f"{'' if major == 13 else '-cu' + str(major)})")
        self.path = Path(path)
        self.lib = ctypes.CDLL(str(path))
        self.lib.nvrtcGetErrorString.restype = ctypes.c_char_p

    def version(self) -> tuple[int, int]:
        major, minor = ctypes.c_int(), ctypes.c_int()
        self._check(self.lib.nvrtcVersion(ctypes.byref(major), ctypes.byref(minor)), "nvrtcVersion")
        return major.value, minor.value

    def _check(self, rc, what, prog=None):
        if rc != 0:
            log = self._log(prog) if prog is not None else ""
            raise RuntimeError(f"NVRTC failed: {what}: {self.lib.nvrtcGetErrorString(rc).decode()}\n{log}")

    def _log(self, prog) -> str:
        size = ctypes.c_size_t()
        self.lib.nvrtcGetProgramLogSize(prog, ctypes.byref(size))
        buf = ctypes.create_string_buffer(size.value)
        self.lib.nvrtcGetProgramLog(prog, buf)
        return buf.value.decode(errors="replace")

    def _get(self, prog, what: str) -> bytes:
        size = ctypes.c_size_t()
        self._check(getattr(self.lib, f"nvrtcGet{what}Size")(prog, ctypes.byref(size)), f"nvrtcGet{what}Size", prog)
        buf = ctypes.create_string_buffer(size.value)
        self._check(getattr(self.lib, f"nvrtcGet{what}")(prog, buf), f"nvrtcGet{what}", prog)
        return buf.raw

    def compile(self, source: str, name_expressions, options, filename: str = "layernorm.cu", ptx: bool = False):
        """Compile ``source`` with the named template instances.

        Returns ``(output, lowered, log)``: the cubin (bytes, for ``--gpu-architecture=sm_XX``) or, with
        ``ptx=True``, the PTX text; ``{name expression: lowered (mangled) name}``; NVRTC's log.
        """
        prog = ctypes.c_void_p()
        self._check(self.lib.nvrtcCreateProgram(ctypes.byref(prog), source.encode(), filename.encode(), 0, None, None),
                    "nvrtcCreateProgram")
        try:
            for n in name_expressions:
                self._check(self.lib.nvrtcAddNameExpression(prog, n.encode()), f"nvrtcAddNameExpression({n})", prog)
            opts = [o.encode() for o in options]
            self._check(self.lib.nvrtcCompileProgram(prog, len(opts), (ctypes.c_char_p * len(opts))(*opts)),
                        "nvrtcCompileProgram", prog)
            lowered = {}
            for n in name_expressions:
                name = ctypes.c_char_p()
                self._check(self.lib.nvrtcGetLoweredName(prog, n.encode(), ctypes.byref(name)), "nvrtcGetLoweredName", prog)
                lowered[n] = name.value.decode()
            output = self._get(prog, "PTX").rstrip(b"\0").decode() if ptx else self._get(prog, "CUBIN")
            return output, lowered, self._log(prog)
        finally:
            self.lib.nvrtcDestroyProgram(ctypes.byref(prog))


@functools.lru_cache(maxsize=None)
def nvrtc(major: int = 13) -> Nvrtc:
    """The loaded NVRTC of that major version (loaded once)."""
    return Nvrtc(major=major)


def _run_tool(name: str, args, cubin: bytes) -> str:
    import tempfile

    tool = find_tool(name)
    if tool is None:
        raise FileNotFoundError(f"{name} not found (pip install nvidia-cuda-{name})")
    with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
        f.write(cubin)
        f.flush()
        out = subprocess.run([str(tool), *args, f.name], capture_output=True, text=True, timeout=300)
    if out.returncode != 0:
        raise RuntimeError(f"{name} failed: {out.stderr.strip()}")
    return out.stdout


def ptxas_usage(log: str) -> dict[str, dict[str, int]]:
    """Per kernel (mangled name), from an NVRTC log compiled with ``--ptxas-options=-v``:
    ``{"registers", "stack", "spill_stores", "spill_loads", "smem"}`` (bytes per thread for stack and
    spills; ``smem`` is the kernel's static shared memory in bytes per block).

    Spill stores mean the compiler ran out of registers and keeps values in (cached) local memory.
    """
    usage, cur = {}, None
    for line in log.splitlines():
        m = re.search(r"Function properties for (\S+)", line)
        if m:
            cur = usage.setdefault(m.group(1), {"registers": 0, "stack": 0, "spill_stores": 0, "spill_loads": 0, "smem": 0})
            continue
        m = re.search(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads", line)
        if m and cur is not None:
            cur.update(stack=int(m.group(1)), spill_stores=int(m.group(2)), spill_loads=int(m.group(3)))
        m = re.search(r"Used (\d+) registers", line)
        if m and cur is not None:
            cur["registers"] = int(m.group(1))
            smem = re.search(r"(\d+) bytes smem", line)
            cur["smem"] = int(smem.group(1)) if smem else 0
    return usage


def opcode(instruction: str) -> str:
    """The opcode of one SASS instruction, without its predicate: ``"@P0 LDG.E.128 R4, ..."`` -> ``"LDG.E.128"``."""
    words = instruction.split()
    return words[1] if words[0].startswith("@") else words[0]


def sass(cubin: bytes) -> dict[str, list[str]]:
    """Per kernel (mangled name) of a cubin: its SASS instructions, from ``nvdisasm``."""
    text = _run_tool("nvdisasm", ["-c"], cubin)
    out, cur = {}, None
    for line in text.splitlines():
        m = re.match(r"\s*\.text\.(\S+):", line)
        if m:
            cur = out.setdefault(m.group(1), [])
            continue
        m = re.match(r"\s+/\*[0-9a-f]{4,}\*/\s+(.*?)\s*;", line)
        if m and cur is not None:
            cur.append(m.group(1))
    return out
