"""The velocity and its Jacobian on a sample mesh (hyper-reduction).

Hyper-reduced ROMs evaluate the time-discrete residual only on a small set of *sample rows*
``S``. The velocity ``f(x)[S]`` and its Jacobian rows ``(df/dx)[S, :]`` depend only on the state
entries that the rows' stencils read, the *stencil* ``T`` (``S`` is a subset of ``T``). A
:class:`SampledOperator` evaluates both from ``x[T]`` alone, so that nothing of the size ``N`` of
the full state is read, written or allocated::

    f_S = f(x)[S],          J_S = (df/dx)[S][:, T]      (CSR, columns local to T)

The structure of ``J_S`` (``indptr``, ``indices``) and every mu-independent index map are built
once, at construction; an evaluation costs ``O(|S|)``. The values must be bit-identical to the
rows of the full problem's velocity and Jacobian (tested for every problem), so that a
hyper-reduced ROM evaluated on all rows reproduces the unreduced one exactly.

``problem.sample(rows)`` builds the operator of a problem; ``rows`` = all rows gives an operator
equivalent to the full problem.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import numpy as np
import scipy.sparse as sp

from .errors import InputError


class SampledOperator(ABC):
    """``f`` and ``df/dx`` on the sample rows, from the state on their stencil only.

    Attributes
    ----------
    rows : ndarray of int64, shape (n_rows,)
        Sorted global indices of the sampled residual rows.
    stencil : ndarray of int64, shape (n_stencil,)
        Sorted global indices of every state entry the rows read; contains ``rows``.
    row_pos : ndarray of int64, shape (n_rows,)
        Positions of the rows in the stencil: ``stencil[row_pos] == rows``.
    indptr, indices : ndarray of int64
        CSR structure of ``(df/dx)[rows][:, stencil]`` with column indices local to
        ``stencil``.
    """

    rows: np.ndarray
    stencil: np.ndarray
    row_pos: np.ndarray
    indptr: np.ndarray
    indices: np.ndarray

    def _set_maps(self, rows: np.ndarray, stencil: np.ndarray, indptr: np.ndarray,
                  indices: np.ndarray) -> None:
        """Store the index maps (called by subclasses at construction) and check them."""
        self.rows = np.ascontiguousarray(rows, dtype=np.int64)
        self.stencil = np.ascontiguousarray(stencil, dtype=np.int64)
        pos = np.searchsorted(self.stencil, self.rows)
        if np.any(pos >= self.stencil.size) or np.any(self.stencil[np.minimum(
                pos, self.stencil.size - 1)] != self.rows):
            raise ValueError("the stencil of a sample must contain its rows")
        self.row_pos = pos.astype(np.int64)
        self.indptr = np.ascontiguousarray(indptr, dtype=np.int64)
        self.indices = np.ascontiguousarray(indices, dtype=np.int64)

    @property
    def n_rows(self) -> int:
        return int(self.rows.size)

    @property
    def n_stencil(self) -> int:
        return int(self.stencil.size)

    @property
    def nnz(self) -> int:
        return int(self.indices.size)

    @abstractmethod
    def velocity_jacobian_into(self, x_st: np.ndarray, t: float, mu: np.ndarray,
                               f: np.ndarray, data: np.ndarray) -> None:
        """``f[:] = f(x, t; mu)[rows]`` and ``data[:]`` = the values of ``(df/dx)[rows]`` on
        the structure ``(indptr, indices)``, from ``x_st = x[stencil]`` (float64, contiguous).

        No validation and no allocation: this is the online hot path.
        """

    # ------------------------------------------------------------------ conveniences
    def check_local_state(self, x_st: Any) -> np.ndarray:
        arr = np.ascontiguousarray(x_st, dtype=np.float64)
        if arr.shape != (self.n_stencil,):
            raise InputError(f"sampled state has shape {arr.shape}, expected "
                             f"({self.n_stencil},) (the stencil of {self.n_rows} rows)")
        return arr

    def velocity(self, x_st: np.ndarray, t: float, mu: np.ndarray) -> np.ndarray:
        """``f(x, t; mu)[rows]`` from ``x[stencil]``."""
        f, _ = self._evaluate(x_st, t, mu)
        return f

    def jacobian(self, x_st: np.ndarray, t: float, mu: np.ndarray) -> sp.csr_matrix:
        """``(df/dx)[rows][:, stencil]`` as CSR of shape ``(n_rows, n_stencil)``."""
        _, data = self._evaluate(x_st, t, mu)
        return sp.csr_matrix((data, self.indices.copy(), self.indptr.copy()),
                             shape=(self.n_rows, self.n_stencil))

    def _evaluate(self, x_st: Any, t: float, mu: Any) -> tuple[np.ndarray, np.ndarray]:
        x_st = self.check_local_state(x_st)
        f, data = np.empty(self.n_rows), np.empty(self.nnz)
        self.velocity_jacobian_into(x_st, t, np.asarray(mu, dtype=np.float64), f, data)
        return f, data


def local_positions(stencil: np.ndarray, global_idx: np.ndarray) -> np.ndarray:
    """Positions of ``global_idx`` in the sorted ``stencil``; ``-1`` stays ``-1`` (a boundary
    value, not a state entry)."""
    g = np.asarray(global_idx, dtype=np.int64)
    out = np.full(g.shape, -1, dtype=np.int64)
    inside = g >= 0
    pos = np.searchsorted(stencil, g[inside])
    if np.any(pos >= stencil.size) or np.any(stencil[np.minimum(pos, stencil.size - 1)]
                                             != g[inside]):
        raise ValueError("an index is missing from the stencil")
    out[inside] = pos
    return out


def check_sample_rows(rows: Any, n_dofs: int, problem: str) -> np.ndarray:
    """Validate sample rows: a non-empty 1D array of distinct integers in ``[0, N)``, returned
    sorted as int64."""
    arr = np.asarray(rows)
    if arr.ndim != 1 or arr.size == 0 or not np.issubdtype(arr.dtype, np.integer):
        raise InputError(f"{problem}: sample rows must be a non-empty one-dimensional array of "
                         f"integers")
    if arr.min() < 0 or arr.max() >= n_dofs:
        raise InputError(f"{problem}: sample rows must lie in [0, {n_dofs}), got "
                         f"{arr.min()}..{arr.max()}")
    out = np.unique(arr.astype(np.int64))
    if out.size != arr.size:
        raise InputError(f"{problem}: sample rows must be distinct")
    return out
