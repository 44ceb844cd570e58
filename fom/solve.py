"""Integrate a full-order model over time: :func:`solve` and its result object."""

from __future__ import annotations

import time as _time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .errors import ConvergenceError, InputError
from .newton import NewtonOptions, newton_solve
from .problem import Problem
from .sparse_newton import ResidualCallback, integrate_sparse
from .steppers import get_scheme, history_term, scheme_at_step, time_jacobian, time_residual
from .trajectory import TrajectoryStore


@dataclass
class FOMResult:
    """Trajectory of a full-order model, in the spirit of ``scipy.integrate.solve_ivp``.

    Attributes
    ----------
    mu : ndarray, shape (n_params,)
    t : ndarray, shape (n_t,)
        Times of the stored steps (every step by default; see ``store_every`` of
        :func:`solve`), ``t[0] = 0``.
    states : ndarray, shape (n_t, N)
    iterations : ndarray of int, shape (n_t,)
        Newton iterations of each stored step (0 at ``t[0]``).
    residuals : ndarray, shape (n_t,)
        Final residual norm of each stored step.
    wall_s : float
        Wall time of the integration.
    solver : dict
        Scheme, time step and tolerances (written to snapshot files).
    stats : dict
        Solver work counters (the sparse solver: ``factorizations``, ``solves``,
        ``evaluations`` and the wall time of each kind of work, see
        :class:`fom.sparse_newton.SparseStats`).
    """

    mu: np.ndarray
    t: np.ndarray
    states: np.ndarray
    iterations: np.ndarray
    residuals: np.ndarray
    wall_s: float
    solver: dict[str, Any] = field(default_factory=dict)
    stats: dict[str, Any] = field(default_factory=dict)


def time_grid(dt: float, t_final: float) -> tuple[float, int]:
    """Validate ``dt`` and ``t_final`` and return ``(dt, n_steps)`` with ``n_steps dt = t_final``.

    The number of steps is ``round(t_final / dt)``; the final time must be a whole number of
    steps (to 1e-9 relative) so that a FOM never differs from the specified one in its last step.
    """
    if not (np.isfinite(dt) and dt > 0):
        raise InputError(f"time step dt must be a positive number, got {dt!r}")
    if not (np.isfinite(t_final) and t_final > 0):
        raise InputError(f"final time t_final must be a positive number, got {t_final!r}")
    n_steps = int(round(t_final / dt))
    if n_steps < 1 or abs(n_steps * dt - t_final) > 1e-9 * t_final:
        raise InputError(f"t_final = {t_final} is not a whole number of steps dt = {dt}")
    return float(dt), n_steps


