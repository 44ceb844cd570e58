"""Implicit linear multistep schemes and their time-discrete residuals.

A scheme with coefficients ``alpha_0..alpha_k`` and ``beta`` defines, at step ``n``,

    r^n(x) = alpha_0 x + sum_{j=1..k} alpha_j x^{n-j} - beta * dt * f(x, t^n; mu)     (1)
    dr^n/dx = alpha_0 I - beta * dt * df/dx(x, t^n; mu)                              (2)

Backward Euler: ``alpha = (1, -1)``, ``beta = 1``.  BDF2: ``alpha = (1, -4/3, 1/3)``,
``beta = 2/3``, started by one backward-Euler step (docs/method.md, section 1).
The FOM's Newton solver and the ROMs' LSPG/Galerkin drivers all evaluate (1)-(2) here.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from .errors import InputError
from .problem import Problem


@dataclass(frozen=True)
class Scheme:
    """Coefficients of an implicit linear multistep scheme, equation (1)."""

    name: str
    alpha: tuple[float, ...]
    beta: float

    @property
    def n_history(self) -> int:
        """Number of previous states the residual needs."""
        return len(self.alpha) - 1


BACKWARD_EULER = Scheme("backward_euler", (1.0, -1.0), 1.0)
BDF2 = Scheme("bdf2", (1.0, -4.0 / 3.0, 1.0 / 3.0), 2.0 / 3.0)
SCHEMES = {"backward_euler": BACKWARD_EULER, "be": BACKWARD_EULER, "bdf2": BDF2}


def get_scheme(name: str | Scheme) -> Scheme:
    """Look a scheme up by name (``"backward_euler"``/``"be"`` or ``"bdf2"``)."""
    if isinstance(name, Scheme):
        return name
    try:
        return SCHEMES[str(name).lower()]
    except KeyError:
        raise InputError(
            f"unknown time scheme {name!r}; choose one of backward_euler, bdf2"
        ) from None


def scheme_at_step(scheme: Scheme, n: int) -> Scheme:
    """The scheme used at step ``n`` (1-based): multistep schemes start with backward Euler."""
    return scheme if n > scheme.n_history - 1 else BACKWARD_EULER


def history_term(scheme: Scheme, history: tuple[np.ndarray, ...] | list[np.ndarray]) -> np.ndarray:
    """``sum_j alpha_j x^{n-j}`` of equation (1); ``history[0]`` is ``x^{n-1}``."""
    out = scheme.alpha[1] * history[0]
    for a, x in zip(scheme.alpha[2:], history[1:], strict=False):
        out = out + a * x
    return out


def time_residual(problem: Problem, scheme: Scheme, x: np.ndarray, hist: np.ndarray, t: float,
                  dt: float, mu: np.ndarray) -> np.ndarray:
    """Residual (1) given the precomputed history term ``hist`` (see :func:`history_term`)."""
    return scheme.alpha[0] * x + hist - (scheme.beta * dt) * problem.velocity(x, t, mu)


def time_jacobian(problem: Problem, scheme: Scheme, x: np.ndarray, t: float, dt: float,
                  mu: np.ndarray) -> sp.csr_matrix:
    """Jacobian (2) of the residual, CSR."""
    jac = problem.jacobian(x, t, mu)
    eye = sp.identity(problem.n_dofs, format="csr")
    return (scheme.alpha[0] * eye - (scheme.beta * dt) * jac).tocsr()


def time_residual_rows(problem: Problem, scheme: Scheme, x: np.ndarray, hist: np.ndarray,
                       t: float, dt: float, mu: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Rows ``rows`` of residual (1); ``hist`` is the full history term."""
    return (scheme.alpha[0] * x[rows] + hist[rows]
            - (scheme.beta * dt) * problem.velocity_rows(x, t, mu, rows))


def time_jacobian_rows(problem: Problem, scheme: Scheme, x: np.ndarray, t: float, dt: float,
                       mu: np.ndarray, rows: np.ndarray) -> sp.csr_matrix:
    """Rows ``rows`` of Jacobian (2), CSR of shape (len(rows), N)."""
    jac = problem.jacobian_rows(x, t, mu, rows)
    sel = sp.csr_matrix((np.ones(len(rows)), (np.arange(len(rows)), rows)),
                        shape=(len(rows), problem.n_dofs))
    return (scheme.alpha[0] * sel - (scheme.beta * dt) * jac).tocsr()
