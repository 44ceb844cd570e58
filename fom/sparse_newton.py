"""The strong FOM time integrator for sparse problems: modified Newton with reused SuperLU
factors.

At step ``n`` the implicit scheme of :mod:`fom.steppers` solves ``r^n(x) = 0`` with

    r^n(x) = alpha_0 x + h^n - beta dt f(x, t^n),     M(x) = alpha_0 I - beta dt df/dx(x),   (1)

``h^n = sum_j alpha_j x^{n-j}``. Newton's method factors ``M`` at every iterate; here the
sparse LU factors of ``M`` (SuperLU, ``scipy.sparse.linalg.splu``) are kept across iterations
*and time steps* (the chord or modified Newton method) and renewed only when

- the residual contracted by less than ``refactor_ratio`` in the last iteration (the factors
  have become stale; an iteration that did not reduce the residual at all is undone first), or
- ``alpha_0`` or ``beta dt`` changed (BDF2's first step is backward Euler), or
- a step reached ``max_iter`` iterations with stale factors (the step is then restarted from
  its initial guess with fresh factors, i.e. it gets a true Newton solve).

The iteration stops on the same tests as :func:`fom.newton.newton_solve`:
``||r|| <= atol + rtol ||r_0||`` or ``||dx|| <= stol (1 + ||x||)``, so the converged states
agree with plain Newton's to the Newton tolerance. ``velocity`` and ``df/dx`` come from the
problem's fused numba kernel (:meth:`fom.Problem.velocity_jacobian_into`) into reused buffers;
the CSR arrays of ``M`` are passed to SuperLU as the CSC arrays of ``M^T`` (no conversion), and
the solves use ``trans="T"``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from .errors import InputError
from .newton import NewtonOptions
from .problem import Problem
from .steppers import Scheme, history_term, scheme_at_step

#: ``callback(step, iteration, r)`` receives every Newton iterate's residual (iteration 0 is
#: the initial guess ``x^{n-1}``); the array is reused afterwards, copy it to keep it.
ResidualCallback = Callable[[int, int, np.ndarray], None]


@dataclass
class SparseStats:
    """Work counters of one integration."""

    factorizations: int = 0
    solves: int = 0
    evaluations: int = 0


def diagonal_positions(indptr: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """Position in ``indices`` of each row's diagonal entry; the structure must hold it."""
    n = indptr.size - 1
    rows = np.repeat(np.arange(n), np.diff(indptr))
    pos = np.flatnonzero(indices == rows)
    if pos.size != n:
        raise InputError("the Jacobian structure must contain every diagonal entry")
    return pos