def solve(problem: Problem, mu: Any, *, dt: float | None = None, t_final: float | None = None,
          scheme: str = "backward_euler", options: NewtonOptions | None = None,
          method: str = "auto", callback: ResidualCallback | None = None,
          store_every: int = 1) -> FOMResult:
    """Integrate ``dx/dt = f(x, t; mu)`` from ``x0(mu)`` by an implicit scheme with Newton.

    Parameters
    ----------
    problem : Problem
    mu : array_like, shape (n_params,)
    dt, t_final : float, optional
        Default to the problem's values.
    scheme : {"backward_euler", "bdf2"}
        Time discretization, equation (1) of :mod:`fom.steppers`.
    options : NewtonOptions, optional
        Default: the problem's :meth:`~fom.Problem.newton_defaults`.
    method : {"auto", "compiled", "sparse", "generic"}
        ``"compiled"`` uses the problem's whole-trajectory numba kernel; ``"sparse"`` the
        modified Newton method with reused SuperLU factors over the problem's fused kernel
        (:mod:`fom.sparse_newton`); ``"generic"`` the Python Newton loop over
        :func:`fom.steppers.time_residual` with a sparse solve per iteration (the same residual
        for any problem). ``"auto"`` picks the first of these the problem supports.
    callback : callable, optional
        ``callback(step, iteration, r)`` with every Newton iterate's residual (``"sparse"``
        only; iteration 0 is the initial guess). ``r`` is reused: copy it to keep it.
    store_every : int
        Keep the state of every ``store_every``-th step and of the last step only (memory is
        bounded by the stored states, see :mod:`fom.trajectory`); ``t``, ``states``,
        ``iterations`` and ``residuals`` of the result refer to the stored steps.

    Raises
    ------
    InputError
        For a bad ``mu``, ``dt``, ``t_final``, scheme or method.
    ConvergenceError
        If Newton fails on a step; ``err.partial`` holds the steps computed so far.
    """
    mu = problem.check_mu(mu)
    dt, n_steps = time_grid(problem.dt if dt is None else dt,
                            problem.t_final if t_final is None else t_final)
    sch = get_scheme(scheme)
    opts = options or problem.newton_defaults()
    if method not in ("auto", "compiled", "sparse", "generic"):
        raise InputError(f"unknown solve method {method!r}; choose auto, compiled, sparse or "
                         f"generic")
    if callback is not None:
        if method == "auto":
            method = "sparse"
        if method != "sparse":
            raise InputError("Newton residuals can only be recorded by the sparse solver")
    integrator = problem.compiled_integrator() if method in ("auto", "compiled") else None
    if method == "compiled" and integrator is None:
        raise InputError(f"problem {problem.name} has no compiled integrator")
    if method == "auto" and integrator is None:
        method = "sparse" if problem.jacobian_structure() is not None else "generic"
    store = TrajectoryStore(problem.initial_state(mu), n_steps, store_every,
                            history=max(sch.n_history, opts.predictor + 1))
    t_all = dt * np.arange(n_steps + 1)
    t = t_all[store.steps]
    solver_info = {"scheme": sch.name, "dt": dt, "t_final": float(t_all[-1]),
                   "n_steps": n_steps, "store_every": int(store_every),
                   "newton": opts.to_dict()}
    extra: dict[str, Any] = {}
    start = _time.perf_counter()
    if integrator is not None:
        states, iters, res, failed = integrator(mu, dt, n_steps, sch.name, opts.atol, opts.rtol,
                                                opts.stol, opts.max_iter)
        store.fill(states, iters, res, failed)
    elif method == "sparse":
        failed, stats = integrate_sparse(problem, mu, sch, dt, opts, store, callback=callback)
        extra = stats.as_dict()
    else:
        failed = _integrate_generic(problem, mu, sch, dt, opts, store)
    wall = _time.perf_counter() - start
    if failed:
        k = store.upto(failed)
        partial = FOMResult(mu, t[:k], store.states[:k], store.iterations[:k],
                            store.residuals[:k], wall, solver_info)
        raise ConvergenceError(
            f"Newton did not converge at step {failed} (t = {t_all[failed]:.6g}) for mu = "
            f"{mu.tolist()}: residual {store.last_residual:.3e} after "
            f"{store.last_iterations} iterations",
            step=failed, time=float(t_all[failed]), residual=store.last_residual,
            partial=partial)
    return FOMResult(mu, t, store.states, store.iterations, store.residuals, wall, solver_info,
                     extra)


def _integrate_generic(problem: Problem, mu: np.ndarray, sch, dt: float, opts: NewtonOptions,
                       store: TrajectoryStore) -> int:
    """Plain Newton (a sparse solve per iteration) from ``x^{n-1}`` at every step; returns 0
    or the failing step."""
    for n in range(1, store.n_steps + 1):
        s = scheme_at_step(sch, n)
        hist = history_term(s, [store.previous(n, j) for j in range(1, s.n_history + 1)])
        tn = n * dt

        def fun(x, s=s, hist=hist, tn=tn):
            return (time_residual(problem, s, x, hist, tn, dt, mu),
                    time_jacobian(problem, s, x, tn, dt, mu))

        out = newton_solve(fun, store.previous(n, 1), opts)
        store.current(n)[:] = out.x
        store.commit(n, out.iterations, out.residual)
        if not out.converged:
            return n
    return 0
