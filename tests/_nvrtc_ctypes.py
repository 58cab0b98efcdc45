"""A minimal ctypes binding to any libnvrtc, for compiling with a second NVRTC next to CuPy's.

CuPy for CUDA 13 brings NVRTC 13, which no longer targets compute capability 7.0 (Volta); NVRTC 12
(pip package nvidia-cuda-nvrtc-cu12) still does, and is what CuPy for CUDA 12 would use on such a GPU.
"""

from __future__ import annotations

import ctypes
import importlib.util
from pathlib import Path


def find_nvrtc12() -> Path | None:
    """libnvrtc.so.12 from the nvidia-cuda-nvrtc-cu12 wheel, or None."""
    try:
        spec = importlib.util.find_spec("nvidia.cuda_nvrtc")
    except ModuleNotFoundError:
        return None
    for root in (spec.submodule_search_locations or []) if spec else []:
        lib = Path(root) / "lib" / "libnvrtc.so.12"
        if lib.exists():
            return lib
    return None


class Nvrtc:
    def __init__(self, path):
        self.lib = ctypes.CDLL(str(path))

    def version(self) -> tuple[int, int]:
        major, minor = ctypes.c_int(), ctypes.c_int()
        self._check(self.lib.nvrtcVersion(ctypes.byref(major), ctypes.byref(minor)), "nvrtcVersion")
        return major.value, minor.value

    def _check(self, rc, what, prog=None):
        if rc != 0:
            raise RuntimeError(f"{what} failed ({rc}):\n{self._log(prog) if prog is not None else ''}")

    def _log(self, prog) -> str:
        size = ctypes.c_size_t()
        self.lib.nvrtcGetProgramLogSize(prog, ctypes.byref(size))
        buf = ctypes.create_string_buffer(size.value)
        self.lib.nvrtcGetProgramLog(prog, buf)
        return buf.value.decode(errors="replace")

    def compile_cubin(self, source: str, name_expressions, options) -> bytes:
        """The cubin of ``source`` with the named instances; RuntimeError with the log on failure."""
        prog = ctypes.c_void_p()
        self._check(self.lib.nvrtcCreateProgram(ctypes.byref(prog), source.encode(), b"layernorm.cu", 0, None, None),
                    "nvrtcCreateProgram")
        try:
            for n in name_expressions:
                self._check(self.lib.nvrtcAddNameExpression(prog, n.encode()), f"nvrtcAddNameExpression({n})", prog)
            opts = [o.encode() for o in options]
            self._check(self.lib.nvrtcCompileProgram(prog, len(opts), (ctypes.c_char_p * len(opts))(*opts)),
                        "nvrtcCompileProgram", prog)
            size = ctypes.c_size_t()
            self._check(self.lib.nvrtcGetCUBINSize(prog, ctypes.byref(size)), "nvrtcGetCUBINSize", prog)
            buf = ctypes.create_string_buffer(size.value)
            self._check(self.lib.nvrtcGetCUBIN(prog, buf), "nvrtcGetCUBIN", prog)
            return buf.raw
        finally:
            self.lib.nvrtcDestroyProgram(ctypes.byref(prog))