class SparseNewton:
    """Modified Newton (1) with reused SuperLU factors for one problem and parameter.

    Parameters
    ----------
    problem : Problem
        Must declare :meth:`~fom.Problem.jacobian_structure`.
    mu : ndarray
    options : NewtonOptions
    refactor_ratio : float
        Refactor when an iteration reduces ``||r||`` by less than this factor.
    permc_spec : str
        SuperLU's column ordering (``"COLAMD"``, ``"MMD_AT_PLUS_A"``, ...).
    """

    def __init__(self, problem: Problem, mu: np.ndarray, options: NewtonOptions, *,
                 refactor_ratio: float = 0.1, permc_spec: str = "COLAMD") -> None:
        structure = problem.jacobian_structure()
        if structure is None:
            raise InputError(f"problem {problem.name} has no Jacobian structure (fused kernel); "
                             f"the sparse solver cannot integrate it")
        self.problem, self.mu, self.opts = problem, mu, options
        self.refactor_ratio, self.permc_spec = refactor_ratio, permc_spec
        self.indptr, self.indices = (np.asarray(a, dtype=np.int64) for a in structure)
        self.diag = diagonal_positions(self.indptr, self.indices)
        n = problem.n_dofs
        self.f = np.empty(n)
        self.r = np.empty(n)
        self.data = np.empty(self.indices.size)
        self.mdata = np.empty(self.indices.size)
        self.lu = None
        self.coeffs: tuple[float, float] | None = None
        self.stats = SparseStats()

    def _residual(self, x: np.ndarray, hist: np.ndarray, t: float, alpha0: float,
                  bdt: float) -> float:
        """``r = alpha0 x + hist - bdt f(x)`` into ``self.r`` (and ``df/dx`` into ``data``)."""
        self.problem.velocity_jacobian_into(x, t, self.mu, self.f, self.data)
        self.stats.evaluations += 1
        np.multiply(x, alpha0, out=self.r)
        self.r += hist
        self.r -= bdt * self.f
        return float(np.linalg.norm(self.r))

    def _factor(self, alpha0: float, bdt: float) -> None:
        """Factor ``M`` (1) at the state of the last residual evaluation."""
        np.multiply(self.data, -bdt, out=self.mdata)
        self.mdata[self.diag] += alpha0
        n = self.problem.n_dofs
        mt = sp.csc_matrix((self.mdata, self.indices, self.indptr), shape=(n, n))  # = M^T
        self.lu = spla.splu(mt, permc_spec=self.permc_spec)
        self.coeffs = (alpha0, bdt)
        self.stats.factorizations += 1

    def step(self, x: np.ndarray, hist: np.ndarray, t: float, alpha0: float, bdt: float,
             step: int = 0, callback: ResidualCallback | None = None
             ) -> tuple[int, float, bool]:
        """Solve ``r(x) = 0`` in place from the initial guess in ``x``.

        Returns ``(iterations, final residual norm, converged)``.
        """
        o = self.opts
        x0 = x.copy()
        for attempt in range(2):
            if attempt:  # restart with fresh factors: a full Newton solve
                x[:] = x0
                self.lu = None
            norm = self._residual(x, hist, t, alpha0, bdt)
            r0 = norm
            k = 0
            fresh = False
            if callback is not None:
                callback(step, 0, self.r)
            while math.isfinite(norm):
                if norm <= o.atol + o.rtol * r0:
                    return k, norm, True
                if k >= o.max_iter:
                    break
                if self.lu is None or self.coeffs != (alpha0, bdt):
                    self._factor(alpha0, bdt)
                    fresh = True
                dx = self.lu.solve(self.r, trans="T")
                self.stats.solves += 1
                x -= dx
                k += 1
                old = norm
                norm = self._residual(x, hist, t, alpha0, bdt)
                if callback is not None:
                    callback(step, k, self.r)
                if not fresh and not norm < old:
                    # stale factors made things worse: undo, refactor at the old iterate
                    x += dx
                    norm = self._residual(x, hist, t, alpha0, bdt)
                    self.lu = None
                    continue
                if norm > self.refactor_ratio * old:
                    self.lu = None  # slow contraction: refactor at the next iterate
                fresh = False
                if np.linalg.norm(dx) <= o.stol * (1.0 + np.linalg.norm(x)):
                    return k, norm, bool(math.isfinite(norm))
            # not converged (max_iter or a non-finite residual): once more with fresh factors
        return k, norm, False


def integrate_sparse(problem: Problem, mu: np.ndarray, scheme: Scheme, dt: float,
                     n_steps: int, options: NewtonOptions, *,
                     callback: ResidualCallback | None = None,
                     refactor_ratio: float = 0.1, permc_spec: str = "COLAMD"):
    """Integrate ``dx/dt = f`` over ``n_steps`` steps with :class:`SparseNewton`.

    Returns ``(states, iterations, residuals, failed, stats)`` in the convention of
    :func:`fom.solve`'s integrators (``failed`` = 0 or the failing step).
    """
    solver = SparseNewton(problem, mu, options, refactor_ratio=refactor_ratio,
                          permc_spec=permc_spec)
    n = problem.n_dofs
    states = np.empty((n_steps + 1, n))
    iters = np.zeros(n_steps + 1, dtype=np.int64)
    res = np.zeros(n_steps + 1)
    states[0] = problem.initial_state(mu)
    for k in range(1, n_steps + 1):
        s = scheme_at_step(scheme, k)
        hist = history_term(s, [states[k - j] for j in range(1, s.n_history + 1)])
        x = states[k]
        x[:] = states[k - 1]
        iters[k], res[k], ok = solver.step(x, hist, k * dt, s.alpha[0], s.beta * dt, k,
                                           callback)
        if not ok:
            return states, iters, res, k, solver.stats
    return states, iters, res, 0, solver.stats
