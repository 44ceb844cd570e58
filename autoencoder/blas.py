"""Run the decoder kernels with single-threaded BLAS.

The numba kernels call BLAS (``np.dot`` -> ``scipy.linalg.cython_blas`` -> scipy's OpenBLAS)
on small matrices, e.g. ``(44, 64) @ (64, 800)`` for the paper's decoder at ``p = 10``. OpenBLAS
splits such products over threads, which costs more than it saves and, on a machine whose
cores are busy (other processes, MPI ranks), slows the kernel down several times (measured: 2.8
ms instead of 0.9 ms). :func:`single_threaded` calls a function with OpenBLAS limited to one
thread and restores the previous setting afterwards. Without a recognised OpenBLAS it simply
calls the function.
"""

from __future__ import annotations

import ctypes
import glob
import os
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")
_SETTER: Any = None
_SEARCHED = False


def _find_setter() -> Any:
    global _SETTER, _SEARCHED
    if _SEARCHED:
        return _SETTER
    _SEARCHED = True
    try:
        import scipy

        libdir = os.path.join(os.path.dirname(scipy.__file__), os.pardir, "scipy.libs")
        for path in sorted(glob.glob(os.path.join(libdir, "libscipy_openblas*.so*"))):
            lib = ctypes.CDLL(path)
            fn = getattr(lib, "openblas_set_num_threads_local", None)
            if fn is not None:
                fn.restype, fn.argtypes = ctypes.c_int, [ctypes.c_int]
                _SETTER = fn
                break
    except (ImportError, OSError):
        _SETTER = None
    return _SETTER


def single_threaded(fn: Callable[..., T], *args: Any) -> T:
    """``fn(*args)`` with scipy's OpenBLAS on one thread (the previous count is restored)."""
    setter = _find_setter()
    if setter is None:
        return fn(*args)
    prev = setter(1)
    try:
        return fn(*args)
    finally:
        setter(prev)
