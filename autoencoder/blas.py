"""BLAS for the decoder kernels, through public interfaces only.

* :func:`dgemm`: a numba intrinsic calling ``dgemm`` of ``scipy.linalg.cython_blas`` (whose
  address :func:`numba.extending.get_cython_function_address` returns). The address is
  registered with LLVM under a fixed name (:func:`llvmlite.binding.add_symbol`) when this
  module is imported, and the compiled kernels refer to that name, not to the address, so
  they stay in numba's on-disk cache across processes.
* :func:`single_threaded`: calls a function with the BLAS that ``cython_blas`` calls limited
  to one thread (through ``threadpoolctl``'s library controllers) and restores the previous
  count. The kernels' GEMMs are small (e.g. ``(44, 64) @ (64, 160)`` for the paper's decoder
  at ``p = 10``); a BLAS that splits them over threads costs more than it saves and, on a
  machine whose cores are busy (other processes, MPI ranks), slows the kernels down several
  times. The kernels that use more than one core do it with their own threads
  (:func:`autoencoder.kernels.decode_jacobian_parallel`), each calling the single-threaded
  BLAS.
"""

from __future__ import annotations

import importlib.metadata
import os
from collections.abc import Callable
from typing import Any, TypeVar

from llvmlite import binding, ir
from numba import types
from numba.core import cgutils
from numba.extending import get_cython_function_address, intrinsic
from threadpoolctl import ThreadpoolController

T = TypeVar("T")

#: The name under which the kernels call ``scipy.linalg.cython_blas.dgemm``.
DGEMM_SYMBOL = "manifold_rom_cython_blas_dgemm"
binding.add_symbol(DGEMM_SYMBOL,
                   get_cython_function_address("scipy.linalg.cython_blas", "dgemm"))


@intrinsic
def dgemm(typingctx, transa, transb, m, n, k, a, a_off, lda, b, b_off, ldb, beta, c, c_off,
          ldc):
    """BLAS ``C = op(A) op(B) + beta C`` (column-major, float64) on offsets into flat arrays.

    ``transa``, ``transb`` are character codes (``ord('n')`` or ``ord('t')``); ``m, n, k``
    and the leading dimensions are converted to the 32-bit integers of ``cython_blas``. The
    Fortran interface: every argument by address.
    """
    sig = types.void(transa, transb, m, n, k, a, a_off, lda, b, b_off, ldb, beta, c, c_off, ldc)

    def codegen(context, builder, sig, args):
        (ta, tb, m_, n_, k_, a_, ao, lda_, b_, bo, ldb_, beta_, c_, co, ldc_) = args
        i8, i32 = ir.IntType(8), ir.IntType(32)
        f64 = context.get_value_type(types.float64)
        f64p = f64.as_pointer()
        fnty = ir.FunctionType(ir.VoidType(), [i8.as_pointer()] * 2 + [i32.as_pointer()] * 3
                               + [f64p, f64p, i32.as_pointer(), f64p, i32.as_pointer(), f64p,
                                  f64p, i32.as_pointer()])
        fn = cgutils.get_or_insert_function(builder.module, fnty, DGEMM_SYMBOL)

        def by_ref(val, ty, llty):
            """A stack slot holding ``val`` (of numba type ``ty``) as ``llty``."""
            v = context.cast(builder, val, ty, types.int64)
            return cgutils.alloca_once_value(builder, builder.trunc(v, llty))

        def ptr(arr_val, arr_ty, off, off_ty):
            ary = context.make_array(arr_ty)(context, builder, arr_val)
            return builder.gep(ary.data, [context.cast(builder, off, off_ty, types.intp)])

        at = sig.args
        alpha = cgutils.alloca_once_value(builder, ir.Constant(f64, 1.0))
        betap = cgutils.alloca_once_value(builder,
                                          context.cast(builder, beta_, at[11], types.float64))
        builder.call(fn, (by_ref(ta, at[0], i8), by_ref(tb, at[1], i8),
                          by_ref(m_, at[2], i32), by_ref(n_, at[3], i32),
                          by_ref(k_, at[4], i32), alpha,
                          ptr(a_, at[5], ao, at[6]), by_ref(lda_, at[7], i32),
                          ptr(b_, at[8], bo, at[9]), by_ref(ldb_, at[10], i32),
                          betap, ptr(c_, at[12], co, at[13]), by_ref(ldc_, at[14], i32)))
        return context.get_dummy_value()

    return sig, codegen


_CONTROLLERS: list[Any] | None = None


def _shipped_with_scipy(paths: list[str]) -> list[bool]:
    """Which of ``paths`` are files of the installed scipy distribution (its RECORD)."""
    try:
        dist = importlib.metadata.distribution("scipy")
        record = dist.read_text("RECORD") or ""
        root = os.path.realpath(dist.locate_file(""))
    except (importlib.metadata.PackageNotFoundError, OSError):
        return [False] * len(paths)
    listed = {line.split(",", 1)[0] for line in record.splitlines()}
    return [os.path.relpath(os.path.realpath(p), root).replace(os.sep, "/") in listed
            for p in paths]


def blas_controllers() -> list[Any]:
    """``threadpoolctl``'s controllers of the BLAS libraries the kernels call (found once).

    ``scipy.linalg.cython_blas`` (and numba's ``np.dot``, which goes through it) calls the
    BLAS that scipy is linked with: the library shipped in scipy's wheel if there is one,
    else one of the BLAS libraries loaded in the process; in that case all of them.
    """
    global _CONTROLLERS
    if _CONTROLLERS is None:
        libs = list(ThreadpoolController().select(user_api="blas").lib_controllers)
        own = [lib for lib, mine in zip(libs, _shipped_with_scipy([lib.filepath for lib in libs]),
                                        strict=True) if mine]
        _CONTROLLERS = own or libs
    return _CONTROLLERS


def single_threaded(fn: Callable[..., T], *args: Any) -> T:
    """``fn(*args)`` with the kernels' BLAS (:func:`blas_controllers`) on one thread (the
    previous counts are restored, also after an exception).

    Uses the controllers' ``get_num_threads``/``set_num_threads`` directly (a few
    microseconds) rather than ``threadpoolctl.threadpool_limits`` (tens of microseconds per
    call, comparable with a decoder evaluation), and touches a library only if it is not
    already on one thread.
    """
    changed = []
    for lib in blas_controllers():
        n = lib.get_num_threads()
        if n is not None and n != 1:
            lib.set_num_threads(1)
            changed.append((lib, n))
    try:
        return fn(*args)
    finally:
        for lib, n in changed:
            lib.set_num_threads(n)
            # threadpoolctl >= 3.8 lets one thread at a time set OpenBLAS's process-wide
            # count; hand that role back as its own context managers do
            release = getattr(type(lib), "clear_controlling_thread", None)
            if release is not None:
                release()
