"""Tridiagonal solve with partial pivoting, compiled with numba.

This is LAPACK's ``dgtsv`` algorithm (Gaussian elimination with row interchanges on a
tridiagonal matrix). It is written here because a numba kernel cannot call LAPACK through a
cached function, and the Python round trip to ``scipy.linalg.solve_banded`` costs more than the
whole elimination at the FOM sizes of 1D problems (N = 256), inside a Newton loop that runs
about 10^5 times for a training set. ``tests/test_tridiagonal.py`` checks it against SciPy.
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True)
def solve_tridiagonal(dl: np.ndarray, d: np.ndarray, du: np.ndarray, b: np.ndarray) -> bool:
    """Solve ``A y = b`` in place; ``A`` has sub-, main and super-diagonals ``dl, d, du``.

    Parameters
    ----------
    dl : ndarray, shape (n - 1,)
        Sub-diagonal ``A[i + 1, i]``; overwritten.
    d : ndarray, shape (n,)
        Diagonal ``A[i, i]``; overwritten.
    du : ndarray, shape (n - 1,)
        Super-diagonal ``A[i, i + 1]``; overwritten.
    b : ndarray, shape (n,)
        Right-hand side; overwritten with the solution.

    Returns
    -------
    bool
        False if a zero pivot made ``A`` singular (``b`` is then undefined).
    """
    n = d.shape[0]
    if n == 0:
        return True
    # dl[i] is reused for the second super-diagonal created by row interchanges.
    for i in range(n - 1):
        if abs(d[i]) >= abs(dl[i]):
            if d[i] == 0.0:
                return False
            fact = dl[i] / d[i]
            d[i + 1] -= fact * du[i]
            b[i + 1] -= fact * b[i]
            dl[i] = 0.0
        else:
            fact = d[i] / dl[i]
            d[i] = dl[i]
            temp = d[i + 1]
            d[i + 1] = du[i] - fact * temp
            if i < n - 2:
                dl[i] = du[i + 1]
                du[i + 1] = -fact * dl[i]
            else:
                dl[i] = 0.0
            du[i] = temp
            temp = b[i]
            b[i] = b[i + 1]
            b[i + 1] = temp - fact * b[i + 1]
    if d[n - 1] == 0.0:
        return False
    b[n - 1] /= d[n - 1]
    if n > 1:
        b[n - 2] = (b[n - 2] - du[n - 2] * b[n - 1]) / d[n - 2]
    for i in range(n - 3, -1, -1):
        b[i] = (b[i] - du[i] * b[i + 1] - dl[i] * b[i + 2]) / d[i]
    return True
