"""Newton's method with sparse direct solves for the implicit FOM time step.

Solves ``r(x) = 0`` for a time-discrete residual (equation (1) of :mod:`fom.steppers`). The
iteration stops when the residual 2-norm satisfies ``||r|| <= atol + rtol * ||r(x_0)||`` or
when the update satisfies ``||dx|| <= stol * (1 + ||x||)``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from .errors import InputError


@dataclass(frozen=True)
class NewtonOptions:
    """Tolerances of the Newton solver.

    Attributes
    ----------
    atol, rtol : float
        Absolute and relative (to the initial residual norm) residual tolerances.
    stol : float
        Step tolerance relative to ``1 + ||x||``.
    max_iter : int
        Maximum number of Newton iterations per time step.
    predictor : int
        Initial guess of a time step in the sparse solver (:mod:`fom.sparse_newton`): the
        polynomial through the last ``predictor + 1`` states, extrapolated to the new time
        (0: the previous state; 1: ``2 x^{n-1} - x^{n-2}``). Other solvers start from the
        previous state.
    """

    atol: float = 1e-12
    rtol: float = 1e-12
    stol: float = 1e-14
    max_iter: int = 20
    predictor: int = 1

    def __post_init__(self) -> None:
        if isinstance(self.predictor, bool) or not isinstance(self.predictor, int) \
                or not 0 <= self.predictor <= 8:
            raise InputError(f"Newton option predictor must be an integer in [0, 8] (the "
                             f"degree of the extrapolation), got {self.predictor!r}")

    def to_dict(self) -> dict[str, float | int]:
        return {"atol": self.atol, "rtol": self.rtol, "stol": self.stol,
                "max_iter": self.max_iter, "predictor": self.predictor}


@dataclass
class NewtonResult:
    """Outcome of one Newton solve: the iterate, its residual norm and the iteration count."""

    x: np.ndarray
    residual: float
    iterations: int
    converged: bool


def newton_solve(fun: Callable[[np.ndarray], tuple[np.ndarray, sp.spmatrix | None]],
                 x0: np.ndarray, options: NewtonOptions = NewtonOptions()) -> NewtonResult:
    """Newton's method on ``fun(x) -> (r, dr/dx)`` starting from ``x0``.

    ``fun`` is called with ``need_jacobian`` semantics folded in: it always returns both; the
    Jacobian of the last (converged) call is not used.
    """
    x = np.array(x0, dtype=np.float64, copy=True)
    r, jac = fun(x)
    norm = float(np.linalg.norm(r))
    r0 = norm
    k = 0
    while np.isfinite(norm):
        if norm <= options.atol + options.rtol * r0:
            return NewtonResult(x, norm, k, True)
        if k >= options.max_iter:
            break
        dx = spla.spsolve(sp.csc_matrix(jac), r)
        x -= dx
        k += 1
        r, jac = fun(x)
        norm = float(np.linalg.norm(r))
        if np.linalg.norm(dx) <= options.stol * (1.0 + np.linalg.norm(x)):
            return NewtonResult(x, norm, k, bool(np.isfinite(norm)))
    return NewtonResult(x, norm, k, False)
