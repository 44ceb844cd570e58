"""Numerical helpers shared by the tests."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


def central_difference_jacobian(fun: Callable[[np.ndarray], np.ndarray], x: np.ndarray,
                                h: float = 1e-6) -> np.ndarray:
    """Dense ``d fun / dx`` at ``x`` by central differences, column by column."""
    cols = []
    for j in range(x.size):
        e = np.zeros(x.size)
        e[j] = h
        cols.append((fun(x + e) - fun(x - e)) / (2 * h))
    return np.stack(cols, axis=1)
